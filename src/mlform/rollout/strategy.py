"""A deployment's ``strategy`` block as the steps a rollout walks (pure).

Defaults follow Argo Rollouts / Flagger and are filled in by the spec
(:mod:`mlform.spec.deployments`); this module only reads the resolved config.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlform.spec.base import parse_comparison, parse_duration
from mlform.spec.deployments import check_metric_name

__all__ = ["AnalysisPlan", "Step", "Strategy", "Threshold"]


@dataclass(frozen=True, slots=True)
class Step:
    weight: int  # percent of traffic on the new version
    pause_s: float | None  # how long to hold this weight (None: go on at once)


@dataclass(frozen=True, slots=True)
class Threshold:
    metric: str
    op: str
    value: float

    def holds(self, measured: float) -> bool:
        return {
            ">=": measured >= self.value,
            "<=": measured <= self.value,
            ">": measured > self.value,
            "<": measured < self.value,
            "==": measured == self.value,
            "!=": measured != self.value,
        }[self.op]

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.value:g}"


@dataclass(frozen=True, slots=True)
class AnalysisPlan:
    interval_s: float
    failure_limit: int
    thresholds: tuple[Threshold, ...]

    def aborts_after(self, failed_checks: int) -> bool:
        """Flagger's rule: roll back once ``failure_limit`` checks failed (0: at the first)."""
        return failed_checks > 0 and failed_checks >= self.failure_limit


@dataclass(frozen=True, slots=True)
class Strategy:
    type: str  # recreate | rolling | canary | blue_green | ab_test | shadow
    steps: tuple[Step, ...] = ()
    analysis: AnalysisPlan | None = None
    auto_rollback: bool = True
    progress_deadline_s: float = 600.0
    auto_promote: bool = False
    promote_after_s: float | None = None
    scale_down_delay_s: float = 30.0

    @classmethod
    def from_config(cls, deployment: Mapping[str, Any]) -> Strategy:
        block: Mapping[str, Any] = deployment.get("strategy") or {"type": "rolling"}
        kind = str(block.get("type", "rolling"))
        if kind == "canary":
            steps = tuple(
                Step(int(s["weight"]), _seconds(s.get("pause"))) for s in block.get("steps") or ()
            )
            return cls(
                type=kind,
                steps=steps,
                analysis=_analysis(block.get("analysis") or {}),
                auto_rollback=bool(block.get("auto_rollback", True)),
                progress_deadline_s=_seconds(block.get("progress_deadline")) or 600.0,
            )
        if kind == "blue_green":
            return cls(
                type=kind,
                auto_promote=bool(block.get("auto_promote", False)),
                promote_after_s=_seconds(block.get("promote_after")),
                scale_down_delay_s=_seconds(block.get("scale_down_delay")) or 0.0,
            )
        return cls(type=kind)

    def describe(self) -> str:
        """One line for the plan: how this strategy moves traffic."""
        if self.type == "canary":
            weights = " → ".join(
                f"{s.weight}%" + (f" (pause {s.pause_s:g}s)" if s.pause_s else "")
                for s in self.steps
            )
            text = f"canary {weights}"
            if self.analysis is not None:
                checks = ", ".join(str(t) for t in self.analysis.thresholds)
                text += (
                    f"; analysis every {self.analysis.interval_s:g}s ({checks}), "
                    f"abort after {max(1, self.analysis.failure_limit)} failed checks"
                )
                if self.auto_rollback:
                    text += " and roll back"
            return text
        if self.type == "blue_green":
            if not self.auto_promote:
                promotion = "waits for `mlform rollout promote`"
            elif self.promote_after_s:
                promotion = f"promotes after {self.promote_after_s:g}s"
            else:
                promotion = "promotes when the preview is ready"
            return (
                f"blue-green: preview the new version, {promotion}, keep the old version "
                f"{self.scale_down_delay_s:g}s after the switch"
            )
        return {
            "recreate": "recreate: stop the old version, then start the new one",
            "rolling": "rolling: start the new version, switch traffic, stop the old one",
            "ab_test": "A/B test: serve every variant with its fixed weight",
            "shadow": "shadow: serve the primary, mirror traffic to the shadow model",
        }.get(self.type, self.type)


def _seconds(value: Any) -> float | None:
    return None if value in (None, "") else parse_duration(str(value))


def _analysis(block: Mapping[str, Any]) -> AnalysisPlan:
    thresholds = []
    for metric in block.get("metrics") or ():
        op, value = parse_comparison(str(metric["threshold"]))
        thresholds.append(Threshold(check_metric_name(str(metric["name"])), op, value))
    return AnalysisPlan(
        interval_s=_seconds(block.get("interval")) or 60.0,
        failure_limit=int(block.get("failure_limit", 2)),
        thresholds=tuple(thresholds),
    )
