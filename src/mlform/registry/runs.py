"""Training run records: what was trained, with what, how long, on what, and how it went.

One JSON file per run under the stack's ``runs/`` directory (``<root>/<run_id>.json``),
written atomically. ``mlform runs list|show|compare`` read them back.
"""

from __future__ import annotations

import builtins
import re
import subprocess
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mlform.registry.errors import RegistryError, UnknownRefError
from mlform.registry.jsonio import jsonable, read_json, write_json
from mlform.training.types import EpochMetrics

__all__ = [
    "CompareRow",
    "RunRecord",
    "RunStatus",
    "RunStore",
    "epoch_dicts",
    "git_commit",
    "new_run_id",
]

RunStatus = Literal["running", "succeeded", "failed"]
_RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,127}$")


def new_run_id() -> str:
    return str(uuid.uuid4())


def git_commit(project_dir: Path, *, timeout: float = 5.0) -> str | None:
    """``git rev-parse HEAD`` in ``project_dir``; None when it is not a repo or git is missing."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=project_dir,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    commit = done.stdout.strip()
    if done.returncode != 0 or not re.fullmatch(r"[0-9a-f]{40}([0-9a-f]{24})?", commit):
        return None
    return commit


def epoch_dicts(epochs: Sequence[EpochMetrics]) -> list[dict[str, Any]]:
    """Per-epoch metrics as JSON-able records."""
    return [
        {"epoch": e.epoch, "metrics": jsonable(dict(e.metrics)), "seconds": float(e.seconds)}
        for e in epochs
    ]


@dataclass(frozen=True, slots=True)
class RunRecord:
    run_id: str
    address: str
    started_at: str
    finished_at: str | None = None
    duration_s: float | None = None
    status: RunStatus = "running"
    params: Mapping[str, Any] = field(default_factory=dict)
    epochs: Sequence[Mapping[str, Any]] = ()  # {"epoch", "metrics", "seconds"} (epoch_dicts)
    metrics: Mapping[str, float | None] = field(default_factory=dict)
    hardware: Mapping[str, Any] = field(default_factory=dict)
    fingerprints: Mapping[str, str] = field(default_factory=dict)
    git_commit: str | None = None
    version: str | None = None  # the registered version, e.g. model.churn@v3
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "address": self.address,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration_s": self.duration_s,
            "status": self.status,
            "params": jsonable(dict(self.params)),
            "epochs": jsonable(list(self.epochs)),
            "metrics": jsonable(dict(self.metrics)),
            "hardware": jsonable(dict(self.hardware)),
            "fingerprints": jsonable(dict(self.fingerprints)),
            "git_commit": self.git_commit,
            "version": self.version,
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunRecord:
        status = data.get("status", "running")
        if status not in ("running", "succeeded", "failed"):
            raise ValueError(f"unknown run status {status!r}")
        duration = data.get("duration_s")
        return cls(
            run_id=str(data["run_id"]),
            address=str(data["address"]),
            started_at=str(data["started_at"]),
            finished_at=None if data.get("finished_at") is None else str(data["finished_at"]),
            duration_s=None if duration is None else float(duration),
            status=status,
            params=dict(data.get("params") or {}),
            epochs=[dict(e) for e in data.get("epochs") or []],
            metrics=dict(data.get("metrics") or {}),
            hardware=dict(data.get("hardware") or {}),
            fingerprints={str(k): str(v) for k, v in dict(data.get("fingerprints") or {}).items()},
            git_commit=None if data.get("git_commit") is None else str(data["git_commit"]),
            version=None if data.get("version") is None else str(data["version"]),
            error=None if data.get("error") is None else str(data["error"]),
        )


@dataclass(frozen=True, slots=True)
class CompareRow:
    key: str  # "params.max_depth", "metrics.roc_auc", "hardware.device", ...
    values: dict[str, Any]  # run_id -> value (None where the run has no such key)


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping) and value:
        for k, v in value.items():
            _flatten(f"{prefix}.{k}", v, out)
    else:
        out[prefix] = value


class RunStore:
    """Run records under ``root`` (``<state dir>/runs`` for a stack)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, run_id: str) -> Path:
        if not _RUN_ID_RE.match(run_id):
            raise UnknownRefError(
                f"RUN_ID {run_id!r} is not a run id (letters, digits, '_' and '-'); "
                "`mlform runs list` shows the recorded runs"
            )
        return self.root / f"{run_id}.json"

    def save(self, record: RunRecord) -> Path:
        """Write (or replace) the record of ``record.run_id``; returns its path."""
        path = self._path(record.run_id)
        write_json(path, record.to_dict())
        return path

    def get(self, run_id: str) -> RunRecord:
        path = self._path(run_id)
        if not path.is_file():
            known = [r.run_id for r in self.list()]
            listed = ", ".join(known[-10:]) if known else "none"
            more = f" (latest 10 of {len(known)})" if len(known) > 10 else ""
            raise UnknownRefError(f"no run {run_id!r} is recorded; runs{more}: {listed}")
        try:
            return RunRecord.from_dict(read_json(path, what=f"run record {run_id}"))
        except (KeyError, TypeError, ValueError) as exc:
            raise RegistryError(f"run record {path} is malformed ({exc})") from None

    def list(self, address: str | None = None) -> list[RunRecord]:
        """Recorded runs, oldest first (optionally only those of ``address``)."""
        if not self.root.is_dir():
            return []
        records = []
        for path in self.root.glob("*.json"):
            try:
                record = RunRecord.from_dict(read_json(path, what="run record"))
            except (RegistryError, KeyError, TypeError, ValueError):
                continue  # a torn or foreign file is not a run
            if address is None or record.address == address:
                records.append(record)
        return sorted(records, key=lambda r: (r.started_at, r.run_id))

    def compare(self, run_ids: Sequence[str]) -> builtins.list[CompareRow]:
        """Rows of params, metrics, hardware and fingerprints whose values differ between runs."""
        if len(run_ids) < 2:
            raise UnknownRefError("compare needs at least two RUN_IDs")
        flat: dict[str, dict[str, Any]] = {}
        for run_id in run_ids:
            record = self.get(run_id)
            values: dict[str, Any] = {"address": record.address, "status": record.status}
            for section in ("params", "metrics", "hardware", "fingerprints"):
                _flatten(section, dict(getattr(record, section)), values)
            values["duration_s"] = record.duration_s
            values["epochs"] = len(record.epochs)
            values["git_commit"] = record.git_commit
            flat[run_id] = values
        keys = list(dict.fromkeys(k for v in flat.values() for k in v))
        rows = []
        for key in keys:
            per_run = {run_id: flat[run_id].get(key) for run_id in run_ids}
            if len({repr(v) for v in per_run.values()}) > 1:
                rows.append(CompareRow(key, per_run))
        return rows
