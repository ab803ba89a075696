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

The builders live in :mod:`.names`, :mod:`.objects`, :mod:`.batch` and :mod:`.serving`;
this package re-exports them (``from mlform.infra import kubernetes as k``).
"""

from __future__ import annotations

from mlform.infra.kubernetes.batch import (
    NODE_RANK_REF,
    RDZV_PORT,
    CronSchedule,
    cron_job,
    cron_schedule,
    distributed_training_job,
    job,
    torchrun_command,
)
from mlform.infra.kubernetes.names import (
    ADDRESS_KEY,
    GPU_RESOURCE,
    MANAGED_BY,
    PORT_NAME,
    _label_value,
    check_dns_label,
    dns_name,
    standard_labels,
)
from mlform.infra.kubernetes.objects import (
    Resources,
    Toleration,
    config_map,
    gpu_quota_spec,
    horizontal_pod_autoscaler,
    namespace,
    pod_disruption_budget,
    resource_quota,
    secret,
    service,
    workload,
)
from mlform.infra.kubernetes.serving import (
    ARTIFACT_SCHEMES,
    DEFAULT_SERVER_PORT,
    ENV_DIGEST_KEY,
    MODEL_REF_KEY,
    MODELS_DIR,
    PREDICTIONS_DIR,
    REGISTRY_DIR,
    TRACK_KEY,
    VERSION_KEY,
    Phase,
    ResourceProfile,
    ServedVersion,
    Track,
    artifact_store_volume,
    canary_replicas,
    model_deployment_objects,
    pulumi_type,
    resource_profile,
)

__all__ = [
    "ADDRESS_KEY",
    "ARTIFACT_SCHEMES",
    "DEFAULT_SERVER_PORT",
    "ENV_DIGEST_KEY",
    "GPU_RESOURCE",
    "MANAGED_BY",
    "MODELS_DIR",
    "MODEL_REF_KEY",
    "NODE_RANK_REF",
    "PORT_NAME",
    "PREDICTIONS_DIR",
    "RDZV_PORT",
    "REGISTRY_DIR",
    "TRACK_KEY",
    "VERSION_KEY",
    "CronSchedule",
    "Phase",
    "ResourceProfile",
    "Resources",
    "ServedVersion",
    "Toleration",
    "Track",
    "_label_value",
    "artifact_store_volume",
    "canary_replicas",
    "check_dns_label",
    "config_map",
    "cron_job",
    "cron_schedule",
    "distributed_training_job",
    "dns_name",
    "gpu_quota_spec",
    "horizontal_pod_autoscaler",
    "job",
    "model_deployment_objects",
    "namespace",
    "pod_disruption_budget",
    "pulumi_type",
    "resource_profile",
    "resource_quota",
    "secret",
    "service",
    "standard_labels",
    "torchrun_command",
    "workload",
]
