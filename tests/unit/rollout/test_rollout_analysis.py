"""Analysis values from Prometheus text, against hand-computed answers."""

from __future__ import annotations

import math

import pytest

from mlform.rollout.analysis import (
    AnalysisError,
    histogram_quantile,
    judge,
    measure,
    parse_snapshot,
)
from mlform.rollout.strategy import Threshold
from mlform.spec.deployments import check_metric_name

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


def exposition(counts: dict[str, list[int]], extra: str = "") -> str:
    """A server's /metrics: per status, how many infer requests fell in each bucket."""
    lines = [
        "# HELP http_request_duration_seconds Request latency.",
        "# TYPE http_request_duration_seconds histogram",
    ]
    for status, per_bucket in counts.items():
        labels = f'endpoint="infer",model="m",status="{status}",version="2"'
        running = 0
        for le, n in zip(BUCKETS, per_bucket, strict=True):
            running += n
            lines.append(f'http_request_duration_seconds_bucket{{{labels},le="{le}"}} {running}')
        lines.append(f'http_request_duration_seconds_bucket{{{labels},le="+Inf"}} {running}')
        lines.append(f"http_request_duration_seconds_count{{{labels}}} {running}")
        lines.append(f"http_request_duration_seconds_sum{{{labels}}} {running * 0.003}")
    health = 'endpoint="health",model="m",status="200",version="2"'
    lines.append(f'http_request_duration_seconds_bucket{{{health},le="+Inf"}} 1000')
    lines.append(f"http_request_duration_seconds_count{{{health}}} 1000")
    return "\n".join(lines) + "\n" + extra


def test_success_rate_and_p99_over_an_interval() -> None:
    before = parse_snapshot(exposition({"200": [0] * 11}), taken_at=0.0)
    # 990 fast successes (<= 2.5 ms), 10 server errors in the 50-100 ms bucket.
    ok = [0, 500, 490, 0, 0, 0, 0, 0, 0, 0, 0]
    bad = [0, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0]
    after = parse_snapshot(exposition({"200": ok, "500": bad}), taken_at=10.0)
    names = ["success_rate", "error_rate", "request_rate", "latency_p50_ms", "latency_p99_ms"]
    values = measure(before, after, names)
    assert values["success_rate"] == pytest.approx(0.99)
    assert values["error_rate"] == pytest.approx(0.01)
    assert values["request_rate"] == pytest.approx(100.0)
    # rank 500 of 1000 is the last request of the (0.5 ms, 1 ms] bucket.
    assert values["latency_p50_ms"] == pytest.approx(1.0)
    # rank 990 is the last of the (1 ms, 2.5 ms] bucket: the health requests don't count.
    assert values["latency_p99_ms"] == pytest.approx(2.5)


def test_histogram_quantile_matches_prometheus_interpolation() -> None:
    buckets = {0.1: 10.0, 0.2: 30.0, math.inf: 40.0}
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.15)
    assert histogram_quantile(0.25, buckets) == pytest.approx(0.1)
    # Beyond the last finite bucket: its bound (Prometheus does the same).
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.2)
    assert histogram_quantile(0.5, {math.inf: 0.0}) is None
    assert histogram_quantile(0.5, {}) is None


def test_no_requests_means_no_data_and_fails_every_threshold() -> None:
    snap = parse_snapshot(exposition({"200": [1] * 11}), taken_at=0.0)
    later = parse_snapshot(exposition({"200": [1] * 11}), taken_at=60.0)
    values = measure(snap, later, ["success_rate", "latency_p99_ms", "request_rate"])
    assert values["success_rate"] is None and values["latency_p99_ms"] is None
    assert values["request_rate"] == 0.0
    check = judge(
        values,
        [Threshold("success_rate", ">=", 0.99), Threshold("latency_p99_ms", "<=", 500)],
        now="t",
        what="model.m@v2 at 10%",
    )
    assert not check.passed
    assert all("no data" in f and "model.m@v2 at 10%" in f for f in check.failures)


def test_judge_names_the_broken_threshold() -> None:
    check = judge(
        {"success_rate": 0.9, "latency_p99_ms": 12.0},
        [Threshold("success_rate", ">=", 0.99), Threshold("latency_p99_ms", "<=", 500)],
        now="t",
        what="x",
    )
    assert check.failures == ("success_rate 0.9 breaks success_rate >= 0.99",)
    assert check.to_dict()["passed"] is False


def test_raw_metrics_counter_rate_and_gauge_value() -> None:
    extra = (
        "# TYPE mlform_inference_rows_total counter\n"
        'mlform_inference_rows_total{model="m",version="2"} 500\n'
        "# TYPE queue_depth gauge\nqueue_depth 7\n"
    )
    before = parse_snapshot(exposition({"200": [0] * 11}, extra.replace("500", "100")), 0.0)
    after = parse_snapshot(exposition({"200": [0] * 11}, extra), 4.0)
    values = measure(
        before,
        after,
        [
            "metric:mlform_inference_rows_total",
            "metric:mlform_inference_rows",
            "metric:queue_depth",
            "metric:absent",
        ],
    )
    assert values["metric:mlform_inference_rows_total"] == pytest.approx(100.0)
    assert values["metric:mlform_inference_rows"] == pytest.approx(100.0)
    assert values["metric:queue_depth"] == 7.0
    assert values["metric:absent"] is None


def test_unreadable_metrics_are_an_analysis_error() -> None:
    with pytest.raises(AnalysisError):
        parse_snapshot("this is {not prometheus", 0.0)


@pytest.mark.parametrize(
    "name",
    [
        "success_rate",
        "error_rate",
        "request_rate",
        "latency_p99_ms",
        "latency_p99.9_ms",
        "metric:foo_total",
    ],
)
def test_known_metric_names(name: str) -> None:
    assert check_metric_name(name) == name


@pytest.mark.parametrize("name", ["p99", "latency_p100_ms", "latency_p0_ms", "metric:", "accuracy"])
def test_unknown_metric_names_say_what_is_known(name: str) -> None:
    with pytest.raises(ValueError, match="latency_pNN_ms"):
        check_metric_name(name)
