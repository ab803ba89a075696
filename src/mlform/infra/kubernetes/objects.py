"""Builders of the single-object kinds: Namespace, workloads (Deployment/StatefulSet), ConfigMap,
ResourceQuota, Service, Secret, HorizontalPodAutoscaler and PodDisruptionBudget.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from mlform.addresses import Address
from mlform.infra.kubernetes.names import (
    _CONFIG_KEY_RE,
    GPU_RESOURCE,
    PORT_NAME,
    _check_labels,
    _check_path,
    _check_port,
    _check_port_name,
    _instance_selector,
    _manifest_name,
    _metadata,
    _quantity,
    check_dns_label,
)
from mlform.infra.model import Manifest


def namespace(
    owner: Address,
    name: str,
    labels: Mapping[str, str] | None = None,
    *,
    project: str,
    key: str | None = None,
) -> Manifest:
    """A v1 Namespace."""
    check_dns_label(name, "namespace name")
    body = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": _metadata(owner, name, project, labels=labels),
    }
    return Manifest(owner=owner, name=_manifest_name("namespace", key), body=body)


@dataclass(frozen=True, slots=True)
class Resources:
    """Requests and limits of one container. The memory limit defaults to the request;
    ``gpus`` becomes a ``nvidia.com/gpu`` limit (Kubernetes sets the request equal)."""

    cpu: int | float | str = 1
    memory: str = "1Gi"
    cpu_limit: int | float | str | None = None
    memory_limit: str | None = None
    gpus: int = 0

    def as_kubernetes(self) -> dict[str, dict[str, str]]:
        if self.gpus < 0:
            raise ValueError(f"gpus must be 0 or more, not {self.gpus}")
        requests = {
            "cpu": _quantity(self.cpu, "cpu"),
            "memory": _quantity(self.memory, "memory"),
        }
        limits = {"memory": _quantity(self.memory_limit or self.memory, "memory limit")}
        if self.cpu_limit is not None:
            limits["cpu"] = _quantity(self.cpu_limit, "cpu limit")
        if self.gpus:
            limits[GPU_RESOURCE] = str(self.gpus)
        return {"limits": dict(sorted(limits.items())), "requests": requests}


@dataclass(frozen=True, slots=True)
class Toleration:
    key: str | None = None
    operator: Literal["Exists", "Equal"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None

    def as_kubernetes(self) -> dict[str, str]:
        if self.operator == "Exists" and self.value is not None:
            raise ValueError("a toleration with operator Exists takes no value")
        fields = {
            "effect": self.effect,
            "key": self.key,
            "operator": self.operator,
            "value": self.value,
        }
        return {k: v for k, v in fields.items() if v is not None}


def _probe(path: str, *, initial_delay_s: int, period_s: int) -> dict[str, Any]:
    probe: dict[str, Any] = {
        "failureThreshold": 3,
        "httpGet": {"path": path, "port": PORT_NAME},
        "periodSeconds": period_s,
        "timeoutSeconds": 2,
    }
    if initial_delay_s:  # left out when 0, as the API server and the render target do
        probe["initialDelaySeconds"] = initial_delay_s
    return dict(sorted(probe.items()))


def workload(
    owner: Address,
    *,
    name: str,
    namespace: str,
    image: str,
    project: str,
    port: int,
    command: Sequence[str] = (),
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    replicas: int = 1,
    live_path: str = "/healthz",
    ready_path: str = "/ready",
    resources: Resources | None = None,
    node_selector: Mapping[str, str] | None = None,
    tolerations: Sequence[Toleration] = (),
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    metrics_path: str | None = "/metrics",
    key: str | None = None,
) -> tuple[Manifest, Manifest]:
    """An apps/v1 Deployment serving HTTP on ``port`` and a ClusterIP Service selecting it.

    ``metrics_path`` (None: off) adds the ``prometheus.io/scrape|port|path`` annotations to
    the pods and the Service. ``annotations`` go on the Deployment and its pods.
    """
    check_dns_label(name, "workload name", rfc1035=True)  # Service names are RFC 1035
    if not image or image != image.strip():
        raise ValueError(f"{owner}: a workload needs an image without spaces, not {image!r}")
    if replicas < 0:
        raise ValueError(f"{owner}: replicas must be 0 or more, not {replicas}")
    _check_port(port)
    _check_path(live_path, "live_path")
    _check_path(ready_path, "ready_path")
    scrape: dict[str, str] = {}
    if metrics_path is not None:
        scrape = {
            "prometheus.io/path": _check_path(metrics_path, "metrics_path"),
            "prometheus.io/port": str(port),
            "prometheus.io/scrape": "true",
        }
    selector = _instance_selector(owner, name, project)
    deployment_meta = _metadata(
        owner, name, project, namespace=namespace, labels=labels, annotations=annotations
    )
    pod_meta = _metadata(
        owner, name, project, labels=labels, annotations={**(annotations or {}), **scrape}
    )
    del pod_meta["name"]  # the ReplicaSet names its pods
    container: dict[str, Any] = {"name": name, "image": image}
    if command:
        container["command"] = list(command)
    if args:
        container["args"] = list(args)
    if env:
        container["env"] = [{"name": k, "value": v} for k, v in sorted(env.items())]
    container.update(
        {
            "livenessProbe": _probe(live_path, initial_delay_s=10, period_s=10),
            "ports": [{"containerPort": port, "name": PORT_NAME, "protocol": "TCP"}],
            "readinessProbe": _probe(ready_path, initial_delay_s=0, period_s=5),
            "resources": (resources or Resources()).as_kubernetes(),
        }
    )
    pod_spec: dict[str, Any] = {"containers": [container]}
    if node_selector:
        pod_spec["nodeSelector"] = dict(sorted(node_selector.items()))
    if tolerations:
        pod_spec["tolerations"] = [t.as_kubernetes() for t in tolerations]
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": deployment_meta,
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "template": {"metadata": pod_meta, "spec": pod_spec},
        },
    }
    return (
        Manifest(owner=owner, name=_manifest_name("deployment", key), body=deployment),
        service(
            owner,
            name,
            selector,
            port=port,
            namespace=namespace,
            project=project,
            labels=labels,
            annotations=scrape,
            key=key,
        ),
    )


def config_map(
    owner: Address,
    name: str,
    namespace: str,
    data: Mapping[str, str],
    *,
    project: str,
    key: str | None = None,
) -> Manifest:
    """A v1 ConfigMap (not for secrets: use a Secret, and read the render target's note)."""
    check_dns_label(name, "config map name")
    for entry in data:
        if not _CONFIG_KEY_RE.match(entry) or len(entry) > 253:
            raise ValueError(
                f"config map key {entry!r} is invalid: use letters, digits, '-', '_' or '.'"
            )
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(owner, name, project, namespace=namespace),
        "data": dict(sorted(data.items())),
    }
    return Manifest(owner=owner, name=_manifest_name("configmap", key), body=body)


def gpu_quota_spec(gpus: int) -> dict[str, Any]:
    """The spec of a ResourceQuota capping requested GPUs at ``gpus``.

    The hard limit is on ``requests.nvidia.com/gpu``: Kubernetes counts extended resources by
    their requests only (a GPU limit sets the request equal).
    """
    if gpus < 0:
        raise ValueError(f"a GPU quota must be 0 or more, not {gpus}")
    return {"hard": {f"requests.{GPU_RESOURCE}": str(gpus)}}


def resource_quota(
    owner: Address,
    name: str,
    namespace: str,
    gpus: int,
    *,
    project: str,
    key: str | None = None,
) -> Manifest:
    """A v1 ResourceQuota capping the GPUs requested in ``namespace`` (:func:`gpu_quota_spec`)."""
    check_dns_label(name, "resource quota name")
    body = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": _metadata(owner, name, project, namespace=namespace),
        "spec": gpu_quota_spec(gpus),
    }
    return Manifest(owner=owner, name=_manifest_name("resourcequota", key), body=body)


def service(
    owner: Address,
    name: str,
    selector: Mapping[str, str],
    *,
    port: int,
    namespace: str,
    project: str,
    target_port: int | str = PORT_NAME,
    port_name: str = PORT_NAME,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    headless: bool = False,
    key: str | None = None,
) -> Manifest:
    """A v1 Service of type ClusterIP sending ``port`` to the selected pods' ``target_port``.

    ``headless`` (``clusterIP: None``) gives each selected pod a DNS record instead of one
    virtual IP, published before the pods are ready (``publishNotReadyAddresses``): what the
    pods of an indexed Job need to find each other (``<pod hostname>.<service>``).
    An empty selector is refused: such a Service has no endpoints unless they are managed
    by hand, which mlform never does.
    """
    check_dns_label(name, "service name", rfc1035=True)
    if not selector:
        raise ValueError(f"{owner}: service {name!r} needs a selector (it would select no pods)")
    _check_labels(selector)
    _check_port(port)
    if isinstance(target_port, int):
        _check_port(target_port)
    else:
        _check_port_name(target_port)
    _check_port_name(port_name)
    spec: dict[str, Any] = {}
    if headless:
        spec["clusterIP"] = "None"
    spec["ports"] = [
        {"name": port_name, "port": port, "protocol": "TCP", "targetPort": target_port}
    ]
    if headless:
        spec["publishNotReadyAddresses"] = True
    spec["selector"] = dict(sorted(selector.items()))
    spec["type"] = "ClusterIP"
    body = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(
            owner, name, project, namespace=namespace, labels=labels, annotations=annotations
        ),
        "spec": spec,
    }
    return Manifest(owner=owner, name=_manifest_name("service", key), body=body)


def secret(
    owner: Address,
    name: str,
    data: Mapping[str, str],
    *,
    namespace: str,
    project: str,
    secret_type: str = "Opaque",
    key: str | None = None,
) -> Manifest:
    """A v1 Secret holding ``data`` as ``stringData`` (the API server stores it base64-encoded).

    The values go into the Secret's body and nowhere else: not into labels, annotations or
    error messages (which name keys only). Whoever stores the returned manifest (state,
    rendered files) holds the values too.
    """
    check_dns_label(name, "secret name")
    for entry, value in data.items():
        if not isinstance(entry, str) or not _CONFIG_KEY_RE.match(entry) or len(entry) > 253:
            raise ValueError(
                f"secret key {entry!r} is invalid: use letters, digits, '-', '_' or '.'"
            )
        if not isinstance(value, str):
            raise TypeError(f"the value of secret key {entry!r} must be a string")
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(owner, name, project, namespace=namespace),
        "stringData": dict(sorted(data.items())),
        "type": secret_type,
    }
    return Manifest(owner=owner, name=_manifest_name("secret", key), body=body)


def horizontal_pod_autoscaler(
    owner: Address,
    target_deployment_name: str,
    *,
    min_replicas: int,
    max_replicas: int,
    target_cpu_utilization: int,
    namespace: str,
    project: str,
    name: str | None = None,
    key: str | None = None,
) -> Manifest:
    """An autoscaling/v2 HorizontalPodAutoscaler of an apps/v1 Deployment on CPU utilization.

    Utilization is the pods' CPU use as a percentage of their CPU *request* (every
    container mlform builds requests CPU, which this needs). The HPA is named after its
    target unless ``name`` is given; the target Deployment should leave ``spec.replicas``
    unset so that applying it again does not reset what the HPA chose.
    """
    check_dns_label(target_deployment_name, "HPA target deployment name")
    name = target_deployment_name if name is None else name
    check_dns_label(name, "HPA name")
    if min_replicas < 1:
        raise ValueError(f"{owner}: an HPA's min_replicas must be 1 or more, not {min_replicas}")
    if max_replicas < min_replicas:
        raise ValueError(
            f"{owner}: an HPA's max_replicas ({max_replicas}) must not be below min_replicas "
            f"({min_replicas})"
        )
    if target_cpu_utilization < 1:
        raise ValueError(
            f"{owner}: target_cpu_utilization is a percentage of the CPU request, 1 or more, "
            f"not {target_cpu_utilization}"
        )
    body = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(owner, name, project, namespace=namespace),
        "spec": {
            "maxReplicas": max_replicas,
            "metrics": [
                {
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "averageUtilization": target_cpu_utilization,
                            "type": "Utilization",
                        },
                    },
                    "type": "Resource",
                }
            ],
            "minReplicas": min_replicas,
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": target_deployment_name,
            },
        },
    }
    return Manifest(owner=owner, name=_manifest_name("horizontalpodautoscaler", key), body=body)


_PERCENT_RE = re.compile(r"^(\d{1,3})%$")


def _int_or_percent(value: int | str, what: str) -> int | str:
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a count or a percentage, not {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{what} must be 0 or more, not {value}")
        return value
    match = _PERCENT_RE.match(value)
    if match is None or int(match.group(1)) > 100:
        raise ValueError(f"{what} {value!r} must be a count or a percentage like '25%'")
    return value


def pod_disruption_budget(
    owner: Address,
    name: str,
    selector_labels: Mapping[str, str],
    *,
    min_available: int | str | None = None,
    max_unavailable: int | str | None = None,
    namespace: str,
    project: str,
    key: str | None = None,
) -> Manifest:
    """A policy/v1 PodDisruptionBudget over the pods ``selector_labels`` select.

    Exactly one of ``min_available`` / ``max_unavailable`` (a count or ``"N%"``). An empty
    selector is refused (in policy/v1 it selects every pod of the namespace). Unhealthy
    pods may always be evicted (``unhealthyPodEvictionPolicy: AlwaysAllow``), so pods stuck
    failing never block a node drain.
    """
    check_dns_label(name, "pod disruption budget name")
    if (min_available is None) == (max_unavailable is None):
        raise ValueError(
            f"{owner}: a pod disruption budget takes exactly one of min_available or "
            "max_unavailable"
        )
    if not selector_labels:
        raise ValueError(
            f"{owner}: pod disruption budget {name!r} needs a selector (an empty one selects "
            "every pod in the namespace)"
        )
    _check_labels(selector_labels)
    spec: dict[str, Any] = {}
    if max_unavailable is not None:
        spec["maxUnavailable"] = _int_or_percent(max_unavailable, "max_unavailable")
    if min_available is not None:
        spec["minAvailable"] = _int_or_percent(min_available, "min_available")
    spec["selector"] = {"matchLabels": dict(sorted(selector_labels.items()))}
    spec["unhealthyPodEvictionPolicy"] = "AlwaysAllow"
    body = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(owner, name, project, namespace=namespace),
        "spec": spec,
    }
    return Manifest(owner=owner, name=_manifest_name("poddisruptionbudget", key), body=body)
