"""The SARIF 2.1.0 view of a policy report, for GitHub code scanning and other SARIF tools.

One run whose ``tool.driver.rules`` lists every evaluated rule (``id`` = the stable rule id,
``defaultConfiguration.level``: mandatory → ``error``, advisory → ``warning``). Each
finding is a result with ``ruleId``/``ruleIndex``, its effective level, a physical location
(the YAML file relative to the project, forward slashes, and the line of the offending key)
and a logical location (the object address). Exempted findings stay as results with an
``external`` suppression whose justification is the exemption's reason. Crashed rules are
``invocations[0].toolExecutionNotifications`` and make ``executionSuccessful`` false.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from mlform import __version__
from mlform.diagnostics import Diagnostic, Severity
from mlform.policy.model import Exemption, Finding, Level, PolicyReport, RuleInfo
from mlform.policy.render.common import exemption_note, rule_errors, sorted_findings

__all__ = ["SARIF_SCHEMA", "render_sarif", "sarif_document", "sarif_level"]

SARIF_SCHEMA = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)
_FINGERPRINT = "mlformFinding/v1"


def sarif_level(level: Level) -> str:
    """mandatory → ``error``, advisory → ``warning``, disabled → ``none``."""
    return {Level.MANDATORY: "error", Level.ADVISORY: "warning"}.get(level, "none")


def _text(text: str) -> dict[str, str]:
    return {"text": text or "(no message)"}


def _rule(rule: RuleInfo) -> dict[str, Any]:
    return {
        "id": rule.id,
        "name": _pascal(rule.id),
        "shortDescription": _text(rule.title),
        "fullDescription": _text(rule.description or rule.title),
        "help": _help(rule),
        "defaultConfiguration": {"level": sarif_level(rule.default_level)},
        "properties": {
            "pack": rule.pack,
            "requiresPlan": rule.requires_plan,
            "tags": sorted({"mlform", "policy", rule.pack}),
        },
    }


def _help(rule: RuleInfo) -> dict[str, str]:
    """Plain text, and the same as markdown (rule help uses `code` spans) for GitHub."""
    text = rule.help or rule.description or rule.title or rule.id
    return {"text": text, "markdown": text}


def _pascal(rule_id: str) -> str:
    """``pii.encryption`` → ``PiiEncryption`` (SARIF's optional, human-friendly rule name)."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", rule_id))


def _physical(file: str, line: int | None) -> dict[str, Any]:
    physical: dict[str, Any] = {"artifactLocation": {"uri": _uri(file)}}
    if line and line > 0:
        physical["region"] = {"startLine": line}
    return physical


def _uri(file: str) -> str:
    """A relative URI reference: forward slashes, no leading ``./``, spaces and ``%`` encoded."""
    path = file.replace("\\", "/")
    while path.startswith("./"):
        path = path[2:]
    return path.replace("%", "%25").replace(" ", "%20")


def _locations(file: str | None, line: int | None, address: str | None) -> list[dict[str, Any]]:
    location: dict[str, Any] = {}
    if file:
        location["physicalLocation"] = _physical(file, line)
    if address:
        location["logicalLocations"] = [
            {"name": address.rsplit(".", 1)[-1], "fullyQualifiedName": address}
        ]
    return [location] if location else []


def _suppression(exemption: Exemption) -> dict[str, Any]:
    suppression: dict[str, Any] = {
        "kind": "external",
        "status": "accepted",
        "justification": exemption.reason or "exempted",
        "properties": {"expires": exemption.expires.isoformat()},
    }
    if exemption.file:
        suppression["location"] = {"physicalLocation": _physical(exemption.file, exemption.line)}
    return suppression


def _fingerprint(finding: Finding) -> str:
    """Stable across runs and line moves: the rule, the object and the config key."""
    key = "\x1f".join((finding.rule, finding.address or "", finding.key or "", finding.file or ""))
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def _result(finding: Finding, index: dict[str, int]) -> dict[str, Any]:
    message = finding.message
    if finding.address:
        message = f"{finding.address}: {message}"
    if finding.exempted_by is not None:
        message += f" (exempted: {exemption_note(finding.exempted_by)})"
    result: dict[str, Any] = {
        "ruleId": finding.rule,
        "level": sarif_level(finding.level),
        "message": _text(message),
        "partialFingerprints": {_FINGERPRINT: _fingerprint(finding)},
        "properties": {"policyLevel": finding.level.value, "blocking": finding.blocking},
    }
    if finding.rule in index:
        result["ruleIndex"] = index[finding.rule]
    locations = _locations(finding.file, finding.line, finding.address)
    if locations:
        result["locations"] = locations
    if finding.key:
        result["properties"]["key"] = finding.key
    if finding.exempted_by is not None:
        result["suppressions"] = [_suppression(finding.exempted_by)]
    return result


def _notification(diagnostic: Diagnostic, index: dict[str, int]) -> dict[str, Any]:
    text = diagnostic.summary + (f" {diagnostic.detail}" if diagnostic.detail else "")
    notification: dict[str, Any] = {
        "level": "error" if diagnostic.severity is Severity.ERROR else "warning",
        "message": _text(text),
    }
    rule = _rule_named(diagnostic, index)
    if rule is not None:
        notification["associatedRule"] = {"id": rule, "index": index[rule]}
    locations = _locations(diagnostic.file, diagnostic.line, diagnostic.address)
    if locations:
        notification["locations"] = locations
    return notification


def _rule_named(diagnostic: Diagnostic, index: dict[str, int]) -> str | None:
    """The evaluated rule a diagnostic is about: its key, or a rule id quoted in its summary."""
    if diagnostic.key in index:
        return diagnostic.key
    words = set(re.findall(r"[A-Za-z0-9_.\-]+", diagnostic.summary))
    named = sorted(r for r in index if r in words)
    return named[0] if named else None


def _all_rules(report: PolicyReport) -> list[RuleInfo]:
    """The evaluated rules, plus a stub for any rule a finding names that the report lacks."""
    known = {rule.id: rule for rule in report.rules}
    for finding in report.findings:
        if finding.rule not in known:
            known[finding.rule] = RuleInfo(
                id=finding.rule,
                pack=finding.rule.split(".", 1)[0],
                title=finding.rule,
                description="",
                help="",
                default_level=finding.level,
            )
    return sorted(known.values(), key=lambda r: r.id)


def sarif_document(report: PolicyReport, *, mlform_version: str = __version__) -> dict[str, Any]:
    """The report as a SARIF 2.1.0 log (plain JSON data)."""
    rules = _all_rules(report)
    index = {rule.id: i for i, rule in enumerate(rules)}
    invocation: dict[str, Any] = {"executionSuccessful": not rule_errors(report)}
    if report.diagnostics:
        invocation["toolExecutionNotifications"] = [
            _notification(d, index) for d in report.diagnostics
        ]
    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": "mlform",
                "version": mlform_version,
                "rules": [_rule(r) for r in rules],
            }
        },
        "invocations": [invocation],
        "results": [_result(f, index) for f in sorted_findings(report)],
        "columnKind": "unicodeCodePoints",
    }
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}


def render_sarif(report: PolicyReport, *, mlform_version: str = __version__) -> str:
    """The SARIF log as deterministic JSON text (two-space indent, one trailing newline)."""
    document = sarif_document(report, mlform_version=mlform_version)
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
