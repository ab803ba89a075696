"""Monitor history: every run of every monitor, one JSON line each, kept with the state.

Layout under the state directory::

    monitors/<name>/history.jsonl     one MonitorRun per line (append-only, fsynced)
    monitors/<name>/snapshots.jsonl   latency / error-rate monitors: the servers' metrics
                                      at each run, for time windows (kept one window long)
    monitors/<name>/deliveries.jsonl  which alerts reached which sink (no duplicates)
    monitors/<name>/spec.json         what the scheduler runs (written by apply, mode 0600)

A run is ``ok``, ``breached``, ``no_data`` (nothing in the window to judge) or ``error``
(the monitor could not run; the reason says why). Readers tolerate a torn last line (a
writer killed mid-line). ``mlform monitor history`` and ``status`` read these files;
the plan reads the latest breach of monitors whose action is ``retrain``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlform.state.atomic import append_line

__all__ = ["MonitorHistory", "MonitorRun", "RunStatus", "monitor_dir"]

FORMAT_VERSION = 1
_KEEP_LINES = 10_000  # history.jsonl is compacted to its newest lines beyond twice this


class RunStatus:
    OK = "ok"
    BREACHED = "breached"
    NO_DATA = "no_data"
    ERROR = "error"


def monitor_dir(state_dir: Path, name: str) -> Path:
    return Path(state_dir) / "monitors" / name


@dataclass(frozen=True, slots=True)
class MonitorRun:
    """One run of a monitor: what it measured, the verdict, what was done about it."""

    run_id: str
    monitor: str
    deployment: str
    type: str
    time: str  # ISO 8601 UTC, Z
    status: str  # RunStatus
    reason: str  # one line: "psi 0.31 > 0.1 on column mean_radius", "p99 412 ms > 250 ms"
    value: float | None = None  # the statistic judged (share of drifted columns, p99 ms, …)
    threshold: float | None = None
    rows: int = 0  # rows (or requests) in the window
    window: str = ""  # "last 500 rows", "last 10m"
    serving: tuple[str, ...] = ()  # the model versions served when it ran
    details: Mapping[str, Any] = field(default_factory=dict)
    action: Mapping[str, Any] = field(default_factory=dict)  # {"action", "outcome"}
    alerts: tuple[Mapping[str, Any], ...] = ()  # deliveries

    @property
    def breached(self) -> bool:
        return self.status == RunStatus.BREACHED

    def breach_reason(self) -> str:
        """``monitor.NAME breached at TIME (reason)``: how plans and alerts name it."""
        return f"monitor.{self.monitor} breached at {self.time} ({self.reason})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "run_id": self.run_id,
            "monitor": self.monitor,
            "deployment": self.deployment,
            "type": self.type,
            "time": self.time,
            "status": self.status,
            "reason": self.reason,
            "value": self.value,
            "threshold": self.threshold,
            "rows": self.rows,
            "window": self.window,
            "serving": list(self.serving),
            "details": dict(self.details),
            "action": dict(self.action),
            "alerts": [dict(a) for a in self.alerts],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MonitorRun:
        return cls(
            run_id=str(data["run_id"]),
            monitor=str(data["monitor"]),
            deployment=str(data.get("deployment", "")),
            type=str(data.get("type", "")),
            time=str(data["time"]),
            status=str(data["status"]),
            reason=str(data.get("reason", "")),
            value=data.get("value"),
            threshold=data.get("threshold"),
            rows=int(data.get("rows", 0)),
            window=str(data.get("window", "")),
            serving=tuple(str(s) for s in data.get("serving") or ()),
            details=dict(data.get("details") or {}),
            action=dict(data.get("action") or {}),
            alerts=tuple(dict(a) for a in data.get("alerts") or ()),
        )


class MonitorHistory:
    """The runs of one monitor (``<state dir>/monitors/<name>/history.jsonl``)."""

    def __init__(self, state_dir: Path, name: str) -> None:
        self.name = name
        self.directory = monitor_dir(state_dir, name)
        self.path = self.directory / "history.jsonl"

    def append(self, run: MonitorRun) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        append_line(self.path, json.dumps(run.to_dict(), sort_keys=True))
        self._compact()

    def runs(self, limit: int | None = None) -> list[MonitorRun]:
        """Oldest first; the newest ``limit`` when given."""
        runs = [MonitorRun.from_dict(d) for d in _read_lines(self.path)]
        return runs if limit is None else runs[-limit:] if limit > 0 else []

    def latest(self) -> MonitorRun | None:
        runs = self.runs(1)
        return runs[0] if runs else None

    def last_judged(self) -> MonitorRun | None:
        """The newest run that reached a verdict (ok or breached)."""
        for run in reversed(self.runs()):
            if run.status in (RunStatus.OK, RunStatus.BREACHED):
                return run
        return None

    def _compact(self) -> None:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        if size < 4_000_000:  # cheap check first: compaction is rare
            return
        lines = self.path.read_text(encoding="utf-8").splitlines()
        if len(lines) <= 2 * _KEEP_LINES:
            return
        temp = self.path.with_suffix(".jsonl.tmp")
        with temp.open("w", encoding="utf-8") as handle:
            handle.write("\n".join(lines[-_KEEP_LINES:]) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, self.path)


def _read_lines(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    out: list[dict[str, Any]] = []
    lines = text.split("\n")
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            if index >= len(lines) - 2:  # a torn last line: its writer died mid-write
                continue
            raise ValueError(f"{path}: line {index + 1} is not valid JSON") from None
    return out
