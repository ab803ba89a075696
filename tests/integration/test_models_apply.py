"""Training through ``mlform apply`` on the example system: register, skip, retrain, reject.

Real scikit-learn and PyTorch training on the bundled breast-cancer data, through the
real CLI on a copy of the example project.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from example_project import copy_example, run_cli

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = copy_example(tmp_path_factory.mktemp("models"))
    result = run_cli(project, "apply", "-s", "dev", "-y")
    assert result.returncode == 0, result.stdout + result.stderr
    return project


def _json(project: Path, *args: str) -> Any:
    result = run_cli(project, *args, "-s", "dev", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def _plan(project: Path, *overrides: str) -> dict[str, Any]:
    result = run_cli(project, "plan", "-s", "dev", "--format", "json", *overrides)
    assert result.returncode == 0, result.stdout + result.stderr
    plan: dict[str, Any] = json.loads(result.stdout)
    return {c["address"]: c for c in plan["changes"]}


def test_apply_registers_both_models_as_champions(applied: Path) -> None:
    forest = _json(applied, "models", "show", "model.diagnosis")
    assert forest["status"] == "accepted" and forest["aliases"] == ["champion"]
    assert forest["artifact_verified"] is True
    metrics = forest["metrics"]
    assert metrics["roc_auc"] >= 0.95 and metrics["accuracy"] >= 0.9
    assert [g["passed"] for g in forest["gate_results"]] == [True, True, True]
    assert forest["fairness"][0]["column"] == "sex" and forest["fairness"][0]["passed"]
    torch_model = _json(applied, "models", "show", "model.diagnosis_torch")
    assert torch_model["status"] == "accepted"
    assert torch_model["metrics"]["roc_auc"] >= 0.95
    card = Path(forest["card_path"]).read_text()
    assert "Decision support for pathologists" in card and "roc_auc" in card

    runs = _json(applied, "runs", "list")
    torch_run = next(r for r in runs if r["address"] == "model.diagnosis_torch")
    assert torch_run["hardware"]["device"] == "cpu"  # no GPU on this machine
    assert torch_run["epochs"] and "val_loss" in torch_run["epochs"][0]["metrics"]
    assert torch_run["fingerprints"]

    lineage = _json(applied, "lineage", "model.diagnosis")
    assert lineage["eventType"] == "COMPLETE"
    inputs = {i["name"]: i for i in lineage["inputs"]}
    assert "features.diagnosis" in inputs
    assert inputs["features.diagnosis"]["facets"]["version"]["datasetVersion"]
    assert lineage["outputs"][0]["facets"]["version"]["datasetVersion"].startswith("sha256:")


def test_unchanged_models_are_not_retrained(applied: Path) -> None:
    changes = _plan(applied)
    assert changes["model.diagnosis"]["action"] == "no-op"
    assert changes["model.diagnosis_torch"]["action"] == "no-op"


def test_a_param_change_plans_retrain_with_its_reason(applied: Path) -> None:
    changes = _plan(applied, "models.diagnosis.estimator.max_depth=4")
    change = changes["model.diagnosis"]
    assert change["action"] == "retrain"
    assert "estimator.max_depth" in json.dumps(change["reasons"])
    assert changes["model.diagnosis_torch"]["action"] == "no-op"


def test_a_failed_gate_rejects_the_candidate_and_keeps_the_champion(applied: Path) -> None:
    before = _json(applied, "models", "show", "model.diagnosis")["version"]
    result = run_cli(
        applied,
        "apply",
        "-s",
        "dev",
        "-y",
        "models.diagnosis.estimator.max_depth=1",
        "models.diagnosis.estimator.n_estimators=1",
        "models.diagnosis.gates.accuracy='>= 0.99'",
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "rejected" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    versions = _json(applied, "models", "list")
    forest = next(m for m in versions if m["address"] == "model.diagnosis")
    assert forest["versions"] == before + 1
    champion = _json(applied, "models", "show", "model.diagnosis")
    assert champion["version"] == before  # the champion did not move
    rejected = _json(applied, "models", "show", f"model.diagnosis@v{before + 1}")
    assert rejected["status"] == "rejected" and rejected["aliases"] == []
    assert any("accuracy" in reason for reason in rejected["reasons"])


def test_a_gate_change_re_evaluates_the_artifact_without_training(applied: Path) -> None:
    before = _json(applied, "models", "show", "model.diagnosis_torch")
    override = "models.diagnosis_torch.gates.roc_auc='>= 0.96'"
    changes = _plan(applied, override)
    assert changes["model.diagnosis_torch"]["action"] == "update"
    result = run_cli(applied, "apply", "-s", "dev", "-y", override)
    assert result.returncode == 0, result.stdout + result.stderr
    after = _json(applied, "models", "show", "model.diagnosis_torch")
    assert after["version"] == before["version"] + 1
    assert after["digest"] == before["digest"]  # the same trained artifact, judged again
    assert after["gate_results"][0]["threshold"] == 0.96


def test_a_broken_target_names_the_model_and_key_and_spares_the_others(applied: Path) -> None:
    result = run_cli(
        applied,
        "apply",
        "-s",
        "dev",
        "-y",
        "models.diagnosis.estimator._target_=ml.pipelines.no_such_factory",
        "models.diagnosis_torch.trainer.epochs=3",
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output
    assert "model.diagnosis" in output and "no_such_factory" in output
    assert "models.diagnosis.estimator" in output
    # The independent torch model still trained.
    assert "succeeded model.diagnosis_torch retrain" in " ".join(output.split())
