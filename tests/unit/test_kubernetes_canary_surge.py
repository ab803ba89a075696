"""A canary step moves pods between Deployments up first, then down (``_surge``)."""

from __future__ import annotations

from mlform.addresses import Address
from mlform.infra.model import Manifest
from mlform.providers.deployments_kubernetes import _surge

OWNER = Address.parse("deployment.api")


def _deployment(name: str, replicas: int | None) -> Manifest:
    spec = {} if replicas is None else {"replicas": replicas}
    body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name}, "spec": spec}
    return Manifest(owner=OWNER, name=f"deployment-{name}", body=body)


def _service() -> Manifest:
    body = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "api"}, "spec": {}}
    return Manifest(owner=OWNER, name="service", body=body)


def _replicas(manifests: list[Manifest] | None) -> dict[str, int]:
    assert manifests is not None
    return {
        str(m.body["metadata"]["name"]): m.body["spec"]["replicas"]
        for m in manifests
        if m.body["kind"] == "Deployment"
    }


def test_a_step_that_moves_pods_keeps_the_old_count_until_the_new_pods_exist() -> None:
    current = [_deployment("v1", 3), _deployment("v2", 1), _service()]
    wanted = [_deployment("v1", 2), _deployment("v2", 2), _service()]
    assert _replicas(_surge(current, wanted)) == {"v1": 3, "v2": 2}
    assert _surge(current, wanted)[2] == wanted[2]  # type: ignore[index]


def test_the_last_step_surges_to_both_full_then_drops_the_stable() -> None:
    current = [_deployment("v1", 2), _deployment("v2", 2)]
    wanted = [_deployment("v1", 0), _deployment("v2", 4)]
    assert _replicas(_surge(current, wanted)) == {"v1": 2, "v2": 4}


def test_no_surge_when_nothing_shrinks_or_nothing_grows() -> None:
    current = [_deployment("v1", 4)]
    assert _surge(current, [_deployment("v1", 4), _deployment("v2", 0)]) is None  # new canary
    assert _surge([], [_deployment("v1", 4)]) is None  # first provisioning
    assert _surge(current, [_deployment("v1", 2)]) is None  # a plain scale-down
    autoscaled = [_deployment("v1", None), _deployment("v2", None)]
    assert _surge(autoscaled, autoscaled) is None  # the HPA owns the counts
