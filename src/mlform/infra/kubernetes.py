"""Builders of the Kubernetes objects mlform objects own (pure: dicts in, Manifests out).

Every object carries the recommended ``app.kubernetes.io/*`` labels (``name`` = the owner's
name, ``instance`` = the object's name, ``component`` = the owner's kind, ``part-of`` = the
mlform project, ``managed-by`` = ``mlform``) and ``mlform.dev/address`` (the owner's address,
also kept whole in the ``mlform.dev/address`` annotation when it is too long for a label).

The mlform-side name of each manifest (``Manifest.name``) is its kind in lower case
(``deployment``, ``service``, ``namespace``, ``configmap``, ``resourcequota``), suffixed with
``key`` when one owner has several objects of a kind: ``deployment.api/deployment``,
``deployment.api/deployment-canary``. Output is deterministic: the same arguments give equal
manifests with keys in the same order.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from mlform.addresses import Address
from mlform.infra.model import Manifest

MANAGED_BY = "mlform"
ADDRESS_KEY = "mlform.dev/address"
GPU_RESOURCE = "nvidia.com/gpu"
PORT_NAME = "http"

_DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_1035_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE_RE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_LABEL_NAME_RE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_PREFIX_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_CONFIG_KEY_RE = re.compile(r"^[-._A-Za-z0-9]+$")
_QUANTITY_RE = re.compile(r"^\d+(\.\d+)?(m|Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")


# -- validation -------------------------------------------------------------------------


def check_dns_label(name: str, what: str = "name", *, rfc1035: bool = False) -> str:
    """``name`` when it is a DNS-1123 label (RFC 1035 label: also starts with a letter)."""
    pattern = _DNS_1035_RE if rfc1035 else _DNS_LABEL_RE
    if len(name) > 63 or not pattern.match(name):
        start = "a lower-case letter" if rfc1035 else "a lower-case letter or digit"
        raise ValueError(
            f"Kubernetes {what} {name!r} is not a valid DNS label: use 1-63 lower-case letters, "
            f"digits or '-', starting with {start} and ending with a letter or digit"
        )
    return name


def _check_label_key(key: str) -> None:
    prefix, slash, name = key.rpartition("/")
    ok = len(name) <= 63 and bool(_LABEL_NAME_RE.match(name))
    if slash:
        ok = ok and len(prefix) <= 253 and bool(_PREFIX_RE.match(prefix))
    if not ok:
        raise ValueError(
            f"Kubernetes label or annotation key {key!r} is invalid: use an optional DNS "
            "prefix and '/', then 1-63 letters, digits, '-', '_' or '.'"
        )


def _check_labels(labels: Mapping[str, str]) -> None:
    for key, value in labels.items():
        _check_label_key(key)
        if len(value) > 63 or not _LABEL_VALUE_RE.match(value):
            raise ValueError(
                f"Kubernetes label {key}={value!r} is invalid: a value has at most 63 letters, "
                "digits, '-', '_' or '.', starting and ending with a letter or digit"
            )


def _label_value(text: str) -> str:
    """``text`` if it is a valid label value, else a shortened form with a stable hash."""
    if len(text) <= 63 and _LABEL_VALUE_RE.match(text):
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    head = re.sub(r"[^-A-Za-z0-9_.]", "-", text)[:52].strip("-_.")
    return f"{head}-{digest}" if head else digest


def _quantity(value: int | float | str, what: str) -> str:
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a quantity, not {value!r}")
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        millis = round(value * 1000)
        text = str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"
    else:
        text = value
    if not _QUANTITY_RE.match(text):
        raise ValueError(f"{what} {value!r} is not a Kubernetes quantity (e.g. 2, '500m', '8Gi')")
    return text


def _check_port(port: int) -> int:
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} must be between 1 and 65535")
    return port


def _check_path(path: str, what: str) -> str:
    if not path.startswith("/"):
        raise ValueError(f"{what} {path!r} must start with '/'")
    return path


# -- metadata ---------------------------------------------------------------------------


def standard_labels(owner: Address, instance: str, project: str) -> dict[str, str]:
    """The labels every object of ``owner`` carries (also valid as a selector)."""
    return {
        "app.kubernetes.io/component": _label_value(owner.kind.value),
        "app.kubernetes.io/instance": _label_value(instance),
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/name": _label_value(owner.name),
        "app.kubernetes.io/part-of": _label_value(project),
        ADDRESS_KEY: _label_value(str(owner)),
    }


def _metadata(
    owner: Address,
    name: str,
    project: str,
    *,
    namespace: str | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    user_labels = dict(labels or {})
    _check_labels(user_labels)
    merged_labels = {**user_labels, **standard_labels(owner, name, project)}
    merged_annotations = {**(annotations or {}), ADDRESS_KEY: str(owner)}
    for key in merged_annotations:
        _check_label_key(key)
    metadata: dict[str, Any] = {"name": name}
    if namespace is not None:
        metadata["namespace"] = check_dns_label(namespace, "namespace")
    metadata["labels"] = dict(sorted(merged_labels.items()))
    metadata["annotations"] = dict(sorted(merged_annotations.items()))
    return metadata


def _manifest_name(kind: str, key: str | None) -> str:
    return kind if key is None else f"{kind}-{check_dns_label(key, 'key')}"


# -- builders ---------------------------------------------------------------------------


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
    selector = {
        k: v
        for k, v in standard_labels(owner, name, project).items()
        if k in ("app.kubernetes.io/instance", "app.kubernetes.io/name")
    }
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
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(
            owner, name, project, namespace=namespace, labels=labels, annotations=scrape
        ),
        "spec": {
            "ports": [
                {"name": PORT_NAME, "port": port, "protocol": "TCP", "targetPort": PORT_NAME}
            ],
            "selector": selector,
            "type": "ClusterIP",
        },
    }
    return (
        Manifest(owner=owner, name=_manifest_name("deployment", key), body=deployment),
        Manifest(owner=owner, name=_manifest_name("service", key), body=service),
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


def resource_quota(
    owner: Address,
    name: str,
    namespace: str,
    gpus: int,
    *,
    project: str,
    key: str | None = None,
) -> Manifest:
    """A v1 ResourceQuota capping the GPUs requested in ``namespace``.

    The hard limit is on ``requests.nvidia.com/gpu`` (a GPU limit sets the request equal).
    """
    check_dns_label(name, "resource quota name")
    if gpus < 0:
        raise ValueError(f"a GPU quota must be 0 or more, not {gpus}")
    body = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": _metadata(owner, name, project, namespace=namespace),
        "spec": {"hard": {f"requests.{GPU_RESOURCE}": str(gpus)}},
    }
    return Manifest(owner=owner, name=_manifest_name("resourcequota", key), body=body)


def pulumi_type(manifest: Manifest) -> str:
    """The Pulumi type token of ``manifest`` (core objects live in ``core/v1``)."""
    return manifest.kind
