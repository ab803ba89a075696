"""The apply executor over hand-built plans and in-memory fake providers."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from mlform.addresses import Kind
from mlform.apply.executor import execute
from mlform.diagnostics import Diagnostic, Severity
from mlform.events import Event, StepFinished, StepProgress, StepStarted
from mlform.plan.model import Action, Plan, ResourceChange
from mlform.providers.base import (
    ApplyRequest,
    ApplyResult,
    DeleteRequest,
    DeleteResult,
    DiffRequest,
    DiffResult,
    ProviderContext,
    ReadRequest,
    ReadResult,
    StepFailed,
    ValidateRequest,
)
from mlform.providers.registry import ProviderRegistry
from mlform.state.model import ObjectStatus, RecordedObject, StateDocument
from mlform.state.store import LocalStateStore, StateWriter


class Journal:
    """What the fake providers did, in order, plus the peak number of concurrent steps."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.requests: dict[str, ApplyRequest] = {}
        self.active = 0
        self.peak = 0
        self._lock = threading.Lock()

    def enter(self, verb: str, address: str) -> None:
        with self._lock:
            self.calls.append((verb, address))
            self.active += 1
            self.peak = max(self.peak, self.active)

    def leave(self) -> None:
        with self._lock:
            self.active -= 1

    def index(self, verb: str, address: str) -> int:
        return self.calls.index((verb, address))


class FakeProvider:
    def __init__(
        self,
        kind: Kind,
        journal: Journal,
        *,
        delay: float = 0.0,
        fail: Mapping[str, BaseException] | None = None,
        reject: frozenset[str] = frozenset(),
    ) -> None:
        self.kind = kind
        self.journal = journal
        self.delay = delay
        self.fail = dict(fail or {})
        self.reject = reject

    def validate(self, request: ValidateRequest) -> tuple[Diagnostic, ...]:
        return ()

    def read(self, request: ReadRequest) -> ReadResult:
        return ReadResult(outputs=request.outputs)

    def diff(self, request: DiffRequest) -> DiffResult:
        return DiffResult(changed=request.prior_config != request.config)

    def _run(self, verb: str, request: ApplyRequest) -> ApplyResult:
        address = str(request.address)
        self.journal.enter(verb, address)
        try:
            self.journal.requests[address] = request
            request.context.progress(f"{verb} {address}", 0.5)
            time.sleep(self.delay)
            if address in self.fail:
                raise self.fail[address]
            if address in self.reject:
                return ApplyResult(outputs={"score": 0.1}, status="rejected")
            return ApplyResult(outputs={"made_by": verb, "value": request.config.get("v")})
        finally:
            self.journal.leave()

    def create(self, request: ApplyRequest) -> ApplyResult:
        return self._run("create", request)

    def update(self, request: ApplyRequest) -> ApplyResult:
        return self._run(request.action, request)

    def delete(self, request: DeleteRequest) -> DeleteResult:
        self.journal.enter("delete", str(request.address))
        self.journal.leave()
        if str(request.address) in self.fail:
            raise self.fail[str(request.address)]
        return DeleteResult()


def _change(
    address: str, action: Action = Action.CREATE, deps: tuple[str, ...] = (), **config: Any
) -> ResourceChange:
    return ResourceChange(
        address=address,
        kind=address.split(".")[0],
        action=action,
        after=None if action is Action.DELETE else {"v": 1, **config},
        depends_on=deps,
        fingerprints={"config": f"sha256:{address}"},
        content_digest=None if action is Action.DELETE else f"sha256:content-{address}",
    )


def _plan(*changes: ResourceChange, destroy: bool = False) -> Plan:
    return Plan(mlform_version="0.1.0", project="p", stack="dev", changes=changes, destroy=destroy)


def _registry(
    journal: Journal, kinds: tuple[Kind, ...] = tuple(Kind), **opts: Any
) -> ProviderRegistry:
    registry = ProviderRegistry()
    for kind in kinds:
        registry.register(FakeProvider(kind, journal, **opts))
    return registry


def _context(tmp_path: Path) -> ProviderContext:
    return ProviderContext(project_dir=tmp_path, state_dir=tmp_path / ".mlform", stack="dev")


def _seed(store: LocalStateStore, *objects: RecordedObject) -> StateDocument:
    return store.write(
        StateDocument(lineage="", objects={o.address: o for o in objects}), expected_serial=None
    )


def _rec(address: str, deps: tuple[str, ...] = ()) -> RecordedObject:
    return RecordedObject(
        address=address,
        kind=address.split(".")[0],
        config={"v": 0},
        depends_on=list(deps),
        outputs={"old": True},
        content_digest=f"sha256:old-{address}",
    )


@pytest.fixture
def store(tmp_path: Path) -> LocalStateStore:
    return LocalStateStore(tmp_path / ".mlform")


def test_creates_run_in_dependency_order_and_record_everything(
    store: LocalStateStore, tmp_path: Path
) -> None:
    journal = Journal()
    plan = _plan(
        _change("data.a"),
        _change("features.f", deps=("data.a",)),
        _change("model.m", Action.CREATE, deps=("features.f",), epochs=3),
    )
    outcome = execute(plan, StateWriter(store, None), _registry(journal), _context(tmp_path))
    assert outcome.succeeded == ["data.a", "features.f", "model.m"]
    assert outcome.ok and outcome.failed == [] and outcome.diagnostics == []
    assert [c for _, c in journal.calls] == ["data.a", "features.f", "model.m"]
    doc = store.read()
    assert doc is not None and doc.serial == outcome.serial == 6  # pending + done per step
    model = doc.objects["model.m"]
    assert model.status is ObjectStatus.APPLIED
    assert model.config == {"v": 1, "epochs": 3}
    assert model.upstream == {"features.f": "sha256:content-features.f"}
    assert model.content_digest == "sha256:content-model.m"
    assert model.fingerprints == {"config": "sha256:model.m"}
    assert model.depends_on == ["features.f"]
    assert model.outputs == {"made_by": "create", "value": 1}
    assert model.updated_serial == 6 and model.updated_at and model.updated_at.endswith("Z")
    assert journal.requests["model.m"].upstream_outputs == {
        "features.f": {"made_by": "create", "value": 1}
    }
    assert doc.project == "p" and doc.stack == "dev"
    (entry,) = store.history()
    assert (entry.operation, entry.outcome, entry.started_serial, entry.finished_serial) == (
        "apply",
        "succeeded",
        0,
        6,
    )
    assert entry.plan_digest and entry.plan_digest.startswith("sha256:")


@pytest.mark.parametrize("parallelism", [1, 2, 3])
def test_independent_steps_run_in_parallel_within_the_bound(
    store: LocalStateStore, tmp_path: Path, parallelism: int
) -> None:
    journal = Journal()
    plan = _plan(*(_change(f"data.d{i}") for i in range(6)))
    outcome = execute(
        plan,
        StateWriter(store, None),
        _registry(journal, delay=0.05),
        _context(tmp_path),
        parallelism=parallelism,
    )
    assert len(outcome.succeeded) == 6
    assert journal.peak == parallelism


def test_a_failure_skips_only_its_dependents(store: LocalStateStore, tmp_path: Path) -> None:
    journal = Journal()
    plan = _plan(
        _change("data.a"),
        _change("data.b"),
        _change("features.fa", deps=("data.a",)),
        _change("features.fb", deps=("data.b",)),
        _change("model.m", deps=("features.fa",)),
        _change("model.both", deps=("features.fa", "features.fb")),
    )
    seed = _seed(store, _rec("data.a"))
    registry = _registry(
        journal, fail={"data.a": StepFailed(Diagnostic.error("source missing", "Create a.csv."))}
    )
    outcome = execute(plan, StateWriter(store, seed), registry, _context(tmp_path), parallelism=2)
    assert outcome.failed == ["data.a"]
    assert outcome.succeeded == ["data.b", "features.fb"]
    assert sorted(outcome.skipped) == ["features.fa", "model.both", "model.m"]
    report = outcome.report_for("model.m")
    assert report is not None and report.message == "data.a failed"
    (diagnostic,) = outcome.diagnostics
    assert (diagnostic.summary, diagnostic.address) == ("source missing", "data.a")
    doc = store.read()
    assert doc is not None
    failed = doc.objects["data.a"]
    assert failed.status is ObjectStatus.FAILED and failed.error == "source missing"
    assert failed.outputs == {"old": True} and failed.config == {"v": 0}
    assert "features.fa" not in doc.objects and "model.both" not in doc.objects
    assert store.history()[-1].outcome == "failed"


def test_an_unexpected_exception_becomes_a_diagnostic_naming_the_step(
    store: LocalStateStore, tmp_path: Path
) -> None:
    journal = Journal()
    plan = _plan(_change("data.a"), _change("features.f", deps=("data.a",)))
    registry = _registry(journal, fail={"data.a": KeyError("col")})
    outcome = execute(plan, StateWriter(store, None), registry, _context(tmp_path))
    (diagnostic,) = outcome.diagnostics
    assert diagnostic.severity is Severity.ERROR
    assert diagnostic.summary == "provider for data failed: KeyError: 'col'"
    assert "create step of data.a" in diagnostic.detail
    assert diagnostic.address == "data.a"
    assert outcome.skipped == ["features.f"]
    record = store.read().get("data.a")  # type: ignore[union-attr]
    assert record is not None and record.status is ObjectStatus.FAILED and record.config == {}


def test_a_kind_without_provider_is_unsupported_and_skips_its_dependents(
    store: LocalStateStore, tmp_path: Path
) -> None:
    journal = Journal()
    plan = _plan(
        _change("data.a"),
        _change("model.m", deps=("data.a",)),
        _change("deployment.api", deps=("model.m",)),
    )
    registry = _registry(journal, kinds=(Kind.DATA, Kind.DEPLOYMENT))
    events: list[Event] = []
    outcome = execute(
        plan, StateWriter(store, None), registry, _context(tmp_path), sink=events.append
    )
    assert outcome.succeeded == ["data.a"]
    assert outcome.unsupported == ["model.m"]
    assert outcome.skipped == ["deployment.api"]
    report = outcome.report_for("model.m")
    assert report is not None
    assert report.message == (
        "no provider for kind model yet — this step was skipped; it lands in a later release"
    )
    assert set(store.read().objects) == {"data.a"}  # type: ignore[union-attr]
    assert outcome.ok  # nothing failed
    started = [e.address for e in events if isinstance(e, StepStarted)]
    assert started == ["data.a"]


def test_updates_retrain_and_rollout_call_update_with_the_action(
    store: LocalStateStore, tmp_path: Path
) -> None:
    journal = Journal()
    seed = _seed(
        store, _rec("data.a"), _rec("model.m", ("data.a",)), _rec("deployment.api", ("model.m",))
    )
    plan = _plan(
        _change("data.a", Action.UPDATE),
        _change("model.m", Action.RETRAIN, deps=("data.a",)),
        _change("deployment.api", Action.ROLLOUT, deps=("model.m",)),
    )
    execute(plan, StateWriter(store, seed), _registry(journal), _context(tmp_path))
    assert journal.calls == [
        ("update", "data.a"),
        ("retrain", "model.m"),
        ("rollout", "deployment.api"),
    ]
    request = journal.requests["model.m"]
    assert request.action == "retrain"
    assert request.prior_config == {"v": 0} and request.prior_outputs == {"old": True}


def test_replace_deletes_the_old_object_then_creates_the_new(
    store: LocalStateStore, tmp_path: Path
) -> None:
    journal = Journal()
    seed = _seed(store, _rec("data.a"), _rec("model.m", ("data.a",)))
    plan = _plan(
        _change("data.a", Action.NOOP), _change("model.m", Action.REPLACE, deps=("data.a",))
    )
    outcome = execute(plan, StateWriter(store, seed), _registry(journal), _context(tmp_path))
    assert journal.calls == [("delete", "model.m"), ("create", "model.m")]
    request = journal.requests["model.m"]
    assert request.action == "create" and request.prior_config is None
    assert request.prior_outputs == {}
    assert outcome.succeeded == ["model.m"]
    record = store.read().get("model.m")  # type: ignore[union-attr]
    assert record is not None and record.outputs == {"made_by": "create", "value": 1}


def test_deletes_run_dependents_first_and_remove_objects(
    store: LocalStateStore, tmp_path: Path
) -> None:
    journal = Journal()
    seed = _seed(
        store,
        _rec("data.a"),
        _rec("features.f", ("data.a",)),
        _rec("model.m", ("features.f",)),
        _rec("data.keep"),
    )
    plan = _plan(
        _change("data.a", Action.DELETE),
        _change("features.f", Action.DELETE),  # depends_on comes from the recorded state
        _change("model.m", Action.DELETE, deps=("features.f",)),
        destroy=True,
    )
    outcome = execute(
        plan, StateWriter(store, seed), _registry(journal), _context(tmp_path), parallelism=4
    )
    assert [a for _, a in journal.calls] == ["model.m", "features.f", "data.a"]
    assert sorted(outcome.succeeded) == ["data.a", "features.f", "model.m"]
    assert set(store.read().objects) == {"data.keep"}  # type: ignore[union-attr]
    assert store.history()[-1].operation == "destroy"


def test_a_failed_delete_keeps_its_upstream(store: LocalStateStore, tmp_path: Path) -> None:
    journal = Journal()
    seed = _seed(store, _rec("data.a"), _rec("model.m", ("data.a",)))
    plan = _plan(
        _change("data.a", Action.DELETE), _change("model.m", Action.DELETE, deps=("data.a",))
    )
    registry = _registry(journal, fail={"model.m": RuntimeError("busy")})
    outcome = execute(plan, StateWriter(store, seed), registry, _context(tmp_path))
    assert outcome.failed == ["model.m"] and outcome.skipped == ["data.a"]
    doc = store.read()
    assert doc is not None
    assert doc.objects["model.m"].status is ObjectStatus.FAILED
    assert doc.objects["data.a"].status is ObjectStatus.APPLIED


def test_an_update_that_stops_using_a_deleted_object_runs_before_the_delete(
    store: LocalStateStore, tmp_path: Path
) -> None:
    journal = Journal()
    seed = _seed(store, _rec("data.old"), _rec("features.f", ("data.old",)))
    plan = _plan(
        _change("data.old", Action.DELETE),
        _change("features.f", Action.UPDATE, deps=("data.old",)),
    )
    execute(plan, StateWriter(store, seed), _registry(journal), _context(tmp_path))
    assert journal.index("update", "features.f") < journal.index("delete", "data.old")


def test_a_rejected_candidate_is_recorded_and_its_rollout_skipped(
    store: LocalStateStore, tmp_path: Path
) -> None:
    journal = Journal()
    plan = _plan(_change("model.m", Action.CREATE), _change("deployment.api", deps=("model.m",)))
    registry = _registry(journal, reject=frozenset({"model.m"}))
    outcome = execute(plan, StateWriter(store, None), registry, _context(tmp_path))
    assert outcome.failed == ["model.m"] and outcome.skipped == ["deployment.api"]
    record = store.read().get("model.m")  # type: ignore[union-attr]
    assert record is not None and record.status is ObjectStatus.REJECTED
    assert record.outputs == {"score": 0.1}
    assert record.error == "model.m candidate rejected by its evaluation gates"
    assert [d.summary for d in outcome.diagnostics] == [record.error]


def test_should_stop_stops_scheduling_new_steps(store: LocalStateStore, tmp_path: Path) -> None:
    journal = Journal()
    plan = _plan(*(_change(f"data.d{i}") for i in range(5)))
    calls = iter([False, False, True])
    outcome = execute(
        plan,
        StateWriter(store, None),
        _registry(journal, delay=0.02),
        _context(tmp_path),
        parallelism=1,
        should_stop=lambda: next(calls, True),
    )
    assert outcome.succeeded == ["data.d0", "data.d1"]
    assert outcome.skipped == ["data.d2", "data.d3", "data.d4"]
    assert outcome.interrupted and not outcome.ok
    assert store.history()[-1].outcome == "interrupted"
    assert set(store.read().objects) == {"data.d0", "data.d1"}  # type: ignore[union-attr]


def test_events_stream_in_order_with_progress(store: LocalStateStore, tmp_path: Path) -> None:
    journal = Journal()
    events: list[Event] = []
    plan = _plan(
        _change("data.a", Action.NOOP), _change("data.b"), _change("features.f", deps=("data.b",))
    )
    execute(
        plan, StateWriter(store, None), _registry(journal), _context(tmp_path), sink=events.append
    )
    names = [type(e).__name__ for e in events]
    assert names == [
        "ApplyStarted",
        "StepStarted",
        "StepProgress",
        "StepFinished",
        "StepStarted",
        "StepProgress",
        "StepFinished",
        "ApplyFinished",
    ]
    assert events[0].to_dict()["steps"] == 2
    progress = [e for e in events if isinstance(e, StepProgress)]
    assert progress[0].message == "create data.b" and progress[0].fraction == 0.5
    finished = [e for e in events if isinstance(e, StepFinished)]
    assert [(e.address, e.outcome, e.serial) for e in finished] == [
        ("data.b", "succeeded", 2),
        ("features.f", "succeeded", 4),
    ]
    assert finished[0].outputs == {"made_by": "create", "value": 1}
    assert events[-1].to_dict()["succeeded"] == 2


def test_a_state_conflict_stops_the_apply_and_is_raised(
    store: LocalStateStore, tmp_path: Path
) -> None:
    from mlform.errors import StateConflictError

    journal = Journal()
    writer = StateWriter(store, None)
    seeded = _seed(store, _rec("data.x"))  # written behind the writer's back
    assert seeded.serial == 1
    with pytest.raises(StateConflictError):
        execute(_plan(_change("data.a")), writer, _registry(journal), _context(tmp_path))
    assert journal.calls == []


def test_default_registry_leaves_out_kinds_whose_provider_is_missing() -> None:
    from mlform.providers.registry import ProviderRegistry, default_registry, load_provider

    registry = default_registry()
    assert isinstance(registry, ProviderRegistry)
    assert registry.supported_kinds() <= set(Kind)
    assert load_provider("mlform.providers.no_such_module:Nope") is None
    assert load_provider("mlform.providers.registry:NoSuchClass") is None
    assert registry.get("not-a-kind") is None
