"""The library surface of mlform: one call under every CLI command.

The CLI, notebooks and CI call these functions; they return values and raise only
:class:`mlform.errors.MlformError` subclasses (carrying diagnostics for user
mistakes). Nothing here prints: progress goes to the ``sink`` as typed events.

Example::

    from mlform import api
    result = api.plan("path/to/project", stack="dev")
    print(result.plan.summary.line())
    outcome = api.apply("path/to/project", stack="dev")
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlform import workspace
from mlform.apply.walk import ApplyResult, walk
from mlform.desired.snapshot import desired_from_state
from mlform.diagnostics import Diagnostic, Diagnostics
from mlform.drift import (
    DriftItem,
    RefreshResult,
    detect_drift,
    infrastructure_drift,
    owns_infrastructure,
    record_drift,
)
from mlform.errors import ConfigError, StalePlanError, StateError
from mlform.events import EventSink, discard
from mlform.policy import gate

if TYPE_CHECKING:
    from datetime import date

    from mlform.addresses import Address
    from mlform.desired.model import DesiredSystem
    from mlform.infra.model import InfraChange
    from mlform.monitoring.history import MonitorRun
    from mlform.plan.model import Plan
    from mlform.policy.model import PolicyReport
    from mlform.registry.queries import ModelSummary, VersionDetails
    from mlform.registry.runs import CompareRow, RunRecord
    from mlform.rollout.journal import RolloutRecord
    from mlform.spec.declared import LoadedSystem
    from mlform.state.model import HistoryEntry, RecordedObject, StateDocument
    from mlform.state.store import LocalStateStore

__all__ = [
    "ApplyResult",
    "DriftItem",
    "MonitorStatus",
    "PlanResult",
    "RefreshResult",
    "RolloutAction",
    "apply",
    "destroy",
    "export_state",
    "graph",
    "import_state",
    "init",
    "lineage",
    "load",
    "model_show",
    "models",
    "monitor_history",
    "monitor_rollback",
    "monitor_run",
    "monitor_status",
    "plan",
    "policy_check",
    "refresh",
    "rollback",
    "rollout_act",
    "rollout_status",
    "run_show",
    "runs",
    "runs_compare",
    "save_plan",
    "state_history",
    "state_list",
    "state_show",
    "unlock",
    "validate",
]

PathLike = str | Path


@dataclass(frozen=True)
class PlanResult:
    plan: Plan
    desired: DesiredSystem
    diagnostics: tuple[Diagnostic, ...] = ()


def load(
    project_dir: PathLike = ".", stack: str | None = None, overrides: Sequence[str] = ()
) -> LoadedSystem:
    """Compose and validate the system config; raises ConfigError with every problem found."""
    return workspace.load_system(project_dir, stack, overrides)


def validate(
    project_dir: PathLike = ".", stack: str | None = None, overrides: Sequence[str] = ()
) -> tuple[Diagnostic, ...]:
    """Validate config, references and the dependency graph. Returns warnings; raises on errors."""
    loaded = load(project_dir, stack, overrides)
    desired = workspace.resolve_desired(loaded)
    diagnostics = Diagnostics()
    diagnostics.extend(loaded.warnings)
    registry = workspace.provider_registry()
    context = workspace.provider_context(loaded)
    from mlform.providers.base import ValidateRequest

    for obj in desired:
        provider = registry.get(obj.address.kind)
        if provider is not None:
            diagnostics.extend(provider.validate(ValidateRequest(obj.address, obj.config, context)))
    diagnostics.extend(gate.policy_diagnostics(gate.evaluate_policies(loaded, None, None)))
    if diagnostics.has_errors:
        raise ConfigError(diagnostics)
    return tuple(diagnostics)


def plan(
    project_dir: PathLike = ".",
    stack: str | None = None,
    overrides: Sequence[str] = (),
    *,
    destroy: bool = False,
    refresh: bool = False,
    lock: bool = True,
    lock_timeout: float = 0.0,
) -> PlanResult:
    """Compute the plan for (config, recorded state); offline: reads config, data and state.

    Data files are re-hashed only when their size or mtime moved, unless ``refresh``
    asks to hash every one of them in full; ``refresh`` also asks the infrastructure
    engine what is live and plans an update of every object whose resources drifted.
    Like Terraform, the state is read under the state lock (waiting up to
    ``lock_timeout`` seconds for an apply to finish) unless ``lock`` is False.
    """
    loaded = load(project_dir, stack, overrides)
    desired = workspace.resolve_desired(loaded, refresh=refresh)
    store = workspace.state_store(loaded)
    warnings: list[Diagnostic] = list(loaded.warnings)
    if lock:
        with store.lock("plan", timeout=lock_timeout) as held:
            warnings.extend(workspace.stale_lock_warning(held))
            state = store.read()
    else:
        state = store.read()
    live: tuple[InfraChange, ...] = ()
    if refresh and state is not None and owns_infrastructure(state):
        # Plan against what is live: the engine reports (without changing anything)
        # which resources died or changed, and the owners are planned as updates.
        context = workspace.provider_context(loaded, state)
        assert context.infrastructure is not None
        live = context.infrastructure.drift()
        state = record_drift(state, infrastructure_drift(live))
    state = workspace.with_monitor_requests(loaded, desired, state)
    the_plan = workspace.compute(desired, state, destroy=destroy, overrides=overrides)
    the_plan = workspace.with_infrastructure(the_plan, loaded, state, live)
    the_plan = gate.with_policies(the_plan, gate.evaluate_plan(loaded, the_plan))
    warnings.extend(workspace.rollout_warnings(loaded, desired, the_plan))
    return PlanResult(the_plan, desired, (*warnings, *workspace.plan_warnings(the_plan)))


def policy_check(
    project_dir: PathLike = ".",
    stack: str | None = None,
    overrides: Sequence[str] = (),
    *,
    with_plan: bool = True,
    today: date | None = None,
) -> PolicyReport:
    """Evaluate every enabled policy over the spec (and, by default, the plan)."""
    loaded = load(project_dir, stack, overrides)
    plan_doc = None
    if with_plan:
        from mlform.plan.render.json import plan_document

        desired = workspace.resolve_desired(loaded)
        state = workspace.with_monitor_requests(
            loaded, desired, workspace.state_store(loaded).read()
        )
        the_plan = workspace.compute(desired, state, destroy=False, overrides=overrides)
        plan_doc = plan_document(the_plan)
    return gate.evaluate_policies(loaded, plan_doc, today)


def refresh(
    project_dir: PathLike = ".", stack: str | None = None, *, lock_timeout: float = 0.0
) -> RefreshResult:
    """Ask each provider and the infrastructure engine what is live now; report drift.

    Objects' own outputs are only compared (state unchanged). Infrastructure is
    refreshed like ``pulumi refresh``: the engine's records follow the live world, and
    each owner whose resources died or changed is marked drifted in the state (a new
    serial), so the next plan updates it and the next apply restores it.
    """
    loaded = load(project_dir, stack)
    store = workspace.state_store(loaded)
    state = store.read()
    if state is None:
        return RefreshResult((), 0)
    result = detect_drift(state, workspace.provider_registry(), workspace.provider_context(loaded))
    if not owns_infrastructure(state):
        return result
    with store.lock("refresh", timeout=lock_timeout):
        state = store.read()
        if state is None:
            return result
        context = workspace.provider_context(loaded, state)
        assert context.infrastructure is not None
        drift = infrastructure_drift(context.infrastructure.refresh())
        if drift:
            _write_drift(store, state, drift)
    found = tuple(DriftItem(address, "; ".join(items)) for address, items in sorted(drift.items()))
    known = {item.address for item in found}
    return RefreshResult(
        (*found, *(i for i in result.drifted if i.address not in known)),
        result.checked,
        result.diagnostics,
    )


def _write_drift(store: LocalStateStore, state: StateDocument, drift: dict[str, list[str]]) -> None:
    from mlform.state.model import HistoryEntry
    from mlform.state.timestamps import utc_now

    started = utc_now()
    written = store.write(record_drift(state, drift), expected_serial=state.serial)
    store.append_history(
        HistoryEntry(
            operation="refresh",
            started_serial=state.serial,
            finished_serial=written.serial,
            started_at=started,
            finished_at=utc_now(),
            summary=f"infrastructure drifted under {', '.join(sorted(drift))}",
        )
    )


def save_plan(result: PlanResult | Plan, path: PathLike) -> Path:
    """Write a plan file that ``apply`` can later apply exactly (or refuse as stale)."""
    from mlform.plan.saved import save_plan as _save

    the_plan = result.plan if isinstance(result, PlanResult) else result
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    _save(the_plan, target)
    return target


def apply(
    project_dir: PathLike = ".",
    stack: str | None = None,
    overrides: Sequence[str] = (),
    *,
    plan_file: PathLike | None = None,
    destroy: bool = False,
    parallelism: int = 4,
    lock_timeout: float = 0.0,
    confirm: Callable[[Plan], bool] | None = None,
    sink: EventSink = discard,
    should_stop: Callable[[], bool] | None = None,
) -> ApplyResult:
    """Plan (or load a saved plan), then walk it under the state lock.

    A saved plan is applied exactly, and refused with StalePlanError when the state
    or any input moved since it was made. ``confirm`` is asked (under the lock)
    before anything changes; returning False cancels.
    """
    saved: Plan | None = None
    if plan_file is not None:
        from mlform.plan.saved import load_plan

        saved = load_plan(Path(plan_file))
        stack, overrides = saved.stack, saved.overrides
        destroy = saved.destroy
    loaded = load(project_dir, stack, overrides)
    desired = workspace.resolve_desired(loaded)
    store = workspace.state_store(loaded)
    warnings: list[Diagnostic] = list(loaded.warnings)
    with store.lock("destroy" if destroy else "apply", timeout=lock_timeout) as lock:
        warnings.extend(workspace.stale_lock_warning(lock))
        state = store.read()
        if saved is not None:
            from mlform.plan.saved import check_fresh

            stale = check_fresh(saved, desired, state)
            if stale:
                raise StalePlanError(stale)
            the_plan = saved
        else:
            marked = workspace.with_monitor_requests(loaded, desired, state)
            the_plan = workspace.compute(desired, marked, destroy=destroy, overrides=overrides)
        report = gate.evaluate_plan(loaded, the_plan)
        if saved is None:
            the_plan = gate.with_policies(the_plan, report)
        gate.enforce_policies(report)
        warnings.extend(workspace.plan_warnings(the_plan))
        return walk(
            the_plan,
            store,
            state,
            loaded,
            warnings=warnings,
            confirm=confirm,
            parallelism=parallelism,
            sink=sink,
            should_stop=should_stop,
        )


def destroy(
    project_dir: PathLike = ".",
    stack: str | None = None,
    overrides: Sequence[str] = (),
    **kwargs: Any,
) -> ApplyResult:
    """Delete every recorded object of the stack (plan with ``destroy=True``, then apply)."""
    return apply(project_dir, stack, overrides, destroy=True, **kwargs)


def rollback(
    project_dir: PathLike = ".",
    stack: str | None = None,
    *,
    to_serial: int,
    apply_changes: bool = False,
    parallelism: int = 4,
    confirm: Callable[[Plan], bool] | None = None,
    sink: EventSink = discard,
) -> ApplyResult:
    """Plan back to the objects recorded at ``to_serial`` (and apply when asked).

    The historic snapshot becomes the desired system: objects created since are
    deleted, changed ones are updated back to the config recorded then.
    """
    loaded = load(project_dir, stack)
    store = workspace.state_store(loaded)
    with store.lock("rollback") as lock:
        warnings = list(workspace.stale_lock_warning(lock))
        state = store.read()
        if state is None:
            raise StateError("there is no state to roll back: nothing has been applied yet")
        snapshot = store.snapshot(to_serial)
        desired = desired_from_state(snapshot, loaded)
        the_plan = workspace.compute(desired, state, destroy=False, overrides=())
        if not apply_changes:
            return ApplyResult(the_plan, None, warnings=tuple(warnings))
        return walk(
            the_plan,
            store,
            state,
            loaded,
            warnings=warnings,
            confirm=confirm,
            parallelism=parallelism,
            sink=sink,
        )


def graph(
    project_dir: PathLike = ".",
    stack: str | None = None,
    overrides: Sequence[str] = (),
    *,
    fmt: str = "mermaid",
    with_plan: bool = False,
) -> str:
    """The dependency graph as Mermaid or DOT text (coloured by planned action if asked)."""
    from mlform.desired import graph as graph_mod

    if with_plan:
        result = plan(project_dir, stack, overrides)
        desired, actions = result.desired, {c.address: c.action.value for c in result.plan.changes}
    else:
        desired, actions = workspace.resolve_desired(load(project_dir, stack, overrides)), {}
    dependency_graph = graph_mod.DependencyGraph.from_desired(desired)
    if fmt == "dot":
        return graph_mod.render_dot(dependency_graph, actions=actions)
    if fmt == "mermaid":
        return graph_mod.render_mermaid(dependency_graph, actions=actions)
    raise ConfigError(
        [Diagnostic.error(f"unknown graph format {fmt!r}", "Use --format mermaid or --format dot.")]
    )


# -- state -------------------------------------------------------------------------


def state_list(project_dir: PathLike = ".", stack: str | None = None) -> list[RecordedObject]:
    state = workspace.state_store_for(project_dir, stack).read()
    return [] if state is None else sorted(state.objects.values(), key=workspace.address_order)


def state_show(
    address: str, project_dir: PathLike = ".", stack: str | None = None
) -> RecordedObject:
    from mlform.addresses import Address

    Address.parse(address)
    state = workspace.state_store_for(project_dir, stack).read()
    obj = None if state is None else state.get(address)
    if obj is None:
        known = "" if state is None else ", ".join(sorted(state.objects)) or "none"
        raise StateError(f"no object {address} in state (recorded objects: {known or 'none'})")
    return obj


def state_history(project_dir: PathLike = ".", stack: str | None = None) -> list[HistoryEntry]:
    return workspace.state_store_for(project_dir, stack).history()


def unlock(
    lock_id: str | None, project_dir: PathLike = ".", stack: str | None = None, force: bool = False
) -> None:
    workspace.state_store_for(project_dir, stack).unlock(lock_id, force=force)


def export_state(project_dir: PathLike = ".", stack: str | None = None) -> str:
    return workspace.state_store_for(project_dir, stack).export_state()


def import_state(
    text: str, project_dir: PathLike = ".", stack: str | None = None, force: bool = False
) -> StateDocument:
    return workspace.state_store_for(project_dir, stack).import_state(text, force=force)


def init(directory: PathLike, *, name: str | None = None, force: bool = False) -> list[Path]:
    """Scaffold a new project from the ``init`` templates; returns the files written."""
    from mlform.scaffold import scaffold_project

    return scaffold_project(Path(directory), name=name, force=force)


def models(project_dir: PathLike = ".", stack: str | None = None) -> list[ModelSummary]:
    """Every registered model of the stack: latest version, aliases, status."""
    from mlform.registry import queries

    return queries.list_models(_state_dir(project_dir, stack))


def model_show(ref: str, project_dir: PathLike = ".", stack: str | None = None) -> VersionDetails:
    """One model version (``model.x``, ``model.x@v3``, ``model.x@champion``) in detail."""
    from mlform.registry import queries

    return queries.show_model(_state_dir(project_dir, stack), ref)


def lineage(ref: str, project_dir: PathLike = ".", stack: str | None = None) -> dict[str, Any]:
    """The OpenLineage-shaped RunEvent recorded for a model version."""
    from mlform.registry import queries

    return queries.lineage_record(_state_dir(project_dir, stack), ref)


def runs(
    project_dir: PathLike = ".", stack: str | None = None, address: str | None = None
) -> list[RunRecord]:
    """Training runs of the stack (of one model when ``address`` is given), oldest first."""
    from mlform.registry import queries

    return queries.list_runs(_state_dir(project_dir, stack), address)


def run_show(run_id: str, project_dir: PathLike = ".", stack: str | None = None) -> RunRecord:
    """One training run: params, per-epoch metrics, hardware, fingerprints, git commit."""
    from mlform.registry import queries

    return queries.show_run(_state_dir(project_dir, stack), run_id)


def runs_compare(
    run_ids: Sequence[str], project_dir: PathLike = ".", stack: str | None = None
) -> list[CompareRow]:
    """The params and metrics that differ between training runs."""
    from mlform.registry import queries

    return queries.compare_runs(_state_dir(project_dir, stack), run_ids)


def _state_dir(project_dir: PathLike, stack: str | None) -> Path:
    return workspace.state_dir(load(project_dir, stack))


# -- rollouts ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RolloutAction:
    """What ``mlform rollout promote|abort`` did."""

    deployment: str
    # "done": acted now; "requested": the apply driving the rollout will act on it.
    outcome: str
    record: RolloutRecord
    diagnostics: tuple[Diagnostic, ...] = ()


def rollout_status(
    deployment: str | None = None, project_dir: PathLike = ".", stack: str | None = None
) -> list[RolloutRecord]:
    """The rollout journal of every deployment (or of one), as recorded step by step."""
    from mlform.rollout.journal import RolloutJournal

    journal = RolloutJournal(_state_dir(project_dir, stack))
    if deployment is None:
        return journal.all()
    address = _deployment_address(deployment)
    record = journal.load(address)
    if record is None:
        raise _no_rollout(address, "has no rollout on record: it was never applied")
    return [record]


def rollout_act(
    deployment: str,
    what: str,
    project_dir: PathLike = ".",
    stack: str | None = None,
    *,
    sink: EventSink = discard,
) -> RolloutAction:
    """``what`` = "promote" | "abort" the deployment's pending rollout.

    When an ``mlform apply`` is driving the rollout (it holds the state lock), the request
    is left in the rollout journal and that apply acts on it at its next check. Otherwise
    the rollout continues here, under the state lock, and the deployment's state record
    is updated like an apply step would.
    """
    from mlform.addresses import Address
    from mlform.errors import StateLockedError
    from mlform.providers.deployments import DeploymentProvider
    from mlform.rollout.journal import RolloutJournal

    if what not in ("promote", "abort"):
        raise ValueError(f"unknown rollout action {what!r}")
    loaded = load(project_dir, stack)
    address = _deployment_address(deployment)
    journal = RolloutJournal(workspace.state_dir(loaded))
    record = journal.load(address)
    if record is None or not record.pending:
        phase = "never applied" if record is None else f"{record.phase}: {record.message}"
        raise _no_rollout(address, f"has no rollout in progress ({phase})")
    try:
        return _drive_deployment(
            loaded,
            address,
            f"rollout {what}",
            lambda config, outputs, context: DeploymentProvider().continue_rollout(
                Address.parse(address), config, outputs, context, what
            ),
            sink=sink,
            lock_timeout=0.0,
        )
    except StateLockedError:
        return RolloutAction(address, "requested", journal.request(address, what))


def monitor_rollback(
    deployment: str,
    why: str,
    project_dir: PathLike = ".",
    stack: str | None = None,
    *,
    lock_timeout: float = 0.0,
    sink: EventSink = discard,
) -> RolloutAction:
    """A monitor's ``on_breach: rollback``: the deployment returns to its previous version.

    Runs under the state lock (raises StateLockedError when an apply holds it longer than
    ``lock_timeout``) and records the deployment as rolled back, like ``rollout abort``.
    """
    from mlform.addresses import Address
    from mlform.providers.base import StepFailed
    from mlform.providers.deployments import DeploymentProvider

    loaded = load(project_dir, stack)
    address = _deployment_address(deployment)

    def roll_back(config: Any, outputs: Any, context: Any) -> Any:
        try:
            return DeploymentProvider().rollback(Address.parse(address), config, context, why)
        except StepFailed as failed:
            raise ConfigError([failed.diagnostic]) from failed

    return _drive_deployment(
        loaded, address, "monitor rollback", roll_back, sink=sink, lock_timeout=lock_timeout
    )


def _drive_deployment(
    loaded: LoadedSystem,
    address: str,
    operation: str,
    step: Callable[[Any, Any, Any], Any],
    *,
    sink: EventSink,
    lock_timeout: float,
) -> RolloutAction:
    """Run ``step`` on a deployment under the state lock and record it like an apply."""
    from mlform.events import StepProgress
    from mlform.rollout.journal import RolloutJournal
    from mlform.state.model import HistoryEntry, ObjectStatus
    from mlform.state.timestamps import utc_now
    from mlform.state.writer import StateWriter

    store = workspace.state_store(loaded)
    journal = RolloutJournal(workspace.state_dir(loaded))
    with store.lock(operation, timeout=lock_timeout):
        state = store.read()
        recorded = None if state is None else state.get(address)
        if state is None or recorded is None:
            raise _no_rollout(address, "is not in the state: apply it first")
        context = workspace.provider_context(loaded, state)
        context = dataclasses.replace(
            context, progress=lambda m, f: sink(StepProgress(address, m, f))
        )
        started = utc_now()
        result = step(recorded.config, recorded.outputs, context)
        rejected = result.status == ObjectStatus.REJECTED.value
        writer = StateWriter(store, state)
        writer.record(
            recorded.model_copy(
                update={
                    "status": ObjectStatus.REJECTED if rejected else ObjectStatus.APPLIED,
                    "outputs": dict(result.outputs),
                    "error": result.diagnostics[0].summary if rejected else None,
                    "updated_at": utc_now(),
                }
            )
        )
        final = journal.load(address)
        assert final is not None
        writer.append_history(
            HistoryEntry(
                operation=operation,
                started_serial=state.serial,
                finished_serial=writer.serial,
                started_at=started,
                finished_at=utc_now(),
                summary=f"{address}: {final.message}",
            )
        )
        return RolloutAction(address, "done", final, tuple(result.diagnostics))


def _deployment_address(name: str) -> str:
    return name if name.startswith("deployment.") else f"deployment.{name}"


def _no_rollout(address: str, why: str) -> ConfigError:
    return ConfigError(
        [
            Diagnostic.error(
                f"{address} {why}",
                "`mlform rollout status` lists the rollouts on record; a rollout starts when "
                "`mlform apply` rolls a new model version out to the deployment.",
                address=address,
            )
        ]
    )


# -- monitors ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MonitorStatus:
    """One monitor as ``mlform monitor status`` shows it."""

    name: str
    deployment: str
    type: str
    on_breach: str
    schedule: str
    applied: bool  # its scheduler was provisioned by an apply
    scheduler: str | None  # the scheduler's metrics URL while it runs
    latest: MonitorRun | None  # the newest run (any status)
    verdict: MonitorRun | None  # the newest run that judged (ok or breached)


def monitor_run(
    name: str,
    project_dir: PathLike = ".",
    stack: str | None = None,
    overrides: Sequence[str] = (),
    *,
    act: bool = True,
) -> MonitorRun:
    """Run monitor ``name`` now, record it in its history, alert and act like a scheduled run.

    ``act=False`` measures and records without alerts or the breach action.
    """
    from mlform.monitoring.scheduler import api_rollback, run_once
    from mlform.providers.monitors import monitor_job

    loaded = load(project_dir, stack, overrides)
    desired = workspace.resolve_desired(loaded)
    address = _monitor_address(loaded, name)
    obj = desired.objects[address]
    state = workspace.state_store(loaded).read()
    deployment = None if state is None else state.get(f"deployment.{obj.config['deployment']}")
    if deployment is None:
        raise ConfigError(
            [
                Diagnostic.error(
                    f"{address} watches deployment.{obj.config['deployment']}, which is not "
                    "applied yet",
                    "Run `mlform apply` first: the monitor reads what the deployment serves.",
                    address=str(address),
                )
            ]
        )
    context = workspace.provider_context(loaded, state)
    job = monitor_job(address, obj.config, deployment.outputs, context)
    rollback = api_rollback if act else None
    return run_once(job, rollback=rollback, deliver_alerts=act)


def monitor_status(project_dir: PathLike = ".", stack: str | None = None) -> list[MonitorStatus]:
    """Every declared monitor with its latest run and verdict."""
    from mlform.addresses import Kind
    from mlform.monitoring.history import MonitorHistory

    loaded = load(project_dir, stack)
    state = workspace.state_store(loaded).read()
    state_dir = workspace.state_dir(loaded)
    out = []
    monitors = sorted(
        (o for o in loaded.objects if o.address.kind is Kind.MONITOR), key=lambda o: o.address.name
    )
    for obj in monitors:
        name, config = obj.address.name, obj.config
        history = MonitorHistory(state_dir, name)
        recorded = None if state is None else state.get(str(obj.address))
        out.append(
            MonitorStatus(
                name=name,
                deployment=str(config["deployment"]),
                type=str(config["type"]),
                on_breach=str(config.get("on_breach", "alert")),
                schedule=str((config.get("schedule") or {}).get("every", "5m")),
                applied=recorded is not None,
                scheduler=None if recorded is None else recorded.outputs.get("metrics"),
                latest=history.latest(),
                verdict=history.last_judged(),
            )
        )
    return out


def monitor_history(
    name: str, project_dir: PathLike = ".", stack: str | None = None, *, limit: int = 20
) -> list[MonitorRun]:
    """The monitor's newest ``limit`` runs, oldest first."""
    from mlform.monitoring.history import MonitorHistory

    loaded = load(project_dir, stack)
    address = _monitor_address(loaded, name)
    return MonitorHistory(workspace.state_dir(loaded), address.name).runs(limit)


def _monitor_address(loaded: LoadedSystem, name: str) -> Address:
    from mlform.addresses import Address, Kind
    from mlform.spec.problems import hint

    bare = name.removeprefix("monitor.")
    names = sorted(o.address.name for o in loaded.objects if o.address.kind is Kind.MONITOR)
    if bare not in names:
        raise ConfigError(
            [
                Diagnostic.error(
                    f"no monitor named {bare!r} is declared",
                    f"Declared monitors: {', '.join(names) or 'none'}.{hint(bare, names)}",
                    key="NAME",
                )
            ]
        )
    return Address(Kind.MONITOR, bare)
