"""The objects of a model deployment: a Deployment per served version (model-pull init
container, V2 probes, scrape annotations), Services, HPA, PDB, env ConfigMap and Secret, and
canary replica splits (:func:`canary_replicas`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from mlform.addresses import Address
from mlform.infra.kubernetes.batch import _check_image
from mlform.infra.kubernetes.names import (
    GPU_RESOURCE,
    PORT_NAME,
    _app_selector,
    _check_port,
    _instance_selector,
    _label_value,
    _manifest_name,
    _metadata,
    check_dns_label,
    dns_name,
)
from mlform.infra.kubernetes.objects import (
    Resources,
    Toleration,
    _int_or_percent,
    _probe,
    config_map,
    horizontal_pod_autoscaler,
    pod_disruption_budget,
    secret,
    service,
)
from mlform.infra.model import Manifest
from mlform.secrets import is_sensitive

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
class ResourceProfile:
    """A resource profile (``resources.profiles.NAME``) as pods take it."""

    resources: Resources
    node_selector: dict[str, str]
    tolerations: tuple[Toleration, ...]
    gpu_type: str | None


def resource_profile(config: Mapping[str, Any]) -> ResourceProfile:
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
    return ResourceProfile(
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
    profile: ResourceProfile,
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
    profile = resource_profile(config)
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
