"""Saved plans: round trip, clear errors for bad files, and staleness checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlform.addresses import Kind
from mlform.desired.model import DesiredSystem
from mlform.errors import ConfigError, StalePlanError
from mlform.plan.compute import compute_plan
from mlform.plan.model import Plan
from mlform.plan.saved import check_fresh, load_plan, save_plan
from mlform.plan.testing import declared, desired_system, state_as_applied


def _desired(data: str = "sha256:1", epochs: int = 10) -> DesiredSystem:
    return desired_system(
        [
            declared("data.d", {"path": "d.csv"}),
            declared("model.m", {"trainer": {"epochs": epochs}}, ["data.d"]),
        ],
        {"data.d": {"data": data}},
    )


def _plan(desired: DesiredSystem, state: object = None) -> Plan:
    return compute_plan(
        desired,
        state,
        supported_kinds=frozenset(Kind),
        mlform_version="0.1.0",  # type: ignore[arg-type]
    )


def test_round_trip(tmp_path: Path) -> None:
    desired = _desired()
    plan = _plan(_desired(epochs=20), state_as_applied(desired, serial=4))
    path = tmp_path / "plan.mlplan"
    save_plan(plan, path)
    document = json.loads(path.read_text())
    assert document["kind"] == "mlform-plan" and document["format_version"] == "1.0"
    assert load_plan(path) == plan
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind


def test_missing_corrupt_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_plan(tmp_path / "nope.mlplan")
    bad = tmp_path / "bad.mlplan"
    bad.write_text("{oops")
    with pytest.raises(ConfigError) as caught:
        load_plan(bad)
    assert "not valid JSON" in caught.value.diagnostics[0].detail
    bad.write_text(json.dumps({"kind": "something-else"}))
    with pytest.raises(ConfigError, match="not a valid mlform plan"):
        load_plan(bad)
    bad.write_text(json.dumps({"kind": "mlform-plan", "format_version": "1.0", "plan": {}}))
    with pytest.raises(ConfigError) as caught:
        load_plan(bad)
    assert "plan." in caught.value.diagnostics[0].detail


def test_other_major_version_is_stale(tmp_path: Path) -> None:
    path = tmp_path / "old.mlplan"
    path.write_text(json.dumps({"kind": "mlform-plan", "format_version": "2.0", "plan": {}}))
    with pytest.raises(StalePlanError) as caught:
        load_plan(path)
    assert "run `mlform plan" in caught.value.diagnostics[0].detail.lower()


def test_fresh_plan_has_no_problems() -> None:
    desired = _desired()
    state = state_as_applied(desired, serial=4)
    assert check_fresh(_plan(desired, state), desired, state) == []


def test_serial_lineage_and_inputs_moved() -> None:
    desired = _desired()
    state = state_as_applied(desired, serial=4)
    plan = _plan(desired, state)
    later = state.model_copy(update={"serial": 5})
    [problem] = check_fresh(plan, desired, later)
    assert "serial 4" in problem.detail and "serial 5" in problem.detail
    other = state.model_copy(update={"lineage": "another"})
    assert "lineage" in check_fresh(plan, desired, other)[0].detail
    [moved] = check_fresh(plan, _desired(data="sha256:2"), state)
    assert "The inputs of data.d, model.m changed" in moved.detail
    assert "mlform plan" in moved.detail
    assert check_fresh(plan, desired, None)[0].summary.startswith("stale plan")
