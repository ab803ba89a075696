"""One engine operation at a time per stack.

Pulumi's file backend refuses at once to run on a stack another update holds, so every
operation takes ``<work_dir>/engine.lock`` first (``fcntl.flock``, waiting up to a timeout).
The holder writes who it is into the file, so a waiter that gives up can say which
operation is in the way. Two threads of one process exclude each other too: each opens
the file on its own.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlform.errors import StateLockedError

LOCK_FILE = "engine.lock"
_POLL_S = 0.1


@contextlib.contextmanager
def engine_lock(work_dir: Path, operation: str, timeout_s: float) -> Iterator[None]:
    """Hold the stack's engine lock for ``operation``; StateLockedError after ``timeout_s``."""
    work_dir.mkdir(parents=True, exist_ok=True)
    path = work_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        _acquire(fd, path, operation, timeout_s)
        try:
            _write_holder(fd, operation)
            yield
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _acquire(fd: int, path: Path, operation: str, timeout_s: float) -> None:
    deadline = time.monotonic() + max(timeout_s, 0.0)
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                holder = read_holder(path)
                raise StateLockedError(_message(operation, holder, timeout_s), holder) from None
            time.sleep(_POLL_S)


def _write_holder(fd: int, operation: str) -> None:
    holder = {
        "operation": operation,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(holder).encode(), 0)


def read_holder(path: Path) -> dict[str, Any]:
    """Who holds the lock, as its holder wrote it ({} when unknown)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _message(operation: str, holder: dict[str, Any], timeout_s: float) -> str:
    if holder.get("operation"):
        who = (
            f"a Pulumi {holder['operation']} (pid {holder.get('pid', '?')} on "
            f"{holder.get('host', '?')}, since {holder.get('since', '?')})"
        )
    else:
        who = "another engine operation"
    return (
        f"could not start the Pulumi {operation}: {who} holds the stack's engine lock and did "
        f"not release it within {timeout_s:g} s; wait for it to finish and try again"
    )
