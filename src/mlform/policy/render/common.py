"""Helpers shared by the policy report renderers: counts, ordering, locations."""

from __future__ import annotations

from dataclasses import dataclass

from mlform.diagnostics import Diagnostic, Severity
from mlform.policy.model import Exemption, Finding, PolicyReport

__all__ = [
    "Counts",
    "counts",
    "exemption_note",
    "finding_order",
    "location",
    "rule_errors",
    "sorted_findings",
    "summary_line",
]


@dataclass(frozen=True, slots=True)
class Counts:
    mandatory: int
    advisory: int
    exempted: int
    errors: int  # rules that crashed


def rule_errors(report: PolicyReport) -> tuple[Diagnostic, ...]:
    return tuple(d for d in report.diagnostics if d.severity is Severity.ERROR)


def counts(report: PolicyReport) -> Counts:
    return Counts(
        mandatory=len(report.mandatory),
        advisory=len(report.advisory),
        exempted=sum(1 for f in report.findings if f.exempted_by is not None),
        errors=len(rule_errors(report)),
    )


def summary_line(report: PolicyReport) -> str:
    """``Policy: 1 mandatory, 2 advisory violations, 1 exempted`` (+ ``, 1 rule error``)."""
    c = counts(report)
    line = (
        f"Policy: {c.mandatory} mandatory, {c.advisory} advisory violations, {c.exempted} exempted"
    )
    if c.errors:
        line += f", {c.errors} rule error{'s' if c.errors != 1 else ''}"
    return line


def finding_order(f: Finding) -> tuple[str, str, str, str, int, str]:
    return (f.rule, f.address or "", f.key or "", f.file or "", f.line or 0, f.message)


def sorted_findings(report: PolicyReport) -> list[Finding]:
    """Findings in a stable order whatever order the engine produced them in."""
    return sorted(report.findings, key=finding_order)


def location(file: str | None, line: int | None) -> str:
    """``file:line``, ``file``, or ``""``; paths always with forward slashes."""
    if not file:
        return ""
    path = file.replace("\\", "/")
    return f"{path}:{line}" if line else path


def exemption_note(exemption: Exemption) -> str:
    """``reason (expires 2026-06-30)``."""
    return f"{exemption.reason} (expires {exemption.expires.isoformat()})"
