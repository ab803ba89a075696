"""Property: for random small systems, apply then plan again shows only no-ops.

Systems are built by hand (data -> features -> model -> deployment), planned with the
real planner, applied with in-memory fake providers (some steps failing on the first
attempt), re-planned and re-applied until done; then a changed system is applied the
same way. Planning afterwards must find nothing to do.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlform.addresses import Kind
from mlform.apply.executor import execute
from mlform.diagnostics import Diagnostic
from mlform.errors import StateConflictError
from mlform.plan.compute import compute_plan
from mlform.plan.model import Action, Plan
from mlform.plan.testing import declared, desired_system
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
    ValidateRequest,
)
from mlform.providers.registry import ProviderRegistry
from mlform.spec.declared import DeclaredObject
from mlform.state.model import HistoryEntry, StateDocument
from mlform.state.writer import StateWriter

KINDS = (Kind.DATA, Kind.FEATURES, Kind.MODEL, Kind.DEPLOYMENT)


class MemoryBackend:
    """The StateWriter backend contract, in memory (serial checked like the real store)."""

    def __init__(self) -> None:
        self.doc: StateDocument | None = None
        self.history: list[HistoryEntry] = []

    def write(self, doc: StateDocument, *, expected_serial: int | None) -> StateDocument:
        current = None if self.doc is None else self.doc.serial
        if current != expected_serial:
            raise StateConflictError(f"expected {expected_serial}, found {current}")
        self.doc = doc.model_copy(
            update={"serial": (current or 0) + 1, "lineage": doc.lineage or "test-lineage"}
        )
        return self.doc

    def append_history(self, entry: HistoryEntry) -> None:
        self.history.append(entry)


class FlakyProvider:
    """Succeeds, except that addresses in ``failing`` fail on their first attempt."""

    def __init__(self, kind: Kind, failing: set[str]) -> None:
        self.kind = kind
        self.failing = failing
        self._lock = threading.Lock()

    def validate(self, request: ValidateRequest) -> tuple[Diagnostic, ...]:
        return ()

    def read(self, request: ReadRequest) -> ReadResult:
        return ReadResult(outputs=request.outputs)

    def diff(self, request: DiffRequest) -> DiffResult:
        return DiffResult(changed=True)

    def _apply(self, request: ApplyRequest) -> ApplyResult:
        address = str(request.address)
        with self._lock:
            fail = address in self.failing
            self.failing.discard(address)
        if fail:
            raise RuntimeError(f"flaky {address}")
        return ApplyResult(outputs={"id": address, "upstream": sorted(request.upstream_outputs)})

    def create(self, request: ApplyRequest) -> ApplyResult:
        return self._apply(request)

    def update(self, request: ApplyRequest) -> ApplyResult:
        return self._apply(request)

    def delete(self, request: DeleteRequest) -> DeleteResult:
        return DeleteResult()


@st.composite
def systems(draw: st.DrawFn) -> tuple[list[DeclaredObject], dict[str, dict[str, str]]]:
    objects: list[DeclaredObject] = []
    external: dict[str, dict[str, str]] = {}
    previous: list[str] = []
    for kind in KINDS:
        count = draw(st.integers(min_value=1 if kind is Kind.DATA else 0, max_value=3))
        names = draw(
            st.lists(st.sampled_from("abcdefgh"), min_size=count, max_size=count, unique=True)
        )
        current: list[str] = []
        for name in names:
            address = f"{kind.value}.{name}"
            deps = (
                draw(st.lists(st.sampled_from(previous), unique=True, max_size=2))
                if (previous)
                else []
            )
            config: dict[str, Any] = {"size": draw(st.integers(0, 3))}
            if draw(st.booleans()):
                config["description"] = draw(st.sampled_from(["x", "y"]))
            objects.append(declared(address, config, deps))
            if kind is Kind.DATA:
                external[address] = {"data": f"sha256:{draw(st.integers(0, 2))}"}
            current.append(address)
        previous = current or previous
    return objects, external


def _plan(
    objects: list[DeclaredObject],
    external: Mapping[str, Mapping[str, str]],
    state: StateDocument | None,
) -> Plan:
    return compute_plan(
        desired_system(objects, external),
        state,
        supported_kinds=frozenset(KINDS),
        mlform_version="0.1.0",
    )


def _converge(
    objects: list[DeclaredObject],
    external: Mapping[str, Mapping[str, str]],
    backend: MemoryBackend,
    failing: set[str],
) -> None:
    registry = ProviderRegistry({k: FlakyProvider(k, failing) for k in KINDS})
    context = ProviderContext(project_dir=Path("."), state_dir=Path(".mlform"), stack="dev")
    for _attempt in range(4):
        plan = _plan(objects, external, backend.doc)
        if not plan.has_changes:
            return
        execute(plan, StateWriter(backend, backend.doc), registry, context, parallelism=3)
    raise AssertionError("apply did not converge in 4 attempts")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=systems(), second=systems(), data=st.data())
def test_apply_then_plan_shows_only_no_ops(
    first: tuple[list[DeclaredObject], dict[str, dict[str, str]]],
    second: tuple[list[DeclaredObject], dict[str, dict[str, str]]],
    data: st.DataObject,
) -> None:
    backend = MemoryBackend()
    for objects, external in (first, second):
        addresses = sorted(str(o.address) for o in objects)
        failing = set(data.draw(st.lists(st.sampled_from(addresses), unique=True, max_size=2)))
        _converge(objects, external, backend, failing)
        after = _plan(objects, external, backend.doc)
        assert {c.action for c in after.changes} <= {Action.NOOP}, [
            (c.address, c.action.value, [r.message for r in c.reasons])
            for c in after.changes
            if c.action is not Action.NOOP
        ]
        assert backend.doc is not None
        assert set(backend.doc.objects) == set(addresses)


def test_one_apply_without_failures_is_enough() -> None:
    objects = [
        declared("data.a", {"size": 1}),
        declared("features.f", {"size": 1}, ["data.a"]),
        declared("model.m", {"size": 2}, ["features.f"]),
    ]
    backend = MemoryBackend()
    plan = _plan(objects, {}, None)
    assert [c.action for c in plan.changes] == [Action.CREATE] * 3
    registry = ProviderRegistry({k: FlakyProvider(k, set()) for k in KINDS})
    context = ProviderContext(project_dir=Path("."), state_dir=Path(".mlform"), stack="dev")
    outcome = execute(plan, StateWriter(backend, None), registry, context)
    assert outcome.succeeded == ["data.a", "features.f", "model.m"]
    assert not _plan(objects, {}, backend.doc).has_changes
    changed = [*objects[:2], declared("model.m", {"size": 3}, ["features.f"])]
    replan = _plan(changed, {}, backend.doc)
    assert [c.action for c in replan.changes] == [Action.NOOP, Action.NOOP, Action.RETRAIN]
