"""An apply killed with SIGKILL resumes on the next run and ends where an uninterrupted one does.

A driver script (written to tmp_path) plans a 12-object system with parallel branches
against a LocalStateStore and applies it with slow, file-writing providers that log
every step. The test kills it at several points, checks that the state always parses,
reruns it, and compares the final state with an uninterrupted run's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from mlform.state.model import ObjectStatus, StateDocument
from mlform.state.store import LocalStateStore

pytestmark = pytest.mark.integration

DRIVER = r"""
import hashlib, json, os, sys, time
from pathlib import Path

from mlform.addresses import Kind
from mlform.apply.executor import execute
from mlform.plan.compute import compute_plan
from mlform.plan.testing import declared, desired_system
from mlform.providers.base import (ApplyResult, DeleteResult, DiffResult, ProviderContext,
                                   ReadResult)
from mlform.providers.registry import ProviderRegistry
from mlform.state.store import LocalStateStore, StateWriter

work = Path(sys.argv[1])
LOG = work / "steps.log"
ARTIFACTS = work / "artifacts"

def log(line):
    fd = os.open(LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.write(fd, (line + "\n").encode())
    os.close(fd)

class SlowFileProvider:
    def __init__(self, kind):
        self.kind = kind
    def validate(self, request):
        return ()
    def read(self, request):
        return ReadResult(outputs=request.outputs)
    def diff(self, request):
        return DiffResult(changed=True)
    def _apply(self, request):
        address = str(request.address)
        log(f"start {address}")
        time.sleep(0.12)
        body = json.dumps({"config": dict(request.config),
                           "upstream": {k: dict(v) for k, v in
                                        sorted(request.upstream_outputs.items())}},
                          sort_keys=True)
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / f"{address}.json").write_text(body)
        log(f"done {address}")
        return ApplyResult(outputs={"sha": hashlib.sha256(body.encode()).hexdigest()[:16]})
    create = _apply
    update = _apply
    def delete(self, request):
        return DeleteResult()

edges = {
    "data.a": [], "data.b": [], "data.c": [],
    "features.fa": ["data.a"], "features.fb": ["data.b"], "features.fc": ["data.b", "data.c"],
    "model.m1": ["features.fa"], "model.m2": ["features.fb", "features.fc"],
    "model.m3": ["features.fa", "features.fc"],
    "deployment.d1": ["model.m1"], "deployment.d2": ["model.m2"], "deployment.d3": ["model.m3"],
}
objects = [declared(a, {"name": a, "size": i}, deps) for i, (a, deps) in enumerate(edges.items())]
external = {a: {"data": f"sha256:{a}"} for a in edges if a.startswith("data")}
desired = desired_system(objects, external)
kinds = (Kind.DATA, Kind.FEATURES, Kind.MODEL, Kind.DEPLOYMENT)
registry = ProviderRegistry({k: SlowFileProvider(k) for k in kinds})
store = LocalStateStore(work / "state")
with store.lock("apply") as lock:
    if lock.broke_stale is not None:
        log(f"broke-stale {lock.broke_stale.id}")
    state = store.read()
    plan = compute_plan(desired, state, supported_kinds=frozenset(kinds), mlform_version="0.1.0")
    context = ProviderContext(project_dir=work, state_dir=store.root, stack="dev")
    outcome = execute(plan, StateWriter(store, state), registry, context, parallelism=3)
log(f"finished {len(outcome.succeeded)} {len(outcome.failed)}")
sys.exit(0 if outcome.ok else 1)
"""


def _driver(tmp_path: Path) -> Path:
    script = tmp_path / "driver.py"
    script.write_text(DRIVER, encoding="utf-8")
    return script


def _run(script: Path, work: Path) -> subprocess.CompletedProcess[str]:
    work.mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, str(script), str(work)], capture_output=True, text=True, timeout=60
    )


def _comparable(doc: StateDocument) -> dict[str, Any]:
    return {
        address: obj.model_dump(exclude={"updated_at", "updated_serial"})
        for address, obj in doc.objects.items()
    }


def _log(work: Path) -> list[str]:
    path = work / "steps.log"
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def _kill_after(script: Path, work: Path, store: LocalStateStore, commits: int) -> None:
    """Start the driver; SIGKILL it once ``commits`` more serials are on disk."""
    before = store.read()
    target = (0 if before is None else before.serial) + commits
    proc = subprocess.Popen(
        [sys.executable, str(script), str(work)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            doc = store.read()  # raises if a partial state file were ever visible
            if doc is not None and doc.serial >= target:
                break
            assert proc.poll() is None, "the driver finished before it could be killed"
            time.sleep(0.005)
        else:  # pragma: no cover - a hang is a failure
            raise AssertionError(f"serial {target} was never reached")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def test_killed_applies_resume_and_match_an_uninterrupted_run(tmp_path: Path) -> None:
    script = _driver(tmp_path)
    reference_dir = tmp_path / "reference"
    done = _run(script, reference_dir)
    assert done.returncode == 0, done.stderr
    reference = LocalStateStore(reference_dir / "state").read()
    assert reference is not None and len(reference.objects) == 12

    work = tmp_path / "killed"
    work.mkdir()
    store = LocalStateStore(work / "state")
    previous: tuple[set[str], int, str] | None = None
    for commits in (1, 3, 6, None):
        if commits is None:
            finished = _run(script, work)
            assert finished.returncode == 0, finished.stderr
        else:
            _kill_after(script, work, store, commits)
        if previous is not None:
            # This run broke the killed run's stale lock and redid no step recorded as applied.
            applied, mark, lock_id = previous
            later = _log(work)[mark:]
            assert f"broke-stale {lock_id}" in later
            restarted = {line.split()[1] for line in later if line.startswith("start ")}
            assert not (restarted & applied)
            assert restarted or commits is not None
        if commits is not None:
            doc = store.read()
            lock = store.current_lock()
            assert doc is not None and lock is not None  # the killed process left its lock
            applied = {a for a, o in doc.objects.items() if o.status is ObjectStatus.APPLIED}
            assert len(applied) < 12
            previous = (applied, len(_log(work)), lock.id)

    final = store.read()
    assert final is not None
    assert all(o.status is ObjectStatus.APPLIED for o in final.objects.values())
    assert _comparable(final) == _comparable(reference)
    assert store.current_lock() is None
    outcomes = [e.outcome for e in store.history()]
    assert outcomes[-1] == "succeeded"
    for address in reference.objects:
        artifact = f"artifacts/{address}.json"
        assert (work / artifact).read_text() == (reference_dir / artifact).read_text()
