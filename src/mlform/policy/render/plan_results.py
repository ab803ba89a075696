"""Policy results as the plan carries them (:class:`~mlform.plan.model.PolicyResult`).

Shared by the human and markdown plan views: which results are violations (mandatory
first), which are waived by an exemption in force, and the summary line.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mlform.plan.model import PolicyExemption, PolicyResult

__all__ = ["PlanPolicy", "exemption_location", "plan_policy", "result_location"]

_LEVEL_ORDER = {"mandatory": 0, "advisory": 1}


@dataclass(frozen=True, slots=True)
class PlanPolicy:
    violations: tuple[PolicyResult, ...]  # failed and not exempted; mandatory first
    exempted: tuple[PolicyResult, ...]  # waived by an exemption in force
    exemptions: tuple[PolicyExemption, ...] = ()  # every exemption in force

    @property
    def mandatory(self) -> int:
        return sum(1 for r in self.violations if r.level == "mandatory")

    @property
    def advisory(self) -> int:
        return len(self.violations) - self.mandatory

    @property
    def notable(self) -> bool:
        return bool(self.violations or self.exempted or self.exemptions)

    def summary_line(self) -> str:
        """``Policy: 1 mandatory, 0 advisory violations, 1 exempted`` (as policy check)."""
        return (
            f"Policy: {self.mandatory} mandatory, {self.advisory} advisory violations, "
            f"{len(self.exempted)} exempted"
        )


def _order(result: PolicyResult) -> tuple[int, str, str, str, str]:
    return (
        _LEVEL_ORDER.get(result.level, 2),
        result.rule,
        result.address or "",
        result.key or "",
        result.message,
    )


def plan_policy(
    results: Iterable[PolicyResult], exemptions: Iterable[PolicyExemption] = ()
) -> PlanPolicy:
    results = list(results)
    violations = [r for r in results if not r.passed and r.exempted_by is None]
    exempted = [r for r in results if r.exempted_by is not None]
    in_force = sorted(exemptions, key=lambda e: (e.rule, e.address or "", e.expires))
    return PlanPolicy(
        tuple(sorted(violations, key=_order)),
        tuple(sorted(exempted, key=_order)),
        tuple(in_force),
    )


def exemption_location(exemption: PolicyExemption) -> str:
    if not exemption.file:
        return ""
    path = exemption.file.replace("\\", "/")
    return f"{path}:{exemption.line}" if exemption.line else path


def result_location(result: PolicyResult) -> str:
    """``configs/data/patients.yaml:17`` (or the file alone, or ``""``)."""
    if not result.file:
        return ""
    path = result.file.replace("\\", "/")
    return f"{path}:{result.line}" if result.line else path
