"""The Kubernetes objects of one training run of a model (``models.NAME.training``; pure).

A run is a Job in the stack's namespace, named after the run (``train-<model>-<run>``),
running ``mlform models fit NAME -s STACK --run-id RUN --to <state dir>/registry/runs/RUN
--state-dir DIR`` (:mod:`mlform.providers.models_fit`) in the project image
(``training.image``, else the deployments' default image). A torch model with
``training.nodes > 1``, several processes per node or several GPUs gets an Indexed Job
running that under ``torchrun`` (``-m mlform ...``) with a static rendezvous on pod 0
through a headless Service (:func:`mlform.infra.kubernetes.distributed_training_job`).

Resources, GPUs, node selector and tolerations come from the model's resource profile;
``activeDeadlineSeconds`` is ``training.timeout``; ``backoffLimit`` is 0 (a failed run is
reported, not retried). The stack's state directory (the feature set, the registry, the
checkpoints) is mounted at the same path with a ``hostPath`` volume, as the deployments
mount the registry (:func:`mlform.infra.kubernetes.artifact_store_volume`). The fingerprints
apply planned travel in ``$MLFORM_EXPECTED_FINGERPRINTS`` for the pod to check. Every
object carries ``pulumi.com/skipAwait``: :mod:`mlform.providers.job_wait` waits instead of
Pulumi, with progress and the model's timeout.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mlform.addresses import Address
from mlform.infra import kubernetes as k
from mlform.infra.model import Manifest
from mlform.providers.base import ProviderContext
from mlform.providers.deployments_kubernetes import kubernetes_settings
from mlform.providers.models_fit import EXPECTED_FINGERPRINTS_ENV
from mlform.spec.base import parse_duration

__all__ = [
    "CLUSTER_TARGET",
    "RUN_ID_KEY",
    "TrainingSettings",
    "distributed",
    "job_name",
    "results_uri",
    "training_manifests",
    "trains_in_cluster",
]

CLUSTER_TARGET = "kubernetes"
RUN_ID_KEY = "mlform.dev/run-id"
# pulumi-kubernetes' annotation (mlform.pulumi_engine.program_kubernetes.SKIP_AWAIT; not
# imported, so that this module never imports Pulumi).
SKIP_AWAIT = "pulumi.com/skipAwait"
STATE_VOLUME = "mlform-state"


@dataclass(frozen=True, slots=True)
class TrainingSettings:
    """``models.NAME.training`` (spec defaults filled in)."""

    where: Literal["auto", "local", "cluster"] = "auto"
    nodes: int = 1
    procs_per_node: int | None = None
    timeout: str = "1h"
    image: str | None = None

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> TrainingSettings:
        block = dict(config.get("training") or {})
        where = str(block.get("where", "auto"))
        procs = block.get("procs_per_node")
        return cls(
            where="local" if where == "local" else "cluster" if where == "cluster" else "auto",
            nodes=int(block.get("nodes", 1) or 1),
            procs_per_node=None if procs is None else int(procs),
            timeout=str(block.get("timeout") or "1h"),
            image=None if not block.get("image") else str(block["image"]),
        )

    @property
    def timeout_s(self) -> float:
        return parse_duration(self.timeout)


def trains_in_cluster(config: Mapping[str, Any], target: str) -> bool:
    where = TrainingSettings.of(config).where
    return where == "cluster" or (where == "auto" and target == CLUSTER_TARGET)


def distributed(config: Mapping[str, Any]) -> bool:
    settings = TrainingSettings.of(config)
    gpus = k.resource_profile(config).resources.gpus
    return config.get("framework") == "torch" and (
        settings.nodes > 1 or (settings.procs_per_node or 1) > 1 or gpus > 1
    )


def job_name(address: Address, run_id: str) -> str:
    """``train-<model>-<run>``: a DNS label with room for ``-<pod index>`` (pod hostnames)."""
    return k.dns_name("train", address.name, run_id[:8], limit=56)


def results_uri(context: ProviderContext, run_id: str) -> str:
    """Where the run writes its model: ``file://<state dir>/registry/runs/<run id>``.

    The stack's own registry (the default ``target.artifact_store``), which the Job mounts
    with the rest of the state directory; apply moves the model from there into the
    registry. A remote ``artifact_store`` is where serving pods fetch versions from; the
    training pod does not write there.
    """
    registry = Path(context.state_dir).resolve() / "registry"
    return f"file://{registry}/runs/{run_id}"


def training_manifests(
    address: Address,
    config: Mapping[str, Any],
    context: ProviderContext,
    *,
    run_id: str,
    fingerprints: Mapping[str, str],
) -> list[Manifest]:
    """The Job (and for torchrun its headless Service) of one training run (pure).

    ValueError when the config cannot become these objects (a bad image or label).
    """
    settings = TrainingSettings.of(config)
    found = kubernetes_settings({"image": settings.image}, context)
    state_dir = Path(context.state_dir).resolve()
    name = job_name(address, run_id)
    args = [
        "models",
        "fit",
        address.name,
        "-s",
        context.stack,
        "--run-id",
        run_id,
        "--to",
        results_uri(context, run_id),
        "--state-dir",
        str(state_dir),
    ]
    if context.overrides:  # apply's command-line overrides: the pod composes the same config
        args += ["--", *context.overrides]
    profile = k.resource_profile(config)
    labels = {**dict(config.get("labels") or {}), RUN_ID_KEY: run_id}
    env = {
        EXPECTED_FINGERPRINTS_ENV: json.dumps(dict(fingerprints), sort_keys=True),
        "PYTHONUNBUFFERED": "1",
    }
    deadline = max(1, math.ceil(settings.timeout_s))
    volumes, mounts = k.artifact_store_volume(f"file://{state_dir}", STATE_VOLUME)
    common: dict[str, Any] = {
        "namespace": found.namespace,
        "project": found.project,
        "image": found.image,
        "env": env,
        "resources": profile.resources,
        "node_selector": profile.node_selector,
        "tolerations": profile.tolerations,
        "active_deadline_s": deadline,
        "volumes": volumes,
        "volume_mounts": mounts,
        "labels": labels,
    }
    manifests: list[Manifest]
    if distributed(config):
        job, service = k.distributed_training_job(
            address,
            name,
            script=["-m", "mlform", *args],
            nodes=settings.nodes,
            procs_per_node=settings.procs_per_node,
            **common,
        )
        manifests = [job, service]
    else:
        manifests = [k.job(address, name, command=["mlform", *args], **common)]
    return [_skip_await(m) for m in manifests]


def _skip_await(manifest: Manifest) -> Manifest:
    body = copy.deepcopy(dict(manifest.body))
    body["metadata"]["annotations"] = dict(
        sorted({**body["metadata"].get("annotations", {}), SKIP_AWAIT: "true"}.items())
    )
    return Manifest(owner=manifest.owner, name=manifest.name, body=body)
