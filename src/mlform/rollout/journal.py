"""The rollout journal: every step of a deployment's rollout, recorded as it happens.

One JSON document per deployment at ``<state dir>/rollouts/<address>.json``, written
atomically after every step (weight moved, check made, promotion, abort), so an
interrupted ``mlform apply`` resumes the rollout where it stopped and ``mlform rollout
status`` can show it while it runs. ``mlform rollout promote|abort`` leave a request in
the document; the process driving the rollout acts on it at its next check.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mlform.state.atomic import write_atomic
from mlform.state.timestamps import utc_now

__all__ = ["FORMAT_VERSION", "Phase", "RolloutJournal", "RolloutRecord", "Served"]

FORMAT_VERSION = 1
_MAX_CHECKS = 50
_MAX_EVENTS = 200


class Phase:
    PROGRESSING = "progressing"  # moving traffic through the steps
    PAUSED = "paused"  # waiting for `mlform rollout promote` (blue-green preview)
    HEALTHY = "healthy"  # all traffic on the newest version; nothing in flight
    ABORTED = "aborted"  # rolled back: traffic returned to the stable version

    PENDING = frozenset({PROGRESSING, PAUSED})


@dataclass(frozen=True, slots=True)
class Served:
    """One model version served by the deployment, behind the router as ``upstream``."""

    upstream: str  # router upstream and resource name suffix: "diagnosis-v2"
    ref: str  # "model.diagnosis@v2"
    weight: int = 100  # percent of traffic (ab_test variants, the canary)

    @property
    def version(self) -> int:
        return int(self.ref.rpartition("@v")[2])

    @property
    def model(self) -> str:
        return self.ref.partition("@")[0]

    def to_dict(self) -> dict[str, Any]:
        return {"upstream": self.upstream, "ref": self.ref, "weight": self.weight}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Served:
        return cls(str(data["upstream"]), str(data["ref"]), int(data.get("weight", 100)))


@dataclass(frozen=True, slots=True)
class RolloutRecord:
    deployment: str
    strategy: str
    phase: str
    stable: tuple[Served, ...] = ()  # what serves when nothing is in flight
    canary: Served | None = None  # the new version (canary, or blue-green preview)
    mirror: Served | None = None  # shadow strategy: receives a copy of the traffic
    previous: tuple[Served, ...] = ()  # what served before ``stable`` (a rollback returns to it)
    step: int = 0  # index of the current step (canary)
    weight: int = 0  # percent of traffic on the canary now
    failed_checks: int = 0
    checks: tuple[Mapping[str, Any], ...] = ()
    events: tuple[Mapping[str, Any], ...] = ()
    requested: str | None = None  # "promote" | "abort", left by `mlform rollout`
    generation: int = 0  # the router's route table generation last sent
    message: str = ""
    started_at: str = field(default_factory=utc_now)
    updated_at: str = field(default_factory=utc_now)

    @property
    def pending(self) -> bool:
        return self.phase in Phase.PENDING

    def log(self, message: str) -> RolloutRecord:
        """This record with one more event (the latest ones are kept)."""
        events = (*self.events, {"time": utc_now(), "message": message})[-_MAX_EVENTS:]
        return replace(self, events=events, message=message, updated_at=utc_now())

    def checked(self, check: Mapping[str, Any], failed: bool) -> RolloutRecord:
        checks = (*self.checks, dict(check))[-_MAX_CHECKS:]
        return replace(
            self,
            checks=checks,
            failed_checks=self.failed_checks + (1 if failed else 0),
            updated_at=utc_now(),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "deployment": self.deployment,
            "strategy": self.strategy,
            "phase": self.phase,
            "stable": [s.to_dict() for s in self.stable],
            "canary": None if self.canary is None else self.canary.to_dict(),
            "mirror": None if self.mirror is None else self.mirror.to_dict(),
            "previous": [s.to_dict() for s in self.previous],
            "step": self.step,
            "weight": self.weight,
            "failed_checks": self.failed_checks,
            "checks": [dict(c) for c in self.checks],
            "events": [dict(e) for e in self.events],
            "requested": self.requested,
            "generation": self.generation,
            "message": self.message,
            "started_at": self.started_at,
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RolloutRecord:
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"unknown rollout record format {data.get('format_version')!r}")
        canary, mirror = data.get("canary"), data.get("mirror")
        return cls(
            deployment=str(data["deployment"]),
            strategy=str(data["strategy"]),
            phase=str(data["phase"]),
            stable=tuple(Served.from_dict(s) for s in data.get("stable") or ()),
            canary=None if canary is None else Served.from_dict(canary),
            mirror=None if mirror is None else Served.from_dict(mirror),
            previous=tuple(Served.from_dict(s) for s in data.get("previous") or ()),
            step=int(data.get("step", 0)),
            weight=int(data.get("weight", 0)),
            failed_checks=int(data.get("failed_checks", 0)),
            checks=tuple(dict(c) for c in data.get("checks") or ()),
            events=tuple(dict(e) for e in data.get("events") or ()),
            requested=data.get("requested"),
            generation=int(data.get("generation", 0)),
            message=str(data.get("message", "")),
            started_at=str(data.get("started_at", "")),
            updated_at=str(data.get("updated_at", "")),
        )

    def summary(self) -> dict[str, Any]:
        """What an object's outputs and the plan show of this rollout."""
        return {
            "phase": self.phase,
            "strategy": self.strategy,
            "stable": [s.ref for s in self.stable],
            "previous": [s.ref for s in self.previous],
            "canary": None if self.canary is None else self.canary.ref,
            "step": self.step,
            "weight": self.weight,
            "failed_checks": self.failed_checks,
            "message": self.message,
        }


class RolloutJournal:
    """The rollout records of one stack (``<state dir>/rollouts``)."""

    def __init__(self, state_dir: Path) -> None:
        self.root = Path(state_dir) / "rollouts"

    def path(self, deployment: str) -> Path:
        return self.root / f"{deployment}.json"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def load(self, deployment: str) -> RolloutRecord | None:
        path = self.path(deployment)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ValueError(f"the rollout record {path} cannot be read: {exc}") from exc
        return RolloutRecord.from_dict(data)

    def all(self) -> list[RolloutRecord]:
        if not self.root.is_dir():
            return []
        records = (self.load(p.stem) for p in sorted(self.root.glob("*.json")))
        return [r for r in records if r is not None]

    def save(self, record: RolloutRecord) -> RolloutRecord:
        """Write ``record``, keeping a request `mlform rollout` left meanwhile."""
        with self._locked():
            current = self.load(record.deployment)
            if current is not None and current.requested and record.requested is None:
                record = replace(record, requested=current.requested)
            text = json.dumps(record.to_dict(), indent=2, sort_keys=True)
            write_atomic(self.path(record.deployment), text + "\n")
        return record

    def remove(self, deployment: str) -> None:
        """Forget the deployment's rollouts (it was destroyed)."""
        with self._locked():
            self.path(deployment).unlink(missing_ok=True)

    def take_request(self, deployment: str) -> str | None:
        """The pending promote/abort request, cleared from the record."""
        with self._locked():
            current = self.load(deployment)
            if current is None or current.requested is None:
                return None
            cleared = replace(current, requested=None)
            text = json.dumps(cleared.to_dict(), indent=2, sort_keys=True)
            write_atomic(self.path(deployment), text + "\n")
            return current.requested

    def request(self, deployment: str, what: str) -> RolloutRecord:
        """Leave ``what`` ("promote" | "abort") for the process driving the rollout."""
        with self._locked():
            current = self.load(deployment)
            if current is None:
                raise LookupError(f"{deployment} has no rollout on record")
            updated = replace(current, requested=what).log(f"{what} requested")
            text = json.dumps(updated.to_dict(), indent=2, sort_keys=True)
            write_atomic(self.path(deployment), text + "\n")
            return updated
