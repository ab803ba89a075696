"""Local processes as Pulumi dynamic-provider resources (the ``local`` target).

The provider runs inside Pulumi's Python launcher (``pulumi-resource-pulumi-python``), a
separate interpreter that unpickles :class:`LocalProcessProvider` by reference: this module
must stay importable there, so it imports nothing from mlform and nothing heavy.

A process is started detached (its own session), writes stdout and stderr to
``<log_dir>/<owner>/<name>.log`` and is healthy when its health URL answers 2xx (or, without
a health path, when its port accepts connections). Its identity is the pid *and* the start
time the kernel recorded for it, so a reused pid is never mistaken for it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pulumi
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    Resource,
    ResourceProvider,
    UpdateResult,
)

# Inputs whose change restarts the process (never a replacement: the id is stable).
INPUT_KEYS = (
    "command",
    "env",
    "port",
    "health_path",
    "cwd",
    "startup_timeout_s",
    "secrets_env",
    "log_dir",
    "owner",
    "name",
)
STOP_TIMEOUT_S = 10.0
LOG_TAIL_LINES = 20
# Variables of the engine's own environment that a user process must never see.
_PRIVATE_ENV_PREFIXES = ("PULUMI_", "MLFORM_PULUMI_")
# The CLI's secrets (values, the secrets directory, the redaction key): only for processes
# whose inputs say ``secrets_env`` (mlform.infra.model.Process).
_SECRET_ENV_PREFIXES = ("MLFORM_SECRET_", "MLFORM_SECRETS_DIR")
_POLL_S = 0.05


class ProcessStartError(Exception):
    """The process exited or stayed unhealthy during its startup window."""


# -- identity -------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` from the state on (field 3), or None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    return text.rpartition(")")[2].split()


def start_ticks(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), or None."""
    fields = _stat_fields(pid)
    return fields[19] if fields and len(fields) > 19 else None


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def is_same_process(pid: int, started: str | None) -> bool:
    """``pid`` still names the process started at ``started`` (a zombie counts)."""
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    if started is None or not Path("/proc").is_dir():
        return True
    return start_ticks(pid) == started


def is_alive(pid: int, started: str | None) -> bool:
    """The same process as recorded, and not a zombie."""
    if not is_same_process(pid, started):
        return False
    fields = _stat_fields(pid)
    return fields is None or (bool(fields) and fields[0] != "Z")


# -- health ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _url_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= int(response.status) < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _port_open(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def _waits_for_port(props: dict[str, Any]) -> bool:
    """Without a health path, wait for the port when the process is known to use it."""
    return int(props.get("port") or 0) != 0 or any("{port}" in str(a) for a in props["command"])


def is_healthy(props: dict[str, Any], port: int) -> bool:
    health_path = props.get("health_path")
    if health_path:
        return _url_ok(f"http://127.0.0.1:{port}{health_path}")
    if _waits_for_port(props):
        return _port_open(port)
    return True


# -- logs -----------------------------------------------------------------------------


def log_path(props: dict[str, Any]) -> Path:
    return Path(props["log_dir"]) / str(props["owner"]) / f"{props['name']}.log"


def pid_path(props: dict[str, Any]) -> Path:
    """Where the running process's identity is kept, to find it after an interrupted run."""
    return log_path(props).with_suffix(".pid")


def _write_pid(props: dict[str, Any], pid: int, started: str | None) -> None:
    path = pid_path(props)
    temporary = path.with_suffix(".pid.tmp")
    temporary.write_text(json.dumps({"pid": pid, "proc_start": started}), encoding="utf-8")
    os.replace(temporary, path)


def stop_orphan(props: dict[str, Any]) -> None:
    """Stop a process an interrupted create or update started but Pulumi never recorded."""
    try:
        recorded = json.loads(pid_path(props).read_text(encoding="utf-8"))
        pid, started = int(recorded["pid"]), recorded.get("proc_start")
    except (OSError, ValueError, KeyError, TypeError):
        return
    stop(pid, started)


def log_tail(path: Path, since: int = 0, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(since)
            data = f.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace").rstrip("\n")
    return "\n".join(text.splitlines()[-lines:])


# -- start and stop -------------------------------------------------------------------


def _child_env(props: dict[str, Any], port: int) -> dict[str, str]:
    hidden: tuple[str, ...] = _PRIVATE_ENV_PREFIXES
    if not props.get("secrets_env"):
        hidden += _SECRET_ENV_PREFIXES
    env = {k: v for k, v in os.environ.items() if not k.startswith(hidden)}
    env.update({str(k): str(v) for k, v in (props.get("env") or {}).items()})
    env["PORT"] = str(port)
    return env


def start(props: dict[str, Any]) -> dict[str, Any]:
    """Start the process and wait for it to become healthy; outputs, or ProcessStartError."""
    port = int(props.get("port") or 0) or free_port()
    command = [str(arg).replace("{port}", str(port)) for arg in props["command"]]
    log = log_path(props)
    log.parent.mkdir(parents=True, exist_ok=True)
    offset = log.stat().st_size if log.exists() else 0
    stop_orphan(props)
    cwd = props.get("cwd") or None
    with open(log, "ab") as out:
        try:
            child = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=_child_env(props, port),
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise ProcessStartError(f"could not start {command[0]!r}: {exc}") from exc
    started = start_ticks(child.pid)
    _write_pid(props, child.pid, started)
    timeout = float(props.get("startup_timeout_s") or 30.0)
    deadline = time.monotonic() + timeout
    waits = bool(props.get("health_path")) or _waits_for_port(props)
    settle = time.monotonic() + min(0.3, timeout)
    while True:
        code = child.poll()
        if code is not None:
            raise ProcessStartError(
                _failure(f"exited with status {code} during startup", log, offset)
            )
        if (waits and is_healthy(props, port)) or (not waits and time.monotonic() >= settle):
            break
        if time.monotonic() >= deadline:
            stop(child.pid, started)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=1)
            what = (
                "its health URL did not answer 2xx"
                if props.get("health_path")
                else "its port did not accept connections"
            )
            raise ProcessStartError(_failure(f"{what} within {timeout:g} s", log, offset))
        time.sleep(_POLL_S)
    # The process outlives this Popen on purpose (detached, its own session): tell the
    # Popen so, or its destructor warns that the subprocess is still running.
    child.returncode = 0
    return {
        **{key: props.get(key) for key in INPUT_KEYS if key != "port"},
        "port_requested": int(props.get("port") or 0),
        "pid": child.pid,
        "port": port,
        "proc_start": started,
        "url": f"http://127.0.0.1:{port}",
        "health": "healthy",
        "log": str(log),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _failure(what: str, log: Path, offset: int) -> str:
    tail = log_tail(log, offset)
    shown = f"last lines of {log}:\n{tail}" if tail else f"{log} is empty"
    return f"the process {what}; {shown}"


def stop(pid: int, started: str | None, timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM to the process group, SIGKILL after ``timeout``; no-op when it is gone."""
    if pid <= 0 or not is_same_process(pid, started):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
        os.killpg(pid, signal.SIGCONT)  # a stopped process only sees SIGTERM once continued
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_alive(pid, started):
            break
        time.sleep(_POLL_S)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while is_alive(pid, started) and time.monotonic() < deadline:
        time.sleep(_POLL_S)


def changed_inputs(olds: dict[str, Any], news: dict[str, Any]) -> list[str]:
    """Input keys whose new value differs from the one recorded in the old outputs."""
    recorded = {**olds, "port": olds.get("port_requested", olds.get("port"))}
    return [key for key in INPUT_KEYS if _norm(recorded.get(key)) != _norm(news.get(key))]


def _norm(value: Any) -> Any:
    # Pulumi's state gives every number back as a float.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _pid_of(props: dict[str, Any]) -> tuple[int, str | None]:
    # Numbers come back from Pulumi's state as floats.
    return int(props.get("pid") or 0), props.get("proc_start")


# -- the provider ---------------------------------------------------------------------


class LocalProcessProvider(ResourceProvider):
    """CRUD for one local process; every input change restarts it under the same id."""

    # Nothing secret is captured, so the pickled provider need not be encrypted.
    serialize_as_secret_always = False

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = []
        command = news.get("command")
        if not isinstance(command, list) or not command:
            failures.append(CheckFailure("command", "a process needs a non-empty command"))
        if not news.get("log_dir"):
            failures.append(CheckFailure("log_dir", "log_dir is required"))
        return CheckResult(news, failures)

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(uuid.uuid4().hex, start(props))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        pid, started = _pid_of(props)
        if not pid or not is_alive(pid, started):
            return ReadResult(None, {})  # gone: refresh drops it from the state
        port = int(props.get("port") or 0)
        requested = {**props, "port": int(props.get("port_requested") or 0)}
        health = "healthy" if is_healthy(requested, port) else "unhealthy"
        return ReadResult(id_, {**props, "pid": pid, "port": port, "health": health})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = changed_inputs(olds, news)
        unhealthy = olds.get("health", "healthy") != "healthy"
        return DiffResult(changes=bool(changed) or unhealthy, replaces=[], stables=[])

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        stop(*_pid_of(olds))
        return UpdateResult(start(news))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        stop(*_pid_of(props))
        if props.get("log_dir") and props.get("owner") and props.get("name"):
            with contextlib.suppress(OSError):
                pid_path(props).unlink()


class LocalProcess(Resource):
    """One local process; outputs: pid, port, url, health, log, started_at and the inputs."""

    pid: pulumi.Output[int]
    port: pulumi.Output[int]
    url: pulumi.Output[str]
    health: pulumi.Output[str]
    log: pulumi.Output[str]
    started_at: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        inputs: dict[str, Any],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props: dict[str, Any] = {
            **inputs,
            "pid": None,
            "port_requested": None,
            "proc_start": None,
            "url": None,
            "health": None,
            "log": None,
            "started_at": None,
        }
        super().__init__(LocalProcessProvider(), name, props, opts)
