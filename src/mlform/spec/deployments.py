"""The ``deployments`` section: which model serves where, and how new versions roll out.

Strategy defaults follow Argo Rollouts / Flagger: canary steps 10/25/50/100 with 60 s
pauses, analysis every 60 s, abort after 2 failed checks, success rate >= 0.99,
p99 latency <= 500 ms, progress deadline 600 s; blue-green keeps the old replicas 30 s.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from mlform.spec.base import Comparison, Duration, Labels, Name, SpecModel, parse_duration
from mlform.spec.settings import Target

Alias = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_\-]{0,62}$")]
IntOrPercent = Annotated[int | str, Field(union_mode="left_to_right")]
# An environment variable name that every shell and Kubernetes' envFrom accept.
EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,252}$")]


class Autoscaling(SpecModel):
    min_replicas: int = Field(default=1, ge=1)
    max_replicas: int = Field(ge=1)
    target_cpu_utilization: int = Field(default=80, ge=1, le=100)

    @model_validator(mode="after")
    def _ordered(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must not exceed max_replicas")
        return self


class CanaryStep(SpecModel):
    weight: int = Field(ge=0, le=100)
    pause: Duration | None = None


_LATENCY_RE = re.compile(r"^latency_p(\d{1,2}(?:\.\d+)?)_ms$")
_RAW_RE = re.compile(r"^metric:[a-zA-Z_:][a-zA-Z0-9_:]*$")
_NAMED = frozenset({"success_rate", "error_rate", "request_rate"})
METRIC_HELP = (
    "Analysis metrics are success_rate, error_rate, request_rate (per second), "
    "latency_pNN_ms (a latency quantile in milliseconds, e.g. latency_p99_ms or "
    "latency_p95_ms) or metric:NAME (any metric the model servers export at /metrics: "
    "the per-second rate of a counter, the value of a gauge)."
)


def check_metric_name(name: str) -> str:
    """``name`` if the analysis knows how to measure it, else ValueError saying what it knows."""
    if name in _NAMED or _RAW_RE.match(name):
        return name
    match = _LATENCY_RE.match(name)
    if match and 0 < float(match.group(1)) < 100:
        return name
    raise ValueError(f"unknown analysis metric {name!r}. {METRIC_HELP}")


class AnalysisMetric(SpecModel):
    name: Annotated[str, AfterValidator(check_metric_name)]
    threshold: Comparison


def _default_steps() -> list[CanaryStep]:
    return [
        CanaryStep(weight=10, pause="60s"),
        CanaryStep(weight=25, pause="60s"),
        CanaryStep(weight=50, pause="60s"),
        CanaryStep(weight=100),
    ]


def _default_metrics() -> list[AnalysisMetric]:
    return [
        AnalysisMetric(name="success_rate", threshold=">= 0.99"),
        AnalysisMetric(name="latency_p99_ms", threshold="<= 500"),
    ]


class Analysis(SpecModel):
    interval: Duration = "60s"
    failure_limit: int = Field(default=2, ge=0)
    metrics: list[AnalysisMetric] = Field(default_factory=_default_metrics)


class Recreate(SpecModel):
    type: Literal["recreate"]


class Rolling(SpecModel):
    type: Literal["rolling"]
    max_surge: IntOrPercent = "25%"
    max_unavailable: IntOrPercent = 0


class Canary(SpecModel):
    type: Literal["canary"]
    steps: Annotated[list[CanaryStep], Field(min_length=1)] = Field(default_factory=_default_steps)
    analysis: Analysis = Field(default_factory=Analysis)
    auto_rollback: bool = True
    progress_deadline: Duration = "600s"

    @model_validator(mode="after")
    def _steps_ramp_up(self) -> Canary:
        weights = [step.weight for step in self.steps]
        if weights != sorted(weights):
            raise ValueError(f"canary step weights must not decrease: {weights}")
        if weights[-1] != 100:
            raise ValueError(f"the last canary step must reach weight 100 (it is {weights[-1]})")
        return self


class BlueGreen(SpecModel):
    type: Literal["blue_green"]
    preview_replicas: int = Field(default=1, ge=0)
    auto_promote: bool = False
    promote_after: Duration | None = None
    scale_down_delay: Duration = "30s"

    @model_validator(mode="after")
    def _promotion(self) -> BlueGreen:
        if self.promote_after is not None and not self.auto_promote:
            raise ValueError("promote_after needs auto_promote: true")
        if self.promote_after is not None:
            parse_duration(self.promote_after)
        return self


class Variant(SpecModel):
    model: Name
    alias: Alias = "champion"
    weight: int = Field(ge=0, le=100)


class AbTest(SpecModel):
    type: Literal["ab_test"]
    variants: Annotated[list[Variant], Field(min_length=2)]
    route_by: Literal["header", "hash"] = "hash"
    key: str | None = None

    @model_validator(mode="after")
    def _weights(self) -> AbTest:
        total = sum(v.weight for v in self.variants)
        if total != 100:
            raise ValueError(f"ab_test variant weights must add up to 100 (they add up to {total})")
        if self.route_by == "header" and not self.key:
            raise ValueError("route_by: header needs key: the header to route on")
        return self


class Shadow(SpecModel):
    type: Literal["shadow"]
    model: Name
    alias: Alias = "challenger"
    mirror_percent: int = Field(default=100, ge=0, le=100)


Strategy = Annotated[
    Recreate | Rolling | Canary | BlueGreen | AbTest | Shadow, Field(discriminator="type")
]


class PredictionLog(SpecModel):
    """The servers' log of every prediction, which drift and performance monitors read."""

    enabled: bool = True
    # Log files older than this are deleted by the deployment's monitors.
    retention: Duration = "7d"


class DeploymentSpec(SpecModel):
    description: str | None = None
    owner: str | None = None
    labels: Labels = Field(default_factory=dict)
    model: Name
    alias: Alias = "champion"
    replicas: int = Field(default=1, ge=0)
    resources: Name | None = None
    autoscaling: Autoscaling | None = None
    image: str | None = None
    # The port clients call; 0 picks a free one (local target: see `mlform state show`).
    port: int = Field(default=8080, ge=0, le=65535)
    target: Target | None = None
    strategy: Strategy = Field(default_factory=lambda: Rolling(type="rolling"))
    prediction_log: PredictionLog = Field(default_factory=PredictionLog)
    # Environment of the model servers. Values may hold ${secret:NAME}: on the kubernetes
    # and render targets plain values go into a ConfigMap and values with a secret into a
    # Secret (both owned by the deployment); on the local target into the processes' env.
    env: dict[EnvName, str] = Field(default_factory=dict)
