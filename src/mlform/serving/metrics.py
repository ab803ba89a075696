"""The Prometheus metrics of ``mlform serve``, exposed at ``GET /metrics``.

Every series carries ``model`` (the V2 model name, e.g. ``diagnosis``) and ``version`` (the
registry version number as a string, e.g. ``"2"``)::

    http_request_duration_seconds{model,version,endpoint,status}   histogram
        endpoint: infer | labels | metadata | health | other; status: the HTTP status ("200"…)
        buckets: 0.0005 0.001 0.0025 0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 2.5 5 10
        (GET /metrics itself is not timed). Success rate = count{endpoint="infer",
        status!~"5.."} / count{endpoint="infer"}; p99 from the buckets.
    mlform_inference_requests_total{model,version}          infer requests received
    mlform_inference_rows_total{model,version}              rows predicted (successful requests)
    mlform_inference_errors_total{model,version,reason}     failed infer requests, reason:
        bad_request (4xx), too_large (413: body over --max-body-mb), model_error (5xx)
    mlform_predictions_total{model,version,class}           classifiers: predicted rows per
                                                            class label
    mlform_prediction_score{model,version}                  classifiers: histogram of the
        probability of each row's predicted class (buckets 0.1, 0.2 … 1.0): a falling score
        is an early sign of drift
    mlform_prediction_value{model,version}                  regressors: histogram of the
        predicted values (buckets ±1, ±10 … ±10^4, 0, 10^5, 10^6)

With several worker processes the metrics use prometheus_client's multiprocess mode: each
worker writes its values to memory-mapped files in a private directory of the server
(:func:`create_multiprocess_dir`, removed by :func:`remove_multiprocess_dir`), and
``/metrics`` on any worker aggregates the files of all of them. The mode must be chosen
before the metrics are created (:func:`use_multiprocess`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "DURATION_BUCKETS",
    "ENDPOINTS",
    "SCORE_BUCKETS",
    "VALUE_BUCKETS",
    "ServerMetrics",
    "create_multiprocess_dir",
    "remove_multiprocess_dir",
    "use_multiprocess",
]

DURATION_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
SCORE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
VALUE_BUCKETS = (
    -1e4,
    -1e3,
    -100.0,
    -10.0,
    -1.0,
    0.0,
    1.0,
    10.0,
    100.0,
    1e3,
    1e4,
    1e5,
    1e6,
)
ENDPOINTS = ("infer", "metadata", "health", "other")
ENV = "PROMETHEUS_MULTIPROC_DIR"


def create_multiprocess_dir() -> Path:
    """A fresh private directory for the metric files of one server."""
    return Path(tempfile.mkdtemp(prefix="mlform-serve-metrics-"))


def remove_multiprocess_dir(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)


def use_multiprocess(directory: Path | None) -> None:
    """Make the metrics created from now on in this process (and its forks) multiprocess
    ones writing to ``directory``, or plain in-memory ones when ``directory`` is None."""
    if directory is None:
        os.environ.pop(ENV, None)
    else:
        os.environ[ENV] = str(directory)
    from prometheus_client import values

    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]


class ServerMetrics:
    """The metrics of one served model; cheap to update from the request path."""

    def __init__(
        self,
        model: str,
        version: str,
        *,
        classification: bool,
        labels: Sequence[Any] = (),
        multiprocess_dir: Path | None = None,
    ) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.model, self.version = model, version
        self.multiprocess_dir = multiprocess_dir
        # Multiprocess values are read back from the files; the registry is only for the
        # in-memory mode (and keeps several servers in one process apart).
        self.registry = CollectorRegistry(auto_describe=True)
        registry = None if multiprocess_dir is not None else self.registry
        base = ("model", "version")
        self._duration = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency by endpoint and status.",
            [*base, "endpoint", "status"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self._requests = Counter(
            "mlform_inference_requests",
            "Inference requests received.",
            base,
            registry=registry,
        ).labels(model, version)
        self._rows = Counter(
            "mlform_inference_rows",
            "Rows predicted by successful inference requests.",
            base,
            registry=registry,
        ).labels(model, version)
        errors = Counter(
            "mlform_inference_errors",
            "Failed inference requests by reason.",
            [*base, "reason"],
            registry=registry,
        )
        self._errors = {
            reason: errors.labels(model, version, reason)
            for reason in ("bad_request", "too_large", "model_error")
        }
        self._durations: dict[tuple[str, int], Any] = {}
        self.classification = classification
        self._class_counters: list[Any] = []
        self._score: Any = None
        self._value: Any = None
        if classification:
            predictions = Counter(
                "mlform_predictions",
                "Predicted rows per class label.",
                [*base, "class"],
                registry=registry,
            )
            self._class_counters = [predictions.labels(model, version, str(c)) for c in labels]
            self._score = Histogram(
                "mlform_prediction_score",
                "Probability of each row's predicted class.",
                base,
                buckets=SCORE_BUCKETS,
                registry=registry,
            ).labels(model, version)
        else:
            self._value = Histogram(
                "mlform_prediction_value",
                "Predicted values.",
                base,
                buckets=VALUE_BUCKETS,
                registry=registry,
            ).labels(model, version)

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        child = self._durations.get((endpoint, status))
        if child is None:
            child = self._duration.labels(self.model, self.version, endpoint, str(status))
            self._durations[(endpoint, status)] = child
        child.observe(seconds)

    def inference_request(self) -> None:
        self._requests.inc()

    def inference_error(self, reason: str) -> None:
        self._errors[reason].inc()

    def predictions(
        self, predicted: npt.NDArray[Any], probabilities: npt.NDArray[Any] | None
    ) -> None:
        """Count the rows of a successful request and what was predicted for them."""
        rows = int(predicted.shape[0])
        self._rows.inc(rows)
        if not self.classification:
            _observe_many(self._value, np.asarray(predicted, dtype=np.float64))
            return
        ids = np.asarray(predicted).reshape(-1)
        counters = self._class_counters
        if rows == 1:  # the common case, without array operations
            index = int(ids[0])
            if 0 <= index < len(counters):
                counters[index].inc()
            if probabilities is not None and 0 <= index < probabilities.shape[1]:
                score = float(probabilities[0, index])
                if score == score:  # not NaN
                    self._score.observe(score)
            return
        known = (ids >= 0) & (ids < len(counters))
        if counters:
            counts = np.bincount(ids[known].astype(np.int64))
            for index in np.flatnonzero(counts).tolist():
                counters[index].inc(int(counts[index]))
        if probabilities is not None and rows:
            inside = (ids >= 0) & (ids < probabilities.shape[1])
            rows_in = np.flatnonzero(inside)
            _observe_many(self._score, probabilities[rows_in, ids[inside].astype(np.int64)])

    def render(self) -> tuple[bytes, str]:
        """The text exposition (aggregated over the workers) and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        if self.multiprocess_dir is None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(self.multiprocess_dir))  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST


def _observe_many(child: Any, values: npt.NDArray[Any]) -> None:
    """Observe many values at once: one update per bucket instead of one per value."""
    values = values.reshape(-1)
    if values.size == 1:
        value = float(values[0])
        if value == value:  # not NaN
            child.observe(value)
        return
    values = values[np.isfinite(values)]
    if not values.size:
        return
    buckets = getattr(child, "_buckets", None)
    bounds = getattr(child, "_upper_bounds", None)
    total = getattr(child, "_sum", None)
    if buckets is None or bounds is None or total is None:  # another prometheus_client
        for value in values.tolist():
            child.observe(value)
        return
    index = np.searchsorted(np.asarray(bounds, dtype=np.float64), values, side="left")
    counts = np.bincount(index, minlength=len(bounds))
    total.inc(float(values.sum()))
    for i in np.flatnonzero(counts).tolist():
        buckets[i].inc(int(counts[i]))
