"""Two CI jobs on one stack: real `mlform apply` processes and the state lock.

A second apply fails fast naming the holder, or with ``--lock-timeout`` waits for it; two
applies racing each other never corrupt the state (docs/gitops.md, "Locks and concurrency").
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from example_project import copy_example, run_cli

from mlform.state.store import LocalStateStore

pytestmark = pytest.mark.integration


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return copy_example(tmp_path / "proj")


def _store(project: Path) -> LocalStateStore:
    return LocalStateStore(project / ".mlform" / "stacks" / "dev")


def _start_apply(project: Path, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    env.pop("MLFORM_STACK", None)
    return subprocess.Popen(
        [sys.executable, "-m", "mlform", "-C", str(project), "apply", "-s", "dev", "-y", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def _assert_consistent(project: Path) -> None:
    """The state parses, matches its latest snapshot, and no lock or debris is left."""
    store = _store(project)
    doc = store.read()
    assert doc is not None
    assert store.serials()[-1] == doc.serial
    assert store.snapshot(doc.serial) == doc
    assert store.current_lock() is None
    assert not list(store.root.glob("state.lock*"))
    history = store.history()
    assert history and history[-1].finished_serial == doc.serial
    for earlier, later in itertools.pairwise(history):
        assert later.started_serial >= earlier.finished_serial

    listed = run_cli(project, "state", "list", "-s", "dev")
    assert listed.returncode == 0, listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines() if line.strip()]
    assert {row[0] for row in rows} >= {"data.tumors", "data.patients", "features.diagnosis"}

    planned = run_cli(project, "plan", "-s", "dev", "--format", "json")
    assert planned.returncode == 0, planned.stderr
    actions = {c["address"]: c["action"] for c in json.loads(planned.stdout)["changes"]}
    for address in ("data.tumors", "data.patients", "features.diagnosis"):
        assert actions[address] == "no-op", (address, actions)


def test_a_held_lock_fails_fast_then_lock_timeout_waits_for_it(project: Path) -> None:
    store = _store(project)
    with store.lock("apply") as held:
        started = time.monotonic()
        blocked = run_cli(project, "apply", "-s", "dev", "--auto-approve")
        fail_fast_s = time.monotonic() - started
        assert blocked.returncode == 1, blocked.stdout + blocked.stderr
        message = " ".join((blocked.stdout + blocked.stderr).split())
        assert "the state is locked: apply" in message
        assert f"pid {os.getpid()} on {socket.gethostname()}" in message
        assert f"mlform state unlock {held.id}" in message
        # Nothing was written, and the lock is still the test's.
        assert store.read() is None
        assert store.current_lock() == held

        # --lock-timeout: the second apply waits, and proceeds once the lock is released.
        # Release after the time a fail-fast apply needed to reach the lock (and fail), so
        # the waiting one is known to be waiting on it by then.
        release_after_s = 1.0 + 1.5 * fail_fast_s
        released = threading.Event()
        waiting = _start_apply(project, "--lock-timeout", "60")

        def release() -> None:
            time.sleep(release_after_s)
            store.unlock(held.id)
            released.set()

        releaser = threading.Thread(target=release)
        started = time.monotonic()
        releaser.start()
        try:
            output, _ = waiting.communicate(timeout=120)
        finally:
            if waiting.poll() is None:
                waiting.kill()
            releaser.join()
        waited_s = time.monotonic() - started
    assert released.is_set()
    assert waiting.returncode == 0, output
    assert waited_s >= release_after_s, "the apply finished before the lock was released"
    assert "succeeded features.diagnosis" in " ".join(output.split())
    _assert_consistent(project)


def test_lock_timeout_expires_with_the_holder_named(project: Path) -> None:
    with _store(project).lock("apply") as held:
        result = run_cli(project, "apply", "-s", "dev", "--auto-approve", "--lock-timeout", "1")
    assert result.returncode == 1
    message = " ".join((result.stdout + result.stderr).split())
    assert f"pid {os.getpid()} on {socket.gethostname()}" in message
    assert f"mlform state unlock {held.id}" in message
    assert _store(project).read() is None


@pytest.mark.parametrize("lock_timeout", ["0", "60"])
def test_two_concurrent_applies_never_corrupt_state(project: Path, lock_timeout: str) -> None:
    first = _start_apply(project, "--lock-timeout", lock_timeout)
    second = _start_apply(project, "--lock-timeout", lock_timeout)
    outputs = []
    for proc in (first, second):
        try:
            output, _ = proc.communicate(timeout=180)
        finally:
            if proc.poll() is None:
                proc.kill()
        outputs.append((proc.returncode, " ".join(output.split())))

    for code, output in outputs:
        # Each one applied, or found the other holding the lock and said so.
        assert code == 0 or (code == 1 and "the state is locked: apply" in output), output
    assert any(code == 0 for code, _ in outputs), outputs
    if lock_timeout != "0":
        assert all(code == 0 for code, _ in outputs), outputs
    # The objects were created exactly once; whoever came second had nothing to do.
    creations = sum(output.count("succeeded features.diagnosis create") for _, output in outputs)
    assert creations == 1, outputs
    _assert_consistent(project)
