"""The pure Kubernetes builders: schema-valid, labelled, deterministic objects."""

from __future__ import annotations

import copy
from typing import Any

import kubernetes_validate
import pytest

from mlform.addresses import Address
from mlform.infra import kubernetes as k
from mlform.infra.model import Manifest

# A recent release the package ships schemas for; strict: unknown fields are errors.
KUBERNETES_VERSION = "1.33.0"
API = Address.parse("deployment.api")
PROJECT = "churn"


def _validate(manifest: Manifest) -> None:
    kubernetes_validate.validate(
        copy.deepcopy(dict(manifest.body)), KUBERNETES_VERSION, strict=True
    )


def _workload(**overrides: Any) -> tuple[Manifest, Manifest]:
    fields: dict[str, Any] = {
        "name": "api",
        "namespace": "ml",
        "image": "registry.example/churn-api:3",
        "project": PROJECT,
        "port": 8080,
        "command": ["python", "-m", "server"],
        "args": ["--workers", "2"],
        "env": {"WORKERS": "2", "MODEL_URI": "s3://models/churn/3"},
        "replicas": 3,
        "live_path": "/v2/health/live",
        "ready_path": "/v2/health/ready",
        "resources": k.Resources(cpu=0.5, memory="2Gi", cpu_limit=2, gpus=2),
        "node_selector": {"nvidia.com/gpu.product": "A100"},
        "tolerations": [k.Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")],
        "labels": {"team": "risk"},
        "annotations": {"example.com/owner": "risk"},
    }
    fields.update(overrides)
    return k.workload(API, **fields)


def _all() -> list[Manifest]:
    return [
        k.namespace(API, "ml", {"team": "risk"}, project=PROJECT),
        *_workload(),
        *_workload(name="api-canary", replicas=1, resources=None, metrics_path=None, key="canary"),
        k.config_map(
            API,
            "api-config",
            "ml",
            {"settings.yaml": "a: 1\n", "LOG_LEVEL": "info"},
            project=PROJECT,
        ),
        k.resource_quota(API, "gpu", "ml", 8, project=PROJECT),
    ]


@pytest.mark.parametrize("manifest", _all(), ids=lambda m: m.logical_name)
def test_every_builder_output_validates_against_the_kubernetes_schemas(manifest: Manifest) -> None:
    _validate(manifest)


def test_schema_validation_would_catch_a_broken_object() -> None:
    deployment, _ = _workload()
    broken = copy.deepcopy(dict(deployment.body))
    broken["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)
    broken = copy.deepcopy(dict(deployment.body))
    broken["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):  # strict: unknown fields
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_manifest_names_and_kinds() -> None:
    assert [(m.logical_name, m.body["kind"], m.body["metadata"]["name"]) for m in _all()] == [
        ("deployment.api/namespace", "Namespace", "ml"),
        ("deployment.api/deployment", "Deployment", "api"),
        ("deployment.api/service", "Service", "api"),
        ("deployment.api/deployment-canary", "Deployment", "api-canary"),
        ("deployment.api/service-canary", "Service", "api-canary"),
        ("deployment.api/configmap", "ConfigMap", "api-config"),
        ("deployment.api/resourcequota", "ResourceQuota", "gpu"),
    ]
    assert [k.pulumi_type(m) for m in _all()[:3]] == [
        "kubernetes:core/v1:Namespace",
        "kubernetes:apps/v1:Deployment",
        "kubernetes:core/v1:Service",
    ]


def test_every_object_carries_the_standard_labels_and_its_address() -> None:
    for manifest in _all():
        meta = manifest.body["metadata"]
        assert meta["labels"]["app.kubernetes.io/name"] == "api"
        assert meta["labels"]["app.kubernetes.io/instance"] == meta["name"]
        assert meta["labels"]["app.kubernetes.io/component"] == "deployment"
        assert meta["labels"]["app.kubernetes.io/part-of"] == PROJECT
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "mlform"
        assert meta["labels"]["mlform.dev/address"] == "deployment.api"
        assert meta["annotations"]["mlform.dev/address"] == "deployment.api"
    namespace = _all()[0]
    assert namespace.body["metadata"]["labels"]["team"] == "risk"
    assert "namespace" not in namespace.body["metadata"]  # cluster-scoped


def test_a_standard_label_wins_over_a_user_label() -> None:
    manifest = k.namespace(API, "ml", {"app.kubernetes.io/managed-by": "helm"}, project=PROJECT)
    assert manifest.body["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "mlform"


def test_a_long_address_is_shortened_in_the_label_and_kept_whole_in_the_annotation() -> None:
    owner = Address.parse("deployment." + "a" * 60)
    meta = k.namespace(owner, "ml", project=PROJECT).body["metadata"]
    label = meta["labels"]["mlform.dev/address"]
    assert len(label) <= 63 and label.startswith("deployment.aaa")
    assert meta["annotations"]["mlform.dev/address"] == str(owner)
    assert (
        k.namespace(owner, "ml", project=PROJECT).body
        == k.namespace(owner, "ml", project=PROJECT).body
    )
    _validate(k.namespace(owner, "ml", project=PROJECT))


def test_the_deployment_has_probes_resources_and_scheduling() -> None:
    deployment, _ = _workload()
    spec = deployment.body["spec"]
    assert spec["replicas"] == 3
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "registry.example/churn-api:3"
    assert container["command"] == ["python", "-m", "server"]
    assert container["args"] == ["--workers", "2"]
    assert container["env"] == [
        {"name": "MODEL_URI", "value": "s3://models/churn/3"},
        {"name": "WORKERS", "value": "2"},
    ]
    assert container["ports"] == [{"containerPort": 8080, "name": "http", "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert container["resources"] == {
        "limits": {"cpu": "2", "memory": "2Gi", "nvidia.com/gpu": "2"},
        "requests": {"cpu": "500m", "memory": "2Gi"},
    }
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "A100"}
    assert pod["tolerations"] == [
        {"effect": "NoSchedule", "key": "nvidia.com/gpu", "operator": "Exists"}
    ]
    # The selector is a subset of the pod labels (else the API server rejects it).
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    assert labels["team"] == "risk"


def test_no_gpu_means_no_gpu_resource() -> None:
    deployment, _ = _workload(resources=k.Resources(cpu=1, memory="1Gi"))
    resources = deployment.body["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources == {"limits": {"memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}}


def test_prometheus_scrape_annotations_on_pods_and_service() -> None:
    deployment, service = _workload()
    pod_annotations = deployment.body["spec"]["template"]["metadata"]["annotations"]
    expected = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "8080",
        "prometheus.io/path": "/metrics",
    }
    assert expected.items() <= pod_annotations.items()
    assert pod_annotations["example.com/owner"] == "risk"
    assert expected.items() <= service.body["metadata"]["annotations"].items()
    quiet, quiet_service = _workload(metrics_path=None)
    assert "prometheus.io/scrape" not in quiet.body["spec"]["template"]["metadata"]["annotations"]
    assert "prometheus.io/scrape" not in quiet_service.body["metadata"]["annotations"]


def test_the_service_selects_the_deployment_pods() -> None:
    deployment, service = _workload()
    spec = service.body["spec"]
    assert spec["type"] == "ClusterIP"
    assert spec["selector"] == deployment.body["spec"]["selector"]["matchLabels"]
    assert spec["ports"] == [
        {"name": "http", "port": 8080, "protocol": "TCP", "targetPort": "http"}
    ]
    assert service.body["metadata"]["namespace"] == "ml"


def test_config_map_and_quota() -> None:
    *_, config, quota = _all()
    assert config.body["data"] == {"LOG_LEVEL": "info", "settings.yaml": "a: 1\n"}
    assert quota.body["spec"] == {"hard": {"requests.nvidia.com/gpu": "8"}}
    assert (config.body["metadata"]["namespace"], quota.body["metadata"]["namespace"]) == (
        "ml",
        "ml",
    )


def test_builders_are_deterministic() -> None:
    first, second = _all(), _all()
    assert first == second
    assert [list(m.body["metadata"]["labels"]) for m in first] == [
        list(m.body["metadata"]["labels"]) for m in second
    ]
    # Argument order does not leak into the output.
    env_a = _workload(env={"A": "1", "B": "2"})[0].body
    env_b = _workload(env={"B": "2", "A": "1"})[0].body
    assert repr(env_a) == repr(env_b)


@pytest.mark.parametrize("name", ["Api", "api_v2", "-api", "api-", "a" * 64, "", "api.v2", "ápi"])
def test_names_must_be_dns_labels(name: str) -> None:
    with pytest.raises(ValueError, match="not a valid DNS label"):
        k.namespace(API, name, project=PROJECT)
    with pytest.raises(ValueError, match="not a valid DNS label"):
        k.config_map(API, name, "ml", {}, project=PROJECT)
    with pytest.raises(ValueError, match="not a valid DNS label"):
        k.resource_quota(API, name, "ml", 1, project=PROJECT)
    with pytest.raises(ValueError, match="not a valid DNS label"):
        _workload(name=name)
    with pytest.raises(ValueError, match="not a valid DNS label"):
        _workload(namespace=name)


def test_a_service_name_must_start_with_a_letter() -> None:
    with pytest.raises(ValueError, match="starting with a lower-case letter"):
        _workload(name="2api")
    k.namespace(API, "2ml", project=PROJECT)  # a namespace may start with a digit


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"port": 0}, "port"),
        ({"port": 70000}, "port"),
        ({"replicas": -1}, "replicas"),
        ({"ready_path": "ready"}, "ready_path"),
        ({"metrics_path": "metrics"}, "metrics_path"),
        ({"image": ""}, "image"),
        ({"resources": k.Resources(memory="lots")}, "quantity"),
        ({"resources": k.Resources(gpus=-1)}, "gpus"),
        ({"labels": {"team": "risk and ops"}}, "label"),
        ({"annotations": {"bad key!": "x"}}, "key"),
        ({"tolerations": [k.Toleration(key="x", operator="Exists", value="y")]}, "Exists"),
    ],
)
def test_bad_workload_arguments_are_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _workload(**overrides)


def test_bad_config_keys_and_quotas_are_refused() -> None:
    with pytest.raises(ValueError, match="config map key"):
        k.config_map(API, "c", "ml", {"a/b": "x"}, project=PROJECT)
    with pytest.raises(ValueError, match="GPU quota"):
        k.resource_quota(API, "q", "ml", -1, project=PROJECT)
