"""Golden files for the three plan views of one representative plan.

The plan holds every kind of change: creates, an update with a field diff, a retrain
with a cause chain, a rollout, a delete, a replace and a secret field. Regenerate the
files with ``pytest tests/unit/test_golden_plans.py --update-goldens`` and review the diff.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mlform.addresses import Kind
from mlform.plan.compute import compute_plan
from mlform.plan.model import Plan
from mlform.plan.render.human import render_human
from mlform.plan.render.json import render_json
from mlform.plan.render.markdown import render_markdown
from mlform.plan.testing import declared, desired_system, recorded_from, state_as_applied
from mlform.state.model import ObjectStatus, RecordedObject

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "golden"
OLD_DATA = "sha256:" + "ab12cd34" * 8
NEW_DATA = "sha256:" + "ef56ab78" * 8
TOOLCHAIN = "sha256:" + "1234abcd" * 8
CODE = "sha256:" + "99887766" * 8
OLD_TOKEN = "<secret:alert_url:0123456789abcdef>"
NEW_TOKEN = "<secret:alert_url:fedcba9876543210>"


def _objects(*, new: bool) -> list:  # type: ignore[type-arg]
    tumors = {"kind": "sklearn", "dataset": "breast_cancer"}
    patients = {"kind": "file", "path": "data/patients.csv", "retention_days": 180 if new else 365}
    features = {
        "entity": ["sample_id"],
        "sources": ["tumors", "patients"],
        "label": "target",
        "split": {"test_size": 0.2, "seed": 42},
        "offline_store": {"format": "parquet"},
    }
    cohort = {
        "entity": ["sample_id"],
        "sources": ["patients"],
        "offline_store": {"format": "parquet", "path": "store/v2" if new else "store/v1"},
    }
    model = {
        "framework": "sklearn",
        "features": "diagnosis",
        "estimator": {"_target_": "ml.pipelines.make_forest", "n_estimators": 200},
    }
    deployment = {"model": "diagnosis", "alias": "champion", "replicas": 2}
    drift = {
        "deployment": "diagnosis-api",
        "type": "data_drift",
        "alerts": [{"sink": "webhook", "url": NEW_TOKEN if new else OLD_TOKEN}],
    }
    objects = [
        declared("data.tumors", tumors, source_file="configs/data/tumors.yaml"),
        declared("data.patients", patients, source_file="configs/data/patients.yaml"),
        declared("data.regions", {"kind": "file", "path": "data/regions.csv"}),
        declared("features.diagnosis", features, ["data.tumors", "data.patients"]),
        declared("features.cohort", cohort, ["data.patients"]),
        declared("model.diagnosis", model, ["features.diagnosis"]),
        declared("deployment.diagnosis-api", deployment, ["model.diagnosis"]),
        declared("monitor.diagnosis-drift", drift, ["deployment.diagnosis-api"]),
    ]
    if new:
        latency = {"deployment": "diagnosis-api", "type": "latency", "threshold": "250ms"}
        objects.append(declared("monitor.diagnosis-latency", latency, ["deployment.diagnosis-api"]))
        objects.append(
            declared(
                "features.extra", {"entity": ["sample_id"], "sources": ["tumors"]}, ["data.tumors"]
            )
        )
    return objects


def _external(data: str) -> dict[str, dict[str, str]]:
    return {
        "data.tumors": {"data": data},
        "data.patients": {"data": "sha256:" + "5" * 64},
        "data.regions": {"data": "sha256:" + "6" * 64},
        "model.diagnosis": {"code:ml.pipelines": CODE, "toolchain": TOOLCHAIN},
    }


def representative_plan() -> Plan:
    before = desired_system(_objects(new=False), _external(OLD_DATA), project="diagnosis")
    state = state_as_applied(before, serial=7)
    gone = RecordedObject(
        address="monitor.old-drift",
        kind="monitor",
        config={"deployment": "diagnosis-api", "type": "data_drift"},
        depends_on=["deployment.diagnosis-api"],
    )
    objects = {**state.objects, "monitor.old-drift": gone}
    # An interrupted apply left the model pending: it is redone as well.
    objects["model.diagnosis"] = recorded_from(
        before, "model.diagnosis", status=ObjectStatus.PENDING
    )
    state = state.model_copy(update={"objects": objects})
    after = desired_system(_objects(new=True), _external(NEW_DATA), project="diagnosis")
    return compute_plan(
        after,
        state,
        supported_kinds=frozenset({Kind.DATA, Kind.FEATURES, Kind.MODEL, Kind.DEPLOYMENT}),
        mlform_version="0.1.0",
    )


RENDERINGS = {
    "plan_human.txt": lambda plan: render_human(plan, detailed=False, color=False, width=100),
    "plan_human_detailed.txt": lambda plan: render_human(
        plan, detailed=True, color=False, width=100
    ),
    "plan.json": render_json,
    "plan.md": lambda plan: render_markdown(plan),
}


@pytest.mark.parametrize("name", sorted(RENDERINGS))
def test_rendering_matches_golden(name: str, request: pytest.FixtureRequest) -> None:
    text = RENDERINGS[name](representative_plan())
    path = GOLDEN_DIR / name
    if request.config.getoption("--update-goldens"):
        path.write_text(text, encoding="utf-8")
    assert path.is_file(), f"{path} is missing: run pytest --update-goldens"
    assert text == path.read_text(encoding="utf-8")
