"""``mlform runs|models|lineage`` over a registry built by the library on a real model.

A logistic regression is trained on scikit-learn's breast-cancer data, evaluated (metrics,
gates, champion, fairness) and registered twice: v1 accepted and made champion, v2
rejected by its gates. The commands run in-process through ``typer.testing.CliRunner`` on
an app with :func:`register_commands` applied; the subprocess test of the real
``python -m mlform`` runs once ``mlform.cli.app`` registers them.
"""

from __future__ import annotations

import json
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from example_project import copy_example, run_cli
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from typer.testing import CliRunner

from mlform import workspace
from mlform.cli.models_cmds import register_commands
from mlform.evaluation import check_fairness, check_gates, compute_metrics
from mlform.registry.card import CardInputs, render_card
from mlform.registry.lineage import DatasetInput, lineage_event
from mlform.registry.queries import registry_for, run_store_for
from mlform.registry.reference import reference_stats
from mlform.registry.runs import RunRecord
from mlform.registry.versions import ModelVersion

pytestmark = pytest.mark.integration

ADDRESS = "model.diagnosis"


@dataclass(frozen=True)
class Built:
    project: Path
    state_dir: Path
    run_ids: tuple[str, str]


def _register(state_dir: Path, *, c: float, gate: str, run_id: str) -> ModelVersion:
    data = load_breast_cancer()
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=0.2, random_state=42, stratify=data.target
    )
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=500))
    model.fit(x_train, y_train)
    pred = model.predict(x_test)
    proba = model.predict_proba(x_test)
    metrics = compute_metrics("classification", ["roc_auc", "accuracy", "f1"], y_test, pred, proba)
    registry = registry_for(state_dir)
    gates_config = {"roc_auc": gate, "must_beat_champion": {"metric": "roc_auc"}}
    gates = check_gates(gates_config, metrics, registry.champion_metrics(ADDRESS))
    sex = np.where(np.arange(len(y_test)) % 2 == 0, "F", "M")
    fairness = check_fairness(pred, {"sex": sex}, min_ratio=0.8)
    accepted = all(g.passed for g in gates) and all(f.passed for f in fairness)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "params.json").write_text(json.dumps({"C": c}))
        (Path(tmp) / "coef.npy").write_bytes(model[-1].coef_.tobytes())
        digest = registry.artifacts.put_dir(Path(tmp))
    names = [str(n) for n in data.feature_names]

    def card(v: ModelVersion) -> str:
        return render_card(
            CardInputs(
                ref=v.ref,
                status=v.status,
                task="classification",
                framework="sklearn",
                feature_set="diagnosis",
                label="target",
                feature_names=names,
                rows={"train": len(y_train), "test": len(y_test)},
                digest=v.digest,
                created_at=v.created_at,
                run_id=run_id,
                card={"intended_use": "Decision support for pathologists."},
                metrics=metrics,
                gate_results=gates,
                fairness=fairness,
                hardware={"device": "cpu"},
                reasons=v.reasons,
            )
        )

    def lineage(v: ModelVersion) -> dict[str, Any]:
        return lineage_event(
            project="diagnosis",
            stack="dev",
            address=ADDRESS,
            run_id=run_id,
            inputs=[
                DatasetInput(
                    "features.diagnosis", "sha256:" + "f" * 64, [(n, "float") for n in names]
                )
            ],
            output_digest=v.digest,
            model_version=v.ref,
            status=v.status,
            metrics=metrics,
            gate_results=gates,
            fairness=fairness,
        )

    mv = registry.register(
        ADDRESS,
        digest,
        status="accepted" if accepted else "rejected",
        metrics=metrics,
        gate_results=gates,
        fairness=fairness,
        run_id=run_id,
        card_markdown=card,
        reference_stats=reference_stats(x_train, names, task="classification", y=y_train),
        fingerprints={"config": "abc"},
        lineage=lineage,
    )
    run_store_for(state_dir).save(
        RunRecord(
            run_id,
            ADDRESS,
            f"2024-05-0{mv.version}T00:00:00Z",
            finished_at=f"2024-05-0{mv.version}T00:00:05Z",
            duration_s=5.0,
            status="succeeded",
            params={"C": c, "max_iter": 500},
            metrics=metrics,
            hardware={"device": "cpu"},
            version=mv.ref,
        )
    )
    return mv


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    project = copy_example(tmp_path_factory.mktemp("project"))
    state_dir = workspace.state_dir(workspace.load_system(project, "dev"))
    run_ids = (str(uuid.uuid4()), str(uuid.uuid4()))
    v1 = _register(state_dir, c=1.0, gate=">= 0.95", run_id=run_ids[0])
    assert v1.accepted, v1.reasons
    registry_for(state_dir).set_alias(ADDRESS, "champion", v1.version, reason="first")
    v2 = _register(state_dir, c=0.001, gate=">= 0.9999", run_id=run_ids[1])
    assert not v2.accepted
    return Built(project, state_dir, run_ids)


def _app() -> typer.Typer:
    from mlform.cli.app import _main

    app = typer.Typer(pretty_exceptions_enable=False, rich_markup_mode=None)
    app.callback()(_main)
    register_commands(app)
    return app


def _invoke(built: Built, *args: str) -> Any:
    return CliRunner().invoke(
        _app(),
        ["-C", str(built.project), *args, "-s", "dev"],
        env={"NO_COLOR": "1", "COLUMNS": "160"},
    )


def test_models_list(built: Built) -> None:
    result = _invoke(built, "models", "list")
    assert result.exit_code == 0, result.output
    assert "model.diagnosis" in result.stdout and "2 (1 rejected)" in result.stdout
    assert "champion -> v1" in result.stdout
    data = json.loads(_invoke(built, "models", "list", "--json").stdout)
    assert data == [
        {
            "address": ADDRESS,
            "versions": 2,
            "rejected": 1,
            "latest": f"{ADDRESS}@v2",
            "latest_status": "rejected",
            "aliases": {"champion": "v1"},
        }
    ]


def test_models_show_champion_and_rejected(built: Built) -> None:
    result = _invoke(built, "models", "show", ADDRESS)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "model.diagnosis@v1" in out and "accepted" in out and "champion" in out
    assert "(verified)" in out and "roc_auc" in out and "pass" in out and "sex" in out
    assert "card.md" in out
    rejected = _invoke(built, "models", "show", f"{ADDRESS}@v2")
    assert rejected.exit_code == 0, rejected.output
    assert "rejected" in rejected.stdout and "Rejected because" in rejected.stdout
    assert "FAIL" in rejected.stdout
    data = json.loads(_invoke(built, "models", "show", f"{ADDRESS}@champion", "--json").stdout)
    assert data["ref"] == f"{ADDRESS}@v1" and data["aliases"] == ["champion"]
    assert data["artifact_verified"] is True
    assert Path(data["card_path"]).read_text().startswith(f"# Model card: `{ADDRESS}@v1`")
    assert {g["name"] for g in data["gate_results"]} == {"roc_auc", "must_beat_champion"}


def test_bad_refs_are_clear_errors(built: Built) -> None:
    result = _invoke(built, "models", "show", f"{ADDRESS}@v9")
    assert result.exit_code == 1
    assert "ADDRESS 'model.diagnosis@v9'" in result.stderr
    assert "v1, v2 (rejected)" in result.stderr and "Traceback" not in result.output
    other = _invoke(built, "models", "show", "model.nope")
    assert other.exit_code == 1 and "models in the registry: model.diagnosis" in other.stderr
    alias = _invoke(built, "lineage", f"{ADDRESS}@challenger")
    assert alias.exit_code == 1 and "aliases: champion -> v1" in alias.stderr
    run = _invoke(built, "runs", "show", "nope")
    assert run.exit_code == 1 and built.run_ids[0] in run.stderr


def test_lineage_prints_the_run_event(built: Built) -> None:
    result = _invoke(built, "lineage", f"{ADDRESS}@v2")
    assert result.exit_code == 0, result.output
    event = json.loads(result.stdout)
    assert event["run"]["runId"] == built.run_ids[1]
    assert event["job"] == {"namespace": "diagnosis/dev", "name": ADDRESS, "facets": {}}
    assert event["outputs"][0]["facets"]["mlform_modelVersion"]["status"] == "rejected"


def test_runs_list_show_compare(built: Built) -> None:
    a, b = built.run_ids
    listed = _invoke(built, "runs", "list", ADDRESS)
    assert listed.exit_code == 0, listed.output
    assert a in listed.stdout and b in listed.stdout
    assert [r["run_id"] for r in json.loads(_invoke(built, "runs", "list", "--json").stdout)] == [
        a,
        b,
    ]
    shown = _invoke(built, "runs", "show", a)
    assert shown.exit_code == 0 and "max_iter" in shown.stdout and "@v1" in shown.stdout
    compared = json.loads(_invoke(built, "runs", "compare", a, b, "--json").stdout)
    keys = {row["key"] for row in compared["rows"]}
    assert "params.C" in keys and "params.max_iter" not in keys
    human = _invoke(built, "runs", "compare", a, b)
    assert human.exit_code == 0 and "params.C" in human.stdout


def test_real_cli_subprocess(built: Built) -> None:
    result = run_cli(built.project, "models", "show", f"{ADDRESS}@v1", "--json", "-s", "dev")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["ref"] == f"{ADDRESS}@v1"
    bad = run_cli(built.project, "models", "show", f"{ADDRESS}@v7", "-s", "dev")
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
