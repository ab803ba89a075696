"""The manifests mlform's Kubernetes builders generate, as a real API server sees them.

Each one is created with server-side dry-run (``dryRun=All``: defaulting, admission and
validation run, nothing is stored) and strict field validation (an unknown field is an
error, not a warning), through the dynamic client so that the server gets the builder's
JSON exactly, not a client model's rendering of it. The server checks what the schemas
cannot: a Deployment's selector matches its pod template, label and name syntax, a Job's
index and hostname rules, immutable-field defaults.
"""

from __future__ import annotations

import base64
import copy
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import DynamicApiError
from support.kube_control_plane import ControlPlane

from mlform.addresses import Address
from mlform.infra import kubernetes as k
from mlform.infra.model import Manifest
from mlform.spec.deployments import DeploymentSpec
from mlform.spec.load import _dump, _with_profile
from mlform.spec.settings import Profile

pytestmark = pytest.mark.integration

API = Address.parse("deployment.api")
TRAIN = Address.parse("model.churn")
DRIFT = Address.parse("monitor.drift")
PROJECT = "churn"
IMAGE = "registry.example/mlform:1.4"
STORE = "s3://mlform-artifacts/churn/registry"
V2 = ("churn-v2", "model.churn@v2", 100)
V3 = ("churn-v3", "model.churn@v3", 100)
GPU_PROFILE = {
    "cpu": "1500m",
    "memory": "8Gi",
    "gpu": {"count": 2, "type": "A100"},
    "node_selector": {"cloud.google.com/gke-accelerator": "nvidia-tesla-a100"},
    "tolerations": [
        {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}
    ],
}


@pytest.fixture(scope="module")
def dynamic(kube_control_plane: ControlPlane) -> Iterator[DynamicClient]:
    api_client = config.new_client_from_config(
        config_file=str(kube_control_plane.kubeconfig), context=kube_control_plane.context
    )
    try:
        yield DynamicClient(api_client)
    finally:
        api_client.close()


@pytest.fixture(scope="module")
def namespace(dynamic: DynamicClient) -> Iterator[str]:
    """A real namespace (admission refuses even a dry-run into a missing one)."""
    name = f"mlform-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(dynamic.client)
    core.create_namespace(client.V1Namespace.model_validate({"metadata": {"name": name}}))
    yield name
    core.delete_namespace(name)


def _config(profile: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    spec = DeploymentSpec.model_validate({"model": "churn", **fields})
    profiles = {"gpu": Profile.model_validate(profile)} if profile is not None else {}
    return _with_profile(_dump(spec), "gpu" if profile is not None else None, profiles)


def _deployment_objects(
    namespace: str, cfg: dict[str, Any], served: list[Any], **kwargs: Any
) -> list[Manifest]:
    return k.model_deployment_objects(
        API,
        cfg,
        project=PROJECT,
        namespace=namespace,
        image=IMAGE,
        served=served,
        artifact_store=STORE,
        **kwargs,
    )


def _dry_run(dynamic: DynamicClient, body: dict[str, Any], namespace: str) -> dict[str, Any]:
    """Create ``body`` with dryRun=All and strict field validation; the object as the server
    would have stored it."""
    resource = dynamic.resources.get(api_version=body["apiVersion"], kind=body["kind"])
    created = dynamic.create(
        resource,
        body=copy.deepcopy(body),
        namespace=namespace,
        dry_run="All",
        query_params=[("fieldValidation", "Strict")],
    )
    result: dict[str, Any] = created.to_dict()
    return result


def _accepted(dynamic: DynamicClient, manifest: Manifest, namespace: str) -> dict[str, Any]:
    stored = _dry_run(dynamic, dict(manifest.body), namespace)
    meta = manifest.body["metadata"]
    assert stored["metadata"]["name"] == meta["name"]
    assert stored["metadata"]["labels"] == meta["labels"]
    assert stored["metadata"]["annotations"] == meta["annotations"]
    return stored


def _every_manifest(namespace: str) -> list[Manifest]:
    canary = _config(GPU_PROFILE, replicas=3, strategy={"type": "canary"}, labels={"team": "risk"})
    blue_green = _config(
        replicas=2,
        autoscaling={"max_replicas": 4, "target_cpu_utilization": 70},
        strategy={"type": "blue_green"},
    )
    return [
        *_deployment_objects(
            namespace, canary, [V2, ("churn-v3", "model.churn@v3", 10)], artifact_secret="creds"
        ),
        *_deployment_objects(namespace, blue_green, [V2, V3]),
        *_deployment_objects(namespace, blue_green, [V2, V3], phase="promoted"),
        *_deployment_objects(
            namespace, _config(replicas=2, strategy={"type": "rolling", "max_surge": "50%"}), [V3]
        ),
        *_deployment_objects(namespace, _config(strategy={"type": "recreate"}), [V3]),
        k.secret(API, "creds", {"AWS_ACCESS_KEY_ID": "AKIA"}, namespace=namespace, project=PROJECT),
        *k.distributed_training_job(
            TRAIN,
            "churn-ddp",
            namespace=namespace,
            project=PROJECT,
            image=IMAGE,
            script=["-m", "churn.train"],
            nodes=4,
            resources=k.Resources(cpu=8, memory="64Gi", gpus=8),
            ttl_after_finished_s=3600,
        ),
        k.job(
            TRAIN,
            "train",
            namespace=namespace,
            project=PROJECT,
            image=IMAGE,
            command=["mlform", "apply"],
            active_deadline_s=7200,
        ),
        k.cron_job(
            DRIFT,
            "drift",
            "7m",
            namespace=namespace,
            project=PROJECT,
            image=IMAGE,
            command=["mlform", "monitor", "run", "monitor.drift"],
        ),
        k.config_map(API, "api-config", namespace, {"LOG_LEVEL": "info"}, project=PROJECT),
        k.resource_quota(API, "gpus", namespace, 8, project=PROJECT),
    ]


def test_every_kind_of_generated_manifest_is_accepted(
    dynamic: DynamicClient, namespace: str
) -> None:
    manifests = _every_manifest(namespace)
    kinds = {m.body["kind"] for m in manifests}
    assert kinds == {
        "ConfigMap",
        "CronJob",
        "Deployment",
        "HorizontalPodAutoscaler",
        "Job",
        "PodDisruptionBudget",
        "ResourceQuota",
        "Secret",
        "Service",
    }
    for manifest in manifests:
        _accepted(dynamic, manifest, namespace)
    # Dry-run: nothing was stored.
    assert client.AppsV1Api(dynamic.client).list_namespaced_deployment(namespace).items == []


def test_a_canary_deployment_as_the_server_defaults_it(
    dynamic: DynamicClient, namespace: str
) -> None:
    built = _deployment_objects(
        namespace,
        _config(GPU_PROFILE, replicas=10, strategy={"type": "canary"}),
        [V2, ("churn-v3", "model.churn@v3", 25)],
    )
    by_name = {m.name: m for m in built}
    stable = _accepted(dynamic, by_name["deployment-churn-v2"], namespace)
    canary = _accepted(dynamic, by_name["deployment-churn-v3"], namespace)
    assert (stable["spec"]["replicas"], canary["spec"]["replicas"]) == (7, 3)
    # Defaults only a server adds: the Deployment strategy, pull policies, DNS policy.
    assert stable["spec"]["strategy"]["type"] == "RollingUpdate"
    pod = canary["spec"]["template"]["spec"]
    assert pod["dnsPolicy"] == "ClusterFirst"
    server, pull = pod["containers"][0], pod["initContainers"][0]
    assert server["imagePullPolicy"] == pull["imagePullPolicy"] == "IfNotPresent"
    assert server["resources"]["limits"]["nvidia.com/gpu"] == "2"
    # A pod (not its template) gets the GPU request from the limit when it is created.
    assert "nvidia.com/gpu" not in server["resources"]["requests"]
    assert server["startupProbe"]["successThreshold"] == 1
    assert server["lifecycle"]["preStop"]["sleep"]["seconds"] == 5
    assert pull["command"][:4] == ["mlform", "models", "pull", "model.churn@v3"]
    labels = canary["spec"]["template"]["metadata"]["labels"]
    selector = canary["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    service = _accepted(dynamic, by_name["service"], namespace)
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["type"] == "ClusterIP"
    pdb = _accepted(dynamic, by_name["poddisruptionbudget"], namespace)
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_blue_green_services_and_the_autoscaler(dynamic: DynamicClient, namespace: str) -> None:
    cfg = _config(replicas=2, autoscaling={"max_replicas": 5}, strategy={"type": "blue_green"})
    before = {m.name: m for m in _deployment_objects(namespace, cfg, [V2, V3])}
    active = _accepted(dynamic, before["service"], namespace)
    preview = _accepted(dynamic, before["service-preview"], namespace)
    assert active["spec"]["selector"]["mlform.dev/version"] == "churn-v2"
    assert preview["spec"]["selector"]["mlform.dev/version"] == "churn-v3"
    hpa = _accepted(dynamic, before["horizontalpodautoscaler"], namespace)
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "api-churn-v2",
    }
    blue = _accepted(dynamic, before["deployment-churn-v2"], namespace)
    assert blue["spec"]["replicas"] == 1  # left to the HPA: the server's default until it acts
    after = {m.name: m for m in _deployment_objects(namespace, cfg, [V2, V3], phase="promoted")}
    hpa = _accepted(dynamic, after["horizontalpodautoscaler"], namespace)
    assert hpa["spec"]["scaleTargetRef"]["name"] == "api-churn-v3"
    assert (
        _accepted(dynamic, after["service"], namespace)["spec"]["selector"]["mlform.dev/version"]
        == "churn-v3"
    )


def test_training_and_schedules_as_the_server_defaults_them(
    dynamic: DynamicClient, namespace: str
) -> None:
    job, headless = k.distributed_training_job(
        TRAIN,
        "churn-ddp",
        namespace=namespace,
        project=PROJECT,
        image=IMAGE,
        script=["train.py"],
        nodes=2,
        resources=k.Resources(gpus=4),
    )
    stored = _accepted(dynamic, job, namespace)
    spec = stored["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 2, 2)
    # The server generated the selector and added its labels to the pods.
    template_labels = spec["template"]["metadata"]["labels"]
    assert "batch.kubernetes.io/controller-uid" in spec["selector"]["matchLabels"]
    assert template_labels["batch.kubernetes.io/job-name"] == "churn-ddp"
    assert template_labels["app.kubernetes.io/instance"] == "churn-ddp"
    assert spec["template"]["spec"]["subdomain"] == "churn-ddp"
    command = spec["template"]["spec"]["containers"][0]["command"]
    assert "--node-rank=$(JOB_COMPLETION_INDEX)" in command
    service = _accepted(dynamic, headless, namespace)
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["selector"].items() <= template_labels.items()

    cron = _accepted(
        dynamic,
        k.cron_job(
            DRIFT, "drift", "90s", namespace=namespace, project=PROJECT, image=IMAGE, command=["x"]
        ),
        namespace,
    )
    assert cron["spec"]["schedule"] == "*/2 * * * *"
    assert cron["spec"]["timeZone"] == "Etc/UTC"
    assert cron["spec"]["suspend"] is False  # defaulted

    secret = _accepted(
        dynamic,
        k.secret(API, "creds", {"token": "s3cr3t"}, namespace=namespace, project=PROJECT),
        namespace,
    )
    assert secret["data"] == {"token": base64.b64encode(b"s3cr3t").decode()}
    assert "stringData" not in secret


def test_a_broken_manifest_is_rejected_with_a_422_naming_the_field(
    dynamic: DynamicClient, namespace: str
) -> None:
    deployment = _deployment_objects(namespace, _config(), [V3])[0]
    broken = copy.deepcopy(dict(deployment.body))
    broken["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"] = "someone-else"
    with pytest.raises(DynamicApiError) as rejected:
        _dry_run(dynamic, broken, namespace)
    assert rejected.value.status == 422
    status = json.loads(rejected.value.body)
    assert status["reason"] == "Invalid"
    causes = status["details"]["causes"]
    assert {"field": "spec.template.metadata.labels", "reason": "FieldValueInvalid"}.items() <= (
        causes[0].items()
    )
    assert "`selector` does not match template `labels`" in causes[0]["message"]

    job = k.job(TRAIN, "train", namespace=namespace, project=PROJECT, image=IMAGE, command=["x"])
    unknown = copy.deepcopy(dict(job.body))
    unknown["spec"]["backofLimit"] = 3  # misspelt: strict field validation refuses it
    with pytest.raises(DynamicApiError) as refused:
        _dry_run(dynamic, unknown, namespace)
    assert refused.value.status == 400
    assert 'unknown field "spec.backofLimit"' in json.loads(refused.value.body)["message"]
