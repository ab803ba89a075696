"""Alert delivery (log, webhook with retries, the delivery log) and Prometheus rule rendering.

The webhook sink runs against a scripted opener here (no sockets, no real sleeping); the
real HTTP receiver is in tests/integration/test_monitor_webhook.py and promtool checks the
rules in tests/integration/test_prometheus_rules.py.
"""

from __future__ import annotations

import email.message
import io
import json
import logging
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlform.monitoring import alerts as alerts_module
from mlform.monitoring.alerts import Alert, Delivery, DeliveryLog, deliver, display_url
from mlform.monitoring.prometheus_rules import (
    alert_name,
    monitor_rules,
    prometheus_duration,
    render_rules,
)
from mlform.spec.monitors import MonitorSpec

SECRET = "s3cr3t-t0ken-value"
URL = "https://hooks.example.com/alerts"


def _alert(**changes: Any) -> Alert:
    values: dict[str, Any] = {
        "id": "diagnosis-drift:run-7:firing",
        "monitor": "diagnosis-drift",
        "deployment": "diagnosis-api",
        "status": "firing",
        "severity": "warning",
        "summary": "monitor.diagnosis-drift breached at 2026-11-24T02:00:00Z "
        "(psi 0.31 > 0.1 on column mean_radius)",
        "time": "2026-11-24T02:00:00Z",
        "action": "alert",
        "details": {"method": "psi", "values": {"mean_radius": 0.31}, "columns": ["mean_radius"]},
    }
    values.update(changes)
    return Alert(**values)


# -- a scripted opener in place of urllib's ---------------------------------------------------


class _Response:
    def __init__(self, status: int) -> None:
        self.status = status

    def read(self) -> bytes:
        return b"ok"

    def __enter__(self) -> _Response:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


@dataclass
class _Opener:
    """Answers each ``open`` with the next step: a status, (status, headers, body) or an
    exception; records every request."""

    script: list[Any]
    requests: list[urllib.request.Request] = field(default_factory=list)
    timeouts: list[float] = field(default_factory=list)

    def open(self, request: urllib.request.Request, timeout: float) -> _Response:
        self.requests.append(request)
        self.timeouts.append(timeout)
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(step, BaseException):
            raise step
        status, headers, body = step if isinstance(step, tuple) else (step, {}, b"")
        if 200 <= status < 300:
            return _Response(status)
        message = email.message.Message()
        for name, value in headers.items():
            message[name] = value
        raise urllib.error.HTTPError(request.full_url, status, "error", message, io.BytesIO(body))

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.data) for r in self.requests if isinstance(r.data, bytes)]


@pytest.fixture
def opener(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Opener]:
    fake = _Opener([200])
    monkeypatch.setattr(alerts_module, "_OPENER", fake)
    yield fake


class _Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def _webhook(**changes: Any) -> dict[str, Any]:
    return {"sink": "webhook", "url": URL, "headers": {}, **changes}


# -- Alert ------------------------------------------------------------------------------------


def test_alert_to_dict_is_json_able() -> None:
    alert = _alert(details={"values": (0.31, 0.2), "nested": {"n": 1}})
    data = alert.to_dict()
    assert data["id"] == "diagnosis-drift:run-7:firing"
    assert data["status"] == "firing" and data["action"] == "alert"
    assert data["details"] == {"values": [0.31, 0.2], "nested": {"n": 1}}
    assert json.loads(json.dumps(data)) == data


# -- log sink ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("level", "expected"),
    [("info", logging.INFO), ("warning", logging.WARNING), ("error", logging.ERROR)],
)
def test_log_sink_writes_one_record_at_its_level(
    caplog: pytest.LogCaptureFixture, level: str, expected: int
) -> None:
    caplog.set_level(logging.DEBUG, logger="mlform.monitor")
    (result,) = deliver(_alert(), [{"sink": "log", "level": level}])
    assert result == Delivery("log", True, 1, f"logged at {level}")
    records = [r for r in caplog.records if r.name == "mlform.monitor"]
    assert len(records) == 1
    assert records[0].levelno == expected
    message = records[0].getMessage()
    assert message.startswith(_alert().summary)
    assert '"values":{"mean_radius":0.31}' in message  # compact JSON of the details


def test_log_sink_default_level_and_given_logger(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.alerts.custom")
    caplog.set_level(logging.DEBUG, logger="test.alerts.custom")
    deliver(_alert(), [{"sink": "log"}], logger=logger)
    records = [r for r in caplog.records if r.name == "test.alerts.custom"]
    assert [r.levelno for r in records] == [logging.WARNING]


# -- DeliveryLog ------------------------------------------------------------------------------


def test_delivery_log_persists_across_instances(tmp_path: Path) -> None:
    path = tmp_path / "state" / "alerts.jsonl"
    first = DeliveryLog(path)
    assert not first.delivered("a:1:firing", "log")
    first.record("a:1:firing", "log")
    assert first.delivered("a:1:firing", "log")
    second = DeliveryLog(path)
    assert second.delivered("a:1:firing", "log")
    assert not second.delivered("a:1:firing", f"webhook {URL}")
    assert not second.delivered("a:1:resolved", "log")
    # What another instance (another process) records is seen by the first one too.
    second.record("a:1:resolved", "log")
    assert first.delivered("a:1:resolved", "log")
    lines = path.read_text().splitlines()
    assert [json.loads(line)["alert"] for line in lines] == ["a:1:firing", "a:1:resolved"]


def test_delivery_log_ignores_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "alerts.jsonl"
    DeliveryLog(path).record("a:1:firing", "log")
    with path.open("a") as file:
        file.write('{"alert": "a:2:fir')  # a crash in the middle of a write
    log = DeliveryLog(path)
    assert log.delivered("a:1:firing", "log")
    assert not log.delivered("a:2:firing", "log")
    log.record("a:2:firing", "log")
    assert DeliveryLog(path).delivered("a:2:firing", "log")


def test_already_delivered_pairs_are_skipped(tmp_path: Path, opener: _Opener) -> None:
    log = DeliveryLog(tmp_path / "alerts.jsonl")
    sinks = [{"sink": "log"}, _webhook()]
    first = deliver(_alert(), sinks, log=log, logger=logging.getLogger("test.quiet"))
    assert [d.ok for d in first] == [True, True]
    assert len(opener.requests) == 1
    again = deliver(_alert(), sinks, log=DeliveryLog(log.path))
    assert [(d.ok, d.attempts, d.detail) for d in again] == [
        (True, 0, "already delivered"),
        (True, 0, "already delivered"),
    ]
    assert len(opener.requests) == 1
    # Another event of the same monitor is a new alert.
    deliver(_alert(id="diagnosis-drift:run-7:resolved", status="resolved"), sinks, log=log)
    assert len(opener.requests) == 2


def test_a_failed_webhook_is_not_recorded(tmp_path: Path, opener: _Opener) -> None:
    opener.script[:] = [(503, {}, b"")]
    log = DeliveryLog(tmp_path / "alerts.jsonl")
    (result,) = deliver(_alert(), [_webhook()], log=log, attempts=2, sleep=_Sleeps())
    assert not result.ok
    assert not log.delivered(_alert().id, f"webhook {URL}")
    assert not log.path.exists()


# -- webhook ----------------------------------------------------------------------------------


def test_webhook_request_carries_the_alert_and_its_id(opener: _Opener) -> None:
    headers = {"Authorization": f"Bearer {SECRET}", "X-Team": "ml"}
    (result,) = deliver(_alert(), [_webhook(headers=headers)], timeout_s=2.5)
    assert result == Delivery(f"webhook {URL}", True, 1, "delivered (HTTP 200)")
    (request,) = opener.requests
    assert request.get_method() == "POST"
    assert request.full_url == URL
    sent = {name.lower(): value for name, value in request.header_items()}
    assert sent["content-type"] == "application/json"
    assert sent["idempotency-key"] == _alert().id
    assert sent["x-mlform-alert-id"] == _alert().id
    assert sent["authorization"] == f"Bearer {SECRET}"
    assert sent["x-team"] == "ml"
    assert opener.bodies() == [{**_alert().to_dict(), "source": "mlform"}]
    assert opener.timeouts == [2.5]


def test_backoff_is_exponential_with_small_jitter(opener: _Opener) -> None:
    opener.script[:] = [(503, {}, b"busy")]
    sleeps = _Sleeps()
    (result,) = deliver(_alert(), [_webhook()], attempts=5, backoff_s=0.5, sleep=sleeps)
    assert not result.ok
    assert result.attempts == 5
    assert result.detail == "gave up after 5 attempts: HTTP 503: busy"
    assert len(opener.requests) == 5
    assert len(sleeps) == 4  # no sleep after the last attempt
    for slept, base in zip(sleeps, [0.5, 1.0, 2.0, 4.0], strict=True):
        assert base <= slept <= base * 1.1
    # Every attempt is the same alert under the same key.
    keys = {r.get_header("Idempotency-key") for r in opener.requests}
    assert keys == {_alert().id}


def test_backoff_is_capped(opener: _Opener) -> None:
    opener.script[:] = [ConnectionRefusedError(111, "Connection refused")]
    sleeps = _Sleeps()
    (result,) = deliver(_alert(), [_webhook()], attempts=5, backoff_s=10, sleep=sleeps)
    assert result.detail == "gave up after 5 attempts: connection refused"
    assert sleeps[0] >= 10 and sleeps[1] >= 20
    assert sleeps[2:] == [30.0, 30.0]


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [("3", 3.0), ("0.25", 0.25), ("120", 30.0), ("Mon, 01 Jan 2001 00:00:00 GMT", 0.0)],
)
def test_retry_after_is_honoured_and_capped(
    opener: _Opener, retry_after: str, expected: float
) -> None:
    opener.script[:] = [(429, {"Retry-After": retry_after}, b""), 200]
    sleeps = _Sleeps()
    (result,) = deliver(_alert(), [_webhook()], backoff_s=0.01, sleep=sleeps)
    assert result.ok and result.attempts == 2
    assert sleeps == [expected]


def test_timeouts_and_connection_errors_are_retried(opener: _Opener) -> None:
    opener.script[:] = [
        TimeoutError("timed out"),
        urllib.error.URLError(TimeoutError("timed out")),
        urllib.error.URLError(ConnectionResetError(104, "reset")),
        200,
    ]
    (result,) = deliver(_alert(), [_webhook()], timeout_s=1, sleep=_Sleeps())
    assert result == Delivery(f"webhook {URL}", True, 4, "delivered (HTTP 200)")


@pytest.mark.parametrize("status", [400, 401, 404, 422])
def test_other_4xx_are_not_retried(opener: _Opener, status: int) -> None:
    opener.script[:] = [(status, {}, b"bad payload: " + b"x" * 500)]
    sleeps = _Sleeps()
    (result,) = deliver(_alert(), [_webhook()], sleep=sleeps)
    assert not result.ok and result.attempts == 1 and sleeps == []
    assert result.detail.startswith(f"HTTP {status} (not retried): bad payload: xxx")
    assert len(result.detail) < 260  # the first 200 characters of the body


def test_header_values_never_appear_in_logs_or_details(
    caplog: pytest.LogCaptureFixture, opener: _Opener
) -> None:
    caplog.set_level(logging.DEBUG)
    opener.script[:] = [
        (503, {}, f"upstream rejected Bearer {SECRET}".encode()),
        urllib.error.URLError(OSError(f"proxy said {SECRET}")),
        (401, {}, f"invalid token {SECRET}; also key=qs-{SECRET}".encode()),
    ]
    sinks = [
        _webhook(
            url=f"https://bot:pw-{SECRET}@hooks.example.com/alerts?key=qs-{SECRET}",
            headers={"Authorization": f"Bearer {SECRET}", "X-Api-Key": "k-" + SECRET},
        ),
        {"sink": "log", "level": "error"},
    ]
    results = deliver(_alert(), sinks, sleep=_Sleeps())
    assert results[0].sink == "webhook https://hooks.example.com/alerts"
    assert results[0].detail.startswith("HTTP 401 (not retried): invalid token ***")
    for result in results:
        assert SECRET not in result.detail and SECRET not in result.sink
    assert caplog.records
    assert SECRET not in caplog.text
    for record in caplog.records:
        assert SECRET not in record.getMessage()
    # The credentials of the URL became a Basic Authorization unless one is configured.
    assert opener.requests[0].full_url == f"https://hooks.example.com/alerts?key=qs-{SECRET}"
    assert opener.requests[0].get_header("Authorization") == f"Bearer {SECRET}"


def test_url_credentials_become_basic_auth(opener: _Opener) -> None:
    deliver(_alert(), [_webhook(url="http://bot:pa%40ss@127.0.0.1:9/hook")])
    (request,) = opener.requests
    assert request.full_url == "http://127.0.0.1:9/hook"
    assert request.get_header("Authorization") == "Basic Ym90OnBhQHNz"  # bot:pa@ss


def test_display_url_hides_credentials_and_query() -> None:
    assert display_url("https://u:p@h.example.com:8443/a/b?token=x#f") == (
        "https://h.example.com:8443/a/b"
    )
    assert display_url("http://[::1]:9000/x") == "http://[::1]:9000/x"


def test_prometheus_and_unknown_sinks(opener: _Opener) -> None:
    results = deliver(
        _alert(), [{"sink": "prometheus", "severity": "critical"}, {"sink": "pagerduty"}]
    )
    assert results[0] == Delivery("prometheus", True, 0, "evaluated by Prometheus (rules file)")
    assert results[1].sink == "pagerduty" and not results[1].ok
    assert opener.requests == []


def test_a_broken_sink_does_not_stop_the_others(
    opener: _Opener, caplog: pytest.LogCaptureFixture
) -> None:
    opener.script[:] = [ValueError("unknown url type: 'ftp'")]
    caplog.set_level(logging.WARNING, logger="mlform.monitor")
    results = deliver(_alert(), [_webhook(url="ftp://x/y"), {"sink": "log"}])
    assert [r.ok for r in results] == [False, True]
    assert "ValueError" in results[0].detail


# -- Prometheus rules -------------------------------------------------------------------------


def _config(**values: Any) -> dict[str, Any]:
    values.setdefault("deployment", "diagnosis-api")
    values.setdefault("alerts", [{"sink": "prometheus", "severity": "critical"}])
    return MonitorSpec.model_validate(values).model_dump()


def _rules(name: str, config: dict[str, Any]) -> list[dict[str, Any]]:
    return monitor_rules(
        name, config, deployment_model_name="diagnosis-api", project="clinic", stack="prod"
    )


def test_latency_rule() -> None:
    config = _config(type="latency", threshold="250ms", quantile=0.95, window={"duration": "10m"})
    (rule,) = _rules("p95-latency", config)
    assert rule["alert"] == "MlformP95Latency"
    assert rule["expr"] == (
        "histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket"
        '{model="diagnosis-api",endpoint="infer"}[10m]))) > 0.25'
    )
    assert rule["for"] == "5m"
    assert rule["labels"] == {
        "severity": "critical",
        "monitor": "p95-latency",
        "deployment": "diagnosis-api",
        "project": "clinic",
        "stack": "prod",
        "action": "alert",
    }
    assert "250ms" in rule["annotations"]["summary"]
    assert "mlform monitor history p95-latency" in rule["annotations"]["description"]


def test_error_rate_rule_uses_the_schedule_for_a_count_window() -> None:
    config = _config(
        type="error_rate", threshold=0.05, schedule={"every": "2m"}, on_breach="rollback"
    )
    (rule,) = _rules("errors", config)
    sel = 'model="diagnosis-api",endpoint="infer"'
    assert rule["expr"] == (
        f'sum(rate(http_request_duration_seconds_count{{{sel},status=~"5.."}}[2m])) / '
        f"sum(rate(http_request_duration_seconds_count{{{sel}}}[2m])) > 0.05"
    )
    assert rule["for"] == "2m"
    assert rule["labels"]["action"] == "rollback"
    assert "rolls the deployment back" in rule["annotations"]["description"]


def test_rate_windows_are_at_least_a_minute() -> None:
    short = _config(type="error_rate", schedule={"every": "10s"})
    assert "[1m]" in _rules("e", short)[0]["expr"]
    explicit = _config(type="error_rate", window={"duration": "30s"})
    assert "[1m]" in _rules("e", explicit)[0]["expr"]
    odd = _config(type="error_rate", window={"duration": "90s"})
    assert "[1m30s]" in _rules("e", odd)[0]["expr"]


@pytest.mark.parametrize("kind", ["data_drift", "prediction_drift", "performance"])
def test_scheduler_computed_rules(kind: str) -> None:
    extra: dict[str, Any] = {"labels": {"source": "outcomes"}} if kind == "performance" else {}
    config = _config(type=kind, method="psi", columns=["mean_radius"], **extra)
    breach, stale = _rules("diagnosis-drift", config)
    assert breach["alert"] == "MlformDiagnosisDrift"
    assert breach["expr"] == (
        'max(mlform_monitor_breached{monitor="diagnosis-drift",deployment="diagnosis-api",'
        'project="clinic",stack="prod"}) == 1'
    )
    assert breach["for"] == "0m"
    assert breach["labels"]["severity"] == "critical"
    assert stale["alert"] == "MlformMonitorStaleDiagnosisDrift"
    ids = '{monitor="diagnosis-drift",deployment="diagnosis-api",project="clinic",stack="prod"}'
    assert stale["expr"] == (
        f"(time() - max(mlform_monitor_last_run_timestamp_seconds{ids}) > 900) or "
        f"absent_over_time(mlform_monitor_last_run_timestamp_seconds{ids}[15m])"
    )
    assert stale["labels"]["severity"] == "warning"  # a stale scheduler never pages


def test_drift_description_names_method_and_threshold() -> None:
    psi = _rules("d", _config(type="data_drift", method="psi", columns=["a", "b"]))[0]
    assert "psi above 0.1" in psi["annotations"]["summary"]
    assert "on a, b" in psi["annotations"]["summary"]
    ks = _rules("d", _config(type="data_drift", method="ks"))[0]
    assert "ks p-value below 0.05" in ks["annotations"]["summary"]


def test_staleness_follows_the_schedule() -> None:
    config = _config(type="data_drift", schedule={"every": "1h"})
    stale = _rules("d", config)[1]
    assert "> 10800)" in stale["expr"] and stale["expr"].endswith("[3h])")


def test_no_prometheus_sink_no_rules() -> None:
    config = _config(type="data_drift", alerts=[{"sink": "log"}, {"sink": "webhook", "url": URL}])
    assert _rules("d", config) == []


def test_one_rule_per_distinct_severity() -> None:
    sinks = [{"sink": "prometheus"}, {"sink": "prometheus", "severity": "critical"}]
    config = _config(type="latency", threshold="1s", quantile=0.99, alerts=[*sinks, sinks[0]])
    rules = _rules("lat", config)
    assert [r["labels"]["severity"] for r in rules] == ["warning", "critical"]
    assert {r["alert"] for r in rules} == {"MlformLat"}


@pytest.mark.parametrize(
    ("mlform", "prometheus"),
    [
        ("90s", "1m30s"),
        ("1.5h", "1h30m"),
        ("500ms", "500ms"),
        ("5m", "5m"),
        ("0.25s", "250ms"),
        ("36h", "1d12h"),
        ("1w", "7d"),
        ("0s", "0s"),
        ("61.5s", "1m1s500ms"),
    ],
)
def test_duration_conversion(mlform: str, prometheus: str) -> None:
    assert prometheus_duration(mlform) == prometheus


def test_duration_conversion_takes_seconds() -> None:
    assert prometheus_duration(5400) == "1h30m"
    with pytest.raises(ValueError):
        prometheus_duration(-1)


@pytest.mark.parametrize(
    ("monitor", "expected"),
    [
        ("diagnosis-drift", "MlformDiagnosisDrift"),
        ("p99_latency", "MlformP99Latency"),
        ("9lives", "Mlform9lives"),
        ("a--b__c", "MlformABC"),
        ("errorRate", "MlformErrorRate"),
    ],
)
def test_alert_names_are_valid(monitor: str, expected: str) -> None:
    name = alert_name(monitor)
    assert name == expected
    assert re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", name)


def test_rendering_is_deterministic() -> None:
    latency = _rules("lat", _config(type="latency", threshold="1s", quantile=0.99))
    drift = _rules("drift", _config(type="data_drift"))
    shuffled = [
        {
            "annotations": dict(reversed(list(r["annotations"].items()))),
            "labels": dict(reversed(list(r["labels"].items()))),
            "for": r["for"],
            "expr": r["expr"],
            "alert": r["alert"],
        }
        for r in latency
    ]
    one = render_rules({"b-group": drift, "a-group": latency})
    two = render_rules({"a-group": shuffled, "b-group": list(drift)})
    assert one == two
    document = yaml.safe_load(one)
    assert [g["name"] for g in document["groups"]] == ["a-group", "b-group"]
    assert [r["alert"] for r in document["groups"][1]["rules"]] == [
        "MlformDrift",
        "MlformMonitorStaleDrift",
    ]
    assert document["groups"][0]["rules"] == latency
    rendered = one.splitlines()
    # Conventional key order, sorted labels, one line per expression.
    first = rendered.index("  - alert: MlformLat")
    keys = [line.split(":")[0] for line in rendered[first + 1 :] if line.startswith("    ")]
    assert keys[:4] == ["    expr", "    for", "    labels", "      action"]
    assert all("\n" not in r["expr"] for r in document["groups"][0]["rules"])
    label_lines = rendered[rendered.index("    labels:") + 1 : rendered.index("    labels:") + 7]
    assert label_lines == sorted(label_lines)
