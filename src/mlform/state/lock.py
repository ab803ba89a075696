"""The state lock: one writer at a time, with an owner, a time and stale-lock recovery.

The lock is a file created with ``O_CREAT | O_EXCL`` holding JSON that names the
holder. A lock whose process ran on this host and is no longer alive is *stale*: the
next acquirer breaks it (and says so through :attr:`LockInfo.broke_stale`), which is
what lets an apply killed with SIGKILL resume on the next run.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from mlform import __version__
from mlform.errors import StateError, StateLockedError
from mlform.state.atomic import fsync_directory
from mlform.state.timestamps import utc_now

_POLL_S = 0.05
# A lock file that stays unreadable this long was left half-written by a killed process.
_TORN_GRACE_S = 2.0


@dataclass(frozen=True, slots=True)
class LockInfo:
    id: str
    operation: str
    owner: str
    pid: int
    host: str
    created: str
    mlform_version: str
    # The stale lock this acquisition broke (its holder was dead), if any.
    broke_stale: LockInfo | None = field(default=None, compare=False)

    def to_json(self) -> str:
        data = asdict(self)
        data.pop("broke_stale")
        return json.dumps(data, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> LockInfo:
        data: Any = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("lock file is not a JSON object")
        return cls(
            id=str(data["id"]),
            operation=str(data["operation"]),
            owner=str(data["owner"]),
            pid=int(data["pid"]),
            host=str(data["host"]),
            created=str(data["created"]),
            mlform_version=str(data.get("mlform_version", "")),
        )

    def describe(self) -> str:
        return (
            f"{self.operation} by {self.owner} (pid {self.pid} on {self.host}, "
            f"since {self.created}, lock id {self.id})"
        )

    def __str__(self) -> str:
        return self.describe()


def _current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # pragma: no cover - no passwd entry
        return f"uid {os.getuid()}"


def process_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (alive, or owned by another user)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class StateLock:
    """The lock file ``<root>/state.lock`` of one state directory."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def current(self) -> LockInfo | None:
        """The holder of the lock, or None when the state is not locked."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            return LockInfo.from_json(text)
        except (ValueError, KeyError, TypeError):
            return None if not self.path.exists() else self._torn_lock()

    def _torn_lock(self) -> LockInfo:
        return LockInfo(
            id="unknown",
            operation="unknown operation",
            owner="unknown",
            pid=-1,
            host="unknown",
            created="unknown",
            mlform_version="",
        )

    def is_stale(self, info: LockInfo) -> bool:
        return info.host == socket.gethostname() and not process_alive(info.pid)

    @contextlib.contextmanager
    def hold(self, operation: str, *, timeout: float = 0.0) -> Iterator[LockInfo]:
        """Acquire the lock for ``operation`` (waiting up to ``timeout`` s), release on exit."""
        info = self.acquire(operation, timeout=timeout)
        try:
            yield info
        finally:
            self.release(info)

    def acquire(self, operation: str, *, timeout: float = 0.0) -> LockInfo:
        mine = LockInfo(
            id=str(uuid.uuid4()),
            operation=operation,
            owner=_current_user(),
            pid=os.getpid(),
            host=socket.gethostname(),
            created=utc_now(),
            mlform_version=__version__,
        )
        deadline = time.monotonic() + max(timeout, 0.0)
        broke: LockInfo | None = None
        while True:
            if self._try_create(mine):
                return replace(mine, broke_stale=broke)
            holder = self._read_holder()
            if holder is None:
                continue  # released between our attempt and the read
            if self.is_stale(holder) and self._break(holder):
                broke = holder
                continue
            if time.monotonic() >= deadline:
                raise self._locked_error(holder)
            time.sleep(_POLL_S)

    def _try_create(self, info: LockInfo) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        try:
            os.write(fd, info.to_json().encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_directory(self.path.parent)
        return True

    def _read_holder(self) -> LockInfo | None:
        """The holder; waits out the instant between another process's create and write."""
        waited = 0.0
        while True:
            try:
                text = self.path.read_text(encoding="utf-8")
            except FileNotFoundError:
                return None
            try:
                return LockInfo.from_json(text)
            except (ValueError, KeyError, TypeError):
                if waited >= _TORN_GRACE_S:
                    return self._torn_lock()
                time.sleep(_POLL_S)
                waited += _POLL_S

    def _break(self, stale: LockInfo) -> bool:
        """Remove a stale lock unless someone replaced it meanwhile; True when removed."""
        aside = self.path.with_name(f"{self.path.name}.stale-{uuid.uuid4().hex}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return False
        try:
            moved = LockInfo.from_json(aside.read_text(encoding="utf-8"))
        except (ValueError, KeyError, TypeError):
            moved = None
        if moved is None or moved.id != stale.id:
            # Another process took the lock after we judged it stale: put theirs back.
            with contextlib.suppress(FileExistsError):
                os.link(aside, self.path)
            aside.unlink(missing_ok=True)
            return False
        aside.unlink(missing_ok=True)
        return True

    def release(self, info: LockInfo) -> None:
        """Remove the lock if ``info`` still holds it (never someone else's)."""
        holder = self.current()
        if holder is not None and holder.id == info.id:
            self.path.unlink(missing_ok=True)
            fsync_directory(self.path.parent)

    def unlock(self, lock_id: str | None, *, force: bool = False) -> LockInfo:
        """Remove the lock by id (``force`` removes it whatever its id). Returns the old holder."""
        holder = self.current()
        if holder is None:
            raise StateError("the state is not locked; there is nothing to unlock")
        if not force:
            if lock_id is None:
                raise StateError(
                    f"the state is locked by {holder.describe()}; pass that lock id to "
                    "`mlform state unlock <id>`, or --force"
                )
            if lock_id != holder.id:
                raise StateError(
                    f"lock id {lock_id} does not match the current lock, held by "
                    f"{holder.describe()}; check the id, or pass --force"
                )
        self.path.unlink(missing_ok=True)
        fsync_directory(self.path.parent)
        return holder

    def _locked_error(self, holder: LockInfo) -> StateLockedError:
        if holder.pid < 0:
            return StateLockedError(
                f"the state is locked, but the lock file {self.path} cannot be read (a process "
                "was killed while taking it). If no mlform is running on this state, run "
                "`mlform state unlock --force`",
                holder=asdict(holder),
            )
        return StateLockedError(
            f"the state is locked: {holder.operation} by {holder.owner} "
            f"(pid {holder.pid} on {holder.host}) since {holder.created}. Wait for it to finish; "
            f"if that process is gone, run `mlform state unlock {holder.id}`",
            holder=asdict(holder),
        )
