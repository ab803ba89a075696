"""The pure infrastructure core: resource records, offline diffs, drift and its plan."""

from __future__ import annotations

from typing import Any

import pytest

from mlform.addresses import Address, Kind
from mlform.drift import infrastructure_drift, record_drift
from mlform.infra.diff import changed_paths, diff_resources
from mlform.infra.model import (
    InfraChange,
    InfraOp,
    Manifest,
    Process,
    fingerprint,
    from_record,
    split_logical_name,
    to_record,
)
from mlform.infra.provisioning import LazyProvisioner, recorded_infrastructure
from mlform.plan.compute import compute_plan
from mlform.plan.model import Action, ReasonKind
from mlform.plan.testing import declared, desired_system, state_as_applied

OWNER = Address.parse("deployment.api")


def server(name: str = "server-0", **changes: Any) -> Process:
    fields: dict[str, Any] = {
        "owner": OWNER,
        "name": name,
        "command": ("python", "-m", "http.server", "{port}"),
        "env": {"MODEL": "m@v1"},
        "health_path": "/",
    }
    fields.update(changes)
    return Process(**fields)


def deployment(replicas: int) -> Manifest:
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "api"},
        "spec": {"replicas": replicas},
    }
    return Manifest(owner=OWNER, name="deployment", body=body)


def test_records_round_trip_and_fingerprint_ignores_order() -> None:
    resources = [server(), server("server-1", port=8080), deployment(2)]
    assert [from_record(to_record(r)) for r in resources] == resources
    assert fingerprint(resources) == fingerprint(reversed(resources))
    assert fingerprint(resources) != fingerprint([server(), server("server-1"), deployment(2)])
    assert resources[2].kind == "kubernetes:apps/v1:Deployment"


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: server("Server_0"), "lower-case"),
        (lambda: server(command=()), "needs a command"),
        (lambda: server(health_path="health"), "must start with '/'"),
        (lambda: Manifest(owner=OWNER, name="x", body={"kind": "Service"}), "apiVersion"),
    ],
)
def test_bad_resources_are_refused_with_a_clear_message(factory: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        factory()


def test_logical_names_map_back_to_their_owner() -> None:
    assert split_logical_name(server().logical_name) == (OWNER, "server-0")
    assert split_logical_name("mlform-kubernetes") is None
    assert split_logical_name("nokind.x/y") is None


def test_offline_diff_names_what_changes() -> None:
    changes = diff_resources(
        [server(), server("server-1"), deployment(2)],
        [server(env={"MODEL": "m@v2"}), deployment(3), server("server-2")],
    )
    by_name = {c.name: (c.op, c.fields) for c in changes}
    assert by_name == {
        "deployment": (InfraOp.UPDATE, ("spec.replicas",)),
        "server-0": (InfraOp.UPDATE, ("env.MODEL",)),
        "server-1": (InfraOp.DELETE, ()),
        "server-2": (InfraOp.CREATE, ()),
    }
    assert diff_resources([server()], [server()])[0].op is InfraOp.SAME


def test_changed_paths_is_bounded() -> None:
    old = {f"k{i}": i for i in range(12)}
    new = {f"k{i}": i + 1 for i in range(12)}
    paths = changed_paths(old, new, limit=3)
    assert paths == ("k0", "k1", "k10", "and 9 more")


def test_drift_is_recorded_on_the_owner_and_planned_as_an_update() -> None:
    desired = desired_system([declared("deployment.api", {"replicas": 1}, [])], {})
    state = state_as_applied(desired)
    gone = InfraChange(OWNER, "server-0", "process", InfraOp.GONE)
    changed = InfraChange(OWNER, "server-1", "process", InfraOp.DRIFTED, ("health",))
    drift = infrastructure_drift([gone, changed])
    assert drift == {"deployment.api": ["server-0 is gone", "server-1 changed (health)"]}
    plan = compute_plan(
        desired,
        record_drift(state, drift),
        supported_kinds=frozenset(Kind),
        mlform_version="0",
    )
    (change,) = plan.changes
    assert change.action is Action.UPDATE
    assert change.reasons[0].kind is ReasonKind.DRIFTED
    assert "server-0 is gone; server-1 changed (health)" in change.reasons[0].message
    # Without drift the same state plans nothing.
    clean = compute_plan(desired, state, supported_kinds=frozenset(Kind), mlform_version="0")
    assert clean.changes[0].action is Action.NOOP


def test_recorded_infrastructure_reads_owner_outputs() -> None:
    outputs = {
        "deployment.api": {"infrastructure": [to_record(server())]},
        "data.d": {"rows": 3},
    }
    assert recorded_infrastructure(outputs) == {OWNER: (server(),)}


def test_lazy_provisioner_builds_the_engine_once_and_only_when_used() -> None:
    built: list[int] = []

    class Fake:
        def provision(
            self,
            owner: Address,
            resources: Any,
            *,
            refresh: bool = False,
            on_change: Any = None,
            company: Any = None,
        ) -> Any:
            return {"server-0": {"owner": str(owner), "refresh": refresh}}

        def drift(self) -> tuple[InfraChange, ...]:
            return ()

        def refresh(self) -> tuple[InfraChange, ...]:
            return ()

    def factory() -> Fake:
        built.append(1)
        return Fake()

    lazy = LazyProvisioner(factory)
    assert built == []
    assert lazy.provision(OWNER, [server()], refresh=True) == {
        "server-0": {"owner": "deployment.api", "refresh": True}
    }
    assert lazy.drift() == ()
    assert built == [1]
