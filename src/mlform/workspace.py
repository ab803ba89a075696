"""The things derived from a loaded system that every library call needs.

Where its project lives, where its state is kept, its desired system, the provider
registry and context, its plan, and the warnings every plan and lock may carry. Plain
functions over a :class:`~mlform.spec.declared.LoadedSystem`; heavy modules (Hydra,
pydantic models, DuckDB) are imported inside them so that importing this stays light.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mlform import __version__
from mlform.diagnostics import Diagnostic
from mlform.errors import ConfigError

if TYPE_CHECKING:
    from mlform.desired.model import DesiredSystem
    from mlform.infra.model import InfraChange
    from mlform.infra.provisioning import Provisioner
    from mlform.plan.model import Plan
    from mlform.providers.base import ProviderContext
    from mlform.providers.registry import ProviderRegistry
    from mlform.spec.declared import LoadedSystem
    from mlform.state.lock import LockInfo
    from mlform.state.model import RecordedObject, StateDocument
    from mlform.state.store import LocalStateStore

PathLike = str | Path


def project_root(project_dir: PathLike) -> Path:
    """The resolved project directory; ConfigError when it holds no configs/system.yaml."""
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


def load_system(
    project_dir: PathLike, stack: str | None, overrides: Sequence[str] = ()
) -> LoadedSystem:
    """Compose and validate the system config of the project at ``project_dir``."""
    from mlform.spec import load_system_from

    root = project_root(project_dir)
    return load_system_from(root, stack, list(overrides))


def state_dir(loaded: LoadedSystem) -> Path:
    """The stack's state directory under the backend path (``.mlform`` by default)."""
    backend = loaded.settings.get("backend") or {}
    path = Path(str(backend.get("path") or ".mlform"))
    base = path if path.is_absolute() else loaded.project_dir / path
    return base / "stacks" / loaded.stack


def state_store(loaded: LoadedSystem) -> LocalStateStore:
    from mlform.state.store import LocalStateStore

    return LocalStateStore(state_dir(loaded))


def state_store_for(project_dir: PathLike, stack: str | None) -> LocalStateStore:
    """The state store of a stack, loading the project's config to find it."""
    return state_store(load_system(project_dir, stack))


def resolve_desired(loaded: LoadedSystem, *, refresh: bool = False) -> DesiredSystem:
    """The desired system; ``refresh`` forgets the fingerprint cache and re-hashes in full."""
    from mlform.desired.fingerprint import FingerprintCache
    from mlform.desired.resolve import resolve

    cache = FingerprintCache(state_dir(loaded) / "cache" / "fingerprints.json")
    if refresh:
        cache.forget()
    return resolve(loaded, cache=cache)


def provider_registry() -> ProviderRegistry:
    from mlform.providers.registry import default_registry

    return default_registry()


def provider_context(loaded: LoadedSystem, state: StateDocument | None = None) -> ProviderContext:
    """What providers get: paths, the stack, secrets, and the infrastructure engine.

    The engine is built lazily from ``state`` (what each object owns now), so commands
    that provision nothing never import Pulumi.
    """
    from functools import partial

    from mlform.infra.provisioning import LazyProvisioner
    from mlform.providers.base import ProviderContext
    from mlform.secrets import reveal

    target = dict(loaded.settings.get("target") or {"type": "local"})
    return ProviderContext(
        project_dir=loaded.project_dir,
        state_dir=state_dir(loaded),
        stack=loaded.stack,
        reveal=partial(reveal, project_dir=loaded.project_dir),
        target=str(target.get("type", "local")),
        infrastructure=LazyProvisioner(partial(_provisioner, loaded, state, target)),
        settings=loaded.settings,
        overrides=loaded.overrides,
    )


def _provisioner(
    loaded: LoadedSystem, state: StateDocument | None, target: dict[str, object]
) -> Provisioner:
    from mlform.infra.provisioning import recorded_infrastructure
    from mlform.pulumi_engine.provisioner import engine_target, stack_provisioner

    outputs = {} if state is None else {a: r.outputs for a, r in state.objects.items()}
    return stack_provisioner(
        work_dir=state_dir(loaded) / "pulumi",
        project=loaded.project,
        stack=loaded.stack,
        target=engine_target(
            target, loaded.project_dir, settings=loaded.settings, stack=loaded.stack
        ),
        recorded=recorded_infrastructure(outputs),
    )


def compute(
    desired: DesiredSystem,
    state: StateDocument | None,
    *,
    destroy: bool,
    overrides: Sequence[str],
) -> Plan:
    """The plan for (desired, recorded state), carrying the overrides it was made with."""
    from mlform.plan.compute import compute_plan

    computed = compute_plan(
        desired,
        state,
        supported_kinds=provider_registry().supported_kinds(),
        destroy=destroy,
        mlform_version=__version__,
    )
    return computed.model_copy(update={"overrides": tuple(overrides)})


def with_monitor_requests(
    loaded: LoadedSystem, desired: DesiredSystem, state: StateDocument | None
) -> StateDocument | None:
    """``state`` with the retrain requests of breached monitors (``on_breach: retrain``)."""
    from mlform.addresses import Kind
    from mlform.monitoring.retrain import mark_retrain, retrain_requests

    if state is None:
        return None
    monitors = {a.name: o.config for a, o in desired.objects.items() if a.kind is Kind.MONITOR}
    if not any(c.get("on_breach") == "retrain" for c in monitors.values()):
        return state
    deployments = {
        a.name: o.config for a, o in desired.objects.items() if a.kind is Kind.DEPLOYMENT
    }
    return mark_retrain(state, retrain_requests(state_dir(loaded), monitors, deployments))


def rollout_warnings(
    loaded: LoadedSystem, desired: DesiredSystem, the_plan: Plan
) -> list[Diagnostic]:
    """The providers' warnings about deployments and monitors the plan changes.

    E.g. on the kubernetes target, a canary weight the replica count cannot represent.
    """
    from mlform.addresses import Address, Kind
    from mlform.diagnostics import Severity
    from mlform.providers.base import ValidateRequest

    kinds = {Kind.DEPLOYMENT.value, Kind.MONITOR.value}
    changing = [
        c for c in the_plan.changes if c.kind in kinds and c.action not in ("no-op", "delete")
    ]
    if not changing:
        return []
    registry = provider_registry()
    context = provider_context(loaded)
    found: list[Diagnostic] = []
    for change in changing:
        address = Address.parse(change.address)
        obj = desired.get(address)
        provider = registry.get(address.kind)
        if obj is None or provider is None:
            continue
        found.extend(
            d
            for d in provider.validate(ValidateRequest(address, obj.config, context))
            if d.severity is Severity.WARNING
        )
    return found


def plan_warnings(the_plan: Plan) -> list[Diagnostic]:
    """A warning naming the kinds the plan changes that no provider handles yet."""
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


def stale_lock_warning(lock: LockInfo) -> list[Diagnostic]:
    """A warning when taking the state lock broke one left by a process that is gone."""
    stale = lock.broke_stale
    if stale is None:
        return []
    return [
        Diagnostic.warning(
            "removed a stale state lock",
            f"The previous lock holder ({stale}) is no longer running; its unfinished steps are "
            "planned again.",
        )
    ]


def address_order(record: RecordedObject) -> tuple[int, str]:
    """Sort key of a recorded object: the order of its address."""
    from mlform.addresses import Address

    return Address.parse(record.address).sort_key()


def with_infrastructure(
    the_plan: Plan,
    loaded: LoadedSystem,
    state: StateDocument | None,
    drift: Sequence[InfraChange] = (),
) -> Plan:
    """The plan with each infrastructure-backed object's per-resource changes attached.

    Offline: desired resources come from the providers (pure), recorded ones from the
    state; ``drift`` (from ``plan --refresh``) marks resources the engine found gone or
    changed.
    """
    from mlform.addresses import Address
    from mlform.infra.diff import diff_resources
    from mlform.infra.model import InfraOp, from_record
    from mlform.plan.model import Action, InfraResourceChange
    from mlform.providers.infrastructure import InfrastructureProvider

    registry = provider_registry()
    context = provider_context(loaded)
    live = {(str(c.owner), c.name): c for c in drift}
    changes = []
    for change in the_plan.changes:
        provider = registry.get(change.kind)
        if not isinstance(provider, InfrastructureProvider):
            changes.append(change)
            continue
        address = Address.parse(change.address)
        record = state.get(change.address) if state is not None else None
        recorded = (
            [from_record(r) for r in (record.outputs.get("infrastructure") or [])]
            if (record is not None)
            else []
        )
        desired = []
        if change.after is not None and change.action is not Action.DELETE:
            try:
                desired = list(provider.resources(address, change.after, context))
            except ValueError:
                desired = []
        entries = []
        for item in diff_resources(recorded, desired):
            op = item.op
            seen = live.get((change.address, item.name))
            if seen is not None and op is InfraOp.SAME:
                op = seen.op
            entries.append(
                InfraResourceChange(name=item.name, type=item.type, op=op.value, fields=item.fields)
            )
        changes.append(change.model_copy(update={"infrastructure": tuple(entries)}))
    return the_plan.model_copy(update={"changes": tuple(changes)})
