"""The JUnit XML view of a policy report, for CI test-report widgets.

One ``<testsuite name="mlform policy">`` (inside ``<testsuites>``). A test case per
(rule, address) that has findings, and one passing case for each rule without any, so
every evaluated rule shows up. ``classname`` is the rule id (``pii.encryption``), ``name``
the object address (or ``(system)`` for whole-system findings, ``(all)`` for a clean rule).

Failures mirror the exit code: a mandatory violation is a ``<failure type="mandatory">``;
an advisory one is a passing case with the warning in ``<system-out>`` (CI widgets stay
green, as the check does), unless ``fail_on_warn``, where it is a
``<failure type="warning">``. Exempted findings pass with the exemption in
``<system-out>``. A crashed rule is an ``<error>`` case.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import defaultdict

from mlform.diagnostics import Diagnostic, Severity
from mlform.policy.model import Finding, PolicyReport
from mlform.policy.render.common import exemption_note, location, sorted_findings

__all__ = ["SUITE_NAME", "render_junit"]

SUITE_NAME = "mlform policy"
_SYSTEM = "(system)"
_CLEAN = "(all)"
# XML 1.0 forbids most control characters even escaped.
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _clean(text: str) -> str:
    return _INVALID_XML.sub("\ufffd", text)


def _describe(finding: Finding) -> str:
    line = f"{finding.level.value}: {finding.message}"
    where = location(finding.file, finding.line)
    if where:
        line += f" ({where})"
    if finding.key:
        line += f" [key {finding.key}]"
    if finding.exempted_by is not None:
        line += f"\n  exempted: {exemption_note(finding.exempted_by)}"
    return line


class _Suite:
    def __init__(self) -> None:
        self.suite = ET.Element("testsuite", {"name": SUITE_NAME})
        self.tests = self.failures = self.errors = 0

    def case(self, classname: str, name: str, findings: list[Finding] | None = None) -> ET.Element:
        self.tests += 1
        attrs = {"classname": _clean(classname), "name": _clean(name), "time": "0"}
        first = next((f for f in findings or [] if f.file), None)
        if first is not None and first.file:
            attrs["file"] = _clean(first.file.replace("\\", "/"))
            if first.line:
                attrs["line"] = str(first.line)
        return ET.SubElement(self.suite, "testcase", attrs)

    def fail(self, case: ET.Element, kind: str, findings: list[Finding]) -> None:
        self.failures += 1
        message = findings[0].message + (
            f" (+{len(findings) - 1} more)" if len(findings) > 1 else ""
        )
        failure = ET.SubElement(case, "failure", {"type": kind, "message": _clean(message)})
        failure.text = _clean("\n".join(_describe(f) for f in findings))

    def error(self, diagnostic: Diagnostic) -> None:
        self.errors += 1
        case = self.case("mlform.policy", _clean(diagnostic.summary))
        error = ET.SubElement(case, "error", {"type": "rule-error", "message": diagnostic.summary})
        error.text = _clean(str(diagnostic))


def render_junit(report: PolicyReport, *, fail_on_warn: bool = False) -> str:
    """The report as JUnit XML (UTF-8 declaration, two-space indent, one trailing newline)."""
    groups: dict[tuple[str, str], list[Finding]] = defaultdict(list)
    for finding in sorted_findings(report):
        groups[(finding.rule, finding.address or _SYSTEM)].append(finding)
    suite = _Suite()
    rule_ids = sorted({r.id for r in report.rules} | {rule for rule, _ in groups})
    for rule_id in rule_ids:
        addresses = sorted(address for rule, address in groups if rule == rule_id)
        if not addresses:
            suite.case(rule_id, _CLEAN)
        for address in addresses:
            findings = groups[(rule_id, address)]
            case = suite.case(rule_id, address, findings)
            _judge(suite, case, findings, fail_on_warn=fail_on_warn)
    for diagnostic in report.diagnostics:
        if diagnostic.severity is Severity.ERROR:
            suite.error(diagnostic)
    counts = {
        "tests": str(suite.tests),
        "failures": str(suite.failures),
        "errors": str(suite.errors),
        "skipped": "0",
        "time": "0",
    }
    suite.suite.attrib.update(counts)
    root = ET.Element("testsuites", {"name": SUITE_NAME, **counts})
    root.append(suite.suite)
    ET.indent(root, space="  ")
    body = ET.tostring(root, encoding="unicode")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n"


def _judge(suite: _Suite, case: ET.Element, findings: list[Finding], *, fail_on_warn: bool) -> None:
    blocking = [f for f in findings if f.blocking]
    advisory = [f for f in findings if f.exempted_by is None and not f.blocking]
    if blocking:
        suite.fail(case, "mandatory", blocking)
    elif advisory and fail_on_warn:
        suite.fail(case, "warning", advisory)
    quiet = [f for f in findings if f not in blocking and not (fail_on_warn and f in advisory)]
    if quiet:
        out = ET.SubElement(case, "system-out")
        out.text = _clean("\n".join(_describe(f) for f in quiet))
