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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlform import __version__
from mlform.diagnostics import Diagnostic, Diagnostics
from mlform.errors import ConfigError, StalePlanError, StateError
from mlform.events import EventSink, discard

if TYPE_CHECKING:
    from datetime import date

    from mlform.apply.executor import ApplyOutcome
    from mlform.desired.model import DesiredSystem
    from mlform.plan.model import Plan
    from mlform.policy.model import PolicyReport
    from mlform.providers.base import ProviderContext
    from mlform.providers.registry import ProviderRegistry
    from mlform.spec.declared import LoadedSystem
    from mlform.state.model import HistoryEntry, RecordedObject, StateDocument
    from mlform.state.store import LocalStateStore

__all__ = [
    "ApplyResult",
    "DriftItem",
    "PlanResult",
    "RefreshResult",
    "apply",
    "destroy",
    "export_state",
    "graph",
    "import_state",
    "init",
    "load",
    "plan",
    "policy_check",
    "refresh",
    "rollback",
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


@dataclass(frozen=True)
class DriftItem:
    address: str
    detail: str


@dataclass(frozen=True)
class RefreshResult:
    drifted: tuple[DriftItem, ...]
    checked: int
    diagnostics: tuple[Diagnostic, ...] = ()


@dataclass(frozen=True)
class ApplyResult:
    plan: Plan
    # None when nothing ran: no changes, or the confirmation was declined.
    outcome: ApplyOutcome | None
    cancelled: bool = False
    warnings: tuple[Diagnostic, ...] = ()

    @property
    def ok(self) -> bool:
        return self.outcome is None or self.outcome.ok


def load(
    project_dir: PathLike = ".", stack: str | None = None, overrides: Sequence[str] = ()
) -> LoadedSystem:
    """Compose and validate the system config; raises ConfigError with every problem found."""
    from mlform.spec import load_system_from

    root = _project_root(project_dir)
    return load_system_from(root, stack, list(overrides))


def validate(
    project_dir: PathLike = ".", stack: str | None = None, overrides: Sequence[str] = ()
) -> tuple[Diagnostic, ...]:
    """Validate config, references and the dependency graph. Returns warnings; raises on errors."""
    loaded = load(project_dir, stack, overrides)
    desired = _resolve(loaded)
    diagnostics = Diagnostics()
    diagnostics.extend(loaded.warnings)
    registry = _registry()
    context = _context(loaded)
    from mlform.providers.base import ValidateRequest

    for obj in desired:
        provider = registry.get(obj.address.kind)
        if provider is not None:
            diagnostics.extend(provider.validate(ValidateRequest(obj.address, obj.config, context)))
    diagnostics.extend(_policy_diagnostics(_evaluate_policies(loaded, None, None)))
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
    asks to hash every one of them in full. Like Terraform, the state is read under the
    state lock (waiting up to ``lock_timeout`` seconds for an apply to finish) unless
    ``lock`` is False.
    """
    loaded = load(project_dir, stack, overrides)
    desired = _resolve(loaded, refresh=refresh)
    store = _store(loaded)
    warnings: list[Diagnostic] = list(loaded.warnings)
    if lock:
        with store.lock("plan", timeout=lock_timeout) as held:
            warnings.extend(_stale_lock_warning(held))
            state = store.read()
    else:
        state = store.read()
    the_plan = _with_policies(
        _compute(desired, state, destroy=destroy, overrides=overrides), loaded
    )
    return PlanResult(the_plan, desired, (*warnings, *_plan_warnings(the_plan)))


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

        state = _store(loaded).read()
        the_plan = _compute(_resolve(loaded), state, destroy=False, overrides=overrides)
        plan_doc = plan_document(the_plan)
    return _evaluate_policies(loaded, plan_doc, today)


def refresh(project_dir: PathLike = ".", stack: str | None = None) -> RefreshResult:
    """Ask each provider what is live now and report recorded objects that drifted.

    Read-only: state is not changed. ``plan --refresh`` then plans the repair for data
    content; objects whose outputs are gone are repaired by the next apply of a plan that
    recreates them.
    """
    from mlform.addresses import Address
    from mlform.providers.base import ReadRequest

    loaded = load(project_dir, stack)
    state = _store(loaded).read()
    if state is None:
        return RefreshResult((), 0)
    registry, context = _registry(), _context(loaded)
    drifted: list[DriftItem] = []
    diagnostics: list[Diagnostic] = []
    checked = 0
    for record in sorted(state.objects.values(), key=_address_order):
        address = Address.parse(record.address)
        provider = registry.get(address.kind)
        if provider is None:
            continue
        checked += 1
        live = provider.read(ReadRequest(address, record.config, record.outputs, context))
        diagnostics.extend(live.diagnostics)
        if live.outputs is None:
            drifted.append(DriftItem(record.address, "no longer exists"))
        elif dict(live.outputs) != record.outputs:
            changed = sorted(
                k
                for k in set(live.outputs) | set(record.outputs)
                if live.outputs.get(k) != record.outputs.get(k)
            )
            drifted.append(DriftItem(record.address, "changed: " + ", ".join(changed)))
    return RefreshResult(tuple(drifted), checked, tuple(diagnostics))


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
    desired = _resolve(loaded)
    store = _store(loaded)
    warnings: list[Diagnostic] = list(loaded.warnings)
    with store.lock("destroy" if destroy else "apply", timeout=lock_timeout) as lock:
        warnings.extend(_stale_lock_warning(lock))
        state = store.read()
        if saved is not None:
            from mlform.plan.saved import check_fresh

            stale = check_fresh(saved, desired, state)
            if stale:
                raise StalePlanError(stale)
            the_plan = saved
        else:
            the_plan = _with_policies(
                _compute(desired, state, destroy=destroy, overrides=overrides), loaded
            )
        _enforce_policies(loaded, the_plan)
        warnings.extend(_plan_warnings(the_plan))
        return _walk(
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
    store = _store(loaded)
    with store.lock("rollback") as lock:
        warnings = list(_stale_lock_warning(lock))
        state = store.read()
        if state is None:
            raise StateError("there is no state to roll back: nothing has been applied yet")
        snapshot = store.snapshot(to_serial)
        desired = _desired_from_state(snapshot, loaded)
        the_plan = _compute(desired, state, destroy=False, overrides=())
        if not apply_changes:
            return ApplyResult(the_plan, None, warnings=tuple(warnings))
        return _walk(
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
        desired, actions = _resolve(load(project_dir, stack, overrides)), {}
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
    state = _state_store_for(project_dir, stack).read()
    return [] if state is None else sorted(state.objects.values(), key=_address_order)


def state_show(
    address: str, project_dir: PathLike = ".", stack: str | None = None
) -> RecordedObject:
    from mlform.addresses import Address

    Address.parse(address)
    state = _state_store_for(project_dir, stack).read()
    obj = None if state is None else state.get(address)
    if obj is None:
        known = "" if state is None else ", ".join(sorted(state.objects)) or "none"
        raise StateError(f"no object {address} in state (recorded objects: {known or 'none'})")
    return obj


def state_history(project_dir: PathLike = ".", stack: str | None = None) -> list[HistoryEntry]:
    return _state_store_for(project_dir, stack).history()


def unlock(
    lock_id: str | None, project_dir: PathLike = ".", stack: str | None = None, force: bool = False
) -> None:
    _state_store_for(project_dir, stack).unlock(lock_id, force=force)


def export_state(project_dir: PathLike = ".", stack: str | None = None) -> str:
    return _state_store_for(project_dir, stack).export_state()


def import_state(
    text: str, project_dir: PathLike = ".", stack: str | None = None, force: bool = False
) -> StateDocument:
    return _state_store_for(project_dir, stack).import_state(text, force=force)


def init(directory: PathLike, *, name: str | None = None, force: bool = False) -> list[Path]:
    """Scaffold a new project from the ``init`` templates; returns the files written."""
    from mlform.scaffold import scaffold_project

    return scaffold_project(Path(directory), name=name, force=force)


# -- internals -----------------------------------------------------------------------


def _project_root(project_dir: PathLike) -> Path:
    root = Path(project_dir).resolve()
    if not (root / "configs" / "system.yaml").is_file():
        raise ConfigError(
            [
                Diagnostic.error(
                    f"no mlform project at {root}",
                    "A project has configs/system.yaml. Run mlform from the project directory, "
                    "pass --project DIR, or create one with `mlform init DIR`.",
                    file="configs/system.yaml",
                )
            ]
        )
    return root


def _state_dir(loaded: LoadedSystem) -> Path:
    backend = loaded.settings.get("backend") or {}
    path = Path(str(backend.get("path") or ".mlform"))
    base = path if path.is_absolute() else loaded.project_dir / path
    return base / "stacks" / loaded.stack


def _store(loaded: LoadedSystem) -> LocalStateStore:
    from mlform.state.store import LocalStateStore

    return LocalStateStore(_state_dir(loaded))


def _state_store_for(project_dir: PathLike, stack: str | None) -> LocalStateStore:
    return _store(load(project_dir, stack))


def _resolve(loaded: LoadedSystem, *, refresh: bool = False) -> DesiredSystem:
    from mlform.desired.fingerprint import FingerprintCache
    from mlform.desired.resolve import resolve

    cache = FingerprintCache(_state_dir(loaded) / "cache" / "fingerprints.json")
    if refresh:
        cache.forget()
    return resolve(loaded, cache=cache)


def _registry() -> ProviderRegistry:
    from mlform.providers.registry import default_registry

    return default_registry()


def _compute(
    desired: DesiredSystem,
    state: StateDocument | None,
    *,
    destroy: bool,
    overrides: Sequence[str],
) -> Plan:
    from mlform.plan.compute import compute_plan

    computed = compute_plan(
        desired,
        state,
        supported_kinds=_registry().supported_kinds(),
        destroy=destroy,
        mlform_version=__version__,
    )
    return computed.model_copy(update={"overrides": tuple(overrides)})


def _context(loaded: LoadedSystem) -> ProviderContext:
    from functools import partial

    from mlform.providers.base import ProviderContext
    from mlform.secrets import reveal

    return ProviderContext(
        project_dir=loaded.project_dir,
        state_dir=_state_dir(loaded),
        stack=loaded.stack,
        reveal=partial(reveal, project_dir=loaded.project_dir),
    )


def _walk(
    the_plan: Plan,
    store: LocalStateStore,
    state: StateDocument | None,
    loaded: LoadedSystem,
    *,
    warnings: list[Diagnostic],
    confirm: Callable[[Plan], bool] | None,
    parallelism: int,
    sink: EventSink,
    should_stop: Callable[[], bool] | None = None,
) -> ApplyResult:
    """Confirm and execute a plan; the caller holds the state lock."""
    from mlform.apply.executor import execute
    from mlform.state.store import StateWriter

    if not the_plan.has_changes:
        return ApplyResult(the_plan, None, warnings=tuple(warnings))
    if confirm is not None and not confirm(the_plan):
        return ApplyResult(the_plan, None, cancelled=True, warnings=tuple(warnings))
    outcome = execute(
        the_plan,
        StateWriter(store, state),
        _registry(),
        _context(loaded),
        parallelism=parallelism,
        sink=sink,
        should_stop=should_stop,
    )
    return ApplyResult(the_plan, outcome, warnings=tuple(warnings))


def _evaluate_policies(
    loaded: LoadedSystem, plan_doc: Mapping[str, Any] | None, today: date | None
) -> PolicyReport:
    from datetime import UTC, datetime

    from mlform.policy.engine import evaluate
    from mlform.policy.inputs import policy_input

    day = today or datetime.now(UTC).date()
    return evaluate(policy_input(loaded, plan=plan_doc, today=day))


def _policy_diagnostics(report: PolicyReport) -> list[Diagnostic]:
    out = list(report.diagnostics)
    for finding in report.findings:
        if finding.exempted_by is not None:
            continue
        make = Diagnostic.error if finding.blocking else Diagnostic.warning
        out.append(
            make(
                f"policy {finding.rule}: {finding.message}",
                f"{finding.level.value} policy. See `mlform policy check` and docs/policies.md; "
                "fix the config, or add an exemption with a reason and an expiry date.",
                key=finding.key,
                file=finding.file,
                line=finding.line,
                address=finding.address,
            )
        )
    return out


def _with_policies(the_plan: Plan, loaded: LoadedSystem) -> Plan:
    """The plan with the results of every policy evaluated over the spec and the plan."""
    from mlform.plan.model import PolicyExemption, PolicyResult
    from mlform.plan.render.json import plan_document

    report = _evaluate_policies(loaded, plan_document(the_plan), None)
    results = tuple(
        PolicyResult(
            rule=f.rule,
            level=f.level.value,
            passed=False,
            message=f.message,
            address=f.address,
            exempted_by=(
                None
                if f.exempted_by is None
                else f"{f.exempted_by.reason} (until {f.exempted_by.expires.isoformat()})"
            ),
            key=f.key,
            file=f.file,
            line=f.line,
        )
        for f in report.findings
    )
    exemptions = tuple(
        PolicyExemption(
            rule=e.rule,
            address=e.address,
            reason=e.reason,
            expires=e.expires.isoformat(),
            file=e.file,
            line=e.line,
            waives=tuple(f.message for f in report.findings if f.exempted_by == e),
        )
        for e in report.exemptions_in_force
    )
    errors = tuple(d.to_dict() for d in report.diagnostics)
    return the_plan.model_copy(
        update={
            "policy_results": results,
            "policy_exemptions": exemptions,
            "diagnostics": the_plan.diagnostics + errors,
        }
    )


def _enforce_policies(loaded: LoadedSystem, the_plan: Plan) -> None:
    """Apply's gate: mandatory violations (re-evaluated now) block every step."""
    from mlform.errors import PolicyError
    from mlform.plan.render.json import plan_document

    stripped = the_plan.model_copy(update={"policy_results": (), "policy_exemptions": ()})
    report = _evaluate_policies(loaded, plan_document(stripped), None)
    blocking = [d for d in _policy_diagnostics(report) if d.severity.value == "error"]
    if blocking:
        raise PolicyError(blocking)


def _plan_warnings(the_plan: Plan) -> list[Diagnostic]:
    unsupported = sorted(
        {c.kind for c in the_plan.changes if not c.provider_available and c.action != "no-op"}
    )
    if not unsupported:
        return []
    kinds = ", ".join(unsupported)
    return [
        Diagnostic.warning(
            f"no provider yet for {kinds} objects",
            "apply skips those steps (and the steps that depend on them); they stay in the "
            "plan until a release of mlform provides them.",
        )
    ]


def _stale_lock_warning(lock: Any) -> list[Diagnostic]:
    stale = getattr(lock, "broke_stale", None)
    if not stale:
        return []
    return [
        Diagnostic.warning(
            "removed a stale state lock",
            f"The previous lock holder ({stale}) is no longer running; its unfinished steps are "
            "planned again.",
        )
    ]


def _desired_from_state(snapshot: StateDocument, loaded: LoadedSystem) -> DesiredSystem:
    from mlform.addresses import Address
    from mlform.desired.model import DesiredObject, DesiredSystem

    objects = {}
    for record in sorted(snapshot.objects.values(), key=_address_order):
        address = Address.parse(record.address)
        objects[address] = DesiredObject(
            address=address,
            config=record.config,
            depends_on=tuple(Address.parse(d) for d in record.depends_on),
            fingerprints=record.fingerprints,
            content_digest=record.content_digest,
        )
    return DesiredSystem(
        project=loaded.project,
        stack=loaded.stack,
        objects=objects,
        input_digest=f"rollback:{snapshot.lineage}:{snapshot.serial}",
        settings=loaded.settings,
    )


def _address_order(record: RecordedObject) -> tuple[int, str]:
    from mlform.addresses import Address

    return Address.parse(record.address).sort_key()
