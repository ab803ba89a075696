"""The kubernetes target end to end: the real Pulumi engine and kubernetes provider plugin
against a real API server (the ``kube_control_plane`` fixture: etcd + kube-apiserver).

Everything goes through :class:`mlform.pulumi_engine.provisioner.StackProvisioner` (one
``pulumi up`` of the whole stack per ``provision(owner, resources)``) on a ``file://``
backend, and every object is read back with the official ``kubernetes`` client.

The test API server has no controllers (no kubelet, scheduler, controller-manager,
garbage collector, namespace controller), so the target runs with ``skip_await``: nothing
would ever become ready. For the same reason a deleted Namespace stays ``Terminating``;
the objects in it are gone (404).

The manifests come from the pure builders in :mod:`mlform.infra.kubernetes` where they
exist (Namespace, Deployment + Service, ConfigMap, ResourceQuota); the Secret,
HorizontalPodAutoscaler, PodDisruptionBudget and Job have no builder yet, so they are
written here as dicts with the builders' standard labels.
"""

from __future__ import annotations

import base64
import gc
import json
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from support.kube_control_plane import ControlPlane

from mlform.addresses import Address
from mlform.errors import InfraError
from mlform.infra import kubernetes as k
from mlform.infra.model import InfraChange, InfraOp, InfraResource, Manifest
from mlform.pulumi_engine.engine import Engine
from mlform.pulumi_engine.provisioner import StackProvisioner
from mlform.pulumi_engine.target import EngineTarget

pytestmark = [
    pytest.mark.integration,
    # As in test_engine_local: the Pulumi SDK's inline-program runner leaves asyncio event
    # loops (and their self-pipe sockets) unclosed in its gRPC threads after a failed up.
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <function BaseEventLoop.__del__"
        ":pytest.PytestUnraisableExceptionWarning"
    ),
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning"
    ),
]

PROJECT = "churn"
PLATFORM = Address.parse("deployment.platform")
API = Address.parse("deployment.api")
TRAINER = Address.parse("model.churn")
GPU = "nvidia.com/gpu"
TEAM = {"team": "risk"}
# A placeholder, not a secret: it shows where a Secret's value ends up.
PLACEHOLDER = "placeholder-value-that-must-stay-encrypted"
# What program_kubernetes adds to every object on the kubernetes target with skip_await.
TARGET_ANNOTATIONS = {
    "pulumi.com/skipAwait": "true",
    "pulumi.com/patchForce": "true",
    "pulumi.com/deletionPropagationPolicy": "background",
}


# -- manifests ----------------------------------------------------------------------------


def _meta(owner: Address, name: str, namespace: str | None) -> dict[str, Any]:
    """Metadata as the builders write it, for the kinds that have no builder yet."""
    metadata: dict[str, Any] = {
        "name": name,
        "labels": k.standard_labels(owner, name, PROJECT),
        "annotations": {k.ADDRESS_KEY: str(owner)},
    }
    if namespace is not None:
        metadata["namespace"] = namespace
    return metadata


def _platform(namespace: str) -> list[Manifest]:
    return [
        k.namespace(PLATFORM, namespace, TEAM, project=PROJECT),
        k.resource_quota(PLATFORM, "gpu", namespace, 4, project=PROJECT),
    ]


def _api(namespace: str, *, replicas: int = 2, labels: Mapping[str, str] = TEAM) -> list[Manifest]:
    deployment, service = k.workload(
        API,
        name="api",
        namespace=namespace,
        image="registry.example/churn-api:3",
        project=PROJECT,
        port=8080,
        replicas=replicas,
        env={"MODEL_URI": "s3://models/churn/3"},
        resources=k.Resources(cpu=0.5, memory="2Gi", cpu_limit=2, gpus=1),
        node_selector={"mlform.dev/accelerator": "nvidia-a100"},
        tolerations=[k.Toleration(key=GPU, operator="Exists", effect="NoSchedule")],
        labels=labels,
    )
    selector = deployment.body["spec"]["selector"]
    secret = Manifest(
        owner=API,
        name="secret",
        body={
            "apiVersion": "v1",
            "kind": "Secret",
            # No namespace: the provider puts it into the target's namespace.
            "metadata": _meta(API, "api-settings", None),
            "type": "Opaque",
            "stringData": {"SETTING": PLACEHOLDER},
        },
    )
    hpa = Manifest(
        owner=API,
        name="horizontalpodautoscaler",
        body={
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": _meta(API, "api", namespace),
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api"},
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
        },
    )
    pdb = Manifest(
        owner=API,
        name="poddisruptionbudget",
        body={
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": _meta(API, "api", namespace),
            "spec": {"minAvailable": 1, "selector": selector},
        },
    )
    return [
        deployment,
        service,
        k.config_map(API, "api-config", namespace, {"LOG_LEVEL": "info"}, project=PROJECT),
        secret,
        hpa,
        pdb,
    ]


def _trainer(namespace: str) -> list[Manifest]:
    labels = k.standard_labels(TRAINER, "train", PROJECT)
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta(TRAINER, "train", namespace),
        "spec": {
            "backoffLimit": 1,
            "completionMode": "Indexed",
            "completions": 2,
            "parallelism": 2,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "train",
                            "image": "registry.example/churn-trainer:3",
                            "resources": {"limits": {GPU: "1"}},
                        }
                    ],
                },
            },
        },
    }
    return [Manifest(owner=TRAINER, name="job", body=job)]


# -- reading objects back -----------------------------------------------------------------


@pytest.fixture(autouse=True)
def _collect_leaked_event_loops() -> Iterator[None]:
    yield
    gc.collect()  # the SDK's leaked event loops go now, under this module's filters


_READERS: dict[tuple[str, str], tuple[type[Any], str]] = {
    ("v1", "Namespace"): (client.CoreV1Api, "read_namespace"),
    ("v1", "ResourceQuota"): (client.CoreV1Api, "read_namespaced_resource_quota"),
    ("v1", "Service"): (client.CoreV1Api, "read_namespaced_service"),
    ("v1", "ConfigMap"): (client.CoreV1Api, "read_namespaced_config_map"),
    ("v1", "Secret"): (client.CoreV1Api, "read_namespaced_secret"),
    ("apps/v1", "Deployment"): (client.AppsV1Api, "read_namespaced_deployment"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"): (
        client.AutoscalingV2Api,
        "read_namespaced_horizontal_pod_autoscaler",
    ),
    ("policy/v1", "PodDisruptionBudget"): (
        client.PolicyV1Api,
        "read_namespaced_pod_disruption_budget",
    ),
    ("batch/v1", "Job"): (client.BatchV1Api, "read_namespaced_job"),
}


def _read(api: client.ApiClient, manifest: Manifest, namespace: str) -> dict[str, Any] | None:
    """The live object of ``manifest`` as the API's camelCase JSON; None when it is gone."""
    body = manifest.body
    group, method = _READERS[(str(body["apiVersion"]), str(body["kind"]))]
    name = body["metadata"]["name"]
    args = (name,) if body["kind"] == "Namespace" else (name, namespace)
    try:
        obj = getattr(group(api), method)(*args)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    wire: dict[str, Any] = api.sanitize_for_serialization(obj)
    return wire


def _mismatches(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Where ``actual`` does not hold ``expected`` (dicts: a subset; lists: item by item).

    The server adds defaults (probe schemes, strategies, cluster IPs...); every field mlform
    asked for must be there with the value asked.
    """
    if isinstance(expected, Mapping):
        if not isinstance(actual, Mapping):
            return [f"{path}: {actual!r} is not a mapping"]
        found = []
        for key, value in expected.items():
            if key not in actual:
                found.append(f"{path}.{key}: missing")
            else:
                found += _mismatches(value, actual[key], f"{path}.{key}")
        return found
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{path}: {actual!r} != {expected!r}"]
        return [
            m for i, e in enumerate(expected) for m in _mismatches(e, actual[i], f"{path}[{i}]")
        ]
    return [] if expected == actual else [f"{path}: {actual!r} != {expected!r}"]


def _asked(manifest: Manifest, namespace: str) -> dict[str, Any]:
    """What the live object must hold: the manifest, as the API server returns it."""
    body = manifest.inputs()
    if body["kind"] != "Namespace":
        body["metadata"].setdefault("namespace", namespace)
    if body["kind"] == "Secret":  # stored base64-encoded, never returned as stringData
        plain = body.pop("stringData")
        body["data"] = {key: base64.b64encode(v.encode()).decode() for key, v in plain.items()}
    return body


def _check_live(
    api: client.ApiClient, manifests: Sequence[Manifest], namespace: str
) -> dict[str, dict[str, Any]]:
    """Every manifest is live with every field asked and the target's annotations."""
    live: dict[str, dict[str, Any]] = {}
    for manifest in manifests:
        obj = _read(api, manifest, namespace)
        assert obj is not None, f"{manifest.logical_name} was not created"
        assert _mismatches(_asked(manifest, namespace), obj) == [], manifest.logical_name
        assert _mismatches(TARGET_ANNOTATIONS, obj["metadata"]["annotations"]) == []
        live[manifest.logical_name] = obj
    return live


# -- the engine -----------------------------------------------------------------------------


class Recorder:
    """A provisioner whose changes (as the engine reports them) and timings are kept."""

    def __init__(self, work_dir: Path, target: EngineTarget, toolchain: Any) -> None:
        self.provisioner = StackProvisioner(
            lambda on_change: Engine(
                work_dir=work_dir,
                project="kubernetes-test",
                stack="dev",
                target=target,
                toolchain=toolchain,
                on_change=on_change,
            ),
            {},
        )
        self.timings: dict[str, float] = {}

    def provision(
        self, phase: str, owner: Address, resources: Sequence[InfraResource], **kwargs: Any
    ) -> dict[str, InfraChange]:
        """Provision and return the changes other than ``same``, by logical name."""
        seen: list[InfraChange] = []
        started = time.monotonic()
        try:
            self.provisioner.provision(owner, resources, on_change=seen.append, **kwargs)
        finally:
            self.timings[phase] = time.monotonic() - started
        return {c.logical_name: c for c in seen if c.op is not InfraOp.SAME}

    def timed(self, phase: str, call: Any) -> Any:
        started = time.monotonic()
        try:
            return call()
        finally:
            self.timings[phase] = time.monotonic() - started


def _target(plane: ControlPlane, namespace: str) -> EngineTarget:
    return EngineTarget(
        type="kubernetes",
        kubeconfig=str(plane.kubeconfig),
        context=plane.context,
        namespace=namespace,
        skip_await=True,
    )


def _fresh_namespace() -> str:
    # Unique per test run: a deleted namespace stays Terminating on this API server.
    return f"ml-{uuid.uuid4().hex[:8]}"


def _ops(changes: Mapping[str, InfraChange]) -> dict[str, InfraOp]:
    return {name: change.op for name, change in changes.items()}


# -- tests --------------------------------------------------------------------------------------


def test_provision_update_drift_repair_and_delete_on_a_real_api_server(
    tmp_path: Path,
    pulumi_kubernetes_toolchain: Any,
    kube_control_plane: ControlPlane,
    api: client.ApiClient,
) -> None:
    namespace = _fresh_namespace()
    engine = Recorder(
        tmp_path / "engine", _target(kube_control_plane, namespace), pulumi_kubernetes_toolchain
    )
    platform, workload, trainer = _platform(namespace), _api(namespace), _trainer(namespace)
    everything = [*platform, *workload, *trainer]

    # 1. Provision three owners; every object is live with every field asked.
    created = engine.provision("first provision (plugin start, 2 objects)", PLATFORM, platform)
    assert _ops(created) == {m.logical_name: InfraOp.CREATE for m in platform}
    created = engine.provision("provision 6 objects", API, workload)
    assert _ops(created) == {m.logical_name: InfraOp.CREATE for m in workload}
    created = engine.provision("provision a Job", TRAINER, trainer)
    assert _ops(created) == {m.logical_name: InfraOp.CREATE for m in trainer}
    live = _check_live(api, everything, namespace)

    deployment = live["deployment.api/deployment"]
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["resources"] == {
        "limits": {"cpu": "2", "memory": "2Gi", GPU: "1"},
        "requests": {"cpu": "500m", "memory": "2Gi"},
    }
    assert pod["nodeSelector"] == {"mlform.dev/accelerator": "nvidia-a100"}
    assert pod["tolerations"] == [{"effect": "NoSchedule", "key": GPU, "operator": "Exists"}]
    assert container["readinessProbe"]["httpGet"] == {
        "path": "/ready",
        "port": "http",
        "scheme": "HTTP",  # defaulted by the server
    }
    assert container["livenessProbe"]["initialDelaySeconds"] == 10
    labels = deployment["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "mlform"
    assert labels["mlform.dev/address"] == "deployment.api"
    assert labels["team"] == "risk"
    selector = {"app.kubernetes.io/instance": "api", "app.kubernetes.io/name": "api"}
    assert deployment["spec"]["selector"] == {"matchLabels": selector}
    service = live["deployment.api/service"]
    assert service["spec"]["selector"] == selector
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8080, "protocol": "TCP", "targetPort": "http"}
    ]
    assert service["spec"]["clusterIP"].startswith("10.0.0.")  # allocated by the server
    assert live["deployment.api/secret"]["metadata"]["namespace"] == namespace
    assert live["deployment.platform/resourcequota"]["spec"]["hard"] == {f"requests.{GPU}": "4"}
    job = live["model.churn/job"]
    assert "status" not in job or not job["status"].get("succeeded")  # no kubelet: never ran
    assert job["spec"]["completionMode"] == "Indexed"
    uid = deployment["metadata"]["uid"]
    versions = {name: obj["metadata"]["resourceVersion"] for name, obj in live.items()}

    # A provision that changes nothing touches nothing.
    assert engine.provision("no-op provision", API, workload) == {}
    after = _check_live(api, everything, namespace)
    assert {n: o["metadata"]["resourceVersion"] for n, o in after.items()} == versions

    # 2. Replicas 2 -> 3 and a label: an update of the Deployment alone, in place.
    scaled = _api(namespace, replicas=3, labels={**TEAM, "tier": "gold"})
    updated = engine.provision("update (replicas, label)", API, scaled)
    assert _ops(updated) == {
        "deployment.api/deployment": InfraOp.UPDATE,
        # The label goes on every object of the workload builder (Deployment and Service).
        "deployment.api/service": InfraOp.UPDATE,
    }
    assert "spec" in updated["deployment.api/deployment"].fields
    after = _check_live(api, [*platform, *scaled, *trainer], namespace)
    deployment = after["deployment.api/deployment"]
    assert deployment["spec"]["replicas"] == 3
    assert deployment["metadata"]["labels"]["tier"] == "gold"
    assert deployment["metadata"]["uid"] == uid  # updated, not replaced
    assert deployment["metadata"]["generation"] == 2
    untouched = {n for n in versions if n not in updated}
    assert {n: after[n]["metadata"]["resourceVersion"] for n in untouched} == {
        n: versions[n] for n in untouched
    }

    # 3. Edited behind mlform's back: found by drift (nothing written) and refresh...
    apps = client.AppsV1Api(api)
    edit = {"spec": {"replicas": 7}, "metadata": {"labels": {"team": "other", "extra": "x"}}}
    apps.patch_namespaced_deployment("api", namespace, edit)
    drifted = engine.timed("drift (preview refresh)", engine.provisioner.drift)
    assert [(c.logical_name, c.op) for c in drifted] == [
        ("deployment.api/deployment", InfraOp.DRIFTED)
    ]
    assert {"metadata", "spec"} <= set(drifted[0].fields)
    assert engine.provisioner.drift() == drifted  # a drift check records nothing
    refreshed = engine.timed("refresh", engine.provisioner.refresh)
    assert [(c.logical_name, c.op) for c in refreshed] == [
        ("deployment.api/deployment", InfraOp.DRIFTED)
    ]
    # ... and repaired by the next provision: mlform's apply takes its fields back from the
    # edit's field manager (patchForce); a label mlform never declared stays (server-side
    # apply leaves other managers' fields alone).
    repaired = engine.provision("repair provision", API, scaled)
    assert _ops(repaired) == {"deployment.api/deployment": InfraOp.UPDATE}
    deployment = _check_live(api, scaled[:1], namespace)["deployment.api/deployment"]
    assert deployment["spec"]["replicas"] == 3
    assert deployment["metadata"]["labels"]["team"] == "risk"
    assert deployment["metadata"]["labels"]["extra"] == "x"
    assert deployment["metadata"]["uid"] == uid
    editor = [
        m
        for m in deployment["metadata"]["managedFields"]
        if not m["manager"].startswith("pulumi-kubernetes")
    ]
    assert "f:replicas" not in json.dumps(editor) and "f:team" not in json.dumps(editor)
    assert engine.provisioner.drift() == ()

    # 5. Secret data is never in plain text in Pulumi's state, nor is the cluster token.
    state = b"".join(p.read_bytes() for p in (tmp_path / "engine").rglob("*") if p.is_file())
    assert namespace.encode() in state  # it is the state of these objects
    encoded = base64.b64encode(PLACEHOLDER.encode())
    for leaked in (PLACEHOLDER.encode(), encoded, kube_control_plane.token.encode()):
        assert leaked not in state

    # Provisioning an owner with nothing deletes its objects, and only those.
    deleted = engine.provision("delete an owner (6 objects)", API, ())
    assert _ops(deleted) == {m.logical_name: InfraOp.DELETE for m in scaled}
    for manifest in scaled:
        assert _read(api, manifest, namespace) is None, manifest.logical_name
    _check_live(api, [*platform, *trainer], namespace)
    engine.provision("delete a Job", TRAINER, ())
    assert _read(api, trainer[0], namespace) is None
    deleted = engine.provision("delete the namespace owner", PLATFORM, ())
    assert _ops(deleted) == {m.logical_name: InfraOp.DELETE for m in platform}
    assert _read(api, platform[1], namespace) is None
    gone = _read(api, platform[0], namespace)  # no namespace controller finalizes it
    assert gone is None or gone["status"]["phase"] == "Terminating"
    assert engine.provisioner.drift() == ()

    print("\nkubernetes target timings (s):")
    for phase, seconds in engine.timings.items():
        print(f"  {phase}: {seconds:.2f}")


def _print_errors(exc: InfraError) -> None:
    for diagnostic in exc.diagnostics:
        print(f"\n[address={diagnostic.address}]\n{diagnostic}")


def test_a_server_side_validation_error_names_the_owner_and_the_field(
    tmp_path: Path,
    pulumi_kubernetes_toolchain: Any,
    kube_control_plane: ControlPlane,
    api: client.ApiClient,
) -> None:
    namespace = _fresh_namespace()
    engine = Recorder(
        tmp_path / "engine", _target(kube_control_plane, namespace), pulumi_kubernetes_toolchain
    )
    engine.provision("namespace", PLATFORM, _platform(namespace)[:1])

    # A CPU request above its limit passes the builders; the API server refuses it (422).
    def workload(**resources: Any) -> list[Manifest]:
        return list(
            k.workload(
                API,
                name="api",
                namespace=namespace,
                image="registry.example/churn-api:3",
                project=PROJECT,
                port=8080,
                resources=k.Resources(**resources),
            )
        )

    with pytest.raises(InfraError) as refused:
        engine.provision("refused create", API, workload(cpu=2, cpu_limit=1))
    _print_errors(refused.value)
    [diagnostic] = refused.value.diagnostics
    assert diagnostic.address == "deployment.api"
    assert diagnostic.summary == "deployment.api/deployment: could not be created"
    assert "spec.template.spec.containers[0].resources.requests" in diagnostic.detail
    assert "must be less than or equal to cpu limit" in diagnostic.detail
    assert _read(api, workload()[0], namespace) is None

    good = workload(cpu=1, cpu_limit=1)
    created = engine.provision("fixed create", API, good)
    assert created["deployment.api/deployment"].op is InfraOp.CREATE
    _check_live(api, good, namespace)

    # An invalid port on an update (written directly: the builders refuse it).
    body = good[0].inputs()
    body["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = 70000
    bad_port = [Manifest(owner=API, name="deployment", body=body), good[1]]
    with pytest.raises(InfraError) as refused:
        engine.provision("refused update", API, bad_port)
    _print_errors(refused.value)
    [diagnostic] = refused.value.diagnostics
    assert diagnostic.address == "deployment.api"
    assert diagnostic.summary == "deployment.api/deployment: could not be updated"
    assert "spec.template.spec.containers[0].ports[0].containerPort" in diagnostic.detail
    live = _read(api, good[0], namespace)
    assert live is not None
    assert live["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] == 8080
    # Pulumi recorded the refused inputs (a partial update), so going back is an update.
    restored = engine.provision("after a refusal", API, good)
    assert _ops(restored) == {"deployment.api/deployment": InfraOp.UPDATE}
    assert _check_live(api, good, namespace)["deployment.api/deployment"] == live

    # Destroying the stack deletes every object of every owner.
    destroyed = engine.timed("destroy (3 objects)", engine.provisioner.engine.destroy)
    assert {c.logical_name: c.op for c in destroyed.changes} == {
        "deployment.platform/namespace": InfraOp.DELETE,
        "deployment.api/deployment": InfraOp.DELETE,
        "deployment.api/service": InfraOp.DELETE,
    }
    assert all(_read(api, m, namespace) is None for m in good)
    print(f"\ndestroy: {engine.timings['destroy (3 objects)']:.2f} s")


def test_objects_naming_no_namespace_go_to_the_targets_namespace(
    tmp_path: Path,
    pulumi_kubernetes_toolchain: Any,
    kube_control_plane: ControlPlane,
    api: client.ApiClient,
) -> None:
    namespace = _fresh_namespace()
    engine = Recorder(
        tmp_path / "engine", _target(kube_control_plane, namespace), pulumi_kubernetes_toolchain
    )
    configs = [
        Manifest(
            owner=PLATFORM,
            name=f"configmap-{i}",
            body={
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": _meta(PLATFORM, f"settings-{i}", None),
                "data": {"index": str(i)},
            },
        )
        for i in range(4)
    ]
    # One up creates the Namespace and the objects in it. They do not depend on it (they name
    # no namespace): the provider retries a create whose namespace is not there yet.
    resources = [*configs, k.namespace(PLATFORM, namespace, project=PROJECT)]
    created = engine.provision("namespace and its objects", PLATFORM, resources)
    assert _ops(created) == {r.logical_name: InfraOp.CREATE for r in resources}
    live = _check_live(api, resources, namespace)
    assert {live[c.logical_name]["metadata"]["namespace"] for c in configs} == {namespace}
    deleted = engine.provision("delete them", PLATFORM, ())
    assert _ops(deleted) == {r.logical_name: InfraOp.DELETE for r in resources}
    assert all(_read(api, c, namespace) is None for c in configs)


def test_without_skip_await_the_engine_waits_for_readiness(
    tmp_path: Path,
    pulumi_kubernetes_toolchain: Any,
    kube_control_plane: ControlPlane,
    api: client.ApiClient,
) -> None:
    """The contrast that shows skip_await is what lets the test server work at all."""
    namespace = _fresh_namespace()
    target = EngineTarget(
        type="kubernetes",
        kubeconfig=str(kube_control_plane.kubeconfig),
        context=kube_control_plane.context,
        namespace=namespace,
    )
    engine = Recorder(tmp_path / "engine", target, pulumi_kubernetes_toolchain)
    engine.provision("namespace (awaited)", PLATFORM, _platform(namespace)[:1])
    [deployment, _] = k.workload(
        API,
        name="api",
        namespace=namespace,
        image="registry.example/churn-api:3",
        project=PROJECT,
        port=8080,
        annotations={"pulumi.com/timeoutSeconds": "3"},  # instead of 10 minutes
    )
    with pytest.raises(InfraError) as waited:
        engine.provision("deployment never ready", API, [deployment])
    _print_errors(waited.value)
    [diagnostic] = waited.value.diagnostics
    assert diagnostic.address == "deployment.api"
    assert diagnostic.summary == "deployment.api/deployment: could not be created"
    assert "timed out" in diagnostic.detail.lower()
    live = _read(api, deployment, namespace)
    assert live is not None  # stored by the server, just never ready
    assert "pulumi.com/skipAwait" not in live["metadata"]["annotations"]
