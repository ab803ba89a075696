"""Bad input at the CLI gives a clear error naming what to fix — never a traceback."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from example_project import copy_example, run_cli

pytestmark = pytest.mark.integration


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return copy_example(tmp_path / "proj")


def _fails_cleanly(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    for needle in needles:
        assert needle in result.stderr, result.stderr


def test_not_a_project(tmp_path: Path) -> None:
    _fails_cleanly(run_cli(tmp_path, "plan"), "configs/system.yaml", "mlform init")


def test_unknown_stack_lists_the_known_ones(project: Path) -> None:
    _fails_cleanly(run_cli(project, "plan", "-s", "qa"), "qa", "dev", "prod")


def test_unknown_key_in_override(project: Path) -> None:
    _fails_cleanly(
        run_cli(project, "plan", "-s", "dev", "models.diagnosis.trainer.epochz=3"),
        "models.diagnosis",
    )


def test_wrong_type_names_key_and_file(project: Path) -> None:
    path = project / "configs" / "deployments" / "diagnosis_api.yaml"
    path.write_text(path.read_text().replace("replicas: 2", "replicas: lots"))
    result = run_cli(project, "validate")
    _fails_cleanly(result, "deployments.diagnosis-api.replicas", "diagnosis_api.yaml")


def test_unknown_model_reference_names_both_keys(project: Path) -> None:
    path = project / "configs" / "deployments" / "diagnosis_api.yaml"
    path.write_text(path.read_text().replace("model: diagnosis", "model: diagnosys"))
    _fails_cleanly(run_cli(project, "validate"), "deployments.diagnosis-api.model", "models")


def test_malformed_yaml_names_file_and_line(project: Path) -> None:
    path = project / "configs" / "models" / "diagnosis.yaml"
    path.write_text(path.read_text() + "\nbroken: [unclosed\n")
    _fails_cleanly(run_cli(project, "validate"), "diagnosis.yaml")


def test_apply_without_confirmation_in_ci_is_refused(project: Path) -> None:
    result = run_cli(project, "apply", "-s", "dev")
    _fails_cleanly(result, "--auto-approve")


def test_missing_plan_file(project: Path) -> None:
    _fails_cleanly(run_cli(project, "apply", "nothing.mlplan"), "nothing.mlplan")


def test_corrupt_plan_file(project: Path) -> None:
    bad = project / "bad.mlplan"
    bad.write_text("{not json")
    _fails_cleanly(run_cli(project, "apply", str(bad)), "bad.mlplan")


def test_state_show_unknown_address(project: Path) -> None:
    _fails_cleanly(run_cli(project, "state", "show", "model.nope", "-s", "dev"), "model.nope")
    _fails_cleanly(run_cli(project, "state", "show", "nonsense", "-s", "dev"), "KIND.NAME")


def test_init_scaffolds_a_project_that_plans(tmp_path: Path) -> None:
    target = tmp_path / "fresh-project"
    created = run_cli(tmp_path, "init", str(target))
    assert created.returncode == 0, created.stderr
    plan = run_cli(target, "plan", "-s", "dev")
    assert plan.returncode == 0, plan.stderr
    assert "data.iris" in plan.stdout and "model.iris" in plan.stdout
    again = run_cli(tmp_path, "init", str(target))
    _fails_cleanly(again, "--force")
