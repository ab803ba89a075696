"""Pulumi engine events, translated into mlform's :class:`InfraChange` values.

The Automation API delivers events on a thread pool, so :class:`EventLog` only stores
them (under a lock) and everything else reads them sorted by ``sequence``. The stack and
provider resources Pulumi adds are left out; a resource whose logical name is not
``<owner>/<name>`` is left out too (it is not mlform's).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pulumi.automation import EngineEvent, OpType, StepEventMetadata

from mlform.infra.model import InfraChange, InfraOp, split_logical_name

DYNAMIC_TYPE_PREFIX = "pulumi-python:dynamic"
PROVIDER_KEY = "__provider"
REFRESH_OPERATIONS = frozenset({"refresh", "drift"})
_REPLACE_OPS = frozenset(
    {
        OpType.REPLACE,
        OpType.CREATE_REPLACEMENT,
        OpType.DELETE_REPLACED,
        OpType.DISCARD_REPLACED,
        OpType.READ_REPLACEMENT,
        OpType.IMPORT_REPLACEMENT,
    }
)
_OPS: Mapping[OpType, InfraOp] = {
    OpType.CREATE: InfraOp.CREATE,
    OpType.IMPORT: InfraOp.CREATE,
    OpType.UPDATE: InfraOp.UPDATE,
    OpType.DELETE: InfraOp.DELETE,
    OpType.DISCARD: InfraOp.DELETE,
    OpType.SAME: InfraOp.SAME,
    OpType.READ: InfraOp.SAME,
    OpType.REFRESH: InfraOp.SAME,
}
# What a refresh step's outcome (the op of its outputs event) means for the live resource.
_REFRESH_OPS: Mapping[OpType, InfraOp] = {
    OpType.SAME: InfraOp.SAME,
    OpType.REFRESH: InfraOp.SAME,
    OpType.UPDATE: InfraOp.DRIFTED,
    OpType.DELETE: InfraOp.GONE,
}


def logical_name_of(urn: str) -> str:
    """The logical name is the last ``::`` part of a URN."""
    return urn.rsplit("::", 1)[-1]


def resource_type(type_token: str) -> str:
    """``"process"`` for the local dynamic provider, else Pulumi's type token."""
    return "process" if type_token.startswith(DYNAMIC_TYPE_PREFIX) else type_token


def is_own_resource(type_token: str, urn: str) -> bool:
    """Neither the stack, nor a provider, nor a foreign name."""
    if type_token == "pulumi:pulumi:Stack" or type_token.startswith("pulumi:providers:"):
        return False
    return split_logical_name(logical_name_of(urn)) is not None


@dataclass(frozen=True, slots=True)
class ResourceFailure:
    """An error Pulumi reported for one resource (or for the whole run, ``urn`` None)."""

    urn: str | None
    message: str
    op: str | None = None
    type: str | None = None

    @property
    def logical_name(self) -> str | None:
        return logical_name_of(self.urn) if self.urn else None


class EventLog:
    """Collects an operation's engine events; thread-safe. Use the instance as ``on_event``.

    ``on_change`` is called (serialised, from Pulumi's threads) once per resource as its
    step completes, so a view can show progress during ``up`` and ``destroy``.
    """

    def __init__(
        self, operation: str, on_change: Callable[[InfraChange], None] | None = None
    ) -> None:
        self.operation = operation
        self._on_change = on_change
        self._events: list[EngineEvent] = []
        self._notified: set[str] = set()
        self._lock = threading.Lock()
        self.callback_error: BaseException | None = None

    def __call__(self, event: EngineEvent) -> None:
        with self._lock:
            self._events.append(event)
            if self._on_change is not None and event.res_outputs_event is not None:
                self._notify(event.res_outputs_event.metadata)

    def _notify(self, metadata: StepEventMetadata) -> None:
        if not is_own_resource(metadata.type, metadata.urn) or metadata.urn in self._notified:
            return
        change = translate(self._sorted(), self.operation, only=metadata.urn)
        if not change or self._on_change is None:
            return
        self._notified.add(metadata.urn)
        try:
            self._on_change(change[0])
        except Exception as exc:  # raised again by the engine once Pulumi is done
            self.callback_error = self.callback_error or exc

    def _sorted(self) -> list[EngineEvent]:
        return sorted(self._events, key=lambda e: e.sequence)

    def events(self) -> list[EngineEvent]:
        with self._lock:
            return self._sorted()

    def changes(self) -> tuple[InfraChange, ...]:
        return translate(self.events(), self.operation)

    def outputs(self) -> dict[str, dict[str, Any]]:
        return outputs_of(self.events())

    def failures(self) -> list[ResourceFailure]:
        return failures_of(self.events())


def _metadata(event: EngineEvent) -> tuple[StepEventMetadata, bool] | None:
    """The step metadata of a resource event and whether it is the outputs (done) event."""
    if event.resource_pre_event is not None:
        return event.resource_pre_event.metadata, False
    if event.res_outputs_event is not None:
        return event.res_outputs_event.metadata, True
    return None


def translate(
    events: Iterable[EngineEvent], operation: str, *, only: str | None = None
) -> tuple[InfraChange, ...]:
    """One change per mlform resource the events mention, in the order Pulumi first did."""
    steps: dict[str, list[tuple[StepEventMetadata, bool]]] = {}
    for event in sorted(events, key=lambda e: e.sequence):
        found = _metadata(event)
        if found is None:
            continue
        metadata = found[0]
        if only is not None and metadata.urn != only:
            continue
        if is_own_resource(metadata.type, metadata.urn):
            steps.setdefault(metadata.urn, []).append(found)
    changes = []
    for urn, seen in steps.items():
        change = _change(urn, seen, operation)
        if change is not None:
            changes.append(change)
    return tuple(changes)


def _change(
    urn: str, seen: list[tuple[StepEventMetadata, bool]], operation: str
) -> InfraChange | None:
    split = split_logical_name(logical_name_of(urn))
    if split is None:
        return None
    owner, name = split
    kind = resource_type(seen[0][0].type)
    if operation in REFRESH_OPERATIONS:
        done = [m for m, is_done in seen if is_done]
        if not done:
            return None
        last = done[-1]
        op = _REFRESH_OPS.get(last.op, InfraOp.SAME)
        fields = _changed_keys(last, outputs=True) if op is InfraOp.DRIFTED else ()
        detail = {
            InfraOp.GONE: "no longer exists",
            InfraOp.DRIFTED: "differs from what was recorded",
        }.get(op, "")
        return InfraChange(owner, name, kind, op, fields, detail)
    ops = [m.op for m, _ in seen]
    replaced = any(o in _REPLACE_OPS for o in ops)
    op = InfraOp.REPLACE if replaced else _OPS.get(ops[0], InfraOp.SAME)
    step = next((m for m, _ in seen if m.old is not None and m.new is not None), seen[0][0])
    fields = _changed_keys(step) if op in (InfraOp.UPDATE, InfraOp.REPLACE) else ()
    if op is InfraOp.UPDATE and kind == "process" and not fields:
        fields = ("health",)  # restarted because a refresh found it unhealthy
    return InfraChange(owner, name, kind, op, fields)


def _changed_keys(metadata: StepEventMetadata, *, outputs: bool = False) -> tuple[str, ...]:
    """Pulumi's ``diffs`` when it gives them, else the keys whose values differ."""
    if metadata.diffs and not outputs:
        return tuple(sorted({d for d in metadata.diffs if d != PROVIDER_KEY}))
    if metadata.old is None or metadata.new is None:
        return ()
    old = (metadata.old.outputs if outputs else metadata.old.inputs) or {}
    new = (metadata.new.outputs if outputs else metadata.new.inputs) or {}
    keys = (set(old) | set(new)) - {PROVIDER_KEY}
    return tuple(sorted(k for k in keys if old.get(k) != new.get(k)))


def outputs_of(events: Iterable[EngineEvent]) -> dict[str, dict[str, Any]]:
    """Logical name -> outputs after the run, from the completed steps' events."""
    outputs: dict[str, dict[str, Any]] = {}
    for event in sorted(events, key=lambda e: e.sequence):
        if event.res_outputs_event is None:
            continue
        metadata = event.res_outputs_event.metadata
        if not is_own_resource(metadata.type, metadata.urn):
            continue
        name = logical_name_of(metadata.urn)
        if metadata.op in (OpType.DELETE, OpType.DELETE_REPLACED, OpType.DISCARD):
            outputs.pop(name, None)
        elif metadata.new is not None and metadata.new.outputs is not None:
            outputs[name] = {k: v for k, v in metadata.new.outputs.items() if k != PROVIDER_KEY}
    return dict(sorted(outputs.items()))


def failures_of(events: Iterable[EngineEvent]) -> list[ResourceFailure]:
    """Error diagnostics, with the op and type of the step that failed when known."""
    failed: dict[str, StepEventMetadata] = {}
    ordered = sorted(events, key=lambda e: e.sequence)
    for event in ordered:
        if event.res_op_failed_event is not None:
            metadata = event.res_op_failed_event.metadata
            failed.setdefault(metadata.urn, metadata)
    failures = []
    for event in ordered:
        diagnostic = event.diagnostic_event
        if diagnostic is None or diagnostic.severity != "error":
            continue
        step = failed.get(diagnostic.urn) if diagnostic.urn else None
        failures.append(
            ResourceFailure(
                urn=diagnostic.urn or None,
                message=diagnostic.message,
                op=step.op.value if step is not None else None,
                type=step.type if step is not None else None,
            )
        )
    return failures
