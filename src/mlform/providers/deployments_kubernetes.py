"""Deployments on the ``kubernetes`` (and ``render``) target: Deployments behind a Service.

The same rollout :class:`~mlform.rollout.controller.Controller` walks the strategy as on the
local target; :class:`KubernetesRuntime` is its runtime here. There is no router: the
objects are :func:`mlform.infra.kubernetes.model_deployment_objects` (a Deployment per
served version, the Service, HPA, PDB), provisioned through the Pulumi engine
(:func:`~mlform.providers.infrastructure.provision`), and

- ``serve(versions)`` provisions the objects of exactly those versions, with the traffic
  split last routed (a new canary starts at 0 pods);
- ``route(table)`` turns the table's split into replica counts (canary: stable/canary
  Deployments' replicas by :func:`~mlform.infra.kubernetes.canary_replicas`, the Service
  selecting both tracks; blue-green: the Service's version selector, with the new version
  first scaled to the full count — phase ``promoting`` — then switched to — ``promoted``;
  rolling and recreate: the one Deployment takes the new version and Kubernetes replaces
  its pods) and provisions again; the generation it returns is the table's;
- ``metrics()`` raises :class:`~mlform.rollout.analysis.AnalysisError`: there are no
  in-cluster metrics yet (analysis on this target is a later step), so
  :func:`kubernetes_problems` refuses analysis metrics on these targets up front.

Decisions (see :func:`kubernetes_settings`):

- **image**: the deployment's ``image``, else ``DEFAULT_IMAGE`` (``mlform/<project>:latest``,
  an image the user builds from the project with mlform installed: the model-pull init
  container and the server both run ``mlform``, in the project's directory).
- **artifact store**: ``target.artifact_store`` (a URI: ``s3://``, ``gs://``, ``az://``,
  ``http(s)://``, ``file://``), by default ``file://<state dir>/registry``: the stack's own
  registry. A ``file://`` store is mounted into the model-pull init container from the
  node (``hostPath`` at the same path), so the nodes must see that directory (a
  single-node or kind cluster, a shared filesystem). ``target.artifact_secret`` names an
  existing Secret whose keys become that init container's environment (credentials).
- **namespace**: ``target.namespace``, else the stack's own ``<project>-<stack>``, which
  the stack's program creates (:mod:`mlform.infra.kubernetes_stack`); ``default`` on the
  render target.
- **env**: the deployment's ``env`` as a ConfigMap and a Secret (``${secret:}`` values)
  that the servers take with ``envFrom`` (:func:`mlform.infra.kubernetes.model_deployment_objects`).
- **ab_test** and **shadow** need a router in front of the versions: refused on these
  targets (an error naming ``deployments.NAME.strategy.type``).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlform.addresses import Address
from mlform.diagnostics import Diagnostic
from mlform.infra import kubernetes as k
from mlform.infra.kubernetes_stack import stack_namespace
from mlform.infra.model import Manifest, to_record
from mlform.providers.base import ProviderContext, StepFailed
from mlform.providers.infrastructure import RuntimeBase, provision
from mlform.rollout.analysis import AnalysisError, Snapshot
from mlform.rollout.journal import RolloutJournal, RolloutRecord, Served
from mlform.rollout.strategy import Strategy
from mlform.secrets import is_sensitive

__all__ = [
    "DEFAULT_IMAGE",
    "KubernetesRuntime",
    "KubernetesSettings",
    "journal_entries",
    "kubernetes_problems",
    "kubernetes_settings",
    "manifests_for",
]

DEFAULT_IMAGE = "mlform/{project}:latest"
KUBERNETES_TARGETS = frozenset({"kubernetes", "render"})
_NATIVE = frozenset({"rolling", "recreate"})  # Kubernetes itself replaces the pods

Entry = tuple[str, str, int]  # (upstream, ref, weight)


@dataclass(frozen=True, slots=True)
class KubernetesSettings:
    project: str
    namespace: str
    image: str
    artifact_store: str
    artifact_secret: str | None = None


def kubernetes_settings(config: Mapping[str, Any], context: ProviderContext) -> KubernetesSettings:
    """Project, namespace, image and artifact store of an object on the kubernetes and
    render targets (module docstring): the same for deployments, monitors and training."""
    settings = context.settings
    project = str((settings.get("project") or {}).get("name", "mlform"))
    target = settings.get("target") or {}
    namespace = stack_namespace(
        {**settings, "target": {**target, "type": context.target}}, context.stack
    ).name
    image = str(config.get("image") or DEFAULT_IMAGE.format(project=k.dns_name(project)))
    store = target.get("artifact_store")
    if not store:
        store = f"file://{Path(context.state_dir).resolve() / 'registry'}"
    secret = target.get("artifact_secret")
    return KubernetesSettings(project, namespace, image, str(store), secret and str(secret))


def manifests_for(
    address: Address,
    config: Mapping[str, Any],
    context: ProviderContext,
    served: Sequence[Entry],
    phase: k.Phase = "progressing",
) -> list[Manifest]:
    """The deployment's objects serving ``served``; ValueError on a config they cannot take."""
    if not served:
        return []
    found = kubernetes_settings(config, context)
    return k.model_deployment_objects(
        address,
        config,
        project=found.project,
        namespace=found.namespace,
        image=found.image,
        served=served,
        artifact_store=found.artifact_store,
        phase=phase,
        artifact_secret=found.artifact_secret,
    )


def journal_entries(record: RolloutRecord | None, strategy: str) -> tuple[list[Entry], k.Phase]:
    """What the journal says is serving, as ``model_deployment_objects`` takes it."""
    if record is None or not record.stable:
        return [], "progressing"
    entries: list[Entry] = [(s.upstream, s.ref, 100) for s in record.stable]
    canary = record.canary
    if record.pending and canary is not None and len(entries) == 1:
        if strategy in _NATIVE:
            return [(canary.upstream, canary.ref, 100)], "progressing"
        weight = 0 if strategy == "blue_green" else record.weight
        stable = entries[0]
        entries = [(stable[0], stable[1], 100 - weight), (canary.upstream, canary.ref, weight)]
    return entries, "progressing"


def kubernetes_problems(
    address: Address, config: Mapping[str, Any], context: ProviderContext, *, applying: bool = True
) -> list[Diagnostic]:
    """What cannot work (errors) or works only approximately (warnings) on these targets.

    Canary analysis metrics are refused when ``applying`` and only warned about by
    ``validate``: a stack may keep its analysis for the day it runs in-cluster (and a
    policy may require it) while its plan is reviewed; the apply fails the step up front.
    """
    name = address.name
    where = f"deployments.{name}"
    strategy = dict(config.get("strategy") or {"type": "rolling"})
    kind = str(strategy.get("type", "rolling"))
    problems: list[Diagnostic] = []
    if kind in ("ab_test", "shadow"):
        return [
            Diagnostic.error(
                f"{where}.strategy.type: {kind} is not available on the {context.target} target",
                f"{kind} needs mlform's router in front of the versions (header or hash "
                "routing, mirroring), which plain Kubernetes Services cannot do. Use canary, "
                "blue_green, rolling or recreate on this target, or target: local.",
                address=str(address),
                key=f"{where}.strategy.type",
            )
        ]
    analysis = (strategy.get("analysis") or {}) if kind == "canary" else {}
    metrics = list(analysis.get("metrics") or ())
    if metrics:
        problems.append(
            (Diagnostic.error if applying else Diagnostic.warning)(
                f"{where}.strategy.analysis.metrics: canary analysis is not available on the "
                f"{context.target} target yet" + ("" if applying else ": apply will refuse it"),
                "The analysis reads each version server's /metrics, which mlform cannot reach "
                "inside the cluster yet: every check would fail and every rollout would be "
                f"rolled back. Set {where}.strategy.analysis.metrics to [] (the canary then "
                "walks its steps on their pauses), or deploy to target: local.",
                address=str(address),
                key=f"{where}.strategy.analysis.metrics",
            )
        )
    hidden = sorted(key for key, value in (config.get("env") or {}).items() if is_sensitive(value))
    if hidden and context.target == "render":
        problems.append(
            Diagnostic.warning(
                f"{where}.env: the rendered Secret holds the clear value of {', '.join(hidden)}",
                "The render target writes Secrets as files (base64 is an encoding, not "
                "encryption). Treat the rendered directory as secret, or keep these values "
                "out of it (for example with an external-secrets operator).",
                address=str(address),
                key=f"{where}.env.{hidden[0]}",
            )
        )
    total = int(config.get("replicas", 1) or 0)
    autoscaling = config.get("autoscaling")
    if autoscaling:
        total = max(total, int(autoscaling.get("min_replicas", 1)))
    if kind == "canary" and total > 0:
        for index, step in enumerate(strategy.get("steps") or ()):
            weight = int(step.get("weight", 0))
            if not 0 <= weight <= 100:
                continue  # the spec reports it
            stable, canary, exact = k.canary_replicas(total, weight)
            if exact:
                continue
            actual = 100 * canary / (stable + canary)
            needed = 100 // math.gcd(weight, 100)
            problems.append(
                Diagnostic.warning(
                    f"{where}.strategy.steps.{index}.weight: {weight}% cannot be split exactly "
                    f"over {total} replica(s)",
                    f"Without a service mesh, traffic follows the ready pods: this step runs "
                    f"{stable} stable and {canary} canary pod(s), so the canary gets about "
                    f"{actual:.0f}% of the traffic, not {weight}%. replicas: {needed} (or a "
                    f"multiple) would make it exact.",
                    address=str(address),
                    key=f"{where}.strategy.steps.{index}.weight",
                )
            )
    try:
        manifests_for(address, config, context, [(f"{k.dns_name(name)}-v1", "model.m@v1", 100)])
    except ValueError as exc:
        problems.append(Diagnostic.error(str(exc), address=str(address), key=where))
    return problems


class KubernetesRuntime(RuntimeBase):
    """The controller's effects on the kubernetes/render target (module docstring)."""

    def __init__(
        self,
        address: Address,
        config: Mapping[str, Any],
        context: ProviderContext,
        *,
        refresh: bool,
    ) -> None:
        super().__init__(address, config, context, refresh=refresh)
        self.strategy = Strategy.from_config(config).type
        self.settings = kubernetes_settings(config, context)
        self.versions: tuple[Served, ...] = ()
        self.split: dict[str, int] = {}
        self.phase: k.Phase = "progressing"
        self.resources: list[Manifest] = []
        self.live: dict[str, dict[str, Any]] = {}
        record = RolloutJournal(context.state_dir).load(str(address))
        if record is not None:  # an interrupted rollout resumes with its last split
            entries, _ = journal_entries(record, self.strategy)
            self.split = {upstream: weight for upstream, _ref, weight in entries}

    # -- Runtime -----------------------------------------------------------------------

    def serve(self, versions: Sequence[Served]) -> Mapping[str, str]:
        self.versions = tuple(versions)
        self._provision()
        return {s.upstream: self.url_of(s.upstream) for s in self.versions}

    def route(self, table: Mapping[str, Any]) -> int:
        self.split = {str(u): int(w) for u, w in (table.get("split") or {}).items()}
        entries = self._entries(self.split)
        if self.strategy == "blue_green" and len(entries) == 2 and entries[1][2] >= 100:
            if self.phase != "promoted":  # the new version at full size before the switch
                self._provision("promoting")
            self._provision("promoted")
        else:
            self._provision("progressing")
        return int(table.get("generation", 0))

    def metrics(self, base_url: str) -> Snapshot:
        raise AnalysisError(
            f"{self.address}: no metrics on the {self.context.target} target yet (the servers' "
            f"/metrics at {base_url} are inside the cluster); set "
            f"deployments.{self.address.name}.strategy.analysis.metrics to []"
        )

    # -- objects -----------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self.config.get("port", k.DEFAULT_SERVER_PORT)) or k.DEFAULT_SERVER_PORT

    @property
    def url(self) -> str:
        """The Service's in-cluster URL."""
        app = k.dns_name(self.address.name)
        return f"http://{app}.{self.settings.namespace}.svc.cluster.local:{self.port}"

    def url_of(self, upstream: str) -> str:
        preview = self.strategy == "blue_green" and len(self.versions) == 2
        if preview and upstream == self.versions[1].upstream and self.phase != "promoted":
            app = k.dns_name(self.address.name, "preview")
            return f"http://{app}.{self.settings.namespace}.svc.cluster.local:{self.port}"
        return self.url

    def _entries(self, split: Mapping[str, int]) -> list[Entry]:
        versions = list(self.versions)
        if not versions:
            return []
        if self.strategy in _NATIVE:
            weighted = [s for s in versions if split.get(s.upstream, 0) > 0]
            chosen = max(weighted, key=lambda s: split[s.upstream]) if weighted else versions[-1]
            return [(chosen.upstream, chosen.ref, 100)]
        if len(versions) == 1:
            return [(versions[0].upstream, versions[0].ref, 100)]
        first, second, *rest = versions
        weight = split.get(second.upstream, 0)
        return [
            (first.upstream, first.ref, 100 - weight),
            (second.upstream, second.ref, weight),
            *((s.upstream, s.ref, split.get(s.upstream, 0)) for s in rest),
        ]

    def _provision(self, phase: k.Phase | None = None) -> None:
        entries = self._entries(self.split)
        if phase is None:  # serve(): keep a promoted blue-green version promoted
            phase = self.phase
        if not (self.strategy == "blue_green" and len(entries) == 2):
            phase = "progressing"
        try:
            wanted = manifests_for(self.address, self.config, self.context, entries, phase)
        except ValueError as exc:
            raise StepFailed(
                Diagnostic.error(
                    f"{self.address}: {exc}",
                    "`mlform validate` lists what this target cannot take.",
                    address=str(self.address),
                    key=f"deployments.{self.address.name}",
                )
            ) from exc
        if wanted == self.resources and not self._refresh:
            self.phase = phase  # the same objects: nothing to ask the engine
            return
        surge = _surge(self.resources, wanted)
        if surge is not None:  # first up, then down: never fewer pods than before
            self.progress(_describe(surge) + " (scaling up first)", None)
            provision(self.context, self.address, surge, refresh=self._refresh)
            self._refresh = False
        self.progress(_describe(wanted), None)
        live = provision(self.context, self.address, wanted, refresh=self._refresh)
        self._refresh = False
        self.resources, self.live, self.phase = wanted, live, phase

    def replicas(self) -> dict[str, int | None]:
        """Replicas of each Deployment provisioned last, by Kubernetes name (None: HPA's)."""
        return _replicas_by_name(self.resources)

    def outputs(self, record: RolloutRecord) -> dict[str, Any]:
        name = self.address.name
        log = self.config.get("prediction_log") or {}
        return {
            "target": self.context.target,
            "infrastructure": [to_record(r) for r in self.resources],
            "live": self.live,
            "namespace": self.settings.namespace,
            "image": self.settings.image,
            "artifact_store": self.settings.artifact_store,
            "url": self.url,
            "endpoint": f"{self.url}/v2/models/{name}/infer",
            "replicas": self.replicas(),
            "serving": [s.to_dict() for s in record.stable],
            "rollout": record.summary(),
            "prediction_log": {
                "enabled": bool(log.get("enabled", True)),
                "directory": k.PREDICTIONS_DIR,  # in each pod (an emptyDir)
                "retention": str(log.get("retention", "7d")),
            },
        }


def _replicas_by_name(manifests: Sequence[Manifest]) -> dict[str, int | None]:
    """Replicas of each Deployment among ``manifests``, by Kubernetes name (None: HPA's)."""
    return {
        str(m.body["metadata"]["name"]): m.body["spec"].get("replicas")
        for m in manifests
        if m.body["kind"] == "Deployment"
    }


def _surge(current: Sequence[Manifest], wanted: Sequence[Manifest]) -> list[Manifest] | None:
    """``wanted`` with no Deployment below its current replicas, when a step moves pods from
    one Deployment to another (a canary step: stable 3 -> 2, canary 1 -> 2); else None.

    Scaling both at once would leave the Service with fewer ready pods until the new ones
    start; provisioning this first (the engine waits for the new pods to be ready on a real
    cluster) and ``wanted`` after keeps the capacity, like a Deployment's ``maxSurge``.
    """
    before = _replicas_by_name(current)
    grows = shrinks = False
    surged: list[Manifest] = []
    for manifest in wanted:
        if manifest.body["kind"] != "Deployment":  # ConfigMaps and Secrets have no spec
            surged.append(manifest)
            continue
        name = str(manifest.body["metadata"]["name"])
        new, old = manifest.body["spec"].get("replicas"), before.get(name)
        if new is None or old is None or new == old:
            surged.append(manifest)
            continue
        if new > old:
            grows = True
            surged.append(manifest)
            continue
        shrinks = True
        body = copy.deepcopy(dict(manifest.body))
        body["spec"]["replicas"] = old
        surged.append(dataclasses.replace(manifest, body=body))
    return surged if grows and shrinks else None


def _describe(manifests: Sequence[Manifest]) -> str:
    deployments = [
        f"{m.body['metadata']['name']} "
        f"({m.body['metadata']['labels'].get(k.TRACK_KEY, '?')}): "
        f"{m.body['spec'].get('replicas', 'autoscaled')} pod(s)"
        for m in manifests
        if m.body["kind"] == "Deployment"
    ]
    return "replicas: " + (", ".join(deployments) or "none")
