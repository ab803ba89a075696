"""The render and kubernetes targets' program under Pulumi's mocks (no CLI, no cluster)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
import pytest
from pulumi.runtime.mocks import MockMonitor

from mlform.addresses import Address
from mlform.infra import kubernetes as k
from mlform.infra.model import Manifest
from mlform.pulumi_engine.program_kubernetes import (
    PROVIDER_NAME,
    SKIP_AWAIT,
    declare_manifests,
    kubernetes_program,
    resource_class,
)
from mlform.pulumi_engine.programs import build_program
from mlform.pulumi_engine.target import EngineTarget

API = Address.parse("deployment.api")
QUOTAS = Address.parse("monitor.quotas")
PROVIDER_TYPE = "pulumi:providers:kubernetes"


class RecordingMocks(pulumi.runtime.Mocks):
    """Echoes inputs as outputs and records every registration."""

    def __init__(self) -> None:
        self.registered: dict[str, pulumi.runtime.MockResourceArgs] = {}
        self.monitor = RecordingMonitor(self)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.registered[args.name] = args
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[Any]]:
        return {}, []


class RecordingMonitor(MockMonitor):
    """Also records each registration's explicit dependencies (URNs) and raw request."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.dependencies: dict[str, list[str]] = {}
        self.requests: dict[str, Any] = {}

    def RegisterResource(self, request: Any) -> Any:
        self.dependencies[request.name] = sorted(request.dependencies)
        self.requests[request.name] = request
        return super().RegisterResource(request)


@pytest.fixture
def mocks() -> RecordingMocks:
    recording = RecordingMocks()
    pulumi.runtime.set_mocks(
        recording, project="project", stack="stack", preview=False, monitor=recording.monitor
    )
    return recording


def _manifests() -> list[Manifest]:
    return [
        *k.workload(API, name="api", namespace="ml", image="api:3", project="p", port=8080),
        k.config_map(API, "api-config", "other", {"a": "1"}, project="p"),
        k.namespace(API, "ml", project="p"),  # after its objects: still declared first
        k.resource_quota(QUOTAS, "gpu", "ml", 4, project="p"),
    ]


def _render(tmp_path: Path, **overrides: Any) -> EngineTarget:
    return EngineTarget(type="render", render_directory=tmp_path / "out", **overrides)


EXPECTED_TYPES = {
    "deployment.api/deployment": "kubernetes:apps/v1:Deployment",
    "deployment.api/service": "kubernetes:core/v1:Service",
    "deployment.api/configmap": "kubernetes:core/v1:ConfigMap",
    "deployment.api/namespace": "kubernetes:core/v1:Namespace",
    "monitor.quotas/resourcequota": "kubernetes:core/v1:ResourceQuota",
}


@pulumi.runtime.test
def test_each_manifest_is_one_typed_resource_named_by_its_logical_name(
    mocks: RecordingMocks, tmp_path: Path
) -> Any:
    declared = declare_manifests(_manifests(), _render(tmp_path))

    def check(urns: list[str]) -> None:
        assert list(declared) == [  # namespaces first, then the given order
            "deployment.api/namespace",
            "deployment.api/deployment",
            "deployment.api/service",
            "deployment.api/configmap",
            "monitor.quotas/resourcequota",
        ]
        for urn, (name, resource) in zip(urns, declared.items(), strict=True):
            assert urn.endswith(f"Stack${EXPECTED_TYPES[name]}::{name}")
            assert type(resource).__module__.startswith("pulumi_kubernetes.")
        registered = {n: a for n, a in mocks.registered.items() if a.typ != PROVIDER_TYPE}
        assert {n: a.typ for n, a in registered.items()} == EXPECTED_TYPES
        deployment = registered["deployment.api/deployment"].inputs
        assert deployment["apiVersion"] == "apps/v1" and deployment["kind"] == "Deployment"
        assert deployment["metadata"]["namespace"] == "ml"
        assert deployment["spec"]["replicas"] == 1
        probe = deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
        assert probe["httpGet"] == {"path": "/ready", "port": "http"}  # camelCase kept as-is
        config = registered["deployment.api/configmap"].inputs
        assert config["data"] == {"a": "1"}
        assert "pulumi.com/skipAwait" not in deployment["metadata"]["annotations"]

    return pulumi.Output.all(*(r.urn for r in declared.values())).apply(check)


@pulumi.runtime.test
def test_every_resource_uses_the_one_render_provider(mocks: RecordingMocks, tmp_path: Path) -> Any:
    declared = declare_manifests(_manifests(), _render(tmp_path))

    def check(_: list[str]) -> None:
        providers = [a for a in mocks.registered.values() if a.typ == PROVIDER_TYPE]
        assert [p.name for p in providers] == [PROVIDER_NAME]
        inputs = providers[0].inputs
        assert inputs["renderYamlToDirectory"] == str(tmp_path / "out")
        assert "kubeconfig" not in inputs and "context" not in inputs
        # The stack/project part of the URN depends on what ran before in this process
        # (the runtime keeps its root stack); the provider's own part is what matters.
        reference = f"pulumi:pulumi:Stack${PROVIDER_TYPE}::{PROVIDER_NAME}::{PROVIDER_NAME}-id"
        for name in EXPECTED_TYPES:
            assert mocks.registered[name].provider.endswith(reference), name

    return pulumi.Output.all(*(r.urn for r in declared.values())).apply(check)


@pulumi.runtime.test
def test_objects_in_a_declared_namespace_depend_on_it(mocks: RecordingMocks, tmp_path: Path) -> Any:
    declared = declare_manifests(_manifests(), _render(tmp_path))
    namespace = declared["deployment.api/namespace"]

    def check(values: list[str]) -> None:
        namespace_urn = values[0]
        dependencies = mocks.monitor.dependencies
        for name in ("deployment.api/deployment", "deployment.api/service"):
            assert dependencies[name] == [namespace_urn]
        assert dependencies["monitor.quotas/resourcequota"] == [namespace_urn]  # another owner
        assert dependencies["deployment.api/configmap"] == []  # "other" is not declared here
        assert dependencies["deployment.api/namespace"] == []

    return pulumi.Output.all(namespace.urn, *(r.urn for r in declared.values())).apply(check)


@pulumi.runtime.test
def test_skip_await_annotates_every_object(mocks: RecordingMocks, tmp_path: Path) -> Any:
    declared = declare_manifests(_manifests(), _render(tmp_path, skip_await=True))

    def check(_: list[str]) -> None:
        for name in EXPECTED_TYPES:
            annotations = mocks.registered[name].inputs["metadata"]["annotations"]
            assert annotations[SKIP_AWAIT] == "true"
            assert annotations["mlform.dev/address"] == name.split("/")[0]  # kept

    return pulumi.Output.all(*(r.urn for r in declared.values())).apply(check)


@pulumi.runtime.test
def test_the_kubernetes_target_configures_cluster_access(
    mocks: RecordingMocks, tmp_path: Path
) -> Any:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n", encoding="utf-8")
    target = EngineTarget(
        type="kubernetes", kubeconfig=str(kubeconfig), context="kind-ml", namespace="team-a"
    )
    declared = declare_manifests(_manifests()[:1], target)

    def check(_: list[str]) -> None:
        provider = mocks.registered[PROVIDER_NAME].inputs
        assert provider["kubeconfig"] == str(kubeconfig)
        assert provider["context"] == "kind-ml"
        assert provider["namespace"] == "team-a"
        assert "renderYamlToDirectory" not in provider
        # Server-side apply stays the provider's default (not switched off).
        assert provider.get("enableServerSideApply") in (None, True, "true")

    return pulumi.Output.all(*(r.urn for r in declared.values())).apply(check)


@pulumi.runtime.test
def test_secret_values_are_secret_in_pulumi(mocks: RecordingMocks, tmp_path: Path) -> Any:
    secret = Manifest(
        owner=API,
        name="secret",
        body={
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "api-token", "namespace": "ml"},
            "type": "Opaque",
            "stringData": {"token": "placeholder"},
        },
    )
    declared = declare_manifests([secret], _render(tmp_path))
    resource = declared["deployment.api/secret"]

    def check(values: list[Any]) -> None:
        is_secret, kind = values
        assert is_secret
        assert kind == "Opaque"
        request = mocks.monitor.requests["deployment.api/secret"]
        raw = request.object.fields["stringData"].struct_value.fields
        assert "4dabf18193072939515e22adb298388d" in raw  # Pulumi's secret signature

    return pulumi.Output.all(
        pulumi.Output.from_input(resource.string_data).is_secret(),
        resource.type,
    ).apply(check)


@pulumi.runtime.test
def test_an_unknown_kind_becomes_a_custom_resource(mocks: RecordingMocks, tmp_path: Path) -> Any:
    monitor = Manifest(
        owner=QUOTAS,
        name="servicemonitor",
        body={
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitor",
            "metadata": {"name": "api", "namespace": "ml"},
            "spec": {"endpoints": [{"port": "http"}]},
        },
    )
    declared = declare_manifests([monitor], _render(tmp_path))

    def check(urn: str) -> None:
        assert urn.endswith(
            "Stack$kubernetes:monitoring.coreos.com/v1:ServiceMonitor::" + monitor.logical_name
        )
        inputs = mocks.registered[monitor.logical_name].inputs
        assert inputs["spec"] == {"endpoints": [{"port": "http"}]}
        assert inputs["kind"] == "ServiceMonitor"

    return declared[monitor.logical_name].urn.apply(check)


def test_the_whole_program_registers_exactly_the_manifests(
    mocks: RecordingMocks, tmp_path: Path
) -> None:
    program = build_program(_manifests(), _render(tmp_path), tmp_path / "logs")
    pulumi.runtime.test(program)()
    assert set(mocks.registered) == {PROVIDER_NAME, *EXPECTED_TYPES}


def test_the_sdk_registry_gives_the_typed_classes() -> None:
    import pulumi_kubernetes as k8s

    assert resource_class("apps/v1", "Deployment") is k8s.apps.v1.Deployment
    assert resource_class("v1", "Service") is k8s.core.v1.Service
    assert resource_class("autoscaling/v2", "HorizontalPodAutoscaler") is (
        k8s.autoscaling.v2.HorizontalPodAutoscaler
    )
    assert resource_class("policy/v1", "PodDisruptionBudget") is k8s.policy.v1.PodDisruptionBudget
    assert resource_class("batch/v1", "CronJob") is k8s.batch.v1.CronJob
    assert resource_class("networking.k8s.io/v1", "Ingress") is k8s.networking.v1.Ingress
    assert resource_class("monitoring.coreos.com/v1", "ServiceMonitor") is None


def test_bad_manifest_sets_are_refused(tmp_path: Path) -> None:
    deployment, _ = k.workload(API, name="api", namespace="ml", image="a", project="p", port=80)
    with pytest.raises(ValueError, match=r"two manifests are named deployment\.api/deployment"):
        kubernetes_program([deployment, deployment], _render(tmp_path))
    twin = Manifest(owner=QUOTAS, name="copy", body=deployment.body)
    with pytest.raises(ValueError, match="declare the same Kubernetes object"):
        kubernetes_program([deployment, twin], _render(tmp_path))
    with pytest.raises(ValueError, match="local target"):
        kubernetes_program([deployment], EngineTarget(type="local"))


def test_a_custom_resource_with_fields_besides_spec_is_refused(
    mocks: RecordingMocks, tmp_path: Path
) -> None:
    odd = Manifest(
        owner=API,
        name="odd",
        body={"apiVersion": "x.dev/v1", "kind": "Thing", "metadata": {"name": "t"}, "data": {}},
    )
    with pytest.raises(ValueError, match="custom resource can only carry metadata and spec"):
        pulumi.runtime.test(kubernetes_program([odd], _render(tmp_path)))()


def test_the_kubernetes_target_waits_for_readiness_unless_told_not_to(tmp_path: Path) -> None:
    from mlform.pulumi_engine.provisioner import engine_target

    waits = engine_target({"type": "kubernetes", "namespace": "ml"}, tmp_path)
    assert (waits.type, waits.namespace, waits.skip_await) == ("kubernetes", "ml", False)
    test_cluster = engine_target({"type": "kubernetes", "wait_for_ready": False}, tmp_path)
    assert test_cluster.skip_await is True
