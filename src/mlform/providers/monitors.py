"""Monitors on the local target: a scheduler process per monitor, and its alert rules.

Applying ``monitor.NAME`` writes what its scheduler runs to
``<state dir>/monitors/NAME/spec.json`` (mode 0600: webhook headers are revealed there,
never in the state or the plan), renders Prometheus alerting rules to
``<state dir>/monitors/NAME/rules.yml`` when the monitor has a ``prometheus`` sink, and
runs the scheduler (:mod:`mlform.monitoring.scheduler`) as a Pulumi-managed process whose
``/-/health`` the engine checks and ``mlform refresh`` probes. The process restarts when
the monitor's config changes (its command carries the config's digest). Deleting the
monitor stops it and removes the spec and rules; its history stays, like the state's.

On the ``kubernetes`` (and ``render``) target a monitor is a CronJob instead
(:func:`mlform.infra.kubernetes.cron_job`): every ``schedule.every`` (rounded up to cron's
grid; ``mlform validate`` warns when it is) a pod runs ``mlform monitor run NAME -s STACK``
in the deployments' image (``image`` as for deployments: ``mlform/<project>:latest``,
:mod:`mlform.providers.deployments_kubernetes`). No ``spec.json`` is written for it: the pod
gets its config from the project inside that image (its working directory) and the stack
name on its command line, as the CLI does anywhere. **Limitation**: the run reads the
state, the registry and the prediction logs where that project's backend says, so the
pods need a shared backend (``backend: postgresql``) and prediction logs they can reach;
the servers' logs are in their pods' ``emptyDir`` today, so a monitor's pod finds no
predictions yet, and its history stays in the pod. The alert rules file is written
locally as on the local target.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mlform.addresses import Address, Kind
from mlform.diagnostics import Diagnostic
from mlform.infra import kubernetes as k
from mlform.infra.model import InfraResource, Manifest, Process
from mlform.monitoring.job import MonitorJob, spec_path
from mlform.providers.base import (
    ApplyRequest,
    ApplyResult,
    DeleteRequest,
    DeleteResult,
    ProviderContext,
    StepFailed,
    ValidateRequest,
)
from mlform.providers.deployments_kubernetes import KUBERNETES_TARGETS, kubernetes_settings
from mlform.providers.infrastructure import InfrastructureProvider, require_local
from mlform.spec.base import parse_duration

__all__ = ["MonitorProvider", "monitor_job", "rules_path"]

SCHEDULER = "scheduler"


def rules_path(state_dir: Path, name: str) -> Path:
    return Path(state_dir) / "monitors" / name / "rules.yml"


class MonitorProvider(InfrastructureProvider):
    kind = Kind.MONITOR

    def resources(
        self, address: Address, config: Mapping[str, Any], context: ProviderContext
    ) -> Sequence[InfraResource]:
        if context.target in KUBERNETES_TARGETS:
            return [_cron_job(address, config, context)]
        if context.target != "local":
            return ()
        state_dir = Path(context.state_dir).resolve()
        return [
            Process(
                owner=address,
                name=SCHEDULER,
                command=(
                    sys.executable,
                    "-m",
                    "mlform.monitoring.scheduler",
                    "--spec",
                    str(spec_path(state_dir, address.name)),
                    "--port",
                    "{port}",
                    "--config-digest",
                    _digest(config),
                ),
                health_path="/-/health",
                cwd=str(Path(context.project_dir).resolve()),
                secrets_env=True,  # it composes the config (rollback) and sends alerts
            )
        ]

    def validate(self, request: ValidateRequest) -> tuple[Diagnostic, ...]:
        found = super().validate(request)
        if found or request.context.target not in KUBERNETES_TARGETS:
            return found
        name = request.address.name
        warnings = [
            Diagnostic.warning(
                f"monitors.{name}: on the {request.context.target} target the monitor's CronJob "
                "cannot read the stack's state or the servers' prediction logs yet",
                "The CronJob runs `mlform monitor run` in the project image, but the stack's "
                "state directory stays where `mlform apply` ran and each server pod logs its "
                "predictions to its own emptyDir: its runs find no applied deployment. Until "
                f"a shared backend lands, run `mlform monitor run {name} -s STACK` where the "
                "state lives (e.g. a scheduled CI job).",
                address=str(request.address),
                key=f"monitors.{name}",
            )
        ]
        note = k.cron_schedule(_every(request.config)).note
        if note is not None:
            key = f"monitors.{name}.schedule.every"
            warnings.append(
                Diagnostic.warning(
                    f"{key}: {note}",
                    "On Kubernetes a monitor is a CronJob; pick a period cron repeats evenly "
                    "to run exactly that often.",
                    address=str(request.address),
                    key=key,
                )
            )
        return tuple(warnings)

    def create(self, request: ApplyRequest) -> ApplyResult:
        return self._apply(request)

    def update(self, request: ApplyRequest) -> ApplyResult:
        return self._apply(request)

    def _apply(self, request: ApplyRequest) -> ApplyResult:
        address, config, context = request.address, request.config, request.context
        if context.target in KUBERNETES_TARGETS:
            return self._apply_cron_job(request)
        require_local(
            address,
            context,
            "monitors",
            "Monitors run on the local target (target.type: local) as scheduler processes; "
            "on Kubernetes they become CronJobs.",
        )
        deployment = request.upstream_outputs.get(f"deployment.{config['deployment']}") or {}
        self._check_columns(address, config, deployment, context)
        job = monitor_job(address, config, deployment, context)
        job.write(spec_path(Path(context.state_dir), address.name))
        rules = _write_rules(address, config, context)
        result = self._provision(request)
        live = (result.outputs.get("live") or {}).get(SCHEDULER) or {}
        return ApplyResult(
            outputs={
                **result.outputs,
                "deployment": str(config["deployment"]),
                "schedule": str((config.get("schedule") or {}).get("every", "5m")),
                "metrics": None if not live.get("url") else f"{live['url']}/metrics",
                "rules_file": None if rules is None else str(rules),
                "history": str(job.directory / "history.jsonl"),
            }
        )

    def _apply_cron_job(self, request: ApplyRequest) -> ApplyResult:
        address, config, context = request.address, request.config, request.context
        deployment = request.upstream_outputs.get(f"deployment.{config['deployment']}") or {}
        self._check_columns(address, config, deployment, context)
        rules = _write_rules(address, config, context)
        try:
            result = self._provision(request)
        except ValueError as exc:
            raise StepFailed(
                Diagnostic.error(str(exc), address=str(address), key=f"monitors.{address.name}")
            ) from exc
        cron = _cron_job(address, config, context)
        return ApplyResult(
            outputs={
                **result.outputs,
                "deployment": str(config["deployment"]),
                "schedule": _every(config),
                "cron_job": str(cron.body["metadata"]["name"]),
                "cron_schedule": str(cron.body["spec"]["schedule"]),
                "metrics": None,
                "rules_file": None if rules is None else str(rules),
                "history": None,  # in the CronJob's pods (module docstring)
            }
        )

    def delete(self, request: DeleteRequest) -> DeleteResult:
        result = super().delete(request)
        state_dir = Path(request.context.state_dir)
        for path in (
            spec_path(state_dir, request.address.name),
            rules_path(state_dir, request.address.name),
        ):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        return result

    def _check_columns(
        self,
        address: Address,
        config: Mapping[str, Any],
        deployment: Mapping[str, Any],
        context: ProviderContext,
    ) -> None:
        """A data drift monitor's columns must be inputs of the model version served."""
        from mlform.registry.queries import registry_for

        columns = list(config.get("columns") or ())
        serving = deployment.get("serving") or ()
        if config.get("type") != "data_drift" or not columns or not serving:
            return
        ref = str(serving[0]["ref"])
        try:
            reference = registry_for(Path(context.state_dir)).reference_stats(ref)
        except Exception:  # a version without reference statistics: checked at run time
            return
        inputs = list((reference.get("features") or {}).keys())
        for index, column in enumerate(columns):
            if column not in inputs:
                from mlform.spec.problems import hint

                raise StepFailed(
                    Diagnostic.error(
                        f"monitors.{address.name}.columns.{index} names {column!r}, which "
                        f"{ref} does not take",
                        f"A data drift monitor watches the model's inputs.{hint(column, inputs)}"
                        f" Inputs of {ref}: {', '.join(inputs)}.",
                        address=str(address),
                        key=f"monitors.{address.name}.columns.{index}",
                    )
                )


def monitor_job(
    address: Address,
    config: Mapping[str, Any],
    deployment: Mapping[str, Any],
    context: ProviderContext,
) -> MonitorJob:
    revealed = dict(context.reveal(dict(config)))
    labels = dict(revealed.get("labels") or {})
    source = labels.pop("source_config", None)
    if revealed.get("labels") is not None:
        revealed["labels"] = labels
    log = deployment.get("prediction_log") or {}
    project = (context.settings.get("project") or {}).get("name", "mlform")
    return MonitorJob(
        name=address.name,
        config=revealed,
        state_dir=Path(context.state_dir).resolve(),
        project_dir=Path(context.project_dir).resolve(),
        project=str(project),
        stack=context.stack,
        labels_source=source,
        retention_s=parse_duration(str(log.get("retention", "7d"))),
    )


def _write_rules(
    address: Address, config: Mapping[str, Any], context: ProviderContext
) -> Path | None:
    from mlform.monitoring.prometheus_rules import monitor_rules, render_rules
    from mlform.state.atomic import write_atomic

    path = rules_path(Path(context.state_dir), address.name)
    project = str((context.settings.get("project") or {}).get("name", "mlform"))
    rules = monitor_rules(
        address.name,
        config,
        deployment_model_name=str(config["deployment"]),
        project=project,
        stack=context.stack,
    )
    if not rules:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, render_rules({f"mlform-{project}-{context.stack}": rules}))
    return path


def _every(config: Mapping[str, Any]) -> str:
    return str((config.get("schedule") or {}).get("every", "5m"))


def _cron_job(address: Address, config: Mapping[str, Any], context: ProviderContext) -> Manifest:
    """The monitor's CronJob (module docstring); ValueError naming the key on a bad config."""
    every = _every(config)
    try:
        k.cron_schedule(every)
    except ValueError as exc:
        raise ValueError(f"monitors.{address.name}.schedule.every: {exc}") from exc
    found = kubernetes_settings(config, context)
    return k.cron_job(
        address,
        k.dns_name("monitor", address.name, limit=52),
        every,
        namespace=found.namespace,
        project=found.project,
        image=found.image,
        command=("mlform", "monitor", "run", address.name, "-s", context.stack),
    )


def _digest(config: Mapping[str, Any]) -> str:
    text = json.dumps(dict(config), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
