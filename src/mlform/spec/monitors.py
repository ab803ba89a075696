"""The ``monitors`` section: drift, performance, latency and error-rate checks on a deployment.

Defaults follow Evidently: ``method: auto`` picks KS / chi-squared / Z-test (p < 0.05)
for reference sets up to 1000 rows and normed Wasserstein / Jensen-Shannon (>= 0.1) for
larger ones; PSI uses 0.1 over 30 bins; a dataset drifts when >= 50 % of columns drift.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

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
    """Where delayed ground-truth labels come from (performance monitors)."""

    source: Name
    column: str = "target"
    key: str | None = None


def _default_alerts() -> list[LogSink | WebhookSink | PrometheusSink]:
    return [LogSink(sink="log")]


class MonitorSpec(SpecModel):
    description: str | None = None
    owner: str | None = None
    deployment: Name
    type: Literal["data_drift", "prediction_drift", "performance", "latency", "error_rate"]
    columns: list[str] = Field(default_factory=list)
    method: DriftMethod = "auto"
    threshold: float | str | None = None
    quantile: float | None = Field(default=None, gt=0, lt=1)
    drift_share: float = Field(default=0.5, gt=0, le=1)
    bins: int = Field(default=30, ge=2)
    metric: str | None = None
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

    @model_validator(mode="after")
    def _consistent(self) -> MonitorSpec:
        if self.type == "latency":
            if not isinstance(self.threshold, str):
                raise ValueError("a latency monitor's threshold is a duration, e.g. 250ms")
            parse_duration(self.threshold)
            if self.quantile is None:
                raise ValueError("a latency monitor needs quantile, e.g. 0.99")
        elif isinstance(self.threshold, str):
            raise ValueError(f"a {self.type} monitor's threshold is a number, e.g. 0.1")
        if self.type == "performance" and self.labels is None:
            raise ValueError("a performance monitor needs labels: {source: <data source>}")
        rate = self.threshold
        if self.type == "error_rate" and isinstance(rate, float | int) and not 0 <= rate <= 1:
            raise ValueError("an error_rate threshold is a fraction between 0 and 1")
        return self
