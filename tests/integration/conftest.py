from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session", autouse=True)
def _stop_leftover_processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Stop what applies left running under this session's temp dirs (servers, routers).

    ``mlform apply`` leaves a deployment's processes running, like any infrastructure;
    tests that do not destroy what they applied must not leave them behind.
    """
    yield
    base = str(tmp_path_factory.getbasetemp())
    for pid in _pids_under(base):
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def _pids_under(base: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        serving = "mlform.serving.router" in cmdline or " mlform serve " in cmdline
        if serving and (cwd.startswith(base) or base in cmdline):
            found.append(int(entry.name))
    return found
