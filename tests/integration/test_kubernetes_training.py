"""Training as Kubernetes Jobs end to end: the real CLI, a real API server, a test kubelet.

A copy of the example system is applied with a stack whose target is the session's
kube-apiserver (``kube_control_plane``; ``wait_for_ready: false``: there are no nodes). The
deployment and monitors are left out (``~deployments...`` overrides): this is about models.
On this target a model trains as a Job (``models.NAME.training.where: auto``); the test's
:class:`~support.kubelet.Kubelet` plays node and Job controller: it runs each Job's pods
as local processes in the project copy (the image is built from the project) and writes
the Job's status. ``mlform apply`` waits for that status, then evaluates and registers the
model the pod wrote, exactly as for local training.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from example_project import copy_example, run_cli
from kubernetes import client
from support.kube_control_plane import ControlPlane
from support.kubelet import Kubelet

from mlform.infra import kubernetes as k

pytestmark = pytest.mark.integration

TARGET = """\
target:
  type: kubernetes
  kubeconfig: {kubeconfig}
  context: {context}
  namespace: {namespace}
  wait_for_ready: false
"""
SKLEARN_STACK = """\
# @package _global_
models:
  diagnosis:
    estimator:
      n_estimators: 30
      max_depth: {max_depth}
"""
TORCH_STACK = """\
# @package _global_
models:
  diagnosis_torch:
    trainer:
      epochs: 8
    training:
      nodes: 2
"""
ONLY_MODELS = (
    "~deployments.diagnosis-api",
    "~monitors.diagnosis-drift",
    "~monitors.diagnosis-latency",
)
SKLEARN_ONLY = (*ONLY_MODELS, "~models.diagnosis_torch")
TORCH_ONLY = (*ONLY_MODELS, "~models.diagnosis")
BIN_DIR = Path(sys.executable).parent


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout


@pytest.fixture
def namespace(api: client.ApiClient, pulumi_kubernetes_toolchain: Any) -> str:
    name = f"mlform-train-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(api).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name))
    )
    return name


def _project(root: Path, stack: str, plane: ControlPlane, namespace: str) -> Path:
    copy_example(root)
    target = TARGET.format(kubeconfig=plane.kubeconfig, context=plane.context, namespace=namespace)
    (root / "stacks" / "e2e.yaml").write_text(stack + target)
    return root


def _jobs(api: client.ApiClient, namespace: str, model: str) -> list[dict[str, Any]]:
    found = client.BatchV1Api(api).list_namespaced_job(
        namespace, label_selector=f"{k.ADDRESS_KEY}={model}"
    )
    return [api.sanitize_for_serialization(j) for j in found.items]


def _state_outputs(root: Path, address: str) -> dict[str, Any]:
    shown = json.loads(_ok(run_cli(root, "state", "show", address, "-s", "e2e")))
    outputs: dict[str, Any] = shown["outputs"]
    return outputs


def test_sklearn_model_trains_as_a_job_and_is_registered(
    tmp_path: Path, kube_control_plane: ControlPlane, api: client.ApiClient, namespace: str
) -> None:
    # The stack file says max_depth 4, the command line 6: the pod composes with apply's
    # overrides (passed on after `--`), or its fingerprints would not match apply's.
    root = _project(
        tmp_path / "proj", SKLEARN_STACK.format(max_depth=4), kube_control_plane, namespace
    )
    overrides = (*SKLEARN_ONLY, "models.diagnosis.estimator.max_depth=6")
    with Kubelet(api, namespace, cwd=root, bin_dir=BIN_DIR) as kubelet:
        applied = run_cli(root, "apply", "-s", "e2e", "-y", "--json", *overrides)
    events = [json.loads(line) for line in _ok(applied).splitlines() if line.startswith("{")]

    # The Job, read back: the project image running `mlform models fit` for this run.
    (job,) = _jobs(api, namespace, "model.diagnosis")
    name = job["metadata"]["name"]
    run = kubelet.run_of(name)
    assert run is not None and run.error is None and run.returncodes == [0], kubelet.logs
    outputs = _state_outputs(root, "model.diagnosis")
    run_id = outputs["run_id"]
    state_dir = root / ".mlform" / "stacks" / "e2e"
    assert name == k.dns_name("train", "diagnosis", run_id[:8], limit=56)
    labels = job["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "mlform"
    assert labels["app.kubernetes.io/component"] == "model"
    assert labels["app.kubernetes.io/name"] == "diagnosis"
    assert labels["app.kubernetes.io/part-of"] == "diagnosis"
    assert labels["mlform.dev/run-id"] == run_id
    assert job["metadata"]["annotations"]["pulumi.com/skipAwait"] == "true"
    spec = job["spec"]
    assert spec["backoffLimit"] == 0
    assert spec["activeDeadlineSeconds"] == 3600  # training.timeout: 1h
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    assert container["image"] == "mlform/diagnosis:latest"
    store = f"file://{state_dir.resolve()}/registry"
    assert container["command"] == [
        "mlform",
        "models",
        "fit",
        "diagnosis",
        "-s",
        "e2e",
        "--run-id",
        run_id,
        "--to",
        f"{store}/runs/{run_id}",
        "--state-dir",
        str(state_dir.resolve()),
        "--",
        *overrides,
    ]
    assert container["resources"] == k.Resources(cpu=1, memory="2Gi").as_kubernetes()
    env = {e["name"]: e["value"] for e in container["env"]}
    expected = json.loads(env["MLFORM_EXPECTED_FINGERPRINTS"])
    assert set(expected) >= {"config", "toolchain", "code:ml.pipelines"}
    (volume,) = pod["volumes"]
    assert volume["hostPath"] == {"path": str(state_dir.resolve()), "type": "DirectoryOrCreate"}
    assert container["volumeMounts"] == [
        {"mountPath": str(state_dir.resolve()), "name": volume["name"]}
    ]
    conditions = {c["type"]: c["status"] for c in job["status"]["conditions"]}
    assert conditions["Complete"] == "True"
    waiting = f"waiting for job {namespace}/{name} (0/1 pods succeeded)"
    assert waiting in json.dumps(events), events

    # Registered like a local training; the run record says where it ran.
    assert outputs["version"] == "model.diagnosis@v1"
    assert outputs["training"] == {"where": "cluster", "job": name, "namespace": namespace}
    assert [r["body"]["metadata"]["name"] for r in outputs["infrastructure"]] == [name]
    models = json.loads(_ok(run_cli(root, "models", "list", "-s", "e2e", "--json")))
    assert [(m["address"], m["latest"]) for m in models] == [
        ("model.diagnosis", "model.diagnosis@v1")
    ]
    record = json.loads(_ok(run_cli(root, "runs", "show", run_id, "-s", "e2e", "--json")))
    assert record["hardware"]["trained_on"] == "kubernetes"
    assert record["hardware"]["job"] == f"{namespace}/{name}"
    assert record["params"]["estimator"]["max_depth"] == 6
    assert not (state_dir / "registry" / "runs" / run_id).exists()  # moved into the registry

    # Apply then plan is a no-op, and the finished Job is not drift.
    planned = run_cli(root, "plan", "-s", "e2e", "--detailed-exitcode", *overrides)
    assert planned.returncode == 0, planned.stdout + planned.stderr
    refreshed = run_cli(root, "refresh", "-s", "e2e", "--detailed-exitcode")
    assert refreshed.returncode == 0, refreshed.stdout + refreshed.stderr

    # Destroy removes the Job.
    _ok(run_cli(root, "destroy", "-s", "e2e", "-y", *SKLEARN_ONLY))
    assert _jobs(api, namespace, "model.diagnosis") == []


def test_failing_training_job_fails_apply_naming_the_job(
    tmp_path: Path, kube_control_plane: ControlPlane, api: client.ApiClient, namespace: str
) -> None:
    # max_depth -3: scikit-learn refuses it when the pod fits the forest.
    root = _project(
        tmp_path / "proj", SKLEARN_STACK.format(max_depth=-3), kube_control_plane, namespace
    )
    with Kubelet(api, namespace, cwd=root, bin_dir=BIN_DIR) as kubelet:
        applied = run_cli(root, "apply", "-s", "e2e", "-y", *SKLEARN_ONLY)
    assert applied.returncode == 1, applied.stdout + applied.stderr
    assert "Traceback" not in applied.stderr
    print("apply of a failing training:", applied.stdout, applied.stderr, sep="\n")
    (job,) = _jobs(api, namespace, "model.diagnosis")
    name = job["metadata"]["name"]
    run = kubelet.run_of(name)
    assert run is not None and run.returncodes == [1], kubelet.logs
    assert "max_depth" in kubelet.logs[(name, 0)]
    text = " ".join((applied.stdout + applied.stderr).split())
    assert f"training job {namespace}/{name} failed" in text
    assert f"kubectl logs job/{name} -n {namespace}" in text
    assert "models.diagnosis.training" in text
    # What the pod printed last, from its container's termination message (the kubelet's
    # FallbackToLogsOnError tail): scikit-learn's complaint about max_depth.
    (pod,) = (
        client.CoreV1Api(api)
        .list_namespaced_pod(namespace, label_selector=f"batch.kubernetes.io/job-name={name}")
        .items
    )
    assert (
        f"pod {pod.metadata.name} exited 1 (Error); its last lines:"
        in applied.stdout + applied.stderr
    )
    last_line = kubelet.logs[(name, 0)].strip().splitlines()[-1].strip()
    assert last_line and last_line in text
    assert "max_depth" in text.split("its last lines:")[1]
    conditions = {c["type"]: c["status"] for c in job["status"]["conditions"]}
    assert conditions["Failed"] == "True"
    shown = run_cli(root, "models", "list", "-s", "e2e", "--json")
    assert json.loads(_ok(shown)) == []


def test_torch_model_on_two_nodes_is_an_indexed_torchrun_job(
    tmp_path: Path, kube_control_plane: ControlPlane, api: client.ApiClient, namespace: str
) -> None:
    root = _project(tmp_path / "proj", TORCH_STACK, kube_control_plane, namespace)
    with Kubelet(api, namespace, cwd=root, bin_dir=BIN_DIR) as kubelet:
        applied = run_cli(root, "apply", "-s", "e2e", "-y", *TORCH_ONLY, timeout=600)
    (job,) = _jobs(api, namespace, "model.diagnosis_torch")
    name = job["metadata"]["name"]
    run = kubelet.run_of(name)
    logs = {key: text[-3000:] for key, text in kubelet.logs.items()}
    _ok(applied)
    assert run is not None and run.returncodes == [0, 0], logs
    print("the two nodes' output:", *logs.values(), sep="\n")

    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == 2
    pod = spec["template"]["spec"]
    assert pod["subdomain"] == name
    (container,) = pod["containers"]
    outputs = _state_outputs(root, "model.diagnosis_torch")
    run_id = outputs["run_id"]
    assert container["command"][:7] == [
        "torchrun",
        "--nnodes=2",
        "--nproc-per-node=1",  # one per GPU of the gpu-a100 profile
        "--rdzv-backend=static",
        f"--master-addr={name}-0.{name}",
        f"--master-port={k.RDZV_PORT}",
        "--node-rank=$(JOB_COMPLETION_INDEX)",
    ]
    assert container["command"][7:14] == [
        "-m",
        "mlform",
        "models",
        "fit",
        "diagnosis_torch",
        "-s",
        "e2e",
    ]
    assert run_id in container["command"]
    resources = container["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == "1"
    assert resources["requests"] == {"cpu": "8", "memory": "32Gi"}
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["dshm"] == "/dev/shm"
    service = api.sanitize_for_serialization(
        client.CoreV1Api(api).read_namespaced_service(name, namespace)
    )
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["ports"][0]["port"] == k.RDZV_PORT
    assert service["spec"]["selector"]["app.kubernetes.io/instance"] == name

    # Both nodes ran under torchrun; rank 0 wrote the model that apply registered.
    assert [c[0] for c in run.commands] == ["torchrun", "torchrun"]
    assert [c[6] for c in run.commands] == ["--node-rank=0", "--node-rank=1"]
    assert outputs["framework"] == "torch"
    assert outputs["training"]["job"] == name
    record = json.loads(_ok(run_cli(root, "runs", "show", run_id, "-s", "e2e", "--json")))
    assert record["hardware"]["trained_on"] == "kubernetes"
    assert record["hardware"]["nodes"] == 2
    assert len(record["epochs"]) >= 1
