"""Canary analysis: the version servers' Prometheus metrics as values, and their verdict.

A :class:`Snapshot` is one scrape of a server's ``/metrics``; the values of an analysis
interval are the difference of two snapshots (:func:`measure`), like Prometheus's
``rate()`` and ``histogram_quantile()`` over that interval:

- ``success_rate``: inference requests answered below 500, over all inference requests;
- ``error_rate``: 1 - success_rate; ``request_rate``: inference requests per second;
- ``latency_pNN_ms``: the NN-th percentile of ``http_request_duration_seconds`` (inference),
  interpolated linearly within its bucket as ``histogram_quantile`` does;
- ``metric:NAME``: the per-second rate of counter NAME, or the current value of gauge NAME,
  summed over its series.

No data counts as failure: an interval in which no request reached the server fails
every threshold that needs requests (Argo Rollouts' and Flagger's rule).
"""

from __future__ import annotations

import math
import re
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from mlform.rollout.strategy import Threshold

__all__ = ["AnalysisError", "Check", "Snapshot", "judge", "measure", "parse_snapshot", "scrape"]

DURATION = "http_request_duration_seconds"
_LATENCY_RE = re.compile(r"^latency_p(\d{1,2}(?:\.\d+)?)_ms$")


class AnalysisError(Exception):
    """A server's metrics could not be read."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    taken_at: float  # time.monotonic() of the scrape
    by_status: Mapping[str, float] = field(default_factory=dict)  # inference requests
    buckets: Mapping[float, float] = field(default_factory=dict)  # le -> cumulative count
    values: Mapping[str, float] = field(default_factory=dict)  # sample name -> sum
    counters: frozenset[str] = frozenset()  # sample names that are counters


def parse_snapshot(text: str, taken_at: float) -> Snapshot:
    """Read the Prometheus text exposition of one model server."""
    from prometheus_client.parser import text_string_to_metric_families

    by_status: dict[str, float] = {}
    buckets: dict[float, float] = {}
    values: dict[str, float] = {}
    counters: set[str] = set()
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError as exc:
        raise AnalysisError(f"unreadable metrics: {exc}") from exc
    for family in families:
        for sample in family.samples:
            values[sample.name] = values.get(sample.name, 0.0) + sample.value
            if family.type == "counter" or sample.name.endswith(
                ("_total", "_count", "_sum", "_bucket")
            ):
                counters.add(sample.name)
            if family.name != DURATION or sample.labels.get("endpoint") != "infer":
                continue
            if sample.name == f"{DURATION}_count":
                status = sample.labels.get("status", "")
                by_status[status] = by_status.get(status, 0.0) + sample.value
            elif sample.name == f"{DURATION}_bucket":
                le = float(sample.labels["le"])
                buckets[le] = buckets.get(le, 0.0) + sample.value
    return Snapshot(taken_at, by_status, buckets, values, frozenset(counters))


def scrape(url: str, *, timeout: float = 5.0) -> Snapshot:
    """One scrape of ``url`` (a server's ``/metrics``)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            text = response.read().decode("utf-8")
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise AnalysisError(f"cannot read metrics from {url}: {exc}") from exc
    return parse_snapshot(text, time.monotonic())


def measure(before: Snapshot, after: Snapshot, names: Sequence[str]) -> dict[str, float | None]:
    """The analysis values ``names`` over the interval between two snapshots."""
    seconds = max(after.taken_at - before.taken_at, 1e-9)
    delta = {s: after.by_status.get(s, 0.0) - before.by_status.get(s, 0.0) for s in after.by_status}
    requests = sum(delta.values())
    errors = sum(n for status, n in delta.items() if status.startswith("5"))
    buckets = {le: n - before.buckets.get(le, 0.0) for le, n in after.buckets.items()}
    out: dict[str, float | None] = {}
    for name in names:
        if name == "request_rate":
            out[name] = requests / seconds
        elif name in ("success_rate", "error_rate"):
            rate = None if requests <= 0 else (requests - errors) / requests
            out[name] = rate if rate is None or name == "success_rate" else 1.0 - rate
        elif match := _LATENCY_RE.match(name):
            quantile = histogram_quantile(float(match.group(1)) / 100.0, buckets)
            out[name] = None if quantile is None else quantile * 1000.0
        elif name.startswith("metric:"):
            out[name] = _raw(name.removeprefix("metric:"), before, after, seconds)
        else:
            raise ValueError(f"unknown analysis metric {name!r}")
    return out


def _raw(name: str, before: Snapshot, after: Snapshot, seconds: float) -> float | None:
    for sample in (name, f"{name}_total"):
        if sample in after.values:
            if sample in after.counters:
                return (after.values[sample] - before.values.get(sample, 0.0)) / seconds
            return after.values[sample]
    return None


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """Prometheus's ``histogram_quantile`` over cumulative bucket counts (None: no data)."""
    ordered = sorted(buckets.items())
    if not ordered or ordered[-1][0] != math.inf or ordered[-1][1] <= 0:
        return None
    total = ordered[-1][1]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for le, count in ordered:
        if count >= rank:
            if le == math.inf:
                # Beyond the last finite bucket: its upper bound is the best answer.
                return lower_bound
            width = count - lower_count
            if width <= 0:
                return le
            return lower_bound + (le - lower_bound) * (rank - lower_count) / width
        lower_bound, lower_count = le, count
    return lower_bound


@dataclass(frozen=True, slots=True)
class Check:
    """One analysis check: the values measured and the thresholds they broke."""

    time: str
    values: Mapping[str, float | None]
    failures: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, object]:
        return {
            "time": self.time,
            "values": {k: (None if v is None else round(v, 6)) for k, v in self.values.items()},
            "failures": list(self.failures),
            "passed": self.passed,
        }


def judge(
    values: Mapping[str, float | None], thresholds: Sequence[Threshold], *, now: str, what: str
) -> Check:
    """Compare measured ``values`` with ``thresholds``; ``what`` names the server in messages."""
    failures = []
    for threshold in thresholds:
        measured = values.get(threshold.metric)
        if measured is None or math.isnan(measured):
            failures.append(f"no data for {threshold.metric}: no requests reached {what}")
        elif not threshold.holds(measured):
            failures.append(f"{threshold.metric} {measured:.4g} breaks {threshold}")
    return Check(now, dict(values), tuple(failures))
