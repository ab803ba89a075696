"""Property tests of plan invariants over random dependency graphs and configs."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from mlform.addresses import Address, Kind
from mlform.desired.graph import DependencyGraph
from mlform.desired.model import DesiredSystem
from mlform.kind_rules import rules_for
from mlform.plan.compute import compute_plan
from mlform.plan.model import Action, ReasonKind
from mlform.plan.render.json import render_json
from mlform.plan.testing import declared, desired_system, state_as_applied
from mlform.spec.declared import DeclaredObject

KINDS = list(Kind)
System = list[tuple[str, dict[str, Any], list[str]]]


def _config(kind: Kind, value: int) -> dict[str, Any]:
    rules = rules_for(kind)
    config: dict[str, Any] = {"description": f"d{value}", "params": {"v": value}}
    for name in sorted(rules.replace_fields):
        config[name] = "r"
    config[sorted(rules.local_fields - {"description"})[0]] = value
    return config


@st.composite
def systems(draw: st.DrawFn) -> System:
    size = draw(st.integers(1, 10))
    out: System = []
    for i in range(size):
        kind = draw(st.sampled_from(KINDS))
        deps = draw(st.sets(st.integers(0, i - 1), max_size=3)) if i else set()
        value = draw(st.integers(0, 3))
        out.append((f"{kind.value}.o{i}", _config(kind, value), [out[d][0] for d in sorted(deps)]))
    return out


def build(system: System) -> DesiredSystem:
    objects: list[DeclaredObject] = [declared(a, c, d) for a, c, d in system]
    return desired_system(objects, {a: {"data": "sha256:0"} for a, _, _ in system if "data." in a})


def plan_json(desired: DesiredSystem, state: Any = None) -> str:
    return render_json(
        compute_plan(desired, state, supported_kinds=frozenset(Kind), mlform_version="0")
    )


@settings(max_examples=40, deadline=None)
@given(systems())
def test_planning_is_deterministic(system: System) -> None:
    desired = build(system)
    assert plan_json(desired) == plan_json(build(system))
    state = state_as_applied(desired)
    assert plan_json(desired, state) == plan_json(desired, state)


@settings(max_examples=40, deadline=None)
@given(systems())
def test_plan_after_apply_has_no_changes(system: System) -> None:
    desired = build(system)
    p = compute_plan(
        desired, state_as_applied(desired), supported_kinds=frozenset(Kind), mlform_version="0"
    )
    assert {c.action for c in p.changes} == {Action.NOOP}
    assert len(p.changes) == len(system)


@settings(max_examples=60, deadline=None)
@given(systems(), st.data())
def test_single_edit_changes_one_root_and_propagates_by_the_rules(
    system: System, data: st.DataObject
) -> None:
    before = build(system)
    index = data.draw(st.integers(0, len(system) - 1))
    address, config, deps = system[index]
    key = data.draw(st.sampled_from(sorted(config)))
    edited = list(system)
    edited[index] = (address, {**config, key: {"edited": True}}, deps)
    p = compute_plan(
        build(edited), state_as_applied(before), supported_kinds=frozenset(Kind), mlform_version="0"
    )
    changed = {c.address: c for c in p.changes if c.action is not Action.NOOP}
    root = changed.pop(address)
    assert [r.kind for r in root.reasons] == [ReasonKind.CONFIG_CHANGED]
    rules = rules_for(Address.parse(address).kind)
    if key in rules.replace_fields:
        assert root.action is Action.REPLACE
    elif key in rules.local_fields:
        assert root.action is rules.on_local_change
    else:
        assert root.action is rules.on_content_change
    graph = DependencyGraph.from_desired(before)
    expected = (
        set()
        if key in rules.local_fields
        else {str(a) for a in graph.all_dependents(Address.parse(address))}
    )
    assert set(changed) == expected
    for change in changed.values():
        assert {r.kind for r in change.reasons} == {ReasonKind.UPSTREAM_CHANGED}
        assert change.action is rules_for(Kind(change.kind)).on_upstream_change
        assert all(r.chain[0].startswith(f"{address} config changed") for r in change.reasons)
