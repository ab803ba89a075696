"""The ``kube_control_plane`` fixture is a real Kubernetes API server (etcd + kube-apiserver).

Talks to it with the official ``kubernetes`` Python client through the fixture's kubeconfig
(TLS verified against the fixture's CA, token auth): creates and reads back the kinds mlform's
Kubernetes target renders, patches a Deployment, gets server-side validation errors as 422s,
and deletes a namespace. There is no controller-manager, so nothing is reconciled.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

pytestmark = pytest.mark.integration

KUBERNETES_VERSION = "v1.37.2"  # scripts/build-kube-apiserver.sh's pin
LABELS = {"app": "scorer", "mlform.dev/model": "scorer"}
GPU = "nvidia.com/gpu"


@pytest.fixture
def namespace(api: client.ApiClient) -> Iterator[str]:
    """A fresh namespace, deleted afterwards (it stays Terminating: no namespace controller)."""
    name = f"mlform-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace.model_validate({"metadata": {"name": name}}))
    yield name
    try:
        core.delete_namespace(name)
    except ApiException as exc:  # the test deleted it already
        if exc.status != 404:
            raise


def _wire(api: client.ApiClient, obj: Any) -> dict[str, Any]:
    """A model as the API's camelCase JSON (what the server sent back)."""
    result: dict[str, Any] = api.sanitize_for_serialization(obj)
    return result


def _deployment(name: str, replicas: int = 2) -> dict[str, Any]:
    probe = {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 5}
    return {
        "metadata": {"name": name, "labels": LABELS},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": LABELS},
            "template": {
                "metadata": {"labels": LABELS},
                "spec": {
                    "nodeSelector": {"mlform.dev/accelerator": "nvidia-a100"},
                    "tolerations": [
                        {"key": GPU, "operator": "Exists", "effect": "NoSchedule"},
                    ],
                    "containers": [
                        {
                            "name": "server",
                            "image": "registry.example/scorer:1.2.3",
                            "ports": [{"containerPort": 8080, "name": "http"}],
                            "resources": {
                                "requests": {"cpu": "500m", "memory": "1Gi", GPU: "1"},
                                "limits": {"cpu": "2", "memory": "2Gi", GPU: "1"},
                            },
                            "readinessProbe": probe,
                            "livenessProbe": {**probe, "initialDelaySeconds": 10},
                        }
                    ],
                },
            },
        },
    }


def test_server_reports_the_pinned_version(api: client.ApiClient) -> None:
    info = client.VersionApi(api).get_code()
    assert info.git_version == KUBERNETES_VERSION
    assert (info.major, info.minor) == ("1", KUBERNETES_VERSION.split(".")[1])


def test_workload_kinds_round_trip(api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    apps = client.AppsV1Api(api)
    batch = client.BatchV1Api(api)

    apps.create_namespaced_deployment(
        namespace, client.V1Deployment.model_validate(_deployment("scorer"))
    )
    got = _wire(api, apps.read_namespaced_deployment("scorer", namespace))
    assert got["spec"]["replicas"] == 2
    pod = got["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"] == {
        "requests": {"cpu": "500m", "memory": "1Gi", GPU: "1"},
        "limits": {"cpu": "2", "memory": "2Gi", GPU: "1"},
    }
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["livenessProbe"]["initialDelaySeconds"] == 10
    assert pod["nodeSelector"] == {"mlform.dev/accelerator": "nvidia-a100"}
    assert pod["tolerations"] == [{"key": GPU, "operator": "Exists", "effect": "NoSchedule"}]
    # Defaulted by the server, so this is the real API machinery, not an echo.
    assert got["spec"]["strategy"]["type"] == "RollingUpdate"
    assert container["imagePullPolicy"] == "IfNotPresent"

    core.create_namespaced_service(
        namespace,
        client.V1Service.model_validate(
            {
                "metadata": {"name": "scorer"},
                "spec": {
                    "selector": LABELS,
                    "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
                },
            }
        ),
    )
    service = _wire(api, core.read_namespaced_service("scorer", namespace))
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["clusterIP"].startswith("10.0.0.")  # allocated from the range
    assert service["spec"]["ports"][0]["targetPort"] == "http"

    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap.model_validate(
            {"metadata": {"name": "scorer-config"}, "data": {"threshold": "0.7"}}
        ),
    )
    assert core.read_namespaced_config_map("scorer-config", namespace).data == {"threshold": "0.7"}
    core.create_namespaced_secret(
        namespace,
        client.V1Secret.model_validate(
            {"metadata": {"name": "scorer-token"}, "stringData": {"token": "s3cr3t"}}
        ),
    )
    secret = core.read_namespaced_secret("scorer-token", namespace)
    assert secret.type == "Opaque"
    assert secret.data == {"token": "czNjcjN0"}  # stringData is stored base64-encoded

    core.create_namespaced_resource_quota(
        namespace,
        client.V1ResourceQuota.model_validate(
            {"metadata": {"name": "gpus"}, "spec": {"hard": {f"requests.{GPU}": "4"}}}
        ),
    )
    quota = core.read_namespaced_resource_quota("gpus", namespace)
    assert quota.spec is not None and quota.spec.hard == {f"requests.{GPU}": "4"}

    client.AutoscalingV2Api(api).create_namespaced_horizontal_pod_autoscaler(
        namespace,
        client.V2HorizontalPodAutoscaler.model_validate(
            {
                "metadata": {"name": "scorer"},
                "spec": {
                    "scaleTargetRef": {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": "scorer",
                    },
                    "minReplicas": 2,
                    "maxReplicas": 8,
                    "metrics": [
                        {
                            "type": "Resource",
                            "resource": {
                                "name": "cpu",
                                "target": {"type": "Utilization", "averageUtilization": 70},
                            },
                        }
                    ],
                },
            }
        ),
    )
    hpa = _wire(
        api,
        client.AutoscalingV2Api(api).read_namespaced_horizontal_pod_autoscaler("scorer", namespace),
    )
    assert hpa["spec"]["scaleTargetRef"]["name"] == "scorer"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 8)
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 70

    policy = client.PolicyV1Api(api)
    policy.create_namespaced_pod_disruption_budget(
        namespace,
        client.V1PodDisruptionBudget.model_validate(
            {
                "metadata": {"name": "scorer"},
                "spec": {"minAvailable": 1, "selector": {"matchLabels": LABELS}},
            }
        ),
    )
    pdb = _wire(api, policy.read_namespaced_pod_disruption_budget("scorer", namespace))
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"] == {"matchLabels": LABELS}

    job_template = {
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "train",
                    "image": "registry.example/trainer:1",
                    "resources": {"limits": {GPU: "1"}},
                }
            ],
        }
    }
    batch.create_namespaced_job(
        namespace,
        client.V1Job.model_validate(
            {
                "metadata": {"name": "train"},
                "spec": {
                    "completionMode": "Indexed",
                    "completions": 4,
                    "parallelism": 2,
                    "backoffLimit": 1,
                    "template": job_template,
                },
            }
        ),
    )
    job = _wire(api, batch.read_namespaced_job("train", namespace))
    assert job["spec"]["completionMode"] == "Indexed"
    assert (job["spec"]["completions"], job["spec"]["parallelism"]) == (4, 2)
    # The server generated the selector and the pod template's labels.
    assert "batch.kubernetes.io/controller-uid" in job["spec"]["selector"]["matchLabels"]

    batch.create_namespaced_cron_job(
        namespace,
        client.V1CronJob.model_validate(
            {
                "metadata": {"name": "retrain"},
                "spec": {
                    "schedule": "0 3 * * *",
                    "concurrencyPolicy": "Forbid",
                    "jobTemplate": {"spec": {"template": job_template}},
                },
            }
        ),
    )
    cron = _wire(api, batch.read_namespaced_cron_job("retrain", namespace))
    assert cron["spec"]["schedule"] == "0 3 * * *"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert cron["spec"]["suspend"] is False  # defaulted

    apps.patch_namespaced_deployment("scorer", namespace, {"spec": {"replicas": 5}})
    patched = apps.read_namespaced_deployment("scorer", namespace)
    assert patched.spec is not None and patched.spec.replicas == 5
    assert patched.metadata is not None and patched.metadata.generation == 2


def test_validation_errors_are_422_naming_the_field(api: client.ApiClient, namespace: str) -> None:
    apps = client.AppsV1Api(api)
    with pytest.raises(ApiException) as negative:
        apps.create_namespaced_deployment(
            namespace, client.V1Deployment.model_validate(_deployment("scorer", replicas=-1))
        )
    assert negative.value.status == 422
    assert "spec.replicas" in str(negative.value.body)

    with pytest.raises(ApiException) as bad_name:
        client.CoreV1Api(api).create_namespaced_config_map(
            namespace, client.V1ConfigMap.model_validate({"metadata": {"name": "Not_A_Name"}})
        )
    assert bad_name.value.status == 422
    assert "metadata.name" in str(bad_name.value.body)

    # Nothing was stored.
    assert client.AppsV1Api(api).list_namespaced_deployment(namespace).items == []


def test_delete_namespace(api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    core.delete_namespace(namespace)
    gone = core.read_namespace(namespace)
    # No namespace controller runs to empty and finalize it, so it stays Terminating.
    assert gone.status is not None and gone.status.phase == "Terminating"
    assert gone.metadata is not None and gone.metadata.deletion_timestamp is not None
