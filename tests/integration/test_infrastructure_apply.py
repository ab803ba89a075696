"""mlform apply / refresh / plan / destroy of an object backed by real infrastructure.

The object's provider comes from a plugin package (the ``mlform.providers`` entry-point
group), installed into a temporary directory on PYTHONPATH: it serves the project
directory over HTTP with a real long-running process per object, which mlform runs
through the real Pulumi engine (local target, ``file://`` backend in the state dir).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from example_project import run_cli

pytestmark = pytest.mark.integration

PLUGIN = textwrap.dedent(
    '''
    """A test plugin: each data object is served over HTTP by a local process."""
    import sys

    from mlform.addresses import Kind
    from mlform.infra.kubernetes import namespace, workload
    from mlform.infra.model import Process
    from mlform.providers.infrastructure import InfrastructureProvider


    class DataServer(InfrastructureProvider):
        kind = Kind.DATA

        def resources(self, address, config, context):
            if config.get("description") == "crash":
                command = (sys.executable, "-c", "raise SystemExit('no model to serve')")
                return (Process(owner=address, name="server", command=command, port=0,
                                health_path="/", startup_timeout_s=5),)
            if context.target == "render":
                return (
                    namespace(address, "served", project="served"),
                    *workload(
                        address,
                        name="tumors",
                        namespace="served",
                        image="ghcr.io/example-org/data-server:1.0",
                        project="served",
                        port=8080,
                        env={"DESCRIPTION": str(config.get("description", ""))},
                    ),
                )
            return (
                Process(
                    owner=address,
                    name="server",
                    command=(sys.executable, "-m", "http.server", "{port}",
                             "--bind", "127.0.0.1"),
                    env={"DESCRIPTION": str(config.get("description", ""))},
                    health_path="/",
                    cwd=str(context.project_dir),
                ),
            )
    '''
)

SYSTEM = textwrap.dedent(
    """
    project:
      name: served
      team: ml-platform
    data:
      tumors:
        kind: sklearn
        dataset: breast_cancer
        description: first
    target:
      type: local
    backend:
      type: local
      path: .mlform
    """
)


def _install_plugin(tmp_path: Path) -> dict[str, str]:
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    (plugin / "mlform_http_plugin.py").write_text(PLUGIN)
    info = plugin / "mlform_http_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: mlform-http-plugin\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text(
        "[mlform.providers]\ndata = mlform_http_plugin:DataServer\n"
    )
    return {"PYTHONPATH": os.pathsep.join([str(plugin), os.environ.get("PYTHONPATH", "")])}


def _project(tmp_path: Path, system: str) -> Path:
    root = tmp_path / "project"
    (root / "configs").mkdir(parents=True)
    (root / "configs" / "system.yaml").write_text(system)
    return root


@pytest.fixture
def project(tmp_path: Path, pulumi_toolchain: Any) -> Any:
    env = _install_plugin(tmp_path)
    root = _project(tmp_path, SYSTEM)
    yield root, env
    # Never leave a server behind, whatever the test did.
    state = _state(root)
    if state is not None:
        for record in state["objects"].values():
            for live in (record["outputs"].get("live") or {}).values():
                _kill(int(live["pid"]))


def _state(root: Path) -> dict[str, Any] | None:
    path = root / ".mlform" / "stacks" / "default" / "state.json"
    if not path.exists():
        return None
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def _live(root: Path) -> dict[str, Any]:
    state = _state(root)
    assert state is not None
    live: dict[str, Any] = state["objects"]["data.tumors"]["outputs"]["live"]["server"]
    return live


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ", 1)[1].startswith("Z"))


def _answers(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=5) as response:
        return bool(response.status == 200)


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _ok(result: Any) -> None:
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_apply_refresh_restore_update_destroy(project: Any) -> None:
    root, env = project
    _ok(run_cli(root, "apply", "-y", env=env))
    first = _live(root)
    assert _answers(first["url"])
    assert first["health"] == "healthy"

    # Nothing changed: the plan is empty and apply does not run Pulumi at all.
    backend = root / ".mlform" / "stacks" / "default" / "pulumi"
    before = sorted((p, p.stat().st_mtime_ns) for p in backend.rglob("*") if p.is_file())
    plan = run_cli(root, "plan", "--detailed", "--detailed-exitcode", env=env)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "process server" in plan.stdout
    _ok(run_cli(root, "apply", "-y", env=env))
    after = sorted((p, p.stat().st_mtime_ns) for p in backend.rglob("*") if p.is_file())
    assert before == after
    assert _live(root)["pid"] == first["pid"]

    # Kill the server behind mlform's back: refresh reports it, the plan repairs it.
    _kill(first["pid"])
    deadline = time.monotonic() + 10
    while _alive(first["pid"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    # plan --refresh asks the engine what is live, plans the repair and writes nothing.
    serial = _state(root)["serial"]  # type: ignore[index]
    plan = run_cli(root, "plan", "--refresh", "--detailed", env=env)
    _ok(plan)
    assert "live infrastructure drifted: server is gone" in plan.stdout
    assert "! process server  gone (found by refresh)" in plan.stdout
    assert _state(root)["serial"] == serial  # type: ignore[index]
    refreshed = run_cli(root, "refresh", "--detailed-exitcode", env=env)
    assert refreshed.returncode == 2, refreshed.stdout + refreshed.stderr
    assert "data.tumors: server is gone" in refreshed.stdout
    plan = run_cli(root, "plan", "--detailed", env=env)
    _ok(plan)
    assert "live infrastructure drifted: server is gone" in plan.stdout
    _ok(run_cli(root, "apply", "-y", env=env))
    restored = _live(root)
    assert restored["pid"] != first["pid"]
    assert _answers(restored["url"])
    assert "drift" not in _state(root)["objects"]["data.tumors"]["outputs"]  # type: ignore[index]

    # A config change updates the process in place: the plan names the changed input.
    plan = run_cli(root, "plan", "--detailed", "data.tumors.description=second", env=env)
    _ok(plan)
    assert "~ process server" in plan.stdout
    assert "env.DESCRIPTION" in plan.stdout
    _ok(run_cli(root, "apply", "-y", "data.tumors.description=second", env=env))
    updated = _live(root)
    assert updated["pid"] != restored["pid"]
    assert not _alive(restored["pid"])
    assert _answers(updated["url"])

    # Destroy leaves no process and no port behind.
    _ok(run_cli(root, "destroy", "-y", "data.tumors.description=second", env=env))
    assert not _alive(updated["pid"])
    assert _port_free(int(updated["port"]))
    state = _state(root)
    assert state is not None and state["objects"] == {}


def test_render_target_writes_valid_manifests_and_destroy_removes_them(
    tmp_path: Path, pulumi_kubernetes_toolchain: Any
) -> None:
    import kubernetes_validate
    import yaml

    env = _install_plugin(tmp_path)
    root = _project(tmp_path, SYSTEM.replace("target:\n  type: local", "target:\n  type: render"))
    assert "type: render" in (root / "configs" / "system.yaml").read_text()
    _ok(run_cli(root, "apply", "-y", env=env))
    rendered = root / "rendered"
    files = {p.relative_to(rendered): p.read_bytes() for p in rendered.rglob("*.yaml")}
    kinds = set()
    for text in files.values():
        for doc in yaml.safe_load_all(text):
            kubernetes_validate.validate(doc, "1.31", strict=True)
            kinds.add(doc["kind"])
    assert kinds == {"Namespace", "Deployment", "Service"}

    # The same config renders nothing new; a changed value rewrites only the Deployment.
    plan = run_cli(root, "plan", "--detailed-exitcode", env=env)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    _ok(run_cli(root, "apply", "-y", "data.tumors.description=second", env=env))
    after = {p.relative_to(rendered): p.read_bytes() for p in rendered.rglob("*.yaml")}
    assert after.keys() == files.keys()
    changed = [str(name) for name in files if files[name] != after[name]]
    assert len(changed) == 1 and "deployment" in changed[0].lower(), changed

    _ok(run_cli(root, "destroy", "-y", "data.tumors.description=second", env=env))
    assert not list(rendered.rglob("*.yaml"))


def test_a_process_that_dies_at_start_is_a_diagnostic_naming_the_object(project: Any) -> None:
    root, env = project
    failed = run_cli(root, "apply", "-y", "data.tumors.description=crash", env=env)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    output = failed.stdout + failed.stderr
    assert "Traceback" not in output
    assert "data.tumors" in output and "no model to serve" in output
    state = _state(root)
    assert state is not None
    assert state["objects"]["data.tumors"]["status"] == "failed"
