"""The state lock: exclusive, self-describing, waits when asked, and breaks stale locks."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mlform.errors import StateError, StateLockedError
from mlform.state.store import LocalStateStore


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write_lock(root: Path, **fields: object) -> dict[str, object]:
    data: dict[str, object] = {
        "id": "stale-id",
        "operation": "apply",
        "owner": "someone",
        "pid": _dead_pid(),
        "host": socket.gethostname(),
        "created": "2024-05-01T12:00:00Z",
        "mlform_version": "0.1.0",
    }
    data.update(fields)
    root.mkdir(parents=True, exist_ok=True)
    (root / "state.lock").write_text(json.dumps(data), encoding="utf-8")
    return data


def test_lock_file_describes_the_holder_and_is_removed_on_exit(tmp_path: Path) -> None:
    store = LocalStateStore(tmp_path)
    with store.lock("apply") as info:
        on_disk = json.loads((tmp_path / "state.lock").read_text(encoding="utf-8"))
        assert on_disk == {
            "id": info.id,
            "operation": "apply",
            "owner": info.owner,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "created": info.created,
            "mlform_version": info.mlform_version,
        }
        assert info.created.endswith("Z")
        assert info.broke_stale is None
        assert store.current_lock() == info
    assert not (tmp_path / "state.lock").exists()
    assert store.current_lock() is None


def test_a_second_holder_fails_fast_naming_the_first(tmp_path: Path) -> None:
    store = LocalStateStore(tmp_path)
    with store.lock("apply") as info:
        started = time.monotonic()
        with pytest.raises(StateLockedError) as raised, store.lock("destroy"):
            pass  # pragma: no cover - never acquired
        assert time.monotonic() - started < 1.0
    message = str(raised.value)
    for part in ("apply", info.owner, f"pid {os.getpid()}", info.host, info.created):
        assert part in message
    assert f"if that process is gone, run `mlform state unlock {info.id}`" in message
    assert raised.value.holder["id"] == info.id


def test_a_waiting_acquirer_gets_the_lock_when_it_is_released(tmp_path: Path) -> None:
    store = LocalStateStore(tmp_path)
    held = threading.Event()
    release = threading.Event()

    def holder() -> None:
        with store.lock("apply"):
            held.set()
            release.wait(5)

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(5)
    threading.Timer(0.3, release.set).start()
    with store.lock("plan", timeout=5.0) as info:
        assert info.operation == "plan"
    thread.join()


def test_waiting_gives_up_after_the_timeout(tmp_path: Path) -> None:
    store = LocalStateStore(tmp_path)
    with store.lock("apply"):
        started = time.monotonic()
        with pytest.raises(StateLockedError), store.lock("apply", timeout=0.3):
            pass  # pragma: no cover
        assert 0.25 <= time.monotonic() - started < 3.0


def test_a_lock_of_a_dead_process_on_this_host_is_broken_and_reported(tmp_path: Path) -> None:
    stale = _write_lock(tmp_path)
    store = LocalStateStore(tmp_path)
    with store.lock("apply") as info:
        assert info.broke_stale is not None
        assert info.broke_stale.id == "stale-id"
        assert info.broke_stale.pid == stale["pid"]
        assert "stale-id" in str(info.broke_stale)
        assert store.current_lock() == info
    assert list(tmp_path.glob("state.lock*")) == []


def test_a_lock_from_another_host_is_not_broken(tmp_path: Path) -> None:
    _write_lock(tmp_path, host="some-other-host")
    with (
        pytest.raises(StateLockedError, match="some-other-host"),
        LocalStateStore(tmp_path).lock("apply"),
    ):
        pass  # pragma: no cover


def test_a_lock_of_a_live_process_is_not_broken(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        _write_lock(tmp_path, pid=proc.pid)
        with (
            pytest.raises(StateLockedError, match=f"pid {proc.pid}"),
            LocalStateStore(tmp_path).lock("apply"),
        ):
            pass  # pragma: no cover
    finally:
        proc.kill()
        proc.wait()


def test_unlock_by_id_or_force(tmp_path: Path) -> None:
    store = LocalStateStore(tmp_path)
    with pytest.raises(StateError, match="not locked"):
        store.unlock("x")
    _write_lock(tmp_path, host="elsewhere")
    with pytest.raises(StateError, match="does not match"):
        store.unlock("wrong-id")
    with pytest.raises(StateError, match="pass that lock id"):
        store.unlock(None)
    assert store.unlock("stale-id").operation == "apply"
    assert store.current_lock() is None
    _write_lock(tmp_path, host="elsewhere")
    store.unlock(None, force=True)
    assert store.current_lock() is None


def test_an_unreadable_lock_file_asks_for_a_forced_unlock(tmp_path: Path) -> None:
    (tmp_path / "state.lock").write_text("", encoding="utf-8")
    store = LocalStateStore(tmp_path)
    with pytest.raises(StateLockedError, match="mlform state unlock --force"), store.lock("apply"):
        pass  # pragma: no cover
    store.unlock(None, force=True)
    with store.lock("apply"):
        assert store.current_lock() is not None


def test_releasing_never_removes_someone_elses_lock(tmp_path: Path) -> None:
    store = LocalStateStore(tmp_path)
    with store.lock("apply"):
        store.unlock(None, force=True)
        _write_lock(tmp_path, id="theirs", host="elsewhere")
    assert store.current_lock() is not None and store.current_lock().id == "theirs"  # type: ignore[union-attr]
