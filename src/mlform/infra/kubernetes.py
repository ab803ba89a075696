"""Builders of the Kubernetes objects mlform objects own (pure: dicts in, Manifests out).

Every object carries the recommended ``app.kubernetes.io/*`` labels (``name`` = the owner's
name, ``instance`` = the object's name, ``component`` = the owner's kind, ``part-of`` = the
mlform project, ``managed-by`` = ``mlform``) and ``mlform.dev/address`` (the owner's address,
also kept whole in the ``mlform.dev/address`` annotation when it is too long for a label).

The mlform-side name of each manifest (``Manifest.name``) is its kind in lower case
(``deployment``, ``service``, ``namespace``, ``configmap``, ``secret``, ``resourcequota``,
``horizontalpodautoscaler``, ``poddisruptionbudget``, ``job``, ``cronjob``), suffixed with
``key`` when one owner has several objects of a kind: ``deployment.api/deployment``,
``deployment.api/deployment-canary``. Output is deterministic: the same arguments give equal
manifests with keys in the same order.

Besides one builder per kind, :func:`model_deployment_objects` builds the whole set of a
model deployment (a Deployment per served version, Services, HPA, PDB; canary replica splits
by :func:`canary_replicas`), :func:`distributed_training_job` a multi-node PyTorch run (an
indexed Job running ``torchrun`` and its headless Service) and :func:`cron_job` a CronJob
from an mlform duration (:func:`cron_schedule` says how it is rounded to cron's grid).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from mlform.addresses import Address
from mlform.infra.model import Manifest
from mlform.secrets import is_sensitive

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


def _check_port_name(name: str) -> str:
    """A named port (IANA service name): at most 15 lower-case letters, digits or '-'."""
    if len(name) > 15 or not _DNS_1035_RE.match(name) or "--" in name:
        raise ValueError(
            f"port name {name!r} is invalid: use 1-15 lower-case letters, digits or single "
            "'-', starting with a letter"
        )
    return name


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


# -- batch ------------------------------------------------------------------------------


def _check_image(owner: Address, image: str) -> str:
    if not image or image != image.strip() or " " in image:
        raise ValueError(f"{owner}: a container needs an image without spaces, not {image!r}")
    return image


def _env(env: Mapping[str, str] | None) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in sorted((env or {}).items())]


def _batch_pod_template(
    owner: Address,
    instance: str,
    *,
    project: str,
    image: str,
    command: Sequence[str],
    args: Sequence[str],
    env: Mapping[str, str] | None,
    resources: Resources | None,
    node_selector: Mapping[str, str] | None,
    tolerations: Sequence[Toleration],
    labels: Mapping[str, str] | None,
    annotations: Mapping[str, str] | None,
    restart_policy: Literal["Never", "OnFailure"],
    ports: Sequence[tuple[str, int]] = (),
    subdomain: str | None = None,
    shared_memory: bool = False,
) -> dict[str, Any]:
    """The pod template of a Job: one container named ``main``, labelled like its owner."""
    _check_image(owner, image)
    if not command:
        raise ValueError(f"{owner}: job {instance!r} needs a command")
    pod_meta = _metadata(owner, instance, project, labels=labels, annotations=annotations)
    del pod_meta["name"]  # the Job controller names its pods
    container: dict[str, Any] = {"name": "main", "image": image, "command": list(command)}
    if args:
        container["args"] = list(args)
    if env:
        container["env"] = _env(env)
    if ports:
        container["ports"] = [
            {
                "containerPort": _check_port(number),
                "name": _check_port_name(port_name),
                "protocol": "TCP",
            }
            for port_name, number in ports
        ]
    container["resources"] = (resources or Resources()).as_kubernetes()
    if shared_memory:
        container["volumeMounts"] = [{"mountPath": "/dev/shm", "name": "dshm"}]
    pod_spec: dict[str, Any] = {"containers": [container]}
    if node_selector:
        pod_spec["nodeSelector"] = dict(sorted(node_selector.items()))
    pod_spec["restartPolicy"] = restart_policy
    if subdomain is not None:
        pod_spec["subdomain"] = check_dns_label(subdomain, "subdomain", rfc1035=True)
    if tolerations:
        pod_spec["tolerations"] = [t.as_kubernetes() for t in tolerations]
    if shared_memory:
        pod_spec["volumes"] = [{"emptyDir": {"medium": "Memory"}, "name": "dshm"}]
    return {"metadata": pod_meta, "spec": pod_spec}


def job(
    owner: Address,
    name: str,
    *,
    namespace: str,
    project: str,
    image: str,
    command: Sequence[str],
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    resources: Resources | None = None,
    node_selector: Mapping[str, str] | None = None,
    tolerations: Sequence[Toleration] = (),
    completions: int | None = None,
    parallelism: int | None = None,
    indexed: bool = False,
    backoff_limit: int = 0,
    active_deadline_s: int | None = None,
    ttl_after_finished_s: int | None = None,
    restart_policy: Literal["Never", "OnFailure"] = "Never",
    ports: Sequence[tuple[str, int]] = (),
    subdomain: str | None = None,
    shared_memory: bool = False,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    key: str | None = None,
) -> Manifest:
    """A batch/v1 Job running ``command`` in one container named ``main``.

    ``indexed`` gives ``completionMode: Indexed`` (needs ``completions``): each pod gets an
    index 0..completions-1 in ``$JOB_COMPLETION_INDEX`` and the hostname ``<name>-<index>``,
    resolvable as ``<name>-<index>.<subdomain>`` when ``subdomain`` names a headless Service
    selecting the pods (see :func:`distributed_training_job`). ``backoff_limit`` defaults to
    0: a failed training run is reported, not silently retried. ``shared_memory`` mounts a
    memory-backed ``/dev/shm`` (PyTorch DataLoader workers need more than a container's
    64 MiB default; it counts against the memory limit). The name is a DNS label short
    enough for ``<name>-<last index>`` to stay one (pod hostnames).
    """
    check_dns_label(name, "job name", rfc1035=indexed)
    if completions is not None and completions < 1:
        raise ValueError(f"{owner}: completions must be 1 or more, not {completions}")
    if parallelism is not None and parallelism < 0:
        raise ValueError(f"{owner}: parallelism must be 0 or more, not {parallelism}")
    if backoff_limit < 0:
        raise ValueError(f"{owner}: backoff_limit must be 0 or more, not {backoff_limit}")
    if active_deadline_s is not None and active_deadline_s < 1:
        raise ValueError(f"{owner}: active_deadline_s must be 1 or more, not {active_deadline_s}")
    if ttl_after_finished_s is not None and ttl_after_finished_s < 0:
        raise ValueError(
            f"{owner}: ttl_after_finished_s must be 0 or more, not {ttl_after_finished_s}"
        )
    if indexed:
        if completions is None:
            raise ValueError(f"{owner}: an indexed job needs completions (the number of indexes)")
        check_dns_label(f"{name}-{completions - 1}", "indexed job pod hostname")
    elif subdomain is not None:
        raise ValueError(
            f"{owner}: subdomain is for indexed jobs, whose pods have stable hostnames"
        )
    spec: dict[str, Any] = {}
    if active_deadline_s is not None:
        spec["activeDeadlineSeconds"] = active_deadline_s
    spec["backoffLimit"] = backoff_limit
    if indexed:
        spec["completionMode"] = "Indexed"
    if completions is not None:
        spec["completions"] = completions
    if parallelism is not None:
        spec["parallelism"] = parallelism
    spec["template"] = _batch_pod_template(
        owner,
        name,
        project=project,
        image=image,
        command=command,
        args=args,
        env=env,
        resources=resources,
        node_selector=node_selector,
        tolerations=tolerations,
        labels=labels,
        annotations=annotations,
        restart_policy=restart_policy,
        ports=ports,
        subdomain=subdomain,
        shared_memory=shared_memory,
    )
    if ttl_after_finished_s is not None:
        spec["ttlSecondsAfterFinished"] = ttl_after_finished_s
    body = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(
            owner, name, project, namespace=namespace, labels=labels, annotations=annotations
        ),
        "spec": spec,
    }
    return Manifest(owner=owner, name=_manifest_name("job", key), body=body)


RDZV_PORT = 29500
NODE_RANK_REF = "$(JOB_COMPLETION_INDEX)"


def torchrun_command(
    *,
    nodes: int,
    procs_per_node: int,
    endpoint_host: str,
    script: Sequence[str],
    run_id: str,
    port: int = RDZV_PORT,
    rendezvous: Literal["static", "c10d"] = "static",
) -> list[str]:
    """``torchrun`` for one node of a multi-node run (flags of ``torch.distributed.run``).

    ``static`` (the default): node ``$(JOB_COMPLETION_INDEX)`` is node rank N
    (``--node-rank``), node 0 hosts the store at ``--master-addr``/``--master-port``: ranks
    are the Job's indexes, so rank 0 (which usually writes checkpoints) is pod 0.
    ``c10d``: elastic rendezvous at ``--rdzv-endpoint`` (hosted by the pod whose address the
    endpoint resolves to, pod 0) under ``--rdzv-id``; torchrun assigns the ranks itself and
    ignores ``--node-rank`` (it logs a warning), so none is passed. Kubernetes expands
    ``$(JOB_COMPLETION_INDEX)`` from the variable the Job controller sets in indexed pods.
    """
    if nodes < 1 or procs_per_node < 1:
        raise ValueError(
            f"torchrun needs 1 or more nodes and processes per node, not {nodes} and "
            f"{procs_per_node}"
        )
    _check_port(port)
    if not script:
        raise ValueError("torchrun needs a script (e.g. ['train.py', '--epochs', '3'])")
    head = ["torchrun", f"--nnodes={nodes}", f"--nproc-per-node={procs_per_node}"]
    if rendezvous == "static":
        rdzv = [
            "--rdzv-backend=static",
            f"--master-addr={endpoint_host}",
            f"--master-port={port}",
            f"--node-rank={NODE_RANK_REF}",
        ]
    else:
        rdzv = [
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint={endpoint_host}:{port}",
            f"--rdzv-id={run_id}",
        ]
    return [*head, *rdzv, *script]


def distributed_training_job(
    owner: Address,
    name: str,
    *,
    namespace: str,
    project: str,
    image: str,
    script: Sequence[str],
    nodes: int,
    resources: Resources,
    procs_per_node: int | None = None,
    rendezvous: Literal["static", "c10d"] = "static",
    port: int = RDZV_PORT,
    env: Mapping[str, str] | None = None,
    node_selector: Mapping[str, str] | None = None,
    tolerations: Sequence[Toleration] = (),
    backoff_limit: int = 0,
    active_deadline_s: int | None = None,
    ttl_after_finished_s: int | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> tuple[Manifest, Manifest]:
    """A multi-node PyTorch run: an indexed Job of ``nodes`` pods and its headless Service.

    All ``nodes`` pods run at once (``completions = parallelism = nodes``); pod ``i`` is
    ``<name>-i.<name>`` through the headless Service ``<name>`` (the pods' ``subdomain``),
    and runs :func:`torchrun_command` with ``--nproc-per-node`` = ``procs_per_node``
    (default: the GPUs of ``resources``, or 1 without GPUs). The rendezvous endpoint is pod
    0 on ``port`` (29500, torchrun's default). ``/dev/shm`` is memory-backed.
    Manifest names: ``job`` and ``service-rendezvous``.
    """
    procs = procs_per_node if procs_per_node is not None else max(1, resources.gpus)
    if resources.gpus and procs != resources.gpus:
        raise ValueError(
            f"{owner}: {procs} processes per node on {resources.gpus} GPUs: torchrun runs one "
            "process per GPU (leave procs_per_node out)"
        )
    check_dns_label(name, "job name", rfc1035=True)
    command = torchrun_command(
        nodes=nodes,
        procs_per_node=procs,
        endpoint_host=f"{name}-0.{name}",
        script=script,
        run_id=name,
        port=port,
        rendezvous=rendezvous,
    )
    manifest = job(
        owner,
        name,
        namespace=namespace,
        project=project,
        image=image,
        command=command,
        env=env,
        resources=resources,
        node_selector=node_selector,
        tolerations=tolerations,
        completions=nodes,
        parallelism=nodes,
        indexed=True,
        backoff_limit=backoff_limit,
        active_deadline_s=active_deadline_s,
        ttl_after_finished_s=ttl_after_finished_s,
        ports=[("rdzv", port)],
        subdomain=name,
        shared_memory=True,
        labels=labels,
        annotations=annotations,
    )
    selector = _instance_selector(owner, name, project)
    headless = service(
        owner,
        name,
        selector,
        port=port,
        target_port=port,
        port_name="rdzv",
        namespace=namespace,
        project=project,
        labels=labels,
        headless=True,
        key="rendezvous",
    )
    return manifest, headless


# -- schedules --------------------------------------------------------------------------

_MINUTE_STEPS = (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30)
_HOUR_STEPS = (1, 2, 3, 4, 6, 8, 12)
_DAY_S = 86_400
_MAX_CRON_DAYS = 31


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A cron expression for an mlform duration; ``note`` says how it was rounded, if it was."""

    every: str
    expression: str
    period_s: int  # seconds between runs (the longest gap for "monthly")
    note: str | None

    @property
    def exact(self) -> bool:
        return self.note is None


def cron_schedule(every: str) -> CronSchedule:
    """The cron schedule (UTC) closest to running every ``every`` without running more often.

    Cron fires on calendar boundaries with a granularity of one minute, so only some
    periods repeat evenly: 1, 2, 3, 4, 5, 6, 10, 12, 15, 20 or 30 minutes (steps dividing
    the hour), 1, 2, 3, 4, 6, 8 or 12 hours (dividing the day), a day, a week (Sundays
    00:00) and a month (the 1st, 00:00; 28-31 days apart). Any other duration is rounded
    UP to the next of these (``90s`` -> every 2 minutes, ``7m`` -> 10, ``90m`` -> 2 hours,
    ``2d`` -> weekly) and ``note`` says so; exact ones have no note. Longer than 31 days,
    or not more than 0, is a ValueError.
    """
    from mlform.spec.base import parse_duration  # the spec's duration syntax, one parser

    seconds = parse_duration(every)
    if seconds <= 0:
        raise ValueError(f"a schedule needs a period longer than 0, not {every!r}")
    minutes = math.ceil(seconds / 60)
    if minutes <= _MINUTE_STEPS[-1]:
        step = next(m for m in _MINUTE_STEPS if m >= minutes)
        expression = "* * * * *" if step == 1 else f"*/{step} * * * *"
        period, said = step * 60, f"{step}m"
    elif minutes <= 24 * 60:
        hours = math.ceil(minutes / 60)
        step = next((h for h in _HOUR_STEPS if h >= hours), 24)
        expression = {1: "0 * * * *", 24: "0 0 * * *"}.get(step, f"0 */{step} * * *")
        period, said = step * 3600, f"{step}h"
    else:
        days = math.ceil(minutes / (24 * 60))
        if days > _MAX_CRON_DAYS:
            raise ValueError(
                f"a cron schedule cannot run every {every}: the longest period it repeats "
                f"is a month; use {_MAX_CRON_DAYS}d or less"
            )
        if days == 1:
            expression, period, said = "0 0 * * *", _DAY_S, "1d"
        elif days <= 7:
            expression, period, said = "0 0 * * 0", 7 * _DAY_S, "7d (weekly, Sundays)"
        else:
            expression, period = "0 0 1 * *", _MAX_CRON_DAYS * _DAY_S
            said = "month (the 1st of each month, 28-31 days apart)"
    note = None
    if period != seconds or said.startswith("month"):
        note = (
            f"every {every} is not a cron schedule (one-minute granularity, periods that "
            f"divide the hour, day or week): rounded up to every {said} ({expression})"
        )
    return CronSchedule(every=every, expression=expression, period_s=period, note=note)


def cron_job(
    owner: Address,
    name: str,
    schedule_every: str,
    *,
    namespace: str,
    project: str,
    image: str,
    command: Sequence[str],
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    resources: Resources | None = None,
    node_selector: Mapping[str, str] | None = None,
    tolerations: Sequence[Toleration] = (),
    backoff_limit: int = 0,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    key: str | None = None,
) -> Manifest:
    """A batch/v1 CronJob running ``command`` every ``schedule_every`` (an mlform duration).

    The schedule is :func:`cron_schedule` (rounded up when cron cannot repeat the duration
    evenly: the CronJob's ``mlform.dev/schedule-note`` annotation says how; the duration is
    kept in ``mlform.dev/every``), in UTC (``timeZone: Etc/UTC``). Runs never overlap
    (``concurrencyPolicy: Forbid``); a run that cannot start within one period (at most an
    hour) of its time is skipped. The name has at most 52 characters (the CronJob
    controller appends 11 to name its Jobs).
    """
    check_dns_label(name, "cron job name")
    if len(name) > 52:
        raise ValueError(
            f"cron job name {name!r} is too long: at most 52 characters (its Jobs add 11)"
        )
    if backoff_limit < 0:
        raise ValueError(f"{owner}: backoff_limit must be 0 or more, not {backoff_limit}")
    schedule = cron_schedule(schedule_every)
    noted = {**(annotations or {}), "mlform.dev/every": schedule_every}
    if schedule.note is not None:
        noted["mlform.dev/schedule-note"] = schedule.note
    template = _batch_pod_template(
        owner,
        name,
        project=project,
        image=image,
        command=command,
        args=args,
        env=env,
        resources=resources,
        node_selector=node_selector,
        tolerations=tolerations,
        labels=labels,
        annotations=annotations,
        restart_policy="Never",
    )
    job_meta = _metadata(owner, name, project, labels=labels, annotations=annotations)
    del job_meta["name"]  # the CronJob controller names its Jobs
    body = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": _metadata(
            owner, name, project, namespace=namespace, labels=labels, annotations=noted
        ),
        "spec": {
            "concurrencyPolicy": "Forbid",
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "metadata": job_meta,
                "spec": {"backoffLimit": backoff_limit, "template": template},
            },
            "schedule": schedule.expression,
            "startingDeadlineSeconds": min(schedule.period_s, 3600),
            "successfulJobsHistoryLimit": 3,
            "timeZone": "Etc/UTC",
        },
    }
    return Manifest(owner=owner, name=_manifest_name("cronjob", key), body=body)


# -- model deployments ------------------------------------------------------------------

TRACK_KEY = "mlform.dev/track"
VERSION_KEY = "mlform.dev/version"
MODEL_REF_KEY = "mlform.dev/model-ref"
ENV_DIGEST_KEY = "mlform.dev/env-digest"
MODELS_DIR = "/models"
REGISTRY_DIR = "/models/registry"
PREDICTIONS_DIR = "/var/lib/mlform/predictions"
DEFAULT_SERVER_PORT = 8080
ARTIFACT_SCHEMES = ("s3", "gs", "az", "http", "https", "file")
_MODEL_REF_RE = re.compile(r"^model\.[A-Za-z0-9][A-Za-z0-9_\-]{0,62}@v[1-9][0-9]*$")
_ARTIFACT_URI_RE = re.compile(rf"^({'|'.join(ARTIFACT_SCHEMES)})://[^\s]+$")
_DRAIN_S = 30  # mlform serve's drain_timeout
_PRE_STOP_S = 5  # endpoints and kube-proxy stop sending new connections meanwhile
_STARTUP_BUDGET_S = 600  # the model may take this long to load before liveness counts

Track = Literal["stable", "canary", "preview", "previous"]
Phase = Literal["progressing", "promoting", "promoted"]


class ServedVersion(Protocol):
    """One version a deployment serves (:class:`mlform.rollout.journal.Served` is one)."""

    @property
    def upstream(self) -> str: ...

    @property
    def ref(self) -> str: ...

    @property
    def weight(self) -> int: ...


def dns_name(*parts: str, limit: int = 63) -> str:
    """A DNS (RFC 1035) label for ``parts`` joined by ``-``: the text itself when it is one,
    else a lower-cased, shortened form ending in a hash of the text (deterministic, and
    distinct for distinct texts: ``Churn_API`` and ``churn-api`` differ)."""
    text = "-".join(parts)
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    if slug and not slug[0].isalpha():
        slug = f"m-{slug}"
    if slug == text and len(slug) <= limit:
        return slug
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    head = slug[: limit - len(digest) - 1].rstrip("-")
    return f"{head}-{digest}" if head else f"m-{digest}"


def canary_replicas(total: int, weight: int) -> tuple[int, int, bool]:
    """(stable, canary, exact): how ``total`` replicas approximate a canary ``weight`` (%).

    Without a mesh, two Deployments behind one Service share traffic in proportion to their
    ready pods. The rule is Argo Rollouts' for a canary without traffic routing
    (``approximateWeightedCanaryStableReplicaCounts``) with ``maxSurge: 0`` (the replica
    count the user declared is the budget): the canary gets ``total * weight / 100``
    rounded to the nearest integer (a half rounds up: Argo prefers the larger canary), but
    for a weight strictly between 0 and 100 neither track goes to 0 — the canary needs a
    pod to be measured, the stable one keeps serving — so the result is clamped to
    ``[1, total - 1]``; the stable track keeps the rest. The one exception: ``total == 1``
    with 0 < weight < 100 gives one pod to each (2 pods, a one-pod surge, as Argo's default
    ``maxSurge: 25%`` does). ``exact`` says whether the pods' ratio is ``weight`` exactly
    (10 % of 2 replicas is not: 1 + 1 serves 50 %).
    """
    if total < 0:
        raise ValueError(f"replicas must be 0 or more, not {total}")
    if not 0 <= weight <= 100:
        raise ValueError(f"a canary weight is a percentage from 0 to 100, not {weight}")
    if weight == 0 or total == 0:
        return total, 0, True
    if weight == 100:
        return 0, total, True
    if total == 1:
        stable, canary = 1, 1
    else:
        canary = min(max((2 * total * weight + 100) // 200, 1), total - 1)
        stable = total - canary
    return stable, canary, canary * 100 == weight * (stable + canary)


@dataclass(frozen=True, slots=True)
class _Profile:
    resources: Resources
    node_selector: dict[str, str]
    tolerations: tuple[Toleration, ...]
    gpu_type: str | None


def _profile(config: Mapping[str, Any]) -> _Profile:
    """The resource profile merged into a deployment's config (``spec.load._with_profile``)."""
    profile = config.get("resources") or {}
    if not isinstance(profile, Mapping):
        raise ValueError(
            f"resources must be the merged profile (a mapping), not {profile!r}: load the "
            "config with mlform.spec.load"
        )
    gpu = profile.get("gpu") or {}
    gpus = int(gpu.get("count", 1)) if gpu else 0
    tolerations = tuple(
        Toleration(
            key=t.get("key"),
            operator=t.get("operator", "Equal"),
            value=t.get("value"),
            effect=t.get("effect"),
        )
        for t in profile.get("tolerations") or ()
    )
    if gpus and not any(t.key == GPU_RESOURCE for t in tolerations):
        # GPU node pools are commonly tainted nvidia.com/gpu:NoSchedule (GKE, AKS, the
        # NVIDIA GPU operator); tolerating a taint never forces a pod onto those nodes.
        tolerations = (
            *tolerations,
            Toleration(key=GPU_RESOURCE, operator="Exists", effect="NoSchedule"),
        )
    return _Profile(
        resources=Resources(
            cpu=profile.get("cpu", 1), memory=str(profile.get("memory", "1Gi")), gpus=gpus
        ),
        node_selector=dict(profile.get("node_selector") or {}),
        tolerations=tolerations,
        gpu_type=gpu.get("type") if gpu else None,
    )


def _served_entries(
    owner: Address, served: Sequence[ServedVersion | tuple[str, str, int]]
) -> list[tuple[str, str, int]]:
    entries: list[tuple[str, str, int]] = []
    for item in served:
        if isinstance(item, tuple):
            upstream, ref, weight = item
        else:
            upstream, ref, weight = item.upstream, item.ref, item.weight
        if not _MODEL_REF_RE.match(ref):
            raise ValueError(
                f"{owner}: serve a pinned version like model.churn@v3, not {ref!r} (an alias "
                "could move between two pods starting)"
            )
        if not 0 <= weight <= 100:
            raise ValueError(f"{owner}: the weight of {ref} must be 0-100, not {weight}")
        entries.append((upstream, ref, weight))
    upstreams = [e[0] for e in entries]
    if len(set(upstreams)) != len(upstreams):
        raise ValueError(f"{owner}: served versions must have distinct upstreams: {upstreams}")
    return entries


def _rolling_update(strategy: Mapping[str, Any]) -> dict[str, Any]:
    surge = _int_or_percent(strategy.get("max_surge", "25%"), "strategy.max_surge")
    unavailable = _int_or_percent(strategy.get("max_unavailable", 0), "strategy.max_unavailable")
    if surge in (0, "0%") and unavailable in (0, "0%"):
        raise ValueError(
            "strategy.max_surge and strategy.max_unavailable cannot both be 0: the rollout "
            "could never replace a pod"
        )
    return {
        "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable},
        "type": "RollingUpdate",
    }


def _app_selector(owner: Address, project: str) -> dict[str, str]:
    """Labels every pod of ``owner`` carries, whatever its version or track."""
    return {
        "app.kubernetes.io/part-of": _label_value(project),
        ADDRESS_KEY: _label_value(str(owner)),
    }


def _instance_selector(owner: Address, instance: str, project: str) -> dict[str, str]:
    """The pods of one workload object (its name is the ``instance`` label)."""
    return {
        k: v
        for k, v in standard_labels(owner, instance, project).items()
        if k in ("app.kubernetes.io/instance", "app.kubernetes.io/name")
    }


def artifact_store_volume(
    store: str, name: str = "artifact-store"
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The volumes and mounts a pod needs to reach ``store`` (``([], [])`` for remote stores).

    A ``file://`` store is a directory on the node: it is mounted with a ``hostPath`` volume
    at the same path, so the URI means the same inside the pod (a single-node cluster, or a
    kind node with the directory as an extra mount, or a shared filesystem mounted on every
    node). Remote stores (``s3://``, ``gs://``, ``az://``, ``http(s)://``) need no volume.
    """
    if not store.startswith("file://"):
        return [], []
    path = store[len("file://") :]
    if not path.startswith("/"):
        raise ValueError(f"artifact_store {store!r}: a file:// store needs an absolute path")
    volume = {"hostPath": {"path": path, "type": "DirectoryOrCreate"}, "name": name}
    return [volume], [{"mountPath": path, "name": name}]


def _model_deployment(
    owner: Address,
    name: str,
    *,
    namespace: str,
    project: str,
    image: str,
    ref: str,
    upstream: str,
    track: Track,
    replicas: int | None,
    port: int,
    profile: _Profile,
    labels: Mapping[str, str],
    prediction_log: bool,
    artifact_store: str,
    artifact_secret: str | None,
    strategy: Mapping[str, Any] | None,
    key: str | None,
    env_from: Sequence[Mapping[str, Any]] = (),
    env_digest: str | None = None,
) -> Manifest:
    version = _label_value(upstream)
    scrape = {
        "prometheus.io/path": "/metrics",
        "prometheus.io/port": str(port),
        "prometheus.io/scrape": "true",
    }
    annotations: dict[str, str] = {MODEL_REF_KEY: ref}
    if profile.gpu_type:
        annotations["mlform.dev/gpu-type"] = profile.gpu_type
    if env_digest is not None:  # a changed env rolls the pods (envFrom is read at start)
        annotations[ENV_DIGEST_KEY] = env_digest
    deployment_meta = _metadata(
        owner,
        name,
        project,
        namespace=namespace,
        labels={**labels, TRACK_KEY: track, VERSION_KEY: version},
        annotations=annotations,
    )
    pod_meta = _metadata(
        owner,
        name,
        project,
        labels={**labels, VERSION_KEY: version},
        annotations={**annotations, **scrape},
    )
    del pod_meta["name"]
    pull: dict[str, Any] = {
        "name": "model-pull",
        "image": image,
        "command": [
            "mlform",
            "models",
            "pull",
            ref,
            "--from",
            artifact_store,
            "--to",
            REGISTRY_DIR,
        ],
    }
    if artifact_secret is not None:
        pull["envFrom"] = [{"secretRef": {"name": check_dns_label(artifact_secret, "secret")}}]
    # A pod requests the larger of its init containers and the sum of its containers, so
    # the same CPU and memory as the server cost nothing extra; the pull needs no GPU.
    pull["resources"] = Resources(
        cpu=profile.resources.cpu, memory=profile.resources.memory
    ).as_kubernetes()
    store_volumes, store_mounts = artifact_store_volume(artifact_store)
    pull["volumeMounts"] = [
        {"mountPath": MODELS_DIR, "name": "models"},
        *({**mount, "readOnly": True} for mount in store_mounts),
    ]
    serve = ["mlform", "serve", ref, "--registry", REGISTRY_DIR, "--name", owner.name]
    serve += ["--host", "0.0.0.0", "--port", str(port)]
    mounts = [{"mountPath": MODELS_DIR, "name": "models", "readOnly": True}]
    volumes: list[dict[str, Any]] = [{"emptyDir": {}, "name": "models"}, *store_volumes]
    if prediction_log:
        serve += ["--prediction-log", PREDICTIONS_DIR]
        mounts.append({"mountPath": PREDICTIONS_DIR, "name": "predictions"})
        volumes.append({"emptyDir": {}, "name": "predictions"})
    server: dict[str, Any] = {
        "name": "server",
        "image": image,
        "command": serve,
        **({"envFrom": [dict(source) for source in env_from]} if env_from else {}),
        "lifecycle": {"preStop": {"sleep": {"seconds": _PRE_STOP_S}}},
        "livenessProbe": _probe("/v2/health/live", initial_delay_s=0, period_s=10),
        "ports": [{"containerPort": port, "name": PORT_NAME, "protocol": "TCP"}],
        "readinessProbe": _probe("/v2/health/ready", initial_delay_s=0, period_s=5),
        "resources": profile.resources.as_kubernetes(),
        "startupProbe": {
            **_probe("/v2/health/live", initial_delay_s=0, period_s=5),
            "failureThreshold": _STARTUP_BUDGET_S // 5,
        },
        "volumeMounts": mounts,
    }
    pod_spec: dict[str, Any] = {"containers": [server], "initContainers": [pull]}
    if profile.node_selector:
        pod_spec["nodeSelector"] = dict(sorted(profile.node_selector.items()))
    pod_spec["terminationGracePeriodSeconds"] = _PRE_STOP_S + _DRAIN_S + 10
    if profile.tolerations:
        pod_spec["tolerations"] = [t.as_kubernetes() for t in profile.tolerations]
    pod_spec["volumes"] = volumes
    spec: dict[str, Any] = {}
    if replicas is not None:
        spec["replicas"] = replicas
    spec["selector"] = {"matchLabels": _instance_selector(owner, name, project)}
    if strategy is not None:
        spec["strategy"] = strategy
    spec["template"] = {"metadata": pod_meta, "spec": pod_spec}
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": deployment_meta,
        "spec": spec,
    }
    return Manifest(owner=owner, name=_manifest_name("deployment", key), body=body)


def model_deployment_objects(
    owner: Address,
    config: Mapping[str, Any],
    *,
    project: str,
    namespace: str,
    image: str,
    served: Sequence[ServedVersion | tuple[str, str, int]],
    artifact_store: str,
    phase: Phase = "progressing",
    artifact_secret: str | None = None,
) -> list[Manifest]:
    """Every Kubernetes object of an mlform deployment serving ``served`` right now.

    ``config`` is the deployment's config as loaded (``DeploymentSpec`` dumped, with its
    resource profile merged in by ``spec.load``). ``served`` lists ``(upstream, ref,
    weight)`` (or :class:`ServedVersion` objects): the first is the stable (active) version,
    the second, if any, the new one; refs pin a version (``model.churn@v3``).

    Objects, in this order (names are DNS labels derived from the deployment's name
    ``<app>`` and the upstream, deterministic):

    * one apps/v1 Deployment per served version (``<app>-<upstream>``; rolling and recreate
      have one, ``<app>``, whose pods Kubernetes itself replaces with the declared
      strategy). A Deployment is labelled ``mlform.dev/track`` (``stable``, ``canary``,
      ``preview`` for a blue-green preview, ``previous`` for the blue-green version kept
      after promotion) and ``mlform.dev/version`` (the upstream). Its pods carry
      ``mlform.dev/version`` but not the track, so promoting a version relabels its
      Deployment without restarting its pods.
    * the Service ``<app>`` on the deployment's ``port`` (0, the local target's "any free
      port", becomes 8080: each pod has its own address). It selects every pod of the
      deployment (canary: both tracks, traffic in proportion to ready pods, split by
      :func:`canary_replicas`); blue-green pins ``mlform.dev/version`` of the active
      version, and a second Service ``<app>-preview`` selects the new one.
    * with ``autoscaling``: an HPA ``<app>`` on the stable (active) Deployment, which then
      leaves ``replicas`` unset (the HPA owns it); the declared total for canary splits is
      ``max(replicas, min_replicas)``.
    * a PodDisruptionBudget ``<app>`` with ``minAvailable: 1`` over all its pods when the
      total is more than 1 (with a single replica it would block every node drain).
    * with ``env``: a ConfigMap ``<app>-env`` of its plain values and a Secret
      ``<app>-env`` of the values holding ``${secret:}`` tokens (kept as tokens here:
      :func:`_server_env`), both the server container's ``envFrom``; the pods carry
      ``mlform.dev/env-digest`` so that a changed value rolls them.

    Blue-green ``phase`` (two served versions): ``progressing``: the new version runs
    ``preview_replicas`` pods behind the preview Service; ``promoting``: it is scaled to
    the full count, the Service still on the old one (switch once it is ready, as Argo
    Rollouts does); ``promoted``: the Service selects the new version, the old one keeps
    its pods, with no Service, until the caller drops it after ``scale_down_delay``.
    Canary takes ``progressing`` only (the canary's weight is the second entry's; the
    stable version gets the rest); ``ab_test`` and ``shadow`` need a router in front
    (header/hash routing, mirroring) and are refused.

    Pods: container ``server`` runs ``mlform serve <ref> --registry /models/registry
    --name <deployment> --host 0.0.0.0 --port <port>`` (plus ``--prediction-log
    /var/lib/mlform/predictions`` on an ``emptyDir`` when the prediction log is on), with
    readiness on ``/v2/health/ready``, liveness on ``/v2/health/live`` after a startup
    probe that gives the model 10 minutes to load, Prometheus scrape annotations on the
    pods only (annotating the Service as well makes the usual Prometheus config scrape
    every pod twice), CPU, memory and ``nvidia.com/gpu`` from the profile, its node
    selector and tolerations (plus ``nvidia.com/gpu:NoSchedule`` with GPUs), a 5 s
    ``preStop`` sleep and 45 s of grace for the server's 30 s drain. ``image`` is used
    unless the config names one; it holds ``mlform`` and the project's code (its working
    directory is the project).

    Model delivery (the contract of ``mlform models pull``): an init container
    ``model-pull`` (same image, same CPU and memory, no GPU) runs
    ``mlform models pull <ref> --from <artifact_store> --to /models/registry`` into an
    ``emptyDir`` mounted at ``/models`` (read-only in the server). ``artifact_store`` is a
    URI (``s3://``, ``gs://``, ``az://``, ``http(s)://``, ``file://``: a directory on the
    node, mounted read-only into the init container at the same path by
    :func:`artifact_store_volume`) of a registry laid out as a stack's
    ``<state dir>/registry``; the pull writes a registry holding that version only:
    ``models/model.<name>/v<N>/`` (``version.json`` last, as its commit, with the card
    and reference statistics) and the artifact under ``artifacts/sha256/<hex>/``,
    verified against the version's digest, and exits non-zero on any mismatch (the pod
    then never starts serving). Credentials come from the Secret ``artifact_secret``
    (all its keys as environment variables of the init
    container only, e.g. ``AWS_ACCESS_KEY_ID``).
    """
    entries = _served_entries(owner, served)
    strategy = dict(config.get("strategy") or {"type": "rolling"})
    kind = str(strategy.get("type", "rolling"))
    if kind in ("ab_test", "shadow"):
        raise ValueError(
            f"{owner}: strategy {kind} needs a router in front of the versions (header or "
            "hash routing, mirroring), which plain Services cannot do; use canary, "
            "blue_green, rolling or recreate on Kubernetes"
        )
    if not entries:
        raise ValueError(f"{owner}: nothing to serve (served is empty)")
    most = 1 if kind in ("rolling", "recreate") else 2
    if len(entries) > most:
        raise ValueError(
            f"{owner}: strategy {kind} serves at most {most} version(s) at once, not {len(entries)}"
        )
    if phase != "progressing" and not (kind == "blue_green" and len(entries) == 2):
        raise ValueError(
            f"{owner}: phase {phase!r} is for a blue-green deployment with a new version; "
            f"strategy {kind} with {len(entries)} version(s) is always 'progressing'"
        )
    if not _ARTIFACT_URI_RE.match(artifact_store):
        raise ValueError(
            f"{owner}: artifact_store {artifact_store!r} must be a URI with one of the "
            f"schemes {', '.join(ARTIFACT_SCHEMES)} (e.g. s3://bucket/mlform/registry)"
        )
    check_dns_label(namespace, "namespace")
    port = int(config.get("port", DEFAULT_SERVER_PORT)) or DEFAULT_SERVER_PORT
    _check_port(port)
    image = str(config.get("image") or image)
    _check_image(owner, image)
    labels = dict(config.get("labels") or {})
    profile = _profile(config)
    total = int(config.get("replicas", 1))
    if total < 0:
        raise ValueError(f"{owner}: replicas must be 0 or more, not {total}")
    autoscaling = config.get("autoscaling")
    if autoscaling:
        total = max(total, int(autoscaling.get("min_replicas", 1)))
    logging_on = bool((config.get("prediction_log") or {}).get("enabled", True))
    app = dns_name(owner.name)
    env_objects, env_from, env_digest = _server_env(
        owner, dict(config.get("env") or {}), namespace=namespace, project=project
    )

    def deployment(
        upstream: str, ref: str, track: Track, replicas: int | None, native: bool = False
    ) -> Manifest:
        name = app if native else dns_name(owner.name, upstream)
        rollout: dict[str, Any] | None = None
        if native:
            rollout = {"type": "Recreate"} if kind == "recreate" else _rolling_update(strategy)
        return _model_deployment(
            owner,
            name,
            namespace=namespace,
            project=project,
            image=image,
            ref=ref,
            upstream=upstream,
            track=track,
            replicas=replicas,
            port=port,
            profile=profile,
            labels=labels,
            prediction_log=logging_on,
            artifact_store=artifact_store,
            artifact_secret=artifact_secret,
            strategy=rollout,
            key=None if native else dns_name(upstream, limit=52),
            env_from=env_from,
            env_digest=env_digest,
        )

    def scaled(count: int) -> int | None:
        return None if autoscaling else count  # the HPA owns the active one's replicas

    selector = _app_selector(owner, project)
    objects: list[Manifest] = []
    preview_of: str | None = None
    (first_up, first_ref, _), *rest = entries
    if kind in ("rolling", "recreate"):
        active = deployment(first_up, first_ref, "stable", scaled(total), native=True)
        objects.append(active)
    elif kind == "canary" or not rest:
        if rest:
            stable_n, canary_n, _ = canary_replicas(total, rest[0][2])
        else:
            stable_n, canary_n = total, 0
        active = deployment(first_up, first_ref, "stable", scaled(stable_n))
        objects.append(active)
        if rest:
            objects.append(deployment(rest[0][0], rest[0][1], "canary", canary_n))
        if kind == "blue_green":
            selector = {**selector, VERSION_KEY: _label_value(first_up)}
    else:  # blue-green with a new version
        new_up, new_ref, _ = rest[0]
        if phase == "promoted":
            objects.append(deployment(first_up, first_ref, "previous", total))
            active = deployment(new_up, new_ref, "stable", scaled(total))
            objects.append(active)
            selector = {**selector, VERSION_KEY: _label_value(new_up)}
        else:
            active = deployment(first_up, first_ref, "stable", scaled(total))
            preview_n = int(strategy.get("preview_replicas", 1))
            if preview_n < 0:
                raise ValueError(f"{owner}: preview_replicas must be 0 or more, not {preview_n}")
            count = total if phase == "promoting" else preview_n
            objects += [active, deployment(new_up, new_ref, "preview", count)]
            selector = {**selector, VERSION_KEY: _label_value(first_up)}
            preview_of = new_up
    objects.append(
        service(
            owner, app, selector, port=port, namespace=namespace, project=project, labels=labels
        )
    )
    if preview_of is not None:
        objects.append(
            service(
                owner,
                dns_name(owner.name, "preview"),
                {**_app_selector(owner, project), VERSION_KEY: _label_value(preview_of)},
                port=port,
                namespace=namespace,
                project=project,
                labels=labels,
                key="preview",
            )
        )
    if autoscaling:
        objects.append(
            horizontal_pod_autoscaler(
                owner,
                str(active.body["metadata"]["name"]),
                name=app,
                min_replicas=int(autoscaling.get("min_replicas", 1)),
                max_replicas=int(autoscaling["max_replicas"]),
                target_cpu_utilization=int(autoscaling.get("target_cpu_utilization", 80)),
                namespace=namespace,
                project=project,
            )
        )
    if total > 1:
        objects.append(
            pod_disruption_budget(
                owner,
                app,
                _app_selector(owner, project),
                min_available=1,
                namespace=namespace,
                project=project,
            )
        )
    return objects + env_objects


def _server_env(
    owner: Address, env: Mapping[str, str], *, namespace: str, project: str
) -> tuple[list[Manifest], list[dict[str, Any]], str | None]:
    """The ConfigMap and Secret ``<app>-env`` of a deployment's ``env``, the server's
    ``envFrom`` of them and a digest of ``env`` for the pods' annotation (None: no env).

    Values holding a ``${secret:}`` token go into the Secret, still as tokens: the engine's
    program reveals them (:mod:`mlform.pulumi_engine.program_kubernetes`). The digest is
    over the tokens, so it says that a secret changed without saying anything about it.
    """
    if not env:
        return [], [], None
    name = dns_name(owner.name, "env")
    plain = {key: value for key, value in env.items() if not is_sensitive(value)}
    hidden = {key: value for key, value in env.items() if is_sensitive(value)}
    objects: list[Manifest] = []
    sources: list[dict[str, Any]] = []
    if plain:
        objects.append(config_map(owner, name, namespace, plain, project=project, key="env"))
        sources.append({"configMapRef": {"name": name}})
    if hidden:
        objects.append(secret(owner, name, hidden, namespace=namespace, project=project, key="env"))
        sources.append({"secretRef": {"name": name}})
    text = json.dumps(dict(env), sort_keys=True, separators=(",", ":"))
    return objects, sources, hashlib.sha256(text.encode()).hexdigest()[:16]


def pulumi_type(manifest: Manifest) -> str:
    """The Pulumi type token of ``manifest`` (core objects live in ``core/v1``)."""
    return manifest.kind
