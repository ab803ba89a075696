"""History of the state: a snapshot per serial and a log of finished operations.

``history/<serial:08d>.json`` holds the document as committed at each serial (what
``mlform rollback --to SERIAL`` goes back to); ``history.jsonl`` holds one
:class:`HistoryEntry` per finished operation, appended and never rewritten.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from mlform.errors import StateError
from mlform.state.atomic import append_line, write_atomic
from mlform.state.codec import parse_state, render_state
from mlform.state.model import HistoryEntry, StateDocument


class StateHistory:
    """Snapshots and the operation log under one state directory."""

    def __init__(self, root: Path) -> None:
        self.snapshot_dir = root / "history"
        self.log_path = root / "history.jsonl"

    def snapshot_path(self, serial: int) -> Path:
        return self.snapshot_dir / f"{serial:08d}.json"

    def save_snapshot(self, doc: StateDocument, text: str | None = None) -> None:
        """Keep ``doc`` as the snapshot of its serial (``text``: its rendering, if made)."""
        write_atomic(self.snapshot_path(doc.serial), render_state(doc) if text is None else text)

    def serials(self) -> list[int]:
        """Serials that have a snapshot, ascending."""
        if not self.snapshot_dir.is_dir():
            return []
        found = []
        for path in self.snapshot_dir.glob("*.json"):
            if path.stem.isdigit():
                found.append(int(path.stem))
        return sorted(found)

    def snapshot(self, serial: int) -> StateDocument:
        path = self.snapshot_path(serial)
        if not path.is_file():
            known = self.serials()
            listing = _ranges(known) if known else "none yet"
            raise StateError(
                f"no state snapshot for serial {serial} (recorded serials: {listing}); "
                "see `mlform state history`"
            )
        return parse_state(
            path.read_text(encoding="utf-8"),
            source=f"state snapshot {path}",
            recovery="this snapshot is damaged; pick another serial",
        )

    def append(self, entry: HistoryEntry) -> None:
        append_line(self.log_path, entry.model_dump_json())

    def entries(self) -> list[HistoryEntry]:
        """Every logged operation, oldest first; a torn last line (a killed writer) is skipped."""
        try:
            lines = self.log_path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        entries: list[HistoryEntry] = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                entries.append(HistoryEntry.model_validate(json.loads(line)))
            except (json.JSONDecodeError, ValidationError):
                if number == len(lines):
                    break  # torn by a crash mid-append
                raise StateError(
                    f"{self.log_path} line {number} is not a history entry; remove or fix that "
                    "line (the state itself is unaffected)"
                ) from None
        return entries


def _ranges(serials: list[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``"1-3, 7"``."""
    parts: list[str] = []
    start = prev = serials[0]
    for serial in serials[1:]:
        if serial == prev + 1:
            prev = serial
            continue
        parts.append(f"{start}-{prev}" if prev > start else str(start))
        start = prev = serial
    parts.append(f"{start}-{prev}" if prev > start else str(start))
    return ", ".join(parts)
