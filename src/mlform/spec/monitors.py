"""The ``monitors`` section: drift, performance, latency and error-rate checks on a deployment.

Defaults follow Evidently: ``method: auto`` picks KS / chi-squared / Z-test (p < 0.05)
for reference sets up to 1000 rows and normed Wasserstein / Jensen-Shannon (>= 0.1) for
larger ones; PSI uses 0.1 over 30 bins; a dataset drifts when >= 50 % of columns drift.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from mlform.spec.base import Duration, Name, SpecModel, parse_duration

DriftMethod = Literal["auto", "ks", "chi2", "ztest", "wasserstein", "jensenshannon", "psi"]
_DEFAULT_THRESHOLDS: dict[str, float] = {
    "ks": 0.05,
    "chi2": 0.05,
    "ztest": 0.05,
    "wasserstein": 0.1,
    "jensenshannon": 0.1,
    "psi": 0.1,
}


class Window(SpecModel):
    size: int | None = Field(default=None, ge=1)
    duration: Duration | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Window:
        if (self.size is None) == (self.duration is None):
            raise ValueError("a window has exactly one of size (rows) or duration (e.g. 10m)")
        return self


class Schedule(SpecModel):
    every: Duration = "5m"


class LogSink(SpecModel):
    sink: Literal["log"]
    level: Literal["info", "warning", "error"] = "warning"


class WebhookSink(SpecModel):
    sink: Literal["webhook"]
    url: str = Field(pattern=r"^https?://")
    headers: dict[str, str] = Field(default_factory=dict)


class PrometheusSink(SpecModel):
    sink: Literal["prometheus"]
    severity: Literal["info", "warning", "critical"] = "warning"


Alert = Annotated[LogSink | WebhookSink | PrometheusSink, Field(discriminator="sink")]


class LabelSource(SpecModel):
    """Where delayed ground-truth labels come from (performance monitors).

    Labels posted to the deployment (``POST /v2/models/<name>/labels``) are always read;
    ``source`` adds a data source (a file or table with a request-id column ``key`` and
    the label column ``column``).
    """

    source: Name | None = None
    column: str = "target"
    key: str = "id"


def _default_alerts() -> list[LogSink | WebhookSink | PrometheusSink]:
    return [LogSink(sink="log")]


class MonitorSpec(SpecModel):
    description: str | None = None
    owner: str | None = None
    deployment: Name
    type: Literal["data_drift", "prediction_drift", "performance", "latency", "error_rate"]
    columns: list[str] = Field(default_factory=list)
    method: DriftMethod = "auto"
    metric: str | None = None
    threshold: float | str | None = None
    quantile: float | None = Field(default=None, gt=0, lt=1)
    drift_share: float = Field(default=0.5, gt=0, le=1)
    bins: int = Field(default=30, ge=2)
    labels: LabelSource | None = None
    window: Window = Field(default_factory=lambda: Window(size=1000))
    schedule: Schedule = Field(default_factory=Schedule)
    alerts: list[Alert] = Field(default_factory=lambda: _default_alerts())
    on_breach: Literal["alert", "rollback", "retrain"] = "alert"

    @model_validator(mode="before")
    @classmethod
    def _defaults_by_type(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("threshold") is not None:
            return data
        kind, method = data.get("type"), data.get("method", "auto")
        if kind == "latency":
            return {"quantile": 0.99, **data, "threshold": "500ms"}
        if kind == "error_rate":
            return {**data, "threshold": 0.01}
        drift = kind in ("data_drift", "prediction_drift")
        if drift and isinstance(method, str) and method in _DEFAULT_THRESHOLDS:
            return {**data, "threshold": _DEFAULT_THRESHOLDS[method]}
        return data

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str | None, info: ValidationInfo) -> str | None:
        known = value is None or value in PERFORMANCE_METRICS
        if not known and info.data.get("type") == "performance":
            raise ValueError(
                f"unknown performance metric {value!r}: use one of {', '.join(PERFORMANCE_METRICS)}"
            )
        return value

    @field_validator("threshold")
    @classmethod
    def _possible(cls, value: float | str | None, info: ValidationInfo) -> float | str | None:
        kind = info.data.get("type")
        if kind == "latency":
            if not isinstance(value, str):
                raise ValueError("a latency monitor's threshold is a duration, e.g. 250ms")
            parse_duration(value)
        elif isinstance(value, str):
            raise ValueError(f"a {kind} monitor's threshold is a number, e.g. 0.1")
        if value is None and kind == "performance":
            raise ValueError(
                "a performance monitor needs a threshold: the lowest acceptable value of "
                "its metric (the highest for error metrics such as rmse), e.g. 0.9"
            )
        method = str(info.data.get("method", "auto"))
        problem = impossible_threshold(str(kind), method, info.data.get("metric"), value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> MonitorSpec:
        if self.type == "latency" and self.quantile is None:
            raise ValueError("a latency monitor needs quantile, e.g. 0.99")
        if self.type == "performance" and self.labels is None:
            raise ValueError(
                "a performance monitor needs labels: {} (labels posted to the deployment) "
                "or {source: <data source>}"
            )
        return self


# The range a drift method's statistic can take: a threshold outside it can never breach
# (or always breaches). Jensen-Shannon distance uses the natural logarithm, as SciPy's and
# Evidently's do, so it lies in [0, sqrt(ln 2)].
_RANGES: dict[str, tuple[float, float, str]] = {
    "ks": (0.0, 1.0, "a p-value threshold between 0 and 1, e.g. 0.05"),
    "chi2": (0.0, 1.0, "a p-value threshold between 0 and 1, e.g. 0.05"),
    "ztest": (0.0, 1.0, "a p-value threshold between 0 and 1, e.g. 0.05"),
    "jensenshannon": (0.0, math.sqrt(math.log(2)), "a distance between 0 and 0.83, e.g. 0.1"),
    "wasserstein": (0.0, math.inf, "a positive distance in standard deviations, e.g. 0.1"),
    "psi": (0.0, math.inf, "a positive index, e.g. 0.1 (0.25 = a major shift)"),
}
PERFORMANCE_METRICS = ("accuracy", "f1", "precision", "recall", "roc_auc", "rmse", "mae", "r2")
_BOUNDED_METRICS = frozenset({"accuracy", "f1", "precision", "recall", "roc_auc"})


def impossible_threshold(
    kind: str, method: str, metric: str | None, value: float | str | None
) -> str | None:
    """Why a monitor's threshold can never decide anything, or None when it can."""
    if kind == "latency":
        assert isinstance(value, str)
        if parse_duration(value) <= 0:
            return "a latency threshold must be longer than 0, e.g. 250ms"
        return None
    if not isinstance(value, int | float):
        return None
    if kind == "error_rate" and not 0 < value < 1:
        return "an error_rate threshold is a fraction strictly between 0 and 1, e.g. 0.01"
    if kind == "performance":
        metric = metric or "accuracy"
        if metric in _BOUNDED_METRICS and not 0 < value <= 1:
            return f"{metric} lies between 0 and 1: its threshold must be in (0, 1], e.g. 0.9"
        if metric in ("rmse", "mae") and value <= 0:
            return f"{metric} is never below 0: its threshold must be greater than 0"
        return None
    if kind not in ("data_drift", "prediction_drift"):
        return None
    if method == "auto":
        if not 0 < value < 1:
            return (
                "with method: auto the threshold applies to whichever test is chosen "
                "(p-values and distances), so it must lie strictly between 0 and 1"
            )
        return None
    low, high, hint = _RANGES[method]
    if not low < value < high:
        return f"{method} threshold {value:g} can never decide drift: use {hint}"
    return None
