"""Deployments: a router in front of one server per model version (local target).

A deployment runs, as Pulumi-managed local processes (:mod:`mlform.pulumi_engine`):

- ``router``: the traffic router (:mod:`mlform.serving.router`) on the deployment's
  ``port``; its route table lives in ``<state dir>/deployments/<name>/routes.json`` and
  is changed at run time through its admin API, never by restarting it;
- ``server-<model>-v<N>``: ``mlform serve`` for each model version the deployment
  serves right now (one; two during a canary or a blue-green preview; every variant
  of an A/B test; the shadow model), each on a free port, ``replicas`` worker processes,
  logging predictions to ``<state dir>/predictions/<name>/<model>-v<N>/``, with the
  deployment's ``env`` in their environment (``${secret:}`` values revealed by the engine).

The versions come from the model registry (``model@alias``, resolved when the step
runs); how traffic moves from the old version to the new one is the strategy's
(:mod:`mlform.rollout.controller`), recorded step by step in the rollout journal.
A rollout that its analysis aborts is recorded as *rejected*: traffic is back on the
stable version, the step fails with the reasons, and the next plan stays quiet until
the model or the deployment changes (Argo Rollouts' "aborted" state).

On the ``kubernetes`` and ``render`` targets the same controller walks the same strategies
through :class:`~mlform.providers.deployments_kubernetes.KubernetesRuntime`: Deployments
per version behind one Service, traffic split by replica counts (that module's docstring
holds the decisions: image, artifact store, what is refused).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mlform.addresses import Address, Kind
from mlform.diagnostics import Diagnostic, Severity
from mlform.infra.model import InfraResource, Process, to_record
from mlform.providers.base import (
    ApplyRequest,
    ApplyResult,
    DeleteRequest,
    DeleteResult,
    ProviderContext,
    StepFailed,
    ValidateRequest,
)
from mlform.providers.deployments_kubernetes import (
    KUBERNETES_TARGETS,
    KubernetesRuntime,
    journal_entries,
    kubernetes_problems,
    manifests_for,
)
from mlform.providers.infrastructure import (
    InfrastructureProvider,
    RuntimeBase,
    provision,
    require_local,
)
from mlform.rollout.analysis import Snapshot, scrape
from mlform.rollout.controller import Controller, Wanted
from mlform.rollout.journal import RolloutJournal, RolloutRecord, Served
from mlform.rollout.strategy import Strategy

__all__ = ["DeploymentProvider", "predictions_dir", "routes_file", "wanted_versions"]

ROUTER = "router"
_SLUG_RE = re.compile(r"[^a-z0-9-]+")


def _slug(name: str) -> str:
    return _SLUG_RE.sub("-", name.lower()).strip("-")[:40] or "model"


def _served(model: str, version: int, weight: int = 100) -> Served:
    return Served(f"{_slug(model)}-v{version}", f"model.{model}@v{version}", weight)


def server_name(served: Served) -> str:
    return f"server-{served.upstream}"


class DeploymentProvider(InfrastructureProvider):
    kind = Kind.DEPLOYMENT

    def validate(self, request: ValidateRequest) -> tuple[Diagnostic, ...]:
        if request.context.target in KUBERNETES_TARGETS:
            return tuple(
                kubernetes_problems(
                    request.address, request.config, request.context, applying=False
                )
            )
        return ()

    def resources(
        self, address: Address, config: Mapping[str, Any], context: ProviderContext
    ) -> Sequence[InfraResource]:
        """What the rollout journal says is serving (offline): the router and the servers
        (local), or the Deployments, Service, HPA and PDB (kubernetes, render)."""
        record = RolloutJournal(context.state_dir).load(str(address))
        if context.target in KUBERNETES_TARGETS:
            entries, phase = journal_entries(record, Strategy.from_config(config).type)
            return manifests_for(address, config, context, entries, phase)
        if context.target != "local":
            return ()
        serving: tuple[Served, ...] = () if record is None else record.stable
        if record is not None and record.pending and record.canary is not None:
            serving = (*serving, record.canary)
        if record is not None and record.mirror is not None:
            serving = (*serving, record.mirror)
        return _resources(address, config, context, serving)

    def create(self, request: ApplyRequest) -> ApplyResult:
        return self._deploy(request)

    def update(self, request: ApplyRequest) -> ApplyResult:
        return self._deploy(request)

    def _deploy(self, request: ApplyRequest) -> ApplyResult:
        address, config, context = request.address, request.config, request.context
        if context.target in KUBERNETES_TARGETS:
            problems = kubernetes_problems(address, config, context)
            errors = [d for d in problems if d.severity is Severity.ERROR]
            if errors:
                raise StepFailed(errors[0])
        else:
            require_local(
                address,
                context,
                "deployments",
                "Serving and rollouts run on the local, kubernetes and render targets.",
            )
        runtime = _runtime(
            address, config, context, refresh=bool(request.prior_outputs.get("drift"))
        )
        controller = Controller(
            str(address), Strategy.from_config(config), RolloutJournal(context.state_dir), runtime
        )
        record = controller.deploy(wanted_versions(address, config, context))
        return _result(address, record, runtime, aborted=controller.aborted)

    def delete(self, request: DeleteRequest) -> DeleteResult:
        result = super().delete(request)
        RolloutJournal(request.context.state_dir).remove(str(request.address))
        return result

    def continue_rollout(
        self,
        address: Address,
        config: Mapping[str, Any],
        prior_outputs: Mapping[str, Any],
        context: ProviderContext,
        request: str | None,
    ) -> ApplyResult:
        """``mlform rollout promote|abort`` when no apply is driving the rollout."""
        runtime = _runtime(address, config, context, refresh=False)
        controller = Controller(
            str(address), Strategy.from_config(config), RolloutJournal(context.state_dir), runtime
        )
        record = controller.resume(wanted_versions(address, config, context), request)
        return _result(address, record, runtime, aborted=controller.aborted)

    def rollback(
        self,
        address: Address,
        config: Mapping[str, Any],
        context: ProviderContext,
        why: str,
    ) -> ApplyResult:
        """A monitor's ``on_breach: rollback``: back to the version served before."""
        runtime = _runtime(address, config, context, refresh=False)
        controller = Controller(
            str(address), Strategy.from_config(config), RolloutJournal(context.state_dir), runtime
        )
        try:
            record = controller.rollback(wanted_versions(address, config, context), why)
        except LookupError as exc:
            raise StepFailed(
                Diagnostic.error(
                    f"{address}: nothing to roll back to: {exc}",
                    "`mlform rollout status` shows what the deployment serves and served.",
                    address=str(address),
                )
            ) from exc
        return _result(address, record, runtime, aborted=True)


def _runtime(
    address: Address, config: Mapping[str, Any], context: ProviderContext, *, refresh: bool
) -> LocalRuntime | KubernetesRuntime:
    if context.target in KUBERNETES_TARGETS:
        return KubernetesRuntime(address, config, context, refresh=refresh)
    return LocalRuntime(address, config, context, refresh=refresh)


def _result(
    address: Address,
    record: RolloutRecord,
    runtime: LocalRuntime | KubernetesRuntime,
    *,
    aborted: bool,
) -> ApplyResult:
    outputs = runtime.outputs(record)
    if not aborted:
        return ApplyResult(outputs=outputs)
    return ApplyResult(
        outputs=outputs,
        status="rejected",
        diagnostics=(
            Diagnostic.error(
                f"{address}: {record.message}",
                "The new version was rolled back automatically. `mlform rollout status` "
                f"shows each analysis check. The deployment keeps serving "
                f"{', '.join(s.ref for s in record.stable)}; train a better version (the "
                "next plan rolls it out) or change the deployment to try again.",
                address=str(address),
            ),
        ),
    )


def wanted_versions(
    address: Address, config: Mapping[str, Any], context: ProviderContext
) -> Wanted:
    """The model versions the config asks for, resolved in the registry now."""
    strategy = config.get("strategy") or {}
    if strategy.get("type") == "ab_test":
        primary = tuple(
            _resolve(
                address,
                str(v["model"]),
                str(v.get("alias", "champion")),
                context,
                int(v["weight"]),
                f"strategy.variants.{i}",
            )
            for i, v in enumerate(strategy.get("variants") or ())
        )
        return Wanted(
            primary,
            route_by=str(strategy.get("route_by", "hash")),
            key=strategy.get("key"),
        )
    primary = (
        _resolve(
            address,
            str(config["model"]),
            str(config.get("alias", "champion")),
            context,
            100,
            "model",
        ),
    )
    if strategy.get("type") == "shadow":
        mirror = _resolve(
            address,
            str(strategy["model"]),
            str(strategy.get("alias", "challenger")),
            context,
            100,
            "strategy.model",
        )
        return Wanted(
            primary, mirror=mirror, mirror_percent=int(strategy.get("mirror_percent", 100))
        )
    return Wanted(primary)


def _resolve(
    address: Address, model: str, alias: str, context: ProviderContext, weight: int, key: str
) -> Served:
    from mlform.registry.queries import registry_for

    model_address = f"model.{model}"
    version = registry_for(context.state_dir).alias_of(model_address, alias)
    if version is None or version.digest is None:
        raise StepFailed(
            Diagnostic.error(
                f"{address}: {model_address} has no version with the alias {alias!r} to serve",
                f"The deployment's {key} names {model_address}@{alias}. Apply the model first "
                f"(its gates must pass for it to become champion) — `mlform models show "
                f"{model_address}` lists its versions — or set {key}'s alias to one that exists.",
                address=str(address),
            )
        )
    return _served(model, version.version, weight)


def _resources(
    address: Address,
    config: Mapping[str, Any],
    context: ProviderContext,
    serving: Sequence[Served],
) -> list[InfraResource]:
    state_dir = Path(context.state_dir).resolve()
    project_dir = Path(context.project_dir).resolve()
    name = address.name
    deadline = Strategy.from_config(config).progress_deadline_s
    router = Process(
        owner=address,
        name=ROUTER,
        command=(
            sys.executable,
            "-m",
            "mlform.serving.router",
            "--port",
            "{port}",
            "--routes",
            str(routes_file(state_dir, name)),
            "--name",
            name,
        ),
        port=int(config.get("port", 8080)),
        health_path="/-/health",
        cwd=str(project_dir),
    )
    servers: list[InfraResource] = [
        Process(
            owner=address,
            name=server_name(served),
            command=(
                sys.executable,
                "-m",
                "mlform",
                "serve",
                served.ref,
                "--registry",
                str(state_dir / "registry"),
                "--name",
                name,
                "--host",
                "127.0.0.1",
                "--port",
                "{port}",
                "--workers",
                str(max(1, int(config.get("replicas", 1) or 1))),
                *(
                    ("--prediction-log", str(predictions_dir(state_dir, name) / served.upstream))
                    if _logging(config)
                    else ()
                ),
                "--project-dir",
                str(project_dir),
            ),
            # ${secret:} values stay tokens here (and in state); the engine's program
            # reveals them into the process's environment (pulumi_engine.program_local).
            env=dict(config.get("env") or {}),
            health_path="/v2/health/ready",
            cwd=str(project_dir),
            startup_timeout_s=deadline,
        )
        for served in serving
    ]
    return [router, *servers]


def _logging(config: Mapping[str, Any]) -> bool:
    return bool((config.get("prediction_log") or {}).get("enabled", True))


def predictions_dir(state_dir: Path, deployment: str) -> Path:
    """Where the deployment's servers log predictions, one directory per model version."""
    return Path(state_dir) / "predictions" / deployment


def routes_file(state_dir: Path, deployment: str) -> Path:
    return Path(state_dir) / "deployments" / deployment / "routes.json"


class LocalRuntime(RuntimeBase):
    """The controller's effects on the local target: Pulumi for processes, HTTP for routes."""

    def __init__(
        self,
        address: Address,
        config: Mapping[str, Any],
        context: ProviderContext,
        *,
        refresh: bool,
    ) -> None:
        super().__init__(address, config, context, refresh=refresh)
        self.resources: list[InfraResource] = []
        self.live: dict[str, dict[str, Any]] = {}

    def serve(self, versions: Sequence[Served]) -> Mapping[str, str]:
        wanted = _resources(self.address, self.config, self.context, versions)
        live = provision(self.context, self.address, wanted, refresh=self._refresh)
        self._refresh = False
        self.resources, self.live = wanted, live
        return {s.upstream: str(self.live[server_name(s)]["url"]) for s in versions}

    @property
    def router_url(self) -> str:
        return str(self.live[ROUTER]["url"])

    def route(self, table: Mapping[str, Any]) -> int:
        from mlform.serving.router_client import RouterAdminError, StaleRoutesError, put_routes
        from mlform.serving.routes import RouteError

        document = dict(table)
        try:
            try:
                return put_routes(self.router_url, document).generation
            except StaleRoutesError as stale:  # the router holds a newer table: go past it
                document["generation"] = int(stale.current_generation or 0) + 1
                return put_routes(self.router_url, document).generation
        except (RouterAdminError, RouteError) as exc:
            raise StepFailed(
                Diagnostic.error(
                    f"{self.address}: the router refused the new routes: {exc}",
                    "Run `mlform refresh` (it finds a router that died) and apply again.",
                    address=str(self.address),
                )
            ) from exc

    def metrics(self, base_url: str) -> Snapshot:
        return scrape(f"{base_url}/metrics")

    def outputs(self, record: RolloutRecord) -> dict[str, Any]:
        name = self.address.name
        url = self.live.get(ROUTER, {}).get("url")
        return {
            "target": self.context.target,
            "infrastructure": [to_record(r) for r in self.resources],
            "live": self.live,
            "url": url,
            "endpoint": None if url is None else f"{url}/v2/models/{name}/infer",
            "serving": [s.to_dict() for s in record.stable],
            "rollout": record.summary(),
            "prediction_log": {
                "enabled": _logging(self.config),
                "directory": str(predictions_dir(self.context.state_dir, name)),
                "retention": str((self.config.get("prediction_log") or {}).get("retention", "7d")),
            },
        }
