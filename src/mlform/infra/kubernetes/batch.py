"""Batch builders: Jobs, multi-node PyTorch runs (an indexed Job running ``torchrun`` and its
headless Service) and CronJobs from an mlform duration (:func:`cron_schedule`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from mlform.addresses import Address
from mlform.infra.kubernetes.names import (
    _check_port,
    _check_port_name,
    _instance_selector,
    _manifest_name,
    _metadata,
    check_dns_label,
)
from mlform.infra.kubernetes.objects import Resources, Toleration, service
from mlform.infra.model import Manifest


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
    volumes: Sequence[Mapping[str, Any]] = (),
    volume_mounts: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The pod template of a Job: one container named ``main``, labelled like its owner.

    ``volumes`` join the pod (after ``/dev/shm``'s when ``shared_memory``), ``volume_mounts``
    the container.
    """
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
    # A failed container's status then carries the tail of its output (the kubelet's last
    # 80 lines / 2 KiB), which apply shows when a training Job fails.
    container["terminationMessagePolicy"] = "FallbackToLogsOnError"
    mounts = [{"mountPath": "/dev/shm", "name": "dshm"}] if shared_memory else []
    mounts += map(dict, volume_mounts)
    if mounts:
        container["volumeMounts"] = mounts
    pod_spec: dict[str, Any] = {"containers": [container]}
    if node_selector:
        pod_spec["nodeSelector"] = dict(sorted(node_selector.items()))
    pod_spec["restartPolicy"] = restart_policy
    if subdomain is not None:
        pod_spec["subdomain"] = check_dns_label(subdomain, "subdomain", rfc1035=True)
    if tolerations:
        pod_spec["tolerations"] = [t.as_kubernetes() for t in tolerations]
    pod_volumes = [{"emptyDir": {"medium": "Memory"}, "name": "dshm"}] if shared_memory else []
    pod_volumes += map(dict, volumes)
    if pod_volumes:
        pod_spec["volumes"] = pod_volumes
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
    volumes: Sequence[Mapping[str, Any]] = (),
    volume_mounts: Sequence[Mapping[str, Any]] = (),
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
        volumes=volumes,
        volume_mounts=volume_mounts,
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
    volumes: Sequence[Mapping[str, Any]] = (),
    volume_mounts: Sequence[Mapping[str, Any]] = (),
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
        volumes=volumes,
        volume_mounts=volume_mounts,
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
