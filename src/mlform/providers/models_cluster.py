"""Training a model as a Kubernetes Job (``models.NAME.training``), for the model provider.

On the ``kubernetes`` target a model trains in the cluster unless ``training.where`` says
``local`` (``auto``, the default, means the cluster there and the apply process on the
``local`` and ``render`` targets). :func:`train_in_cluster` then

1. provisions the run's Job (and for ``torchrun`` its headless Service) through the Pulumi
   engine, owned by the model's address (:mod:`mlform.providers.training_job` builds them);
2. waits for it (:mod:`mlform.providers.job_wait`) even when ``target.wait_for_ready`` is
   false: the model cannot be registered before it is trained; a failed Job or
   ``training.timeout`` fails the step naming the Job and the ``kubectl logs`` command;
3. reads what the pod's ``mlform models fit`` wrote (:mod:`mlform.providers.models_fit`)
   back as a ``TrainedModel``, noting in its hardware record where it ran; the provider
   evaluates, gates and registers it exactly as a model trained in the apply process.

The objects stay in the cluster as the record of the run (the model's outputs keep them
as its ``infrastructure``) until the next training replaces them (a new run, new names)
or the model is destroyed (:func:`remove_training_job`).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mlform.addresses import Address
from mlform.diagnostics import Diagnostic, Severity
from mlform.infra.model import Manifest, to_record
from mlform.providers.base import ApplyRequest, DeleteRequest, ProviderContext, StepFailed
from mlform.providers.infrastructure import provision
from mlform.providers.job_wait import (
    JobStatusReader,
    WaitedJob,
    job_problem,
    logs_command,
    wait_for_job,
)
from mlform.providers.models_fit import local_path, read_result, trained_model
from mlform.providers.training_job import (
    CLUSTER_TARGET,
    TrainingSettings,
    results_uri,
    training_manifests,
    trains_in_cluster,
)

__all__ = [
    "ClusterRun",
    "remove_training_job",
    "train_in_cluster",
    "training_problems",
    "trains_in_cluster",
]


def training_problems(
    address: Address, config: Mapping[str, Any], context: ProviderContext
) -> list[Diagnostic]:
    """What ``models.NAME.training`` asks for that cannot be done here."""
    key = f"models.{address.name}.training"
    settings = TrainingSettings.of(config)
    framework = str(config.get("framework"))
    problems: list[Diagnostic] = []
    for field, value in (("nodes", settings.nodes), ("procs_per_node", settings.procs_per_node)):
        if framework != "torch" and value is not None and value > 1:
            problems.append(
                Diagnostic.error(
                    f"{key}.{field}: {value} needs framework torch, not {framework}",
                    "Several training processes run under torchrun, which only the PyTorch "
                    f"trainer uses. Set {key}.{field} to 1 (or leave it out).",
                    address=str(address),
                    key=f"{key}.{field}",
                )
            )
    gpus = int(((config.get("resources") or {}).get("gpu") or {}).get("count", 0) or 0)
    procs = settings.procs_per_node
    if framework == "torch" and gpus and procs is not None and procs != gpus:
        problems.append(
            Diagnostic.error(
                f"{key}.procs_per_node: {procs} processes on {gpus} GPU(s) per node",
                "torchrun runs one process per GPU of the resource profile: leave "
                f"{key}.procs_per_node out (or set it to {gpus}).",
                address=str(address),
                key=f"{key}.procs_per_node",
            )
        )
    cluster = trains_in_cluster(config, context.target)
    if cluster and context.target != CLUSTER_TARGET:
        problems.append(
            Diagnostic.error(
                f"{key}.where: cluster training needs target: kubernetes, not {context.target}",
                f"The {context.target} target has no cluster to run a training Job in. Set "
                f"{key}.where to local or auto (auto trains on the cluster only on the "
                "kubernetes target).",
                address=str(address),
                key=f"{key}.where",
            )
        )
    elif not cluster and settings.nodes > 1 and framework == "torch":
        problems.append(
            Diagnostic.warning(
                f"{key}.nodes: {settings.nodes} nodes are used only by cluster training",
                "This model trains in the mlform apply process (one process); set "
                f"{key}.where to cluster on target: kubernetes to train on several nodes.",
                address=str(address),
                key=f"{key}.nodes",
            )
        )
    if cluster and context.target == CLUSTER_TARGET and not problems:
        try:
            training_manifests(address, config, context, run_id="validate", fingerprints={})
        except ValueError as exc:
            problems.append(Diagnostic.error(str(exc), address=str(address), key=key))
    return problems


@dataclass(frozen=True, slots=True)
class ClusterRun:
    """A finished training Job and the model it trained."""

    trained: Any  # mlform.training.types.TrainedModel
    job: str
    namespace: str
    manifests: tuple[Manifest, ...]
    live: Mapping[str, Any]
    result_dir: Path

    def outputs(self) -> dict[str, Any]:
        """What the model's outputs record of the run (the Job is its infrastructure)."""
        return {
            "training": {"where": "cluster", "job": self.job, "namespace": self.namespace},
            "infrastructure": [to_record(m) for m in self.manifests],
            "live": dict(self.live),
        }

    def discard(self) -> None:
        """Remove the run's files once the registry holds the model."""
        shutil.rmtree(self.result_dir, ignore_errors=True)


def train_in_cluster(request: ApplyRequest, run_id: str) -> ClusterRun:
    """Run the model's training Job, wait for it, and read the model back (module docstring)."""
    address, config, context = request.address, request.config, request.context
    for problem in training_problems(address, config, context):
        if problem.severity is Severity.ERROR:
            raise StepFailed(problem)
    settings = TrainingSettings.of(config)
    manifests = training_manifests(
        address, config, context, run_id=run_id, fingerprints=request.fingerprints
    )
    job = manifests[0].body
    name, namespace = str(job["metadata"]["name"]), str(job["metadata"]["namespace"])
    result_dir = local_path(results_uri(context, run_id), "artifact store")
    shutil.rmtree(result_dir, ignore_errors=True)
    context.progress(f"training on the cluster: job {namespace}/{name}", 0.1)
    live = provision(context, address, manifests)
    waited = WaitedJob(
        address,
        name,
        namespace,
        completions=int(job["spec"].get("completions") or 1),
        timeout=settings.timeout,
        logs=logs_command(context, name, namespace),
    )
    # the cluster trains: this step uses no machine here while it waits (apply/slots.py)
    reader = JobStatusReader(address, context)
    with reader as read_status, context.idle():
        wait_for_job(
            lambda: read_status(name, namespace),
            waited,
            timeout_s=settings.timeout_s,
            progress=context.progress,
            read_failures=lambda: reader.failures(name, namespace),
        )
    try:
        result = read_result(result_dir)
    except ValueError as exc:
        raise StepFailed(
            job_problem(waited, f"completed but left no trained model ({exc})")
        ) from exc
    trained = trained_model(result)
    where = {
        "trained_on": "kubernetes",
        "job": f"{namespace}/{name}",
        "nodes": settings.nodes,
    }
    trained = _with_hardware(trained, where)
    return ClusterRun(trained, name, namespace, tuple(manifests), live, result_dir)


def _with_hardware(trained: Any, extra: Mapping[str, Any]) -> Any:
    return replace(trained, hardware={**dict(trained.hardware), **extra})


def remove_training_job(request: DeleteRequest) -> None:
    """Delete the model's last training Job (destroy), when it has one."""
    if request.prior_outputs.get("infrastructure"):
        provision(request.context, request.address, ())
