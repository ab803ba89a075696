"""One run of one monitor: read its window, measure, judge against the threshold.

- ``data_drift``: the window's logged model inputs against the reference statistics of
  the model version the deployment serves (saved at training,
  :mod:`mlform.registry.reference`), column by column with :func:`drift_report`; the
  monitor breaches when the dataset drifts (at least ``drift_share`` of the columns).
- ``prediction_drift``: the logged predictions (classes, or values for regressors)
  against the training predictions of that version.
- ``performance``: logged predictions joined by request id with the labels that arrived
  later (posted to the deployment, or a data source); breaches when the metric is worse
  than the threshold.
- ``latency`` / ``error_rate``: the model servers' Prometheus metrics over the window (the
  difference from the snapshot taken one window ago, like ``rate()[window]``), summed over
  every version the deployment serves.

A window with nothing to judge is ``no_data``, not a breach. This module measures only:
alerts and actions are :mod:`mlform.monitoring.actions`', the clock is the caller's.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlform.monitoring.history import MonitorRun, RunStatus
from mlform.monitoring.job import MonitorJob
from mlform.spec.base import parse_duration

if TYPE_CHECKING:
    from mlform.rollout.journal import RolloutRecord

__all__ = ["MonitorError", "run_monitor", "serving_refs"]

_SNAPSHOTS = "snapshots.jsonl"


class MonitorError(Exception):
    """The monitor cannot run; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class _Measured:
    status: str
    reason: str
    value: float | None = None
    threshold: float | None = None
    rows: int = 0
    details: Mapping[str, Any] = field(default_factory=dict)


def run_monitor(job: MonitorJob, *, now: float | None = None) -> MonitorRun:
    """Measure ``job``'s window now and judge it (never raises for the monitor's own errors)."""
    from mlform.rollout.journal import RolloutJournal

    now = time.time() if now is None else now
    record = RolloutJournal(job.state_dir).load(f"deployment.{job.deployment}")
    serving = serving_refs(record)
    mirror = None if record is None or record.mirror is None else record.mirror.ref
    try:
        if job.type in ("data_drift", "prediction_drift"):
            measured = _drift(job, serving, mirror, now)
        elif job.type == "performance":
            measured = _performance(job, mirror, now)
        elif job.type in ("latency", "error_rate"):
            measured = _traffic(job, now)
        else:
            raise MonitorError(f"unknown monitor type {job.type!r}")
    except MonitorError as exc:
        measured = _Measured(RunStatus.ERROR, str(exc))
    return MonitorRun(
        run_id=uuid.uuid4().hex[:12],
        monitor=job.name,
        deployment=job.deployment,
        type=job.type,
        time=_iso(now),
        status=measured.status,
        reason=measured.reason,
        value=measured.value,
        threshold=measured.threshold,
        rows=measured.rows,
        window=_window_text(job.config.get("window") or {}),
        serving=tuple(serving),
        details=measured.details,
    )


def serving_refs(record: RolloutRecord | None) -> list[str]:
    """The model versions the deployment's rollout journal says are serving now."""
    if record is None:
        return []
    refs = [s.ref for s in record.stable]
    if record.pending and record.canary is not None:
        refs.append(record.canary.ref)
    return refs


# -- drift ---------------------------------------------------------------------------


def _drift(job: MonitorJob, serving: Sequence[str], mirror: str | None, now: float) -> _Measured:
    from mlform.monitoring.drift import drift_report

    if not serving:
        raise MonitorError(
            f"deployment.{job.deployment} serves no model version yet: apply it first"
        )
    reference = _reference_stats(job, serving[0])
    window = _window(job, mirror, now)
    if window.rows == 0:
        return _Measured(RunStatus.NO_DATA, "no predictions logged in the window")
    config = job.config
    if job.type == "data_drift":
        columns = list(config.get("columns") or window.feature_names)
        ref_matrix, cur_matrix = _input_columns(job, reference, window, columns)
        categorical: tuple[str, ...] = ()
    else:
        columns = ["prediction"]
        ref_matrix, cur_matrix, categorical = _prediction_columns(reference, window)
    threshold = config.get("threshold")
    report = drift_report(
        ref_matrix,
        cur_matrix,
        columns,
        method=str(config.get("method", "auto")),
        threshold=None if threshold is None else float(threshold),
        bins=int(config.get("bins", 30)),
        categorical=categorical,
        drift_share=float(config.get("drift_share", 0.5)),
        reference_rows=int(reference.get("rows") or ref_matrix.shape[0]),
    )
    worst = report.worst()
    drifted = sum(1 for c in report.columns if c.drifted)
    reason = worst.describe() if worst is not None else "no columns"
    if len(report.columns) > 1:
        reason += f"; {drifted} of {len(report.columns)} columns drifted"
    return _Measured(
        RunStatus.BREACHED if report.dataset_drift else RunStatus.OK,
        reason,
        value=report.drifted_share,
        threshold=report.drift_share,
        rows=window.rows,
        details={"reference": serving[0], **report.to_dict()},
    )


def _window(job: MonitorJob, mirror: str | None, now: float) -> Any:
    """The monitor's window of logged predictions, without the shadow model's rows (copies
    of requests already counted)."""
    from mlform.monitoring.window import WindowSpec, read_window

    window = read_window(
        job.predictions_dir, WindowSpec.from_config(job.config.get("window") or {}), now=now
    )
    if mirror is None or window.rows == 0:
        return window
    keep = np.asarray([ref != mirror for ref in window.refs], dtype=bool)
    if keep.all():
        return window
    index = np.flatnonzero(keep)
    return dataclasses.replace(
        window,
        request_ids=tuple(window.request_ids[i] for i in index),
        row_in_request=window.row_in_request[index],
        times=window.times[index],
        inputs=window.inputs[index],
        predicted=window.predicted[index],
        probabilities=None if window.probabilities is None else window.probabilities[index],
        refs=tuple(window.refs[i] for i in index),
    )


def _reference_stats(job: MonitorJob, ref: str) -> Mapping[str, Any]:
    from mlform.registry.errors import RegistryError
    from mlform.registry.queries import registry_for

    try:
        return registry_for(job.state_dir).reference_stats(ref)
    except (RegistryError, OSError, ValueError) as exc:
        raise MonitorError(f"the reference statistics of {ref} cannot be read: {exc}") from exc


def _input_columns(
    job: MonitorJob,
    reference: Mapping[str, Any],
    window: Any,
    columns: Sequence[str],
) -> tuple[np.ndarray, np.ndarray]:
    features: Mapping[str, Any] = reference.get("features") or {}
    names = list(window.feature_names)
    for column in columns:
        if column not in names or column not in features:
            raise MonitorError(
                f"monitors.{job.name}.columns names {column!r}, which the served model does "
                f"not take; its inputs are: {', '.join(names)}"
            )
    samples = [np.asarray(features[c].get("sample") or (), dtype=np.float64) for c in columns]
    longest = max((s.size for s in samples), default=0)
    ref = np.full((longest, len(columns)), np.nan)
    for j, sample in enumerate(samples):
        ref[: sample.size, j] = sample
    index = [names.index(c) for c in columns]
    return ref, np.asarray(window.inputs, dtype=np.float64)[:, index]


def _prediction_columns(
    reference: Mapping[str, Any], window: Any
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    stats = reference.get("predictions")
    if not isinstance(stats, Mapping):
        raise MonitorError("the served version has no reference predictions (retrain it)")
    if stats.get("kind") == "categorical":
        counts: Mapping[str, int] = stats.get("counts") or {}
        classes = tuple(str(c) for c in window.classes)
        current = [_class_name(v, classes) for v in np.asarray(window.predicted).tolist()]
        names = sorted(set(counts) | set(current))
        code = {name: float(i) for i, name in enumerate(names)}
        ref = np.repeat(
            np.asarray([code[n] for n in counts], dtype=np.float64),
            np.asarray([int(counts[n]) for n in counts], dtype=np.int64),
        )
        cur = np.asarray([code[n] for n in current], dtype=np.float64)
        return ref[:, None], cur[:, None], ("prediction",)
    sample = np.asarray(stats.get("sample") or (), dtype=np.float64)
    cur = np.asarray(window.predicted, dtype=np.float64)
    return sample[:, None], cur[:, None], ()


def _class_name(value: Any, classes: Sequence[str]) -> str:
    """Class ids named like the reference statistics name them."""
    if classes and isinstance(value, int) and 0 <= value < len(classes):
        return str(classes[value])
    if isinstance(value, float) and value.is_integer():
        return _class_name(int(value), classes)
    return str(value)


# -- performance ---------------------------------------------------------------------


def _performance(job: MonitorJob, mirror: str | None, now: float) -> _Measured:
    from mlform.monitoring.labels import (
        Labels,
        LabelsError,
        join,
        labels_from_endpoint_logs,
        labels_from_table,
    )
    from mlform.monitoring.performance import default_metric, higher_is_better, performance

    window = _window(job, mirror, now)
    if window.rows == 0:
        return _Measured(RunStatus.NO_DATA, "no predictions logged in the window")
    labels = labels_from_endpoint_logs(job.predictions_dir)
    spec = job.config.get("labels") or {}
    if job.labels_source is not None:
        try:
            table = _load_labels(job)
            from_file = labels_from_table(
                table,
                key=str(spec.get("key", "id")),
                column=str(spec.get("column", "target")),
                source=f"data.{spec.get('source')}",
            )
        except LabelsError as exc:
            raise MonitorError(str(exc)) from exc
        labels = Labels({**from_file.by_request, **labels.by_request})
    joined = join(window, labels)
    if joined.matched_rows == 0:
        return _Measured(
            RunStatus.NO_DATA,
            f"no labels yet for the {window.rows} predictions in the window",
            rows=window.rows,
        )
    metric = str(job.config.get("metric") or default_metric(joined.task))
    try:
        value = performance(joined, metric)
    except ValueError as exc:
        raise MonitorError(f"monitors.{job.name}.metric: {exc}") from exc
    threshold = float(job.config["threshold"])
    higher = higher_is_better(metric)
    breached = value < threshold if higher else value > threshold
    op = ("<" if breached else ">=") if higher else (">" if breached else "<=")
    coverage = joined.matched_rows / max(joined.window_rows, 1)
    return _Measured(
        RunStatus.BREACHED if breached else RunStatus.OK,
        f"{metric} {value:.3g} {op} {threshold:g} on {joined.matched_rows} labelled rows",
        value=value,
        threshold=threshold,
        rows=joined.matched_rows,
        details={
            "metric": metric,
            "labelled_rows": joined.matched_rows,
            "window_rows": joined.window_rows,
            "label_coverage": round(coverage, 6),
        },
    )


def _load_labels(job: MonitorJob) -> Any:
    from mlform.providers.base import ProviderContext, StepFailed
    from mlform.providers.sources import load_source

    assert job.labels_source is not None
    context = ProviderContext(
        project_dir=job.project_dir, state_dir=job.state_dir, stack=job.stack, target="local"
    )
    try:
        return load_source(job.labels_source, context)
    except StepFailed as exc:
        source = (job.config.get("labels") or {}).get("source")
        raise MonitorError(
            f"the labels of data.{source} cannot be read: {exc.diagnostic.summary}"
        ) from exc


# -- latency and error rate ----------------------------------------------------------


def _traffic(job: MonitorJob, now: float) -> _Measured:
    from mlform.rollout.analysis import AnalysisError, measure

    upstreams = _upstreams(job)
    if not upstreams:
        raise MonitorError(f"deployment.{job.deployment} has no servers: apply it first")
    try:
        after = _scrape_all(upstreams, now)
    except AnalysisError as exc:
        raise MonitorError(f"the servers' metrics cannot be read: {exc}") from exc
    snapshots = _Snapshots(job.directory / _SNAPSHOTS)
    window = job.config.get("window") or {}
    span = parse_duration(str(window["duration"])) if window.get("duration") else None
    baseline, since = snapshots.baseline(after, now, span)
    keep = span if span is not None else 0.0
    snapshots.add(after, now, keep_s=keep)
    if job.type == "latency":
        quantile = float(job.config.get("quantile") or 0.99)
        name = f"latency_p{quantile * 100:g}_ms"
        threshold = parse_duration(str(job.config["threshold"])) * 1000.0
    else:
        name = "error_rate"
        threshold = float(job.config["threshold"])
    values = measure(baseline, after, [name])
    requests = sum(after.by_status.values()) - sum(baseline.by_status.values())
    value = values.get(name)
    if value is None or requests <= 0 or math.isnan(value):
        return _Measured(RunStatus.NO_DATA, f"no requests reached the servers {since}")
    breached = value > threshold
    op = ">" if breached else "<="
    over = f"over {int(requests)} request{'' if int(requests) == 1 else 's'}"
    if job.type == "latency":
        reason = f"p{quantile * 100:g} {value:.4g} ms {op} {threshold:g} ms {over}"
    else:
        reason = f"error rate {value:.3g} {op} {threshold:g} {over}"
    return _Measured(
        RunStatus.BREACHED if breached else RunStatus.OK,
        reason,
        value=value,
        threshold=threshold,
        rows=int(requests),
        details={"metric": name, "requests": int(requests), "since": since},
    )


def _upstreams(job: MonitorJob) -> list[str]:
    from mlform.providers.deployments import routes_file

    path = routes_file(job.state_dir, job.deployment)
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return sorted(str(u["url"]) for u in (table.get("upstreams") or {}).values())


def _scrape_all(urls: Sequence[str], now: float) -> Any:
    """One snapshot: every server's inference counts and latency buckets, summed."""
    from mlform.rollout.analysis import Snapshot, scrape

    by_status: dict[str, float] = {}
    buckets: dict[float, float] = {}
    for url in urls:
        one = scrape(f"{url}/metrics")
        for status, n in one.by_status.items():
            by_status[status] = by_status.get(status, 0.0) + n
        for le, n in one.buckets.items():
            buckets[le] = buckets.get(le, 0.0) + n
    return Snapshot(now, by_status, buckets)


class _Snapshots:
    """The servers' cumulative counts at each run, kept one window long."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _load(self) -> list[dict[str, Any]]:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def baseline(self, after: Any, now: float, span: float | None) -> tuple[Any, str]:
        """The snapshot to measure from and how to name the interval."""
        from mlform.rollout.analysis import Snapshot

        saved = self._load()
        chosen = None
        if span is None:  # a count window: since the previous run
            chosen = saved[-1] if saved else None
        else:
            inside = [s for s in saved if s["time"] >= now - span and s["time"] < now]
            chosen = inside[0] if inside else None
        zero = Snapshot(now - (span or 0.0), {}, {})
        if chosen is None:
            return zero, "since the servers started"
        snap = Snapshot(
            float(chosen["time"]),
            {str(k): float(v) for k, v in chosen["by_status"].items()},
            {_le(k): float(v) for k, v in chosen["buckets"].items()},
        )
        if any(after.by_status.get(k, 0.0) < v for k, v in snap.by_status.items()):
            return zero, "since the servers restarted"
        return snap, f"in the last {_seconds_text(now - snap.taken_at)}"

    def add(self, snap: Any, now: float, *, keep_s: float) -> None:
        saved = [s for s in self._load() if s["time"] >= now - keep_s] if keep_s > 0 else []
        saved.append(
            {
                "time": now,
                "by_status": dict(snap.by_status),
                "buckets": {_le_text(k): v for k, v in snap.buckets.items()},
            }
        )
        from mlform.state.atomic import write_atomic

        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, "".join(json.dumps(s, sort_keys=True) + "\n" for s in saved))


def _le(text: str) -> float:
    return math.inf if text in ("+Inf", "inf") else float(text)


def _le_text(value: float) -> str:
    return "+Inf" if value == math.inf else repr(value)


def _seconds_text(seconds: float) -> str:
    if seconds >= 90:
        return f"{seconds / 60:.0f}m"
    return f"{seconds:.0f}s"


def _window_text(window: Mapping[str, Any]) -> str:
    if window.get("size"):
        return f"last {window['size']} rows"
    if window.get("duration"):
        return f"last {window['duration']}"
    return ""


def _iso(seconds: float) -> str:
    stamp = datetime.fromtimestamp(seconds, tz=UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
