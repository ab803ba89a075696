"""The stack's provisioner: every owner's resources in one Pulumi program.

Providers provision one owner at a time (:class:`mlform.infra.provisioning.Provisioner`);
each call runs one ``pulumi up`` of the whole stack's program with that owner's part
replaced, so resources of other owners stay exactly as recorded. Calls are serialised
(steps of an apply run in parallel threads; the engine also locks the stack on disk).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlform.addresses import Address
from mlform.infra.model import InfraChange, InfraResource, split_logical_name
from mlform.infra.provisioning import ChangeCallback, OwnerOutputs
from mlform.pulumi_engine.target import EngineTarget

if TYPE_CHECKING:
    from mlform.pulumi_engine.engine import Engine


class StackProvisioner:
    def __init__(
        self,
        engine_factory: Callable[[ChangeCallback], Engine],
        recorded: Mapping[Address, Sequence[InfraResource]],
    ) -> None:
        self._engine_factory = engine_factory
        self._engine: Engine | None = None
        self._owned: dict[Address, tuple[InfraResource, ...]] = {
            owner: tuple(resources) for owner, resources in recorded.items() if resources
        }
        self._lock = threading.Lock()
        self._on_change: ChangeCallback | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = self._engine_factory(self._forward)
        return self._engine

    def provision(
        self,
        owner: Address,
        resources: Sequence[InfraResource],
        *,
        refresh: bool = False,
        on_change: ChangeCallback | None = None,
    ) -> OwnerOutputs:
        with self._lock:
            self._on_change = on_change
            try:
                return self._provision(owner, resources, refresh=refresh)
            finally:
                self._on_change = None

    def _forward(self, change: InfraChange) -> None:
        callback = self._on_change
        if callback is not None:
            callback(change)

    def _provision(
        self, owner: Address, resources: Sequence[InfraResource], *, refresh: bool
    ) -> OwnerOutputs:
        proposed = dict(self._owned)
        if resources:
            proposed[owner] = tuple(resources)
        else:
            proposed.pop(owner, None)
        engine = self.engine
        if not proposed and not engine.has_stack():
            return {}
        if refresh:
            engine.refresh()
        run = engine.up([r for owned in proposed.values() for r in owned])
        self._owned = proposed
        return _outputs_of(owner, run.outputs)

    def drift(self) -> tuple[InfraChange, ...]:
        with self._lock:
            if not self.engine.has_stack():
                return ()
            return self.engine.drift().changed()

    def refresh(self) -> tuple[InfraChange, ...]:
        with self._lock:
            if not self.engine.has_stack():
                return ()
            return self.engine.refresh().changed()


def _outputs_of(owner: Address, outputs: Mapping[str, Mapping[str, Any]]) -> OwnerOutputs:
    mine: OwnerOutputs = {}
    for logical, values in outputs.items():
        split = split_logical_name(logical)
        if split is not None and split[0] == owner:
            mine[split[1]] = _plain(values)
    return dict(sorted(mine.items()))


# What mlform records of a resource's live outputs (its inputs are recorded already).
LIVE_KEYS = ("pid", "port", "url", "health", "log", "started_at")


def _plain(values: Mapping[str, Any]) -> dict[str, Any]:
    """The live outputs worth recording, as JSON-able values (whole floats become ints)."""
    plain: dict[str, Any] = {}
    for key, value in values.items():
        if key not in LIVE_KEYS:
            continue
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        plain[key] = value
    return plain


def engine_target(target: Mapping[str, Any], project_dir: Path) -> EngineTarget:
    """The engine's view of the ``target:`` section of the config."""
    kind = target.get("type", "local")
    if kind == "render":
        directory = Path(target.get("directory", "rendered"))
        if not directory.is_absolute():
            directory = project_dir / directory
        return EngineTarget(type="render", render_directory=directory)
    if kind == "kubernetes":
        return EngineTarget(
            type="kubernetes",
            kubeconfig=target.get("kubeconfig"),
            context=target.get("context"),
            namespace=target.get("namespace", "default"),
            skip_await=not bool(target.get("wait_for_ready", True)),
        )
    return EngineTarget(type="local")


def stack_provisioner(
    *,
    work_dir: Path,
    project: str,
    stack: str,
    target: EngineTarget,
    recorded: Mapping[Address, Sequence[InfraResource]],
) -> StackProvisioner:
    def make(on_change: ChangeCallback) -> Engine:
        from mlform.pulumi_engine.engine import Engine

        return Engine(
            work_dir=work_dir, project=project, stack=stack, target=target, on_change=on_change
        )

    return StackProvisioner(make, recorded)
