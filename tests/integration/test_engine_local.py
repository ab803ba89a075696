"""The real Pulumi engine driving real local processes (file backend, no network).

Every process a test starts is stopped in teardown, even when the test fails.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import socket
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mlform.addresses import Address
from mlform.errors import InfraError, StateLockedError
from mlform.infra.model import InfraChange, InfraOp, Process
from mlform.pulumi_engine.engine import Engine, EngineRun
from mlform.pulumi_engine.local_process import (
    LocalProcessProvider,
    ProcessStartError,
    is_alive,
    start_ticks,
    stop,
)
from mlform.pulumi_engine.lock import engine_lock
from mlform.pulumi_engine.target import EngineTarget
from mlform.pulumi_engine.toolchain import Toolchain

pytestmark = [
    pytest.mark.integration,
    # The Pulumi SDK's inline-program runner leaves asyncio event loops (and their
    # self-pipe sockets) unclosed in its gRPC threads; they are collected during our tests.
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <function BaseEventLoop.__del__"
        ":pytest.PytestUnraisableExceptionWarning"
    ),
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning"
    ),
]

API = Address.parse("deployment.api")
LOGICAL = "deployment.api/server-0"


def _server(cwd: Path, **overrides: Any) -> Process:
    fields: dict[str, Any] = {
        "owner": API,
        "name": "server-0",
        "command": (sys.executable, "-m", "http.server", "{port}", "--bind", "127.0.0.1"),
        "env": {"MODEL_VERSION": "1"},
        "health_path": "/",
        "cwd": str(cwd),
        "startup_timeout_s": 30.0,
    }
    fields.update(overrides)
    return Process(**fields)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status) == 200
    except OSError:
        return False


def _port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            return False
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            server.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _pid_gone(pid: int, started: str | None) -> bool:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if not is_alive(pid, started):
            return True
        time.sleep(0.05)
    return False


class Processes:
    """Every pid a test saw, stopped at teardown."""

    def __init__(self) -> None:
        self.seen: dict[int, str | None] = {}

    def note(self, run: EngineRun) -> dict[str, Any]:
        outputs = dict(run.outputs.get(LOGICAL, {}))
        if outputs.get("pid"):
            self.seen[int(outputs["pid"])] = outputs.get("proc_start")
        return outputs

    def stop_all(self) -> None:
        for pid, started in self.seen.items():
            stop(pid, started, timeout=2)


@pytest.fixture
def processes() -> Iterator[Processes]:
    tracked = Processes()
    try:
        yield tracked
    finally:
        tracked.stop_all()
        gc.collect()  # the SDK's leaked event loops go now, under this module's filters


@pytest.fixture
def make_engine(
    pulumi_toolchain: Toolchain, tmp_path: Path, processes: Processes
) -> Iterator[Callable[..., Engine]]:
    engines: list[Engine] = []

    def make(**overrides: Any) -> Engine:
        options: dict[str, Any] = {
            "work_dir": tmp_path / "state" / "pulumi",
            "project": "churn system",
            "stack": "dev",
            "target": EngineTarget(type="local"),
            "toolchain": pulumi_toolchain,
        }
        options.update(overrides)
        engine = Engine(**options)
        engines.append(engine)
        return engine

    try:
        yield make
    finally:
        if engines:
            with contextlib.suppress(Exception):
                engines[0].destroy()
        processes.stop_all()


def _ops(run: EngineRun) -> list[tuple[str, InfraOp]]:
    return [(c.logical_name, c.op) for c in run.changes]


def test_the_lifecycle_of_one_process(
    make_engine: Callable[..., Engine], processes: Processes, tmp_path: Path
) -> None:
    live: list[InfraChange] = []
    engine = make_engine(on_change=live.append)
    server = _server(tmp_path)
    assert not engine.has_stack()

    preview = engine.preview([server])
    assert _ops(preview) == [(LOGICAL, InfraOp.CREATE)]
    assert preview.changes[0].owner == API and preview.changes[0].type == "process"
    assert preview.outputs == {}
    assert engine.has_stack()

    first = engine.up([server])
    assert _ops(first) == [(LOGICAL, InfraOp.CREATE)]
    out = processes.note(first)
    assert isinstance(out["pid"], int | float) and out["health"] == "healthy"
    assert out["url"] == f"http://127.0.0.1:{int(out['port'])}"
    assert _answers(out["url"] + "/")
    assert Path(out["log"]) == engine.log_dir / "deployment.api" / "server-0.log"
    assert [(c.logical_name, c.op) for c in live] == [(LOGICAL, InfraOp.CREATE)]
    assert engine.outputs()[LOGICAL]["pid"] == out["pid"]

    again = engine.up([server])
    assert _ops(again) == [(LOGICAL, InfraOp.SAME)]
    assert again.changed() == ()
    assert processes.note(again)["pid"] == out["pid"]

    changed = engine.up([_server(tmp_path, env={"MODEL_VERSION": "2"})])
    assert [(c.logical_name, c.op, c.fields) for c in changed.changes] == [
        (LOGICAL, InfraOp.UPDATE, ("env",))
    ]
    restarted = processes.note(changed)
    assert restarted["pid"] != out["pid"]
    assert _pid_gone(int(out["pid"]), out["proc_start"])
    assert _answers(restarted["url"] + "/")

    os.killpg(int(restarted["pid"]), signal.SIGKILL)
    assert _pid_gone(int(restarted["pid"]), restarted["proc_start"])
    drift = engine.drift()
    assert [(c.logical_name, c.op) for c in drift.changed()] == [(LOGICAL, InfraOp.GONE)]
    assert engine.drift().changed() == drift.changed()  # drift changes nothing

    refreshed = engine.refresh()
    assert _ops(refreshed) == [(LOGICAL, InfraOp.GONE)]
    assert refreshed.outputs == {}
    back = engine.up([_server(tmp_path, env={"MODEL_VERSION": "2"})])
    assert _ops(back) == [(LOGICAL, InfraOp.CREATE)]
    revived = processes.note(back)
    assert revived["pid"] != restarted["pid"]
    assert _answers(revived["url"] + "/")

    live.clear()
    destroyed = engine.destroy()
    assert _ops(destroyed) == [(LOGICAL, InfraOp.DELETE)]
    assert [(c.logical_name, c.op) for c in live] == [(LOGICAL, InfraOp.DELETE)]
    assert _pid_gone(int(revived["pid"]), revived["proc_start"])
    assert _port_is_free(int(revived["port"]))
    assert engine.outputs() == {}


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    pairs = (item.decode().partition("=") for item in raw if item)
    return {name: value for name, _, value in pairs}


def test_a_process_sees_the_clis_secrets_only_when_its_inputs_say_so(
    make_engine: Callable[..., Engine],
    processes: Processes,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The engine (and its provider plugin) inherit this environment, as from the CLI.
    monkeypatch.setenv("MLFORM_SECRET_ALERT_TOKEN", "s3cr3t-in-env")
    monkeypatch.setenv("MLFORM_SECRETS_DIR", str(tmp_path / "secrets"))
    engine = make_engine()
    scheduler_name = "deployment.api/scheduler"
    run = engine.up([_server(tmp_path), _server(tmp_path, name="scheduler", secrets_env=True)])
    envs = {}
    for logical in (LOGICAL, scheduler_name):
        out = run.outputs[logical]
        processes.seen[int(out["pid"])] = out.get("proc_start")
        envs[logical] = _environ(int(out["pid"]))
    server_env, scheduler_env = envs[LOGICAL], envs[scheduler_name]
    assert server_env["MODEL_VERSION"] == "1"  # its own env still arrives
    assert not [name for name in server_env if name.startswith("MLFORM_SECRET")]
    assert not [name for name in server_env if name.startswith("PULUMI_")]
    assert scheduler_env["MLFORM_SECRET_ALERT_TOKEN"] == "s3cr3t-in-env"
    assert scheduler_env["MLFORM_SECRETS_DIR"] == str(tmp_path / "secrets")


def test_an_unhealthy_process_is_drifted_and_restarted_by_the_next_up(
    make_engine: Callable[..., Engine], processes: Processes, tmp_path: Path
) -> None:
    engine = make_engine()
    server = _server(tmp_path)
    out = processes.note(engine.up([server]))
    pid = int(out["pid"])
    os.kill(pid, signal.SIGSTOP)  # alive, but its health URL no longer answers
    try:
        drift = engine.drift()
        assert [(c.op, c.fields) for c in drift.changed()] == [(InfraOp.DRIFTED, ("health",))]
        engine.refresh()
        assert engine.outputs()[LOGICAL]["health"] == "unhealthy"
    finally:
        os.kill(pid, signal.SIGCONT)
    healed = engine.up([server])
    assert [(c.op, c.fields) for c in healed.changes] == [(InfraOp.UPDATE, ("health",))]
    new = processes.note(healed)
    assert new["pid"] != pid and new["health"] == "healthy"


def test_a_process_that_exits_at_once_fails_the_up_with_its_log(
    make_engine: Callable[..., Engine], tmp_path: Path
) -> None:
    engine = make_engine()
    crashing = Process(
        owner=API,
        name="broken",
        command=(sys.executable, "-c", "import sys; print('no model at /models/x'); sys.exit(3)"),
        cwd=str(tmp_path),
    )
    with pytest.raises(InfraError) as caught:
        engine.up([crashing])
    diagnostics = caught.value.diagnostics
    assert len(diagnostics) == 1
    assert diagnostics[0].summary == "deployment.api/broken: could not be created"
    assert diagnostics[0].address == "deployment.api"
    assert "exited with status 3" in diagnostics[0].detail
    assert "no model at /models/x" in diagnostics[0].detail  # the log tail
    assert "Exception calling application" not in diagnostics[0].detail
    assert engine.outputs() == {}


def test_two_engines_on_one_stack_take_turns(
    make_engine: Callable[..., Engine], processes: Processes, tmp_path: Path
) -> None:
    server = _server(tmp_path)
    runs: list[EngineRun] = []
    errors: list[BaseException] = []

    def apply() -> None:
        try:
            runs.append(make_engine(lock_timeout_s=120).up([server]))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=apply) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for run in runs:
        processes.note(run)
    assert errors == []
    assert sorted(op for run in runs for _, op in _ops(run)) == [InfraOp.CREATE, InfraOp.SAME]
    assert runs[0].outputs[LOGICAL]["pid"] == runs[1].outputs[LOGICAL]["pid"]


def test_a_held_lock_times_out_with_state_locked_error(
    make_engine: Callable[..., Engine], tmp_path: Path
) -> None:
    engine = make_engine(lock_timeout_s=0.3)
    with engine_lock(engine.work_dir, "up", 10), pytest.raises(StateLockedError) as caught:
        engine.preview([_server(tmp_path)])
    assert "a Pulumi up (pid" in str(caught.value)
    assert caught.value.holder["operation"] == "up"
    assert caught.value.holder["pid"] == os.getpid()


def test_destroy_without_a_stack_is_an_empty_run(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine()
    run = engine.destroy()
    assert (run.operation, run.changes, run.outputs) == ("destroy", (), {})
    assert not engine.has_stack()


# -- the provider on its own (no Pulumi) ------------------------------------------------


def _inputs(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    process = _server(tmp_path, **overrides)
    return {
        **process.inputs(),
        "log_dir": str(tmp_path / "logs"),
        "owner": str(process.owner),
        "name": process.name,
    }


def test_read_does_not_mistake_a_reused_pid_for_the_process(
    tmp_path: Path, processes: Processes
) -> None:
    provider = LocalProcessProvider()
    created = provider.create(_inputs(tmp_path))
    outs = dict(created.outs or {})
    processes.seen[int(outs["pid"])] = outs["proc_start"]
    assert outs["proc_start"] == start_ticks(int(outs["pid"]))
    assert provider.read(created.id, outs).id == created.id
    reused = {**outs, "proc_start": str(int(outs["proc_start"]) - 1)}
    gone = provider.read(created.id, reused)
    assert (gone.id, gone.outs) == (None, {})
    provider.delete(created.id, reused)  # not ours any more: left alone
    assert is_alive(int(outs["pid"]), outs["proc_start"])
    provider.delete(created.id, outs)
    assert _pid_gone(int(outs["pid"]), outs["proc_start"])


def test_a_process_that_never_gets_healthy_is_stopped_and_its_log_shown(
    tmp_path: Path,
) -> None:
    command = (
        sys.executable,
        "-c",
        "import time; print('loading weights', flush=True); time.sleep(60)",
    )
    props = _inputs(tmp_path, command=command, startup_timeout_s=1.0, port=0)
    before = {int(p) for p in os.listdir("/proc") if p.isdigit()}
    with pytest.raises(ProcessStartError, match="loading weights") as caught:
        LocalProcessProvider().create(props)
    assert "did not answer 2xx within 1 s" in str(caught.value)
    leftovers = [
        pid
        for pid in {int(p) for p in os.listdir("/proc") if p.isdigit()} - before
        if "loading weights" in _cmdline(pid)
    ]
    assert leftovers == []


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def test_a_create_stops_the_orphan_of_an_interrupted_run(
    tmp_path: Path, processes: Processes
) -> None:
    provider = LocalProcessProvider()
    props = _inputs(tmp_path)
    # A run killed after starting the process never recorded it; Pulumi creates it again.
    orphan = dict(provider.create(props).outs or {})
    processes.seen[int(orphan["pid"])] = orphan["proc_start"]
    again = dict(provider.create(props).outs or {})
    processes.seen[int(again["pid"])] = again["proc_start"]
    assert _pid_gone(int(orphan["pid"]), orphan["proc_start"])
    assert is_alive(int(again["pid"]), again["proc_start"])
    provider.delete("id", again)
    assert _pid_gone(int(again["pid"]), again["proc_start"])
    assert not (tmp_path / "logs" / "deployment.api" / "server-0.pid").exists()
