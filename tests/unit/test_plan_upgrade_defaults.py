"""Keys a newer mlform adds with a default do not make recorded objects look changed."""

from __future__ import annotations

from typing import Any

from mlform.addresses import Kind
from mlform.desired.model import DesiredSystem
from mlform.plan.compute import compute_plan
from mlform.plan.testing import declared, desired_system, state_as_applied
from mlform.spec.defaults import NO_DEFAULT, added_at_default, schema_default

TRAINING = {"where": "auto", "nodes": 1, "procs_per_node": None, "timeout": "1h", "image": None}
MODEL = {"framework": "sklearn", "task": "classification", "features": "f"}
DEPLOYMENT = {"model": "m", "replicas": 2}


def _plan(
    model: dict[str, Any], deployment: dict[str, Any], applied_from: DesiredSystem
) -> dict[str, str]:
    state = state_as_applied(applied_from)
    desired = _system(model, deployment)
    p = compute_plan(desired, state, supported_kinds=frozenset(Kind), mlform_version="0.1.0")
    return {c.address: c.action.value for c in p.changes}


def _system(model: dict[str, Any], deployment: dict[str, Any]) -> DesiredSystem:
    return desired_system(
        [declared("model.m", model, []), declared("deployment.api", deployment, ["model.m"])], {}
    )


def test_the_schema_knows_the_defaults_of_added_keys() -> None:
    assert schema_default(Kind.MODEL, "training") == TRAINING
    assert schema_default(Kind.DEPLOYMENT, "env") == {}
    assert schema_default(Kind.MODEL, "task") is NO_DEFAULT  # required
    assert schema_default(Kind.MODEL, "no_such_key") is NO_DEFAULT


def test_a_state_written_before_the_keys_existed_plans_no_changes() -> None:
    old = _system(MODEL, DEPLOYMENT)
    new_model, new_deployment = {**MODEL, "training": TRAINING}, {**DEPLOYMENT, "env": {}}
    assert set(_plan(new_model, new_deployment, old).values()) == {"no-op"}


def test_an_added_key_away_from_its_default_is_a_change() -> None:
    old = _system(MODEL, DEPLOYMENT)
    cluster = {**MODEL, "training": {**TRAINING, "where": "cluster"}}
    env = {**DEPLOYMENT, "env": {"LOG_LEVEL": "debug"}}
    # where a model trains, and a deployment's environment, touch only that object
    assert _plan(cluster, env, old) == {"model.m": "update", "deployment.api": "update"}
    assert not added_at_default(Kind.MODEL, "training", MODEL, cluster)
    assert added_at_default(Kind.MODEL, "training", MODEL, {**MODEL, "training": TRAINING})
