"""The stack's provisioner: every owner's resources in one Pulumi program.

Providers provision one owner at a time (:class:`mlform.infra.provisioning.Provisioner`);
an engine run is one ``pulumi up`` of the whole stack's program with the requesting owners'
parts replaced, so resources of other owners stay exactly as recorded.

Requests that arrive together are batched into one ``pulumi up`` (a group commit): the first
caller leads; it waits until no new request has arrived for ``gather_s`` (at most
``gather_max_s``), then runs the engine once for every queued owner while later callers
queue for the next run. Apply steps lend their parallelism slot while they wait
(:mod:`mlform.apply.slots`), so 50 deployments created by one apply cost one ``pulumi up``
rather than 50 (benchmarks/kubernetes_apply.py). When a batched run fails, its owners are
provisioned again one by one, so each failure is reported by the owner it belongs to.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlform.addresses import Address
from mlform.errors import InfraError
from mlform.infra.model import InfraChange, InfraResource, split_logical_name
from mlform.infra.provisioning import ChangeCallback, OwnerOutputs
from mlform.pulumi_engine.target import EngineTarget

if TYPE_CHECKING:
    from mlform.pulumi_engine.engine import Engine

GATHER_S = 0.3  # a batch starts once no request arrived for this long...
GATHER_MAX_S = 5.0  # ...or this long after its first request,
SETTLE_S = 0.02  # ...or, once none arrived for this long, when no other step can join


@dataclass(slots=True)
class _Request:
    owner: Address
    resources: tuple[InfraResource, ...]
    refresh: bool
    on_change: ChangeCallback | None
    company: Callable[[], bool] | None = None
    done: bool = False
    outputs: OwnerOutputs | None = None
    error: BaseException | None = None


class StackProvisioner:
    def __init__(
        self,
        engine_factory: Callable[[ChangeCallback], Engine],
        recorded: Mapping[Address, Sequence[InfraResource]],
        *,
        gather_s: float = GATHER_S,
        gather_max_s: float = GATHER_MAX_S,
    ) -> None:
        self._engine_factory = engine_factory
        self._engine: Engine | None = None
        self._owned: dict[Address, tuple[InfraResource, ...]] = {
            owner: tuple(resources) for owner, resources in recorded.items() if resources
        }
        self._gather_s, self._gather_max_s = gather_s, gather_max_s
        self._cond = threading.Condition()
        self._queue: list[_Request] = []
        self._last_arrival = 0.0
        self._leading = False  # a caller is running a batch
        self._engine_lock = threading.Lock()  # one engine operation at a time
        self._callbacks: dict[Address, ChangeCallback] = {}
        self.runs = 0  # engine updates run (tests read it)

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
        company: Callable[[], bool] | None = None,
    ) -> OwnerOutputs:
        request = _Request(owner, tuple(resources), refresh, on_change, company)
        with self._cond:
            self._queue.append(request)
            self._last_arrival = time.monotonic()
            self._cond.notify_all()
            while not request.done and self._leading:
                self._cond.wait()
            lead = not request.done
            if lead:
                self._leading = True
        if lead:
            try:
                self._run_batch(self._gather())
            finally:
                with self._cond:
                    self._leading = False
                    self._cond.notify_all()
        if request.error is not None:
            raise request.error
        return request.outputs or {}

    def _gather(self) -> list[_Request]:
        """Wait for the requests arriving together, then take them all.

        The wait ends after :data:`GATHER_S` without a new request, :data:`GATHER_MAX_S`
        after the first, or as soon as the queue has settled (:data:`SETTLE_S`) and every
        caller in it says no other step can join (their ``company``): a lone step of an
        apply does not wait for company that cannot come.
        """
        with self._cond:
            first = time.monotonic()
            while True:
                now = time.monotonic()
                quiet_left = self._last_arrival + self._gather_s - now
                total_left = first + self._gather_max_s - now
                if quiet_left <= 0 or total_left <= 0:
                    break
                known = all(r.company is not None for r in self._queue)
                if known and now - self._last_arrival >= SETTLE_S and self._alone():
                    break
                wait = min(quiet_left, total_left)
                self._cond.wait(min(wait, SETTLE_S) if known else wait)
            batch, self._queue = self._queue, []
            return batch

    def _alone(self) -> bool:
        """No caller in the queue expects company (each has a ``company`` to ask)."""
        return not any(r.company is not None and r.company() for r in self._queue)

    def _run_batch(self, batch: list[_Request]) -> None:
        try:
            self._run_once(batch)
        except InfraError as failed:
            if len(batch) == 1:
                batch[0].error = failed
            else:  # find whose part failed: each owner on its own
                for request in batch:
                    self._run_batch([request])
        except BaseException as failed:
            for request in batch:
                request.error = failed
        finally:
            with self._cond:
                for request in batch:
                    request.done = True
                self._cond.notify_all()

    def _run_once(self, batch: Sequence[_Request]) -> None:
        proposed = dict(self._owned)
        for request in batch:
            if request.resources:
                proposed[request.owner] = request.resources
            else:
                proposed.pop(request.owner, None)
        with self._engine_lock:
            engine = self.engine
            if not proposed and not engine.has_stack():
                for request in batch:
                    request.outputs = {}
                return
            self._callbacks = {r.owner: r.on_change for r in batch if r.on_change is not None}
            try:
                if any(r.refresh for r in batch):
                    engine.refresh()
                run = engine.up([r for owned in proposed.values() for r in owned])
                self.runs += 1
            finally:
                self._callbacks = {}
        self._owned = proposed
        for request in batch:
            request.outputs = _outputs_of(request.owner, run.outputs)

    def _forward(self, change: InfraChange) -> None:
        callback = self._callbacks.get(change.owner)
        if callback is not None:
            callback(change)

    def drift(self) -> tuple[InfraChange, ...]:
        with self._engine_lock:
            if not self.engine.has_stack():
                return ()
            return self.engine.drift().changed()

    def refresh(self) -> tuple[InfraChange, ...]:
        with self._engine_lock:
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


def engine_target(
    target: Mapping[str, Any],
    project_dir: Path,
    *,
    settings: Mapping[str, Any] | None = None,
    stack: str = "default",
) -> EngineTarget:
    """The engine's view of the ``target:`` section of the config.

    ``settings`` (the loaded settings sections) and ``stack`` give the kubernetes target
    its namespace and stack-wide objects (:mod:`mlform.infra.kubernetes_stack`); secret
    tokens are revealed with the project's key and ``MLFORM_SECRET_*`` values.
    """
    from functools import partial

    from mlform.infra.kubernetes_stack import stack_namespace, stack_objects
    from mlform.secrets import reveal

    revealing = partial(reveal, project_dir=project_dir)
    kind = target.get("type", "local")
    if kind == "render":
        directory = Path(target.get("directory", "rendered"))
        if not directory.is_absolute():
            directory = project_dir / directory
        return EngineTarget(type="render", render_directory=directory, reveal=revealing)
    if kind == "kubernetes":
        full = {**(settings or {}), "target": target}
        return EngineTarget(
            type="kubernetes",
            kubeconfig=target.get("kubeconfig"),
            context=target.get("context"),
            namespace=stack_namespace(full, stack).name,
            skip_await=not bool(target.get("wait_for_ready", True)),
            stack_objects=stack_objects(full, stack),
            reveal=revealing,
        )
    return EngineTarget(type="local", reveal=revealing)


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
