"""The policy gate of validate, plan and apply.

``validate`` reports policy findings as diagnostics, ``plan`` records them on the plan
(results and the exemptions in force), and ``apply`` evaluates them under the state lock
(once, also for a saved plan) and refuses to change anything while a mandatory policy is
violated.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mlform.diagnostics import Diagnostic

if TYPE_CHECKING:
    from datetime import date

    from mlform.plan.model import Plan
    from mlform.policy.model import PolicyReport
    from mlform.spec.declared import LoadedSystem


def evaluate_policies(
    loaded: LoadedSystem, plan_doc: Mapping[str, Any] | None, today: date | None
) -> PolicyReport:
    """Every enabled policy over the spec (and the plan document when given), as of today."""
    from datetime import UTC, datetime

    from mlform.policy.engine import evaluate
    from mlform.policy.inputs import policy_input

    day = today or datetime.now(UTC).date()
    return evaluate(policy_input(loaded, plan=plan_doc, today=day))


def policy_diagnostics(report: PolicyReport) -> list[Diagnostic]:
    """The report as diagnostics: errors for blocking findings, warnings for the others."""
    out = list(report.diagnostics)
    for finding in report.findings:
        if finding.exempted_by is not None:
            continue
        make = Diagnostic.error if finding.blocking else Diagnostic.warning
        out.append(
            make(
                f"policy {finding.rule}: {finding.message}",
                f"{finding.level.value} policy. See `mlform policy check` and docs/policies.md; "
                "fix the config, or add an exemption with a reason and an expiry date.",
                key=finding.key,
                file=finding.file,
                line=finding.line,
                address=finding.address,
            )
        )
    return out


def evaluate_plan(loaded: LoadedSystem, the_plan: Plan) -> PolicyReport:
    """Every policy over the spec and ``the_plan`` (its own recorded results left out)."""
    from mlform.plan.render.json import plan_document

    bare = the_plan.model_copy(update={"policy_results": (), "policy_exemptions": ()})
    return evaluate_policies(loaded, plan_document(bare), None)


def with_policies(the_plan: Plan, report: PolicyReport) -> Plan:
    """The plan with the results of ``report`` recorded on it."""
    from mlform.plan.model import PolicyExemption, PolicyResult

    results = tuple(
        PolicyResult(
            rule=f.rule,
            level=f.level.value,
            passed=False,
            message=f.message,
            address=f.address,
            exempted_by=(
                None
                if f.exempted_by is None
                else f"{f.exempted_by.reason} (until {f.exempted_by.expires.isoformat()})"
            ),
            key=f.key,
            file=f.file,
            line=f.line,
        )
        for f in report.findings
    )
    exemptions = tuple(
        PolicyExemption(
            rule=e.rule,
            address=e.address,
            reason=e.reason,
            expires=e.expires.isoformat(),
            file=e.file,
            line=e.line,
            waives=tuple(f.message for f in report.findings if f.exempted_by == e),
        )
        for e in report.exemptions_in_force
    )
    errors = tuple(d.to_dict() for d in report.diagnostics)
    return the_plan.model_copy(
        update={
            "policy_results": results,
            "policy_exemptions": exemptions,
            "diagnostics": the_plan.diagnostics + errors,
        }
    )


def enforce_policies(report: PolicyReport) -> None:
    """Apply's gate: mandatory violations block every step."""
    from mlform.errors import PolicyError

    blocking = [d for d in policy_diagnostics(report) if d.severity.value == "error"]
    if blocking:
        raise PolicyError(blocking)
