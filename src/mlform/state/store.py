"""The local directory backend for state (``<project>/.mlform/`` by default).

Layout of the state directory::

    state.json          the current StateDocument (atomic replace on every commit)
    state.lock          present while an operation holds the lock (JSON: who, since when)
    history/NNNNNNNN.json   the document as committed at each serial
    history.jsonl       one HistoryEntry per finished operation

Every write names the serial it expects to replace and is refused when the state
moved underneath it. See docs/adr/0001-state-format.md.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from pathlib import Path
from typing import Any

from mlform import __version__
from mlform.errors import StateConflictError, StateError
from mlform.state.atomic import write_atomic
from mlform.state.codec import parse_state, render_state
from mlform.state.history import StateHistory
from mlform.state.lock import LockInfo, StateLock
from mlform.state.model import HistoryEntry, StateDocument
from mlform.state.timestamps import utc_now
from mlform.state.writer import StateWriter

__all__ = ["LocalStateStore", "LockInfo", "StateWriter"]


class LocalStateStore:
    """State, lock and history kept as files in one directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.state_path = self.root / "state.json"
        self._lock = StateLock(self.root / "state.lock")
        self._history = StateHistory(self.root)

    # -- the document ------------------------------------------------------------------

    def read(self) -> StateDocument | None:
        """The current document (migrated to the current format), or None before the first write."""
        try:
            text = self.state_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        return parse_state(text, source=f"state file {self.state_path}", recovery=self._recovery())

    def write(
        self, doc: StateDocument, *, expected_serial: int | None, force_lineage: bool = False
    ) -> StateDocument:
        """Commit ``doc`` as the next serial; refuse when the state on disk is not the expected one.

        ``expected_serial`` is the serial the caller read (None: the caller saw no state).
        The committed serial is one above the larger of the on-disk serial and
        ``doc.serial``. A new state gets a fresh lineage unless ``doc`` carries one;
        a different lineage than the one on disk is refused unless ``force_lineage``.
        """
        on_disk = self._peek()
        disk_serial = None if on_disk is None else on_disk[1]
        if disk_serial != expected_serial:
            found = "no state" if disk_serial is None else f"serial {disk_serial}"
            wanted = "no state" if expected_serial is None else f"serial {expected_serial}"
            raise StateConflictError(
                f"the state moved underneath this operation: expected {wanted}, found {found} "
                f"in {self.state_path}. Another mlform process wrote it; plan again and retry"
            )
        lineage = doc.lineage
        if on_disk is None:
            lineage = lineage or str(uuid.uuid4())
        elif not lineage:
            lineage = on_disk[0]
        elif lineage != on_disk[0] and not force_lineage:
            raise StateConflictError(
                f"refusing to write state of lineage {lineage} over lineage {on_disk[0]} in "
                f"{self.state_path}: they are different states"
            )
        committed = doc.model_copy(
            update={
                "lineage": lineage,
                "serial": max(doc.serial, disk_serial or 0) + 1,
                "mlform_version": doc.mlform_version or __version__,
            }
        )
        text = render_state(committed)
        self._history.save_snapshot(committed, text)
        write_atomic(self.state_path, text)
        return committed

    def _peek(self) -> tuple[str, int] | None:
        """(lineage, serial) on disk, or None when there is no state."""
        try:
            text = self.state_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            raw: Any = json.loads(text)
            return str(raw["lineage"]), int(raw["serial"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            raise StateError(
                f"state file {self.state_path} is damaged; {self._recovery()}"
            ) from None

    def _recovery(self) -> str:
        latest = self._history.serials()
        where = (
            f"`mlform state import {self._history.snapshot_path(latest[-1])} --force`"
            if latest
            else "`mlform state import FILE --force` with an exported copy"
        )
        return f"restore the last good snapshot from {self._history.snapshot_dir} with {where}"

    # -- the lock ----------------------------------------------------------------------

    def lock(
        self, operation: str, *, timeout: float = 0.0
    ) -> contextlib.AbstractContextManager[LockInfo]:
        """Hold the state lock for ``operation``; raises StateLockedError naming the holder."""
        return self._lock.hold(operation, timeout=timeout)

    def unlock(self, lock_id: str | None, force: bool = False) -> LockInfo:
        """Remove a lock left by a process that is gone; returns the removed holder."""
        return self._lock.unlock(lock_id, force=force)

    def current_lock(self) -> LockInfo | None:
        return self._lock.current()

    # -- history -----------------------------------------------------------------------

    def history(self) -> list[HistoryEntry]:
        return self._history.entries()

    def append_history(self, entry: HistoryEntry) -> None:
        self._history.append(entry)

    def serials(self) -> list[int]:
        return self._history.serials()

    def snapshot(self, serial: int) -> StateDocument:
        return self._history.snapshot(serial)

    # -- import / export ---------------------------------------------------------------

    def export_state(self) -> str:
        """The current document as JSON text (what ``mlform state import`` reads)."""
        doc = self.read()
        if doc is None:
            raise StateError(f"there is no state in {self.root} to export: nothing applied yet")
        return render_state(doc)

    def import_state(self, text: str, *, force: bool = False) -> StateDocument:
        """Replace the state with an exported document, as a new serial (kept in history).

        A document of another lineage is refused unless ``force``.
        """
        incoming = parse_state(text, source="the imported state document")
        with self.lock("import"):
            current = self.read()
            if current is not None and current.lineage != incoming.lineage and not force:
                raise StateError(
                    f"the imported state has lineage {incoming.lineage} but this state has "
                    f"lineage {current.lineage}: it is a different state. Pass --force to "
                    "replace it anyway"
                )
            started = utc_now()
            committed = self.write(
                incoming,
                expected_serial=None if current is None else current.serial,
                force_lineage=True,
            )
            self.append_history(
                HistoryEntry(
                    operation="import",
                    started_serial=0 if current is None else current.serial,
                    finished_serial=committed.serial,
                    started_at=started,
                    finished_at=utc_now(),
                    summary=f"imported lineage {committed.lineage}",
                )
            )
        return committed
