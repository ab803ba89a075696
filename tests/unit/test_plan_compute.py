"""compute_plan: actions, reasons, cause chains, deletes, destroy and purity."""

from __future__ import annotations

from typing import Any

from mlform.addresses import Kind
from mlform.desired.model import DesiredSystem
from mlform.plan.compute import compute_plan
from mlform.plan.model import Action, Plan, ReasonKind
from mlform.plan.render.json import render_json
from mlform.plan.testing import declared, desired_system, recorded_from, state_as_applied
from mlform.state.model import ObjectStatus, RecordedObject, StateDocument

ALL = frozenset(Kind)
DATA1 = "sha256:" + "ab12cd34" * 8
DATA2 = "sha256:" + "ef56ab78" * 8


def system(**edits: dict[str, Any]) -> DesiredSystem:
    """data.d -> features.f -> model.m -> deployment.api -> monitor.mon, with edits."""
    configs: dict[str, dict[str, Any]] = {
        "data.d": {"kind": "file", "path": "d.csv", "owner": "a"},
        "features.f": {"sources": ["d"], "split": {"seed": 42}, "offline_store": {"path": "s"}},
        "model.m": {"framework": "sklearn", "trainer": {"epochs": 10}, "card": {"x": 1}},
        "deployment.api": {"model": "m", "replicas": 2, "target": "local"},
        "monitor.mon": {"deployment": "api", "alerts": [{"sink": "log"}]},
    }
    external = {"data.d": {"data": DATA1}, "model.m": {"code:ml.p": "sha256:c1", "toolchain": "t1"}}
    for key, edit in edits.items():
        address = key.replace("__", ".").replace("_", "-") if "__" in key else key
        if address in configs:
            configs[address] = {**configs[address], **edit}
        else:
            external[address.removeprefix("ext.")] = edit  # type: ignore[assignment]
    deps = {
        "data.d": [],
        "features.f": ["data.d"],
        "model.m": ["features.f"],
        "deployment.api": ["model.m"],
        "monitor.mon": ["deployment.api"],
    }
    return desired_system((declared(a, configs[a], deps[a]) for a in configs), external)


def plan(desired: DesiredSystem, state: StateDocument | None, **kw: Any) -> Plan:
    return compute_plan(desired, state, supported_kinds=ALL, mlform_version="0.1.0", **kw)


def actions(p: Plan) -> dict[str, str]:
    return {c.address: c.action.value for c in p.changes}


def test_empty_state_creates_everything_in_order() -> None:
    p = plan(system(), None)
    assert list(actions(p).values()) == ["create"] * 5
    assert p.changes[0].address == "data.d"
    assert p.summary.create == 5 and p.lineage is None and p.serial == 0
    assert p.changes[0].reasons[0].kind is ReasonKind.NEW
    assert p.changes[0].after == {"kind": "file", "path": "d.csv", "owner": "a"}


def test_applied_state_gives_only_no_ops() -> None:
    desired = system()
    p = plan(desired, state_as_applied(desired, serial=3))
    assert set(actions(p).values()) == {"no-op"}
    assert not p.has_changes and p.serial == 3
    assert p.input_digest == desired.input_digest


def test_local_field_update_does_not_propagate() -> None:
    before = system()
    p = plan(system(**{"deployment__api": {"replicas": 3}}), state_as_applied(before))
    assert actions(p)["deployment.api"] == "update"
    assert actions(p)["monitor.mon"] == "no-op"
    [reason] = p.change_for("deployment.api").reasons  # type: ignore[union-attr]
    assert reason.kind is ReasonKind.CONFIG_CHANGED
    [field] = reason.fields
    assert (field.path, field.old, field.new) == ("replicas", 2, 3)


def test_content_change_retrains_and_rolls_out_downstream() -> None:
    before = system()
    p = plan(system(**{"model.m": {"trainer": {"epochs": 20}}}), state_as_applied(before))
    assert actions(p) == {
        "data.d": "no-op",
        "features.f": "no-op",
        "model.m": "retrain",
        "deployment.api": "rollout",
        "monitor.mon": "update",
    }
    fields = p.change_for("model.m").reasons[0].fields  # type: ignore[union-attr]
    assert [(f.path, f.old, f.new) for f in fields] == [("trainer.epochs", 10, 20)]
    deploy = p.change_for("deployment.api").reasons[0]  # type: ignore[union-attr]
    assert deploy.kind is ReasonKind.UPSTREAM_CHANGED and deploy.upstream == "model.m"
    assert deploy.message == ("model.m config changed (trainer.epochs) ⇒ deployment.api rollout")


def test_data_change_carries_the_cause_chain() -> None:
    before = system()
    after = system(**{"ext.data.d": {"data": DATA2}})
    p = plan(after, state_as_applied(before))
    data_reason = p.change_for("data.d").reasons[0]  # type: ignore[union-attr]
    assert data_reason.kind is ReasonKind.DATA_CHANGED
    assert data_reason.message == "data.d content changed sha256:ab12cd34… -> ef56ab78…"
    model = p.change_for("model.m").reasons[0]  # type: ignore[union-attr]
    assert model.upstream == "features.f"
    assert model.chain == (
        "data.d content changed sha256:ab12cd34… -> ef56ab78…",
        "features.f update",
    )
    assert model.message == (
        "data.d content changed sha256:ab12cd34… -> ef56ab78… ⇒ features.f update ⇒ model.m retrain"
    )
    assert actions(p)["monitor.mon"] == "update"


def test_code_and_toolchain_changes() -> None:
    before = system()
    after = system(**{"ext.model.m": {"code:ml.p": "sha256:c2", "toolchain": "t2"}})
    p = plan(after, state_as_applied(before))
    kinds = [r.kind for r in p.change_for("model.m").reasons]  # type: ignore[union-attr]
    assert kinds == [ReasonKind.CODE_CHANGED, ReasonKind.TOOLCHAIN_CHANGED]
    assert p.change_for("model.m").reasons[0].message.startswith("code of ml.p changed")  # type: ignore[union-attr]
    assert actions(p)["model.m"] == "retrain"


def test_replace_wins_over_content_action() -> None:
    before = system()
    after = system(**{"features.f": {"offline_store": {"path": "t"}, "split": {"seed": 7}}})
    p = plan(after, state_as_applied(before))
    assert actions(p)["features.f"] == "replace"
    assert actions(p)["model.m"] == "retrain"
    assert p.summary.destroy == 1
    framework = plan(system(**{"model.m": {"framework": "torch"}}), state_as_applied(before))
    assert actions(framework)["model.m"] == "replace"


def test_secret_fields_are_sensitive_and_hidden() -> None:
    old = {"alerts": [{"sink": "webhook", "url": "<secret:hook:0123456789abcdef>"}]}
    new = {"alerts": [{"sink": "webhook", "url": "<secret:hook:fedcba9876543210>"}]}
    before = system(**{"monitor.mon": old})
    p = plan(system(**{"monitor.mon": new}), state_as_applied(before))
    [field] = p.change_for("monitor.mon").reasons[0].fields  # type: ignore[union-attr]
    assert field.sensitive and field.old is None and field.new is None
    assert field.path == "alerts[0].url"


def test_incomplete_objects_are_redone() -> None:
    desired = system()
    state = state_as_applied(desired)
    objects = dict(state.objects)
    objects["model.m"] = recorded_from(desired, "model.m", status=ObjectStatus.FAILED)
    objects["deployment.api"] = recorded_from(
        desired, "deployment.api", status=ObjectStatus.PENDING, outputs={}
    )
    p = plan(desired, state.model_copy(update={"objects": objects}))
    assert actions(p)["model.m"] == "update"
    assert actions(p)["deployment.api"] == "create"
    assert p.change_for("model.m").reasons[0].kind is ReasonKind.INCOMPLETE  # type: ignore[union-attr]


def test_rejected_model_with_unchanged_inputs_is_a_no_op() -> None:
    desired = system()
    state = state_as_applied(desired)
    objects = {
        **state.objects,
        "model.m": recorded_from(desired, "model.m", status=ObjectStatus.REJECTED),
    }
    p = plan(desired, state.model_copy(update={"objects": objects}))
    assert actions(p)["model.m"] == "no-op"


def test_interrupted_apply_still_updates_the_stale_dependent() -> None:
    before = system()
    after = system(**{"ext.data.d": {"data": DATA2}})
    state = state_as_applied(before)
    # data.d was applied with the new content, features.f not yet.
    objects = {**state.objects, "data.d": recorded_from(after, "data.d")}
    p = plan(after, state.model_copy(update={"objects": objects}))
    assert actions(p)["data.d"] == "no-op"
    assert actions(p)["features.f"] == "update"
    reason = p.change_for("features.f").reasons[0]  # type: ignore[union-attr]
    assert reason.message.startswith("data.d content changed sha256:")


def test_removed_objects_are_deleted_dependents_first_after_the_rest() -> None:
    desired = system()
    state = state_as_applied(desired)
    extra = {
        "features.old": RecordedObject(address="features.old", kind="features"),
        "model.old": RecordedObject(address="model.old", kind="model", depends_on=["features.old"]),
        "monitor.old": RecordedObject(address="monitor.old", kind="monitor"),
    }
    p = compute_plan(
        desired,
        state.model_copy(update={"objects": {**state.objects, **extra}}),
        supported_kinds=frozenset({Kind.DATA, Kind.FEATURES, Kind.MODEL}),
        mlform_version="0.1.0",
    )
    assert [c.address for c in p.changes[-3:]] == ["monitor.old", "model.old", "features.old"]
    assert all(c.reasons[0].kind is ReasonKind.REMOVED for c in p.changes[-3:])
    assert p.change_for("monitor.old").provider_available is False  # type: ignore[union-attr]
    assert p.change_for("model.old").provider_available is True  # type: ignore[union-attr]
    assert p.summary.delete == 3


def test_destroy_deletes_everything_recorded() -> None:
    desired = system()
    p = plan(desired, state_as_applied(desired), destroy=True)
    assert [c.address for c in p.changes] == [
        "monitor.mon",
        "deployment.api",
        "model.m",
        "features.f",
        "data.d",
    ]
    assert {c.action for c in p.changes} == {Action.DELETE}
    assert p.changes[0].reasons[0].kind is ReasonKind.REQUESTED
    assert p.destroy and p.summary.line().endswith("5 to destroy")


def test_planning_is_pure_and_deterministic() -> None:
    before = system()
    after = system(**{"model.m": {"trainer": {"epochs": 20}}, "ext.data.d": {"data": DATA2}})
    state = state_as_applied(before)
    first, second = plan(after, state), plan(after, state)
    assert first == second
    assert render_json(first) == render_json(second)


def test_field_diffs_cover_lists_types_and_removed_keys() -> None:
    from mlform.plan.fields import diff_fields

    old = {"steps": [{"weight": 10}, {"weight": 50}], "flag": 1, "gone": {"a": 1}, "n": {"x": 1}}
    new = {"steps": [{"weight": 20}, {"weight": 50}, {"weight": 100}], "flag": True, "n": {}}
    changes = {c.path: c for c in diff_fields(old, new)}
    assert list(changes) == ["flag", "gone", "n.x", "steps[0].weight", "steps[2]"]
    assert (changes["flag"].old, changes["flag"].new) == (1, True)
    assert changes["gone"].removed and changes["gone"].old == {"a": 1}
    assert changes["n.x"].removed
    assert (changes["steps[0].weight"].old, changes["steps[0].weight"].new) == (10, 20)
    assert changes["steps[2]"].added and changes["steps[2]"].new == {"weight": 100}
