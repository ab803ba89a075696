"""The GitHub Actions view of a policy report: workflow commands that annotate the PR diff.

``::error file=F,line=L,title=RULE::message`` for a mandatory violation (and, with
``fail_on_warn``, an advisory one), ``::warning …`` for an advisory violation, ``::notice …``
for an exempted finding, ``::error title=mlform policy::…`` for a crashed rule; the summary
line last, as plain log output. Escaping follows GitHub's runner: in the message ``%``,
``\\r`` and ``\\n`` become ``%25``, ``%0D`` and ``%0A``; in property values ``:`` and ``,``
also become ``%3A`` and ``%2C``.
"""

from __future__ import annotations

from mlform.diagnostics import Diagnostic, Severity
from mlform.policy.model import Finding, PolicyReport
from mlform.policy.render.common import exemption_note, sorted_findings, summary_line

__all__ = ["escape_data", "escape_property", "render_github", "workflow_command"]


def escape_data(text: str) -> str:
    """A workflow command's message: ``%``, CR and LF encoded."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A workflow command's property value: as a message, plus ``:`` and ``,``."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def workflow_command(command: str, message: str, **properties: str | int | None) -> str:
    """``::command k=v,k=v::message`` with empty properties left out."""
    props = ",".join(
        f"{name}={escape_property(str(value))}"
        for name, value in properties.items()
        if value not in (None, "")
    )
    return f"::{command}{' ' + props if props else ''}::{escape_data(message)}"


def _finding_command(finding: Finding, *, fail_on_warn: bool) -> str:
    message = f"{finding.address}: {finding.message}" if finding.address else finding.message
    if finding.exempted_by is not None:
        command = "notice"
        message += f" (exempted: {exemption_note(finding.exempted_by)})"
    elif finding.blocking or fail_on_warn:
        command = "error"
    else:
        command = "warning"
    file = finding.file.replace("\\", "/") if finding.file else None
    return workflow_command(
        command,
        f"[{finding.level.value}] {message}",
        file=file,
        line=finding.line if file else None,
        title=finding.rule,
    )


def _diagnostic_command(diagnostic: Diagnostic) -> str:
    command = "error" if diagnostic.severity is Severity.ERROR else "warning"
    text = diagnostic.summary + (f"\n{diagnostic.detail}" if diagnostic.detail else "")
    file = diagnostic.file.replace("\\", "/") if diagnostic.file else None
    return workflow_command(
        command,
        text,
        file=file,
        line=diagnostic.line if file else None,
        title="mlform policy",
    )


def render_github(report: PolicyReport, *, fail_on_warn: bool = False) -> str:
    """One workflow command per finding and diagnostic, then the summary line."""
    lines = [_finding_command(f, fail_on_warn=fail_on_warn) for f in sorted_findings(report)]
    lines.extend(_diagnostic_command(d) for d in report.diagnostics)
    lines.append(summary_line(report))
    return "\n".join(lines) + "\n"
