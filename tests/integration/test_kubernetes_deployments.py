"""Deployments on ``target: kubernetes`` end to end: the real CLI against a real API server.

A copy of the example system is applied with a stack whose target is the session's
kube-apiserver (``kube_control_plane``: no kubelet, so no pod ever runs: the target runs
with ``wait_for_ready: false``). Data, features and models are built locally; the
deployment becomes Deployments, a Service and a PodDisruptionBudget, read back here with
the official ``kubernetes`` client. A model change walks the canary: a thread watching the
API server records the replicas of the stable and canary Deployments at each step. Each
monitor becomes a CronJob running ``mlform monitor run NAME -s STACK`` on its schedule.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
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
    training: {{where: local}}  # this test is about deployments (training Jobs: elsewhere)
deployments:
  diagnosis-api:
    replicas: 4
    autoscaling: null
    strategy:
      steps:
        - {{weight: 25, pause: 3s}}
        - {{weight: 50, pause: 3s}}
        - {{weight: 100}}
      analysis:
        metrics: []
target:
  type: kubernetes
  kubeconfig: {kubeconfig}
  context: {context}
  namespace: {namespace}
  wait_for_ready: false
"""
# The torch model is not served by the deployment; leaving it out keeps the test short.
BASE = ("~models.diagnosis_torch",)
# The example's monitors, as CronJobs: (Kubernetes name, schedule).
CRON_JOBS = {"monitor-diagnosis-drift": "*/5 * * * *", "monitor-diagnosis-latency": "* * * * *"}
V2 = (*BASE, "models.diagnosis.estimator.n_estimators=60")
APP = "diagnosis-api"
V1_NAME = k.dns_name(APP, "diagnosis-v1")
V2_NAME = k.dns_name(APP, "diagnosis-v2")


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout


@pytest.fixture
def project(
    tmp_path: Path,
    kube_control_plane: ControlPlane,
    api: client.ApiClient,
    pulumi_kubernetes_toolchain: Any,
) -> tuple[Path, str]:
    namespace = f"mlform-e2e-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(api).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace))
    )
    root = copy_example(tmp_path / "proj")
    (root / "stacks" / "e2e.yaml").write_text(
        STACK.format(
            kubeconfig=kube_control_plane.kubeconfig,
            context=kube_control_plane.context,
            namespace=namespace,
        )
    )
    return root, namespace


def _deployment(api: client.ApiClient, name: str, namespace: str) -> dict[str, Any] | None:
    try:
        obj = client.AppsV1Api(api).read_namespaced_deployment(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    wire: dict[str, Any] = api.sanitize_for_serialization(obj)
    return wire


def _replicas(api: client.ApiClient, namespace: str) -> tuple[tuple[str, str, int], ...]:
    """(name, track, replicas) of the deployment's Deployments, by name."""
    found = client.AppsV1Api(api).list_namespaced_deployment(
        namespace, label_selector=f"app.kubernetes.io/name={APP}"
    )
    return tuple(
        sorted(
            (d.metadata.name, d.metadata.labels.get(k.TRACK_KEY, ""), d.spec.replicas)
            for d in found.items
        )
    )


class _Watcher(threading.Thread):
    """Records each distinct set of Deployment replicas seen while an apply runs."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        super().__init__(daemon=True)
        self.api, self.namespace = api, namespace
        self.seen: list[tuple[tuple[str, str, int], ...]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            now = _replicas(self.api, self.namespace)
            if not self.seen or self.seen[-1] != now:
                self.seen.append(now)
            time.sleep(0.1)


def test_canary_on_kubernetes_walks_replicas_repairs_drift_and_destroys(
    project: tuple[Path, str], api: client.ApiClient
) -> None:
    root, namespace = project
    checked = run_cli(root, "validate", "-s", "e2e", *BASE)
    _ok(checked)

    # v1: built locally, served by one Deployment of 4 pods behind a Service.
    _ok(run_cli(root, "apply", "-s", "e2e", "-y", *BASE))
    v1 = _deployment(api, V1_NAME, namespace)
    assert v1 is not None
    assert v1["spec"]["replicas"] == 4
    labels = v1["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == APP
    assert labels["app.kubernetes.io/part-of"] == "diagnosis"
    assert labels["app.kubernetes.io/managed-by"] == "mlform"
    assert labels[k.TRACK_KEY] == "stable"
    pod = v1["spec"]["template"]
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert pod["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
    server = pod["spec"]["containers"][0]
    assert server["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert server["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert server["resources"] == k.Resources(cpu=1, memory="2Gi").as_kubernetes()
    assert server["image"] == "mlform/diagnosis:latest"
    pull = pod["spec"]["initContainers"][0]
    assert pull["command"][:4] == ["mlform", "models", "pull", "model.diagnosis@v1"]
    assert pull["command"][5].startswith("file://") and pull["command"][5].endswith("/registry")
    service = api.sanitize_for_serialization(
        client.CoreV1Api(api).read_namespaced_service(APP, namespace)
    )
    assert service["spec"]["ports"][0]["port"] == 8080
    assert service["spec"]["selector"]["app.kubernetes.io/part-of"] == "diagnosis"
    pdb = client.PolicyV1Api(api).read_namespaced_pod_disruption_budget(APP, namespace)
    assert pdb.spec.min_available == 1
    batch = client.BatchV1Api(api)
    for name, schedule in CRON_JOBS.items():
        cron = batch.read_namespaced_cron_job(name, namespace)
        assert cron.spec.schedule == schedule
        container = cron.spec.job_template.spec.template.spec.containers[0]
        monitor = name.removeprefix("monitor-")
        assert container.command == ["mlform", "monitor", "run", monitor, "-s", "e2e"]
        assert container.image == "mlform/diagnosis:latest"
    shown = json.loads(_ok(run_cli(root, "state", "show", "deployment.diagnosis-api", "-s", "e2e")))
    outputs = shown["outputs"]
    assert outputs["target"] == "kubernetes"
    assert outputs["url"] == f"http://{APP}.{namespace}.svc.cluster.local:8080"
    assert outputs["serving"][0]["ref"] == "model.diagnosis@v1"

    # v2: the canary moves pods from one Deployment to the other at each step.
    watcher = _Watcher(api, namespace)
    watcher.start()
    try:
        _ok(run_cli(root, "apply", "-s", "e2e", "-y", *V2))
    finally:
        watcher.stop.set()
        watcher.join()
    splits = [
        {name: replicas for name, _track, replicas in seen if replicas} for seen in watcher.seen
    ]
    assert {V1_NAME: 3, V2_NAME: 1} in splits, watcher.seen
    assert {V1_NAME: 2, V2_NAME: 2} in splits, watcher.seen
    print("replicas seen during the canary:", watcher.seen)
    assert splits.index({V1_NAME: 3, V2_NAME: 1}) < splits.index({V1_NAME: 2, V2_NAME: 2})
    # Each step scales the growing Deployment first: never fewer than 4 pods wanted, and
    # the surge between 3/1 and 2/2 (3/2) is seen.
    assert all(sum(split.values()) >= 4 for split in splits), watcher.seen
    assert {V1_NAME: 3, V2_NAME: 2} in splits, watcher.seen
    assert _replicas(api, namespace) == ((V2_NAME, "stable", 4),)
    status = json.loads(_ok(run_cli(root, "rollout", "status", "-s", "e2e", "--json")))
    assert "model.diagnosis@v2" in json.dumps(status)

    # Drift: scaled behind mlform's back, found by refresh, repaired by the next apply.
    client.AppsV1Api(api).patch_namespaced_deployment_scale(
        V2_NAME, namespace, {"spec": {"replicas": 7}}
    )
    refreshed = run_cli(root, "refresh", "-s", "e2e", "--detailed-exitcode")
    assert refreshed.returncode == 2, refreshed.stdout + refreshed.stderr
    assert "deployment.diagnosis-api" in refreshed.stdout
    _ok(run_cli(root, "apply", "-s", "e2e", "-y", *V2))
    assert _replicas(api, namespace) == ((V2_NAME, "stable", 4),)

    # Destroy removes every object.
    _ok(run_cli(root, "destroy", "-s", "e2e", "-y", *V2))
    assert _deployment(api, V2_NAME, namespace) is None
    with pytest.raises(ApiException) as gone:
        client.CoreV1Api(api).read_namespaced_service(APP, namespace)
    assert gone.value.status == 404
    for name in CRON_JOBS:
        with pytest.raises(ApiException) as gone:
            batch.read_namespaced_cron_job(name, namespace)
        assert gone.value.status == 404
