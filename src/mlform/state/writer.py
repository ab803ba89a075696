"""A thread-safe committer of state changes, one serial per change (used by apply).

The executor's worker threads record each step the moment it starts (pending) and
ends (applied, failed or removed). Every call commits a new serial through the store
with the serial it last wrote as the expected one, so a concurrent writer is caught.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Protocol

from mlform.state.model import HistoryEntry, ObjectStatus, RecordedObject, StateDocument


class StateBackend(Protocol):
    """What the writer needs from a store (LocalStateStore satisfies it)."""

    def write(self, doc: StateDocument, *, expected_serial: int | None) -> StateDocument: ...

    def append_history(self, entry: HistoryEntry) -> None: ...


class StateWriter:
    """Holds the current document and commits every change immediately."""

    def __init__(self, store: StateBackend, current: StateDocument | None) -> None:
        self._store = store
        self._doc = current
        self._draft = current or StateDocument(lineage="")
        self._lock = threading.Lock()

    @property
    def document(self) -> StateDocument | None:
        """The last committed document (None before the first commit of a new state)."""
        with self._lock:
            return self._doc

    @property
    def serial(self) -> int:
        with self._lock:
            return 0 if self._doc is None else self._doc.serial

    def get(self, address: str) -> RecordedObject | None:
        with self._lock:
            return None if self._doc is None else self._doc.get(address)

    def stamp(self, *, project: str, stack: str, mlform_version: str) -> None:
        """Set the document's descriptive fields; they are written with the next commit."""
        with self._lock:
            self._draft = self._draft.model_copy(
                update={"project": project, "stack": stack, "mlform_version": mlform_version}
            )

    def record(self, obj: RecordedObject) -> StateDocument:
        """Record ``obj`` (its ``updated_serial`` set to the serial of this commit)."""
        with self._lock:
            stamped = obj.model_copy(update={"updated_serial": self._next_serial()})
            objects = {**self._draft.objects, obj.address: stamped}
            return self._commit(self._draft.model_copy(update={"objects": objects}))

    def remove(self, address: str) -> StateDocument:
        """Forget the object at ``address`` (after a successful delete)."""
        with self._lock:
            objects = {a: o for a, o in self._draft.objects.items() if a != address}
            return self._commit(self._draft.model_copy(update={"objects": objects}))

    def mark_pending(
        self,
        address: str,
        kind: str,
        *,
        depends_on: Sequence[str] = (),
        updated_at: str | None = None,
    ) -> StateDocument:
        """Mark a step as started: status pending, previous config and outputs kept."""
        return self._mark(address, kind, ObjectStatus.PENDING, None, depends_on, updated_at)

    def mark_failed(
        self,
        address: str,
        kind: str,
        error: str,
        *,
        depends_on: Sequence[str] = (),
        updated_at: str | None = None,
        keep_outputs: bool = True,
    ) -> StateDocument:
        """Mark a step as failed with ``error``; previous config (and outputs) kept."""
        return self._mark(
            address, kind, ObjectStatus.FAILED, error, depends_on, updated_at, keep_outputs
        )

    def _mark(
        self,
        address: str,
        kind: str,
        status: ObjectStatus,
        error: str | None,
        depends_on: Sequence[str],
        updated_at: str | None,
        keep_outputs: bool = True,
    ) -> StateDocument:
        with self._lock:
            previous = self._draft.get(address)
            if previous is None:
                base = RecordedObject(address=address, kind=kind, depends_on=list(depends_on))
            else:
                base = previous
            marked = base.model_copy(
                update={
                    "status": status,
                    "error": error,
                    "outputs": base.outputs if keep_outputs else {},
                    "updated_at": updated_at or base.updated_at,
                    "updated_serial": self._next_serial(),
                }
            )
            objects = {**self._draft.objects, address: marked}
            return self._commit(self._draft.model_copy(update={"objects": objects}))

    def append_history(self, entry: HistoryEntry) -> None:
        """Log a finished operation in the store's history."""
        self._store.append_history(entry)

    def _next_serial(self) -> int:
        return (0 if self._doc is None else self._doc.serial) + 1

    def _commit(self, draft: StateDocument) -> StateDocument:
        expected = None if self._doc is None else self._doc.serial
        committed = self._store.write(draft, expected_serial=expected)
        self._doc = committed
        self._draft = committed
        return committed
