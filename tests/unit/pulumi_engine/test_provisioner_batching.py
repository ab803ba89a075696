"""The stack provisioner batches owners that ask together into one engine update.

The engine here is a stand-in that records each ``up`` (the real engine is proven in
tests/integration/test_kubernetes_target.py and test_engine_local.py); what is tested is
the group commit: who runs with whom, what each caller gets back, and how a failure is
attributed to its owner.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from mlform.addresses import Address
from mlform.diagnostics import Diagnostic
from mlform.errors import InfraError
from mlform.infra.model import InfraResource, Process
from mlform.pulumi_engine.engine import EngineRun
from mlform.pulumi_engine.provisioner import StackProvisioner


@dataclass
class RecordingEngine:
    fail_owner: str | None = None
    ups: list[list[str]] = field(default_factory=list)
    refreshes: int = 0
    created: bool = False
    upped: threading.Event = field(default_factory=threading.Event)

    def has_stack(self) -> bool:
        return self.created

    def refresh(self) -> EngineRun:
        self.refreshes += 1
        return EngineRun("refresh", (), {}, 0.0)

    def up(self, resources: Sequence[InfraResource]) -> EngineRun:
        names = sorted(f"{r.owner}/{r.name}" for r in resources)
        self.ups.append(names)
        self.upped.set()
        if self.fail_owner and any(n.startswith(self.fail_owner + "/") for n in names):
            raise InfraError([Diagnostic.error(f"{self.fail_owner} is invalid")])
        self.created = True
        outputs: dict[str, dict[str, Any]] = {
            n: {"pid": i, "other": "x"} for i, n in enumerate(names)
        }
        return EngineRun("up", (), outputs, 0.0)


def _process(owner: str, name: str = "server") -> Process:
    return Process(owner=Address.parse(owner), name=name, command=("true",))


def _provisioner(engine: RecordingEngine, gather_s: float = 0.2) -> StackProvisioner:
    return StackProvisioner(lambda _on_change: engine, {}, gather_s=gather_s, gather_max_s=5.0)  # type: ignore[arg-type,return-value]


def _together(provisioner: StackProvisioner, owners: Sequence[str]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    start = threading.Barrier(len(owners))

    def one(owner: str) -> None:
        start.wait()
        try:
            results[owner] = provisioner.provision(Address.parse(owner), [_process(owner)])
        except InfraError as failed:
            results[owner] = failed

    threads = [threading.Thread(target=one, args=(o,)) for o in owners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_owners_asking_together_share_one_update() -> None:
    engine = RecordingEngine()
    provisioner = _provisioner(engine)
    owners = [f"deployment.api-{n}" for n in range(20)]
    results = _together(provisioner, owners)
    assert len(engine.ups) == 1 and provisioner.runs == 1
    assert engine.ups[0] == sorted(f"{o}/server" for o in owners)
    for owner in owners:  # each caller gets its own live outputs, recorded keys only
        assert set(results[owner]) == {"server"}
        assert set(results[owner]["server"]) == {"pid"}


def test_a_lone_step_does_not_wait_for_company_that_cannot_come() -> None:
    # A quiet window of a minute: only "no other step can join" lets the update start now.
    engine = RecordingEngine()
    provisioner = StackProvisioner(lambda _c: engine, {}, gather_s=60.0, gather_max_s=120.0)  # type: ignore[arg-type,return-value]
    alone = threading.Thread(
        target=provisioner.provision,
        args=(Address.parse("deployment.a"), [_process("deployment.a")]),
        kwargs={"company": lambda: False},
        daemon=True,
    )
    alone.start()
    assert engine.upped.wait(timeout=20), "the lone request waited for the quiet window"
    alone.join(timeout=20)
    assert engine.ups == [["deployment.a/server"]]


def test_a_step_that_expects_company_waits_for_it() -> None:
    engine = RecordingEngine()
    provisioner = _provisioner(engine, gather_s=2.0)  # room for the second to arrive
    asked = threading.Event()  # the first request is queued and gathering

    def another_step_is_at_work() -> bool:
        asked.set()
        return True

    thread = threading.Thread(
        target=provisioner.provision,
        args=(Address.parse("deployment.a"), [_process("deployment.a")]),
        kwargs={"company": another_step_is_at_work},
    )
    thread.start()
    assert asked.wait(timeout=20)
    provisioner.provision(
        Address.parse("deployment.b"), [_process("deployment.b")], company=lambda: False
    )
    thread.join()
    assert engine.ups == [["deployment.a/server", "deployment.b/server"]]


def test_a_later_owner_keeps_the_earlier_ones_resources() -> None:
    engine = RecordingEngine()
    provisioner = _provisioner(engine, gather_s=0.0)
    provisioner.provision(Address.parse("deployment.a"), [_process("deployment.a")])
    provisioner.provision(Address.parse("deployment.b"), [_process("deployment.b")])
    provisioner.provision(Address.parse("deployment.a"), [])
    assert engine.ups == [
        ["deployment.a/server"],
        ["deployment.a/server", "deployment.b/server"],
        ["deployment.b/server"],
    ]


def test_a_failing_owner_is_found_and_the_others_succeed() -> None:
    engine = RecordingEngine(fail_owner="deployment.bad")
    provisioner = _provisioner(engine)
    owners = ["deployment.a", "deployment.bad", "deployment.c"]
    results = _together(provisioner, owners)
    assert isinstance(results["deployment.bad"], InfraError)
    assert results["deployment.a"] == {"server": {"pid": 0}}
    assert results["deployment.c"]["server"]["pid"] in (0, 1)
    # the batch, then each owner alone (with what succeeded before it): 1 + 3 updates
    assert engine.ups[0] == sorted(f"{o}/server" for o in owners)
    assert len(engine.ups) == 4
    # what is recorded afterwards: a and c, not the failed owner's resources
    provisioner.provision(Address.parse("deployment.d"), [_process("deployment.d")])
    assert engine.ups[-1] == ["deployment.a/server", "deployment.c/server", "deployment.d/server"]


def test_a_refresh_request_refreshes_once_for_the_batch() -> None:
    engine = RecordingEngine()
    provisioner = _provisioner(engine)
    barrier = threading.Barrier(2)

    def ask(owner: str, refresh: bool) -> None:
        barrier.wait()
        provisioner.provision(Address.parse(owner), [_process(owner)], refresh=refresh)

    threads = [
        threading.Thread(target=ask, args=("deployment.a", True)),
        threading.Thread(target=ask, args=("deployment.b", False)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert engine.refreshes == 1 and len(engine.ups) == 1


@pytest.mark.parametrize("limit", [1, 3])
def test_slots_lent_while_waiting_let_other_steps_start(limit: int) -> None:
    from mlform.apply.slots import Slots

    slots = Slots(limit)
    assert all(slots.try_acquire() for _ in range(limit)) and not slots.try_acquire()
    back = threading.Event()
    lent = threading.Event()

    def waiting_step() -> None:
        with slots.lend():
            lent.set()
            back.wait()

    thread = threading.Thread(target=waiting_step)
    thread.start()
    lent.wait()
    assert slots.try_acquire()  # the lent slot went to a new step
    back.set()  # the lender wants its slot back: it waits for one to be released
    thread.join(0.2)
    assert thread.is_alive()
    assert not slots.try_acquire()  # a waiting lender goes before new steps
    slots.release()
    thread.join()
    assert not thread.is_alive() and not slots.try_acquire()
