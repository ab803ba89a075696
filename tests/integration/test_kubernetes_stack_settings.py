"""Stack settings on ``target: kubernetes``, end to end: the real CLI against a real API server.

A copy of the example system is applied to the session's kube-apiserver
(``kube_control_plane``; no kubelet, so ``wait_for_ready: false``) with no
``target.namespace``, a deployment ``env`` holding a plain value and a ``${secret:}``, and
the example's GPU quota for its team (``ml-platform``: 4). Read back with the official
``kubernetes`` client:

- the stack's own Namespace ``diagnosis-<stack>`` with mlform's labels, holding every
  object of the stack (the deployment's and the monitors' CronJobs);
- the team's ResourceQuota on ``requests.nvidia.com/gpu``;
- a ConfigMap and a Secret ``diagnosis-api-env`` read by the server with ``envFrom``; the
  Secret holds the clear value, while mlform's state, ``plan``/``state show`` output and
  Pulumi's state (its ``file://`` backend under the stack's work dir) hold neither the
  value nor its base64 form;
- a changed secret value updates the Secret on the next apply;
- ``destroy`` deletes the objects and the Namespace (which this API server, without a
  namespace controller, leaves ``Terminating``).

The same ``env`` on the local target reaches the ``mlform serve`` process's environment
(read from ``/proc/<pid>/environ``), the value again only encrypted in Pulumi's state.
"""

from __future__ import annotations

import base64
import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from example_project import copy_example, run_cli
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from support.kube_control_plane import ControlPlane

from mlform.infra import kubernetes as k

pytestmark = pytest.mark.integration

STACK = """\
# @package _global_
models:
  diagnosis:
    estimator:
      n_estimators: 40
    training:
      where: local  # this API server has no nodes to run a training Job on
deployments:
  diagnosis-api:
    replicas: 1
    autoscaling: null
    strategy:
      steps:
        - {{weight: 100}}
      analysis:
        metrics: []
    env:
      LOG_LEVEL: debug
      API_TOKEN: Bearer ${{secret:api_token}}
target:
  type: kubernetes
  kubeconfig: {kubeconfig}
  context: {context}
  wait_for_ready: false
"""
BASE = ("~models.diagnosis_torch",)  # not served: leaving it out keeps the test short
APP = "diagnosis-api"
# Placeholders, not secrets: they show where a secret value ends up.
FIRST = "first-placeholder-4b1e9d"
SECOND = "second-placeholder-77c0aa"


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _all_text_under(root: Path) -> str:
    return "\n".join(
        path.read_bytes().decode("utf-8", errors="replace")
        for path in root.rglob("*")
        if path.is_file()
    )


@pytest.fixture
def project(
    tmp_path: Path, kube_control_plane: ControlPlane, pulumi_kubernetes_toolchain: Any
) -> tuple[Path, str]:
    stack = f"s{uuid.uuid4().hex[:8]}"
    root = copy_example(tmp_path / "proj")
    (root / "stacks" / f"{stack}.yaml").write_text(
        STACK.format(kubeconfig=kube_control_plane.kubeconfig, context=kube_control_plane.context)
    )
    return root, stack


def _leaks(root: Path, outputs: str, value: str) -> list[str]:
    """Where ``value`` (or its base64 form) shows: CLI output, mlform's state, Pulumi's."""
    places = {
        "CLI output": outputs,
        ".mlform (state, Pulumi backend)": _all_text_under(root / ".mlform"),
    }
    return [
        f"{form} in {where}"
        for where, text in places.items()
        for form in (value, _b64(value), _b64(f"Bearer {value}"))
        if form in text
    ]


def test_stack_namespace_quota_and_env_with_a_secret(
    project: tuple[Path, str], api: client.ApiClient
) -> None:
    root, stack = project
    namespace = f"diagnosis-{stack}"
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    env = {"MLFORM_SECRET_API_TOKEN": FIRST}
    outputs = [_ok(run_cli(root, "validate", "-s", stack, *BASE, env=env))]
    outputs.append(_ok(run_cli(root, "apply", "-s", stack, "-y", *BASE, env=env)))

    # The stack's own namespace, labelled, holding the deployment's and monitors' objects.
    ns = core.read_namespace(namespace)
    assert ns.metadata.labels["app.kubernetes.io/managed-by"] == "mlform"
    assert ns.metadata.labels["app.kubernetes.io/part-of"] == "diagnosis"
    assert ns.metadata.labels["mlform.dev/team"] == "ml-platform"
    assert ns.metadata.labels["mlform.dev/stack"] == stack
    deployment = apps.read_namespaced_deployment(k.dns_name(APP, "diagnosis-v1"), namespace)
    crons = client.BatchV1Api(api).list_namespaced_cron_job(namespace).items
    assert sorted(c.metadata.name for c in crons) == [
        "monitor-diagnosis-drift",
        "monitor-diagnosis-latency",
    ]

    # The team's GPU quota.
    quota = core.read_namespaced_resource_quota(f"{namespace}-gpus", namespace)
    assert quota.spec.hard == {"requests.nvidia.com/gpu": "4"}

    # env: a ConfigMap and a Secret, both the server's envFrom; the Secret has the value.
    config_map = core.read_namespaced_config_map(f"{APP}-env", namespace)
    assert config_map.data == {"LOG_LEVEL": "debug"}
    secret = core.read_namespaced_secret(f"{APP}-env", namespace)
    assert secret.data == {"API_TOKEN": _b64(f"Bearer {FIRST}")}
    pod = deployment.spec.template
    server = pod.spec.containers[0]
    assert [(s.config_map_ref and s.config_map_ref.name, s.secret_ref and s.secret_ref.name)
            for s in server.env_from] == [(f"{APP}-env", None), (None, f"{APP}-env")]  # fmt: skip
    digest = pod.metadata.annotations[k.ENV_DIGEST_KEY]
    # The model-pull init container mounts the (default, file://) artifact store.
    pull = pod.spec.init_containers[0]
    store = pull.command[5].removeprefix("file://")
    assert store == str((root / ".mlform" / "stacks" / stack / "registry").resolve())
    assert any(m.mount_path == store and m.read_only for m in pull.volume_mounts)

    # The value is nowhere but in the cluster; mlform records the token.
    shown = _ok(run_cli(root, "state", "show", f"deployment.{APP}", "-s", stack, env=env))
    assert "<secret:api_token:" in shown
    outputs += [shown, _ok(run_cli(root, "plan", "-s", stack, "--detailed", *BASE, env=env))]
    assert _leaks(root, "\n".join(outputs), FIRST) == []
    backend = _all_text_under(root / ".mlform" / "stacks" / stack / "pulumi" / "backend")
    assert "ciphertext" in backend  # the Secret's data is there, encrypted

    # A changed secret value: the plan updates the deployment, the apply the Secret.
    env = {"MLFORM_SECRET_API_TOKEN": SECOND}
    planned = _ok(run_cli(root, "plan", "-s", stack, "--detailed", *BASE, env=env))
    assert f"deployment.{APP}" in planned
    outputs = [planned, _ok(run_cli(root, "apply", "-s", stack, "-y", *BASE, env=env))]
    secret = core.read_namespaced_secret(f"{APP}-env", namespace)
    assert secret.data == {"API_TOKEN": _b64(f"Bearer {SECOND}")}
    rolled = apps.read_namespaced_deployment(k.dns_name(APP, "diagnosis-v1"), namespace)
    assert rolled.spec.template.metadata.annotations[k.ENV_DIGEST_KEY] != digest
    outputs.append(_ok(run_cli(root, "state", "show", f"deployment.{APP}", "-s", stack, env=env)))
    assert _leaks(root, "\n".join(outputs), SECOND) == []
    assert _leaks(root, "", FIRST) == []
    state = json.loads(outputs[-1])
    recorded = [r for r in state["outputs"]["infrastructure"] if r["body"]["kind"] == "Secret"]
    assert recorded[0]["body"]["stringData"]["API_TOKEN"].startswith("Bearer <secret:api_token:")

    # destroy: the objects go, and the stack's Namespace with them.
    _ok(run_cli(root, "destroy", "-s", stack, "-y", *BASE, env=env))
    for read in (core.read_namespaced_secret, core.read_namespaced_config_map):
        with pytest.raises(ApiException) as gone:
            read(f"{APP}-env", namespace)
        assert gone.value.status == 404
    try:
        left = core.read_namespace(namespace)
    except ApiException as exc:
        assert exc.status == 404
    else:  # no namespace controller here to finish the deletion
        assert left.status.phase == "Terminating"


LOCAL_STACK = """\
# @package _global_
models:
  diagnosis:
    estimator:
      n_estimators: 40
deployments:
  diagnosis-api:
    replicas: 1
    autoscaling: null
    strategy:
      steps:
        - {weight: 100}
      analysis:
        metrics: []
    env:
      LOG_LEVEL: debug
      API_TOKEN: Bearer ${secret:api_token}
"""


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    pairs = (item.decode().partition("=") for item in raw if item)
    return {name: value for name, _, value in pairs}


def test_on_the_local_target_the_servers_get_the_env_revealed(tmp_path: Path) -> None:
    """The same ``env`` on the local target: the server process's environment has the clear
    value; mlform's state keeps the token and Pulumi's state the value encrypted."""
    root = copy_example(tmp_path / "proj")
    (root / "stacks" / "envlocal.yaml").write_text(LOCAL_STACK)
    env = {"MLFORM_SECRET_API_TOKEN": FIRST}
    outputs = [_ok(run_cli(root, "apply", "-s", "envlocal", "-y", *BASE, env=env))]
    try:
        shown = _ok(run_cli(root, "state", "show", f"deployment.{APP}", "-s", "envlocal", env=env))
        outputs.append(shown)
        found = json.loads(shown)["outputs"]
        server = found["live"]["server-diagnosis-v1"]
        environ = _environ(int(server["pid"]))
        assert environ["API_TOKEN"] == f"Bearer {FIRST}"
        assert environ["LOG_LEVEL"] == "debug"
        router = _environ(int(found["live"]["router"]["pid"]))
        assert "API_TOKEN" not in router  # the servers' env only
        recorded = {r["name"]: r for r in found["infrastructure"]}
        assert recorded["server-diagnosis-v1"]["env"]["API_TOKEN"].startswith(
            "Bearer <secret:api_token:"
        )
        assert _leaks(root, "\n".join(outputs), FIRST) == []
        backend = _all_text_under(root / ".mlform" / "stacks" / "envlocal" / "pulumi" / "backend")
        assert "ciphertext" in backend
    finally:
        _ok(run_cli(root, "destroy", "-s", "envlocal", "-y", *BASE, env=env))
