"""The JSON view of a policy report: versioned, deterministic, byte-identical for equal reports.

Top-level keys: ``format_version``, ``mlform_version``, ``passed`` (no blocking violation
and no crashed rule), ``summary`` (counts and the summary line), ``rules``, ``findings``
(each with ``blocking`` and its ``exempted_by`` exemption or null), ``exemptions_in_force``
and ``diagnostics``. Keys sorted, two-space indent, one trailing newline.
"""

from __future__ import annotations

import json
from typing import Any

from mlform import __version__
from mlform.policy.model import Exemption, Finding, PolicyReport, RuleInfo
from mlform.policy.render.common import counts, sorted_findings, summary_line

__all__ = ["POLICY_REPORT_FORMAT_VERSION", "render_json", "report_document"]

POLICY_REPORT_FORMAT_VERSION = "1.0"


def _rule(rule: RuleInfo) -> dict[str, Any]:
    return {
        "id": rule.id,
        "pack": rule.pack,
        "title": rule.title,
        "description": rule.description,
        "help": rule.help,
        "default_level": rule.default_level.value,
        "requires_plan": rule.requires_plan,
    }


def _exemption(exemption: Exemption) -> dict[str, Any]:
    return {
        "rule": exemption.rule,
        "address": exemption.address,
        "reason": exemption.reason,
        "expires": exemption.expires.isoformat(),
        "key": exemption.key,
        "file": exemption.file,
        "line": exemption.line,
    }


def _finding(finding: Finding) -> dict[str, Any]:
    return {
        "rule": finding.rule,
        "level": finding.level.value,
        "blocking": finding.blocking,
        "message": finding.message,
        "address": finding.address,
        "key": finding.key,
        "file": finding.file,
        "line": finding.line,
        "exempted_by": _exemption(finding.exempted_by) if finding.exempted_by else None,
    }


def report_document(report: PolicyReport, *, mlform_version: str = __version__) -> dict[str, Any]:
    """The report as plain JSON data."""
    c = counts(report)
    return {
        "format_version": POLICY_REPORT_FORMAT_VERSION,
        "mlform_version": mlform_version,
        "passed": report.exit_code() == 0,
        "summary": {
            "rules": len(report.rules),
            "mandatory": c.mandatory,
            "advisory": c.advisory,
            "exempted": c.exempted,
            "errors": c.errors,
            "line": summary_line(report),
        },
        "rules": [_rule(r) for r in sorted(report.rules, key=lambda r: r.id)],
        "findings": [_finding(f) for f in sorted_findings(report)],
        "exemptions_in_force": [
            _exemption(e)
            for e in sorted(
                report.exemptions_in_force, key=lambda e: (e.rule, e.address or "", e.expires)
            )
        ],
        "diagnostics": [d.to_dict() for d in report.diagnostics],
    }


def render_json(report: PolicyReport, *, mlform_version: str = __version__) -> str:
    """Sorted keys, two-space indent, fixed separators, UTF-8 kept, one trailing newline."""
    document = report_document(report, mlform_version=mlform_version)
    text = json.dumps(
        document, sort_keys=True, indent=2, separators=(",", ": "), ensure_ascii=False
    )
    return text + "\n"
