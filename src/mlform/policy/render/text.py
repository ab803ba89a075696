"""The plain-text view of a policy report, for terminals and CI logs.

One line per finding (``LEVEL rule-id address: message (file:line)``), exempted findings
marked ``EXEMPT``, rule diagnostics (a crashed rule) as ``ERROR``/``WARNING``, the
exemptions in force, then the summary line. No colour codes: the same report always
gives the same text.
"""

from __future__ import annotations

from mlform.diagnostics import Diagnostic
from mlform.policy.model import Exemption, Finding, PolicyReport
from mlform.policy.render.common import (
    exemption_note,
    location,
    sorted_findings,
    summary_line,
)

__all__ = ["finding_line", "render_text"]

_WIDTH = len("MANDATORY")


def finding_line(finding: Finding) -> str:
    """``MANDATORY pii.encryption data.patients: message (configs/data/patients.yaml:17)``."""
    label = "EXEMPT" if finding.exempted_by is not None else finding.level.value.upper()
    head = f"{label:<{_WIDTH}} {finding.rule}"
    if finding.address:
        head += f" {finding.address}"
    line = f"{head}: {finding.message}"
    where = location(finding.file, finding.line)
    if where:
        line += f" ({where})"
    if finding.exempted_by is not None:
        line += f" [exempted: {exemption_note(finding.exempted_by)}]"
    return line


def _diagnostic_line(diagnostic: Diagnostic) -> str:
    line = f"{diagnostic.severity.value.upper():<{_WIDTH}} {diagnostic.summary}"
    where = location(diagnostic.file, diagnostic.line)
    if where:
        line += f" ({where})"
    if diagnostic.detail:
        line += f"\n{'':<{_WIDTH}}   {diagnostic.detail}"
    return line


def _exemption_line(exemption: Exemption) -> str:
    target = exemption.rule + (f" {exemption.address}" if exemption.address else "")
    line = f"  {target}: {exemption_note(exemption)}"
    where = location(exemption.file, exemption.line)
    if where:
        line += f" ({where})"
    return line


def render_text(report: PolicyReport) -> str:
    """The report as lines of text ending with the summary line and a newline."""
    lines: list[str] = []
    findings = sorted_findings(report)
    # Blocking first, then advisory, then the waived ones: what matters most on top.
    findings.sort(key=lambda f: (f.exempted_by is not None, not f.blocking))
    lines.extend(finding_line(f) for f in findings)
    lines.extend(_diagnostic_line(d) for d in report.diagnostics)
    if not lines:
        n = len(report.rules)
        lines.append(f"No policy violations ({n} rule{'s' if n != 1 else ''} checked).")
    if report.exemptions_in_force:
        lines.append("")
        lines.append("Exemptions in force:")
        ordered = sorted(
            report.exemptions_in_force, key=lambda e: (e.rule, e.address or "", e.expires)
        )
        lines.extend(_exemption_line(e) for e in ordered)
    lines.append("")
    lines.append(summary_line(report))
    return "\n".join(lines) + "\n"
