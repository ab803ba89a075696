from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

sys.path.insert(0, str(Path(__file__).parent))

if TYPE_CHECKING:
    from support.kube_control_plane import ControlPlane


@pytest.fixture(scope="session", autouse=True)
def _stop_leftover_processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Stop what applies left running under this session's temp dirs (servers, routers,
    monitor schedulers).

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
        ours = (
            "mlform.serving.router" in cmdline
            or " mlform serve " in cmdline
            or "mlform.monitoring.scheduler" in cmdline
        )
        if ours and (cwd.startswith(base) or base in cmdline):
            found.append(int(entry.name))
    return found


REPO = Path(__file__).resolve().parents[2]


def _built_bin_dir(script: str, missing_tool: Callable[[str], NoReturn]) -> Path:
    """The bin dir a build script prints; never builds (MLFORM_TOOLCHAIN_NO_BUILD=1)."""
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / script)],
        env={**os.environ, "MLFORM_TOOLCHAIN_NO_BUILD": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        missing_tool(result.stderr.strip() or f"scripts/{script} exited {result.returncode}")
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def kube_control_plane(
    tmp_path_factory: pytest.TempPathFactory, missing_tool: Callable[[str], NoReturn]
) -> Iterator[ControlPlane]:
    """A real etcd + kube-apiserver on loopback for the session (see support/kube_control_plane).

    The binaries come from scripts/build-etcd.sh and scripts/build-kube-apiserver.sh; when they
    have not been built the tests that use this are skipped (failed under CI=true).
    """
    from support.kube_control_plane import start_control_plane

    etcd = _built_bin_dir("build-etcd.sh", missing_tool) / "etcd"
    apiserver = _built_bin_dir("build-kube-apiserver.sh", missing_tool) / "kube-apiserver"
    plane = start_control_plane(
        tmp_path_factory.mktemp("kube-control-plane"), etcd=etcd, kube_apiserver=apiserver
    )
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def api(kube_control_plane: ControlPlane) -> Iterator[Any]:
    """The official ``kubernetes`` client's ApiClient for the session's API server."""
    from kubernetes import config

    api_client = config.new_client_from_config(
        config_file=str(kube_control_plane.kubeconfig), context=kube_control_plane.context
    )
    try:
        yield api_client
    finally:
        api_client.close()
