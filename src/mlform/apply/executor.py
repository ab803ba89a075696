"""The apply executor: walk a plan's step graph on a bounded thread pool.

Independent steps run in parallel (at most ``parallelism`` working at once; a step waiting
for the infrastructure engine lends its slot, see :mod:`mlform.apply.slots`); a step starts
when the steps it waits for (see :mod:`mlform.apply.graph`) have succeeded. A failed
or unsupported step skips everything that transitively waits for it, and the other
branches keep going. State is committed when each step starts and when it ends, so an
interrupted apply resumes where it stopped. Progress goes to the event sink.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from mlform.apply.graph import StepGraph, build_step_graph
from mlform.apply.outcome import ApplyOutcome, StepReport
from mlform.apply.slots import Slots
from mlform.apply.step import StepResult, run_step
from mlform.events import (
    ApplyFinished,
    ApplyStarted,
    Event,
    EventSink,
    StepFinished,
    StepProgress,
    StepStarted,
    discard,
)
from mlform.plan.model import Plan, ResourceChange
from mlform.providers.base import ProviderContext
from mlform.providers.registry import ProviderRegistry
from mlform.state.model import HistoryEntry
from mlform.state.timestamps import utc_now
from mlform.state.writer import StateWriter

__all__ = ["ApplyOutcome", "StepReport", "execute"]

_MAX_THREADS = 256
_WHY = {"failed": "failed", "unsupported": "has no provider yet"}


def execute(
    plan: Plan,
    writer: StateWriter,
    registry: ProviderRegistry,
    context: ProviderContext,
    *,
    parallelism: int = 4,
    sink: EventSink = discard,
    should_stop: Callable[[], bool] | None = None,
) -> ApplyOutcome:
    """Apply ``plan``: run its steps through ``registry``'s providers, committing via ``writer``.

    Never raises for a provider failure (those become diagnostics and failed steps);
    state errors (a lost lock, a serial conflict) stop the apply after running steps end.
    """
    started_at, clock = utc_now(), time.monotonic()
    run = _Run(build_step_graph(plan, writer.document), sink, writer)
    writer.stamp(project=plan.project, stack=plan.stack, mlform_version=plan.mlform_version)
    started_serial = writer.serial
    run.emit(
        ApplyStarted(steps=len(run.graph.steps), parallelism=parallelism, serial=started_serial)
    )
    digests = _upstream_digests(plan, writer)
    stop = should_stop or (lambda: False)
    fatal: BaseException | None = None
    slots = Slots(parallelism)
    # Steps lend their slot while they wait for the engine (apply/slots.py), so more threads
    # than slots may be alive at once: one per step at most.
    workers = max(slots.limit, min(len(run.graph.steps), _MAX_THREADS))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mlform") as pool:
        running: dict[Future[StepResult], tuple[ResourceChange, float]] = {}
        while True:
            while run.ready and fatal is None:
                if not slots.try_acquire():
                    break
                if stop():
                    slots.release()
                    run.outcome.interrupted = True
                    break
                change = run.pop_ready()
                provider = None if change is None else registry.get(change.kind)
                if change is None or provider is None:
                    slots.release()
                    if change is not None:
                        run.finish(change, "unsupported", _unsupported_message(change.kind))
                    continue
                run.emit(StepStarted(address=change.address, action=change.action.value))
                step_context = dataclasses.replace(
                    context,
                    progress=run.progress_for(change),
                    idle=slots.lend,
                    company=lambda: slots.working() > 0 or bool(run.ready),
                )
                future = pool.submit(
                    run_step, change, provider, writer, step_context, upstream_digests=digests
                )
                future.add_done_callback(lambda _f: slots.signal())
                running[future] = (change, time.monotonic())
            if not running:
                break
            slots.wait_for_change()
            for future in [f for f in running if f.done()]:
                change, began = running.pop(future)
                slots.release()
                try:
                    result = future.result()
                except BaseException as exc:  # a state error: stop scheduling, re-raise below
                    fatal = fatal or exc
                    continue
                run.outcome.diagnostics.extend(result.diagnostics)
                run.finish(
                    change,
                    result.outcome,
                    result.message,
                    duration_s=time.monotonic() - began,
                    outputs=result.outputs,
                )
    run.skip_unfinished()
    outcome = run.outcome
    outcome.serial = writer.serial
    outcome.duration_s = time.monotonic() - clock
    run.emit(
        ApplyFinished(
            succeeded=len(outcome.succeeded),
            failed=len(outcome.failed),
            skipped=len(outcome.skipped),
            unsupported=len(outcome.unsupported),
            serial=outcome.serial,
            duration_s=outcome.duration_s,
        )
    )
    if run.graph.steps:
        _append_history(plan, writer, outcome, started_serial, started_at, fatal is not None)
    if fatal is not None:
        raise fatal
    return outcome


class _Run:
    """The bookkeeping of one apply; mutated by the scheduling thread only."""

    def __init__(self, graph: StepGraph, sink: EventSink, writer: StateWriter) -> None:
        self.graph = graph
        self.writer = writer
        self.outcome = ApplyOutcome()
        self.index = {s.address: i for i, s in enumerate(graph.steps)}
        self.waiting = {a: set(p) for a, p in graph.prerequisites.items()}
        self.done: set[str] = set()
        self.ready: list[tuple[int, str]] = [
            (self.index[a], a) for a, before in self.waiting.items() if not before
        ]
        heapq.heapify(self.ready)
        self._sink = sink
        self._sink_lock = threading.Lock()

    def emit(self, event: Event) -> None:
        with self._sink_lock:  # providers report progress from worker threads
            self._sink(event)

    def progress_for(self, change: ResourceChange) -> Callable[[str, float | None], None]:
        def progress(message: str, fraction: float | None = None) -> None:
            self.emit(StepProgress(address=change.address, message=message, fraction=fraction))

        return progress

    def pop_ready(self) -> ResourceChange | None:
        _, address = heapq.heappop(self.ready)
        return None if address in self.done else self.graph.steps[self.index[address]]

    def finish(
        self,
        change: ResourceChange,
        outcome: str,
        message: str,
        *,
        duration_s: float = 0.0,
        outputs: Mapping[str, Any] | None = None,
    ) -> None:
        self._report(change, outcome, message, duration_s, outputs)
        if outcome == "succeeded":
            for waiter in self.graph.dependents[change.address]:
                self.waiting[waiter].discard(change.address)
                if not self.waiting[waiter] and waiter not in self.done:
                    heapq.heappush(self.ready, (self.index[waiter], waiter))
            return
        for address in self.graph.descendants(change.address):
            if address not in self.done:
                skipped = self.graph.steps[self.index[address]]
                self._report(skipped, "skipped", f"{change.address} {_WHY[outcome]}", 0.0, None)

    def skip_unfinished(self) -> None:
        """Report the steps that never started (interrupted, or a state error stopped us)."""
        for change in self.graph.steps:
            if change.address not in self.done:
                self._report(change, "skipped", "apply stopped before this step started", 0.0, None)

    def _report(
        self,
        change: ResourceChange,
        outcome: str,
        message: str,
        duration_s: float,
        outputs: Mapping[str, Any] | None,
    ) -> None:
        self.done.add(change.address)
        self.outcome.add(
            StepReport(change.address, change.action.value, outcome, message, duration_s)
        )
        self.emit(
            StepFinished(
                address=change.address,
                action=change.action.value,
                outcome=outcome,
                duration_s=duration_s,
                serial=self.writer.serial,
                message=message,
                outputs=dict(outputs or {}),
            )
        )


def _unsupported_message(kind: str) -> str:
    return f"no provider for kind {kind} yet — this step was skipped; it lands in a later release"


def _upstream_digests(plan: Plan, writer: StateWriter) -> dict[str, str]:
    """Content digest of every object a step may depend on: the planned one, else the recorded."""
    digests: dict[str, str] = {}
    document = writer.document
    if document is not None:
        digests.update({a: o.content_digest for a, o in document.objects.items()})
    for change in plan.changes:
        if change.content_digest is not None:
            digests[change.address] = change.content_digest
    return digests


def _append_history(
    plan: Plan,
    writer: StateWriter,
    outcome: ApplyOutcome,
    started_serial: int,
    started_at: str,
    crashed: bool,
) -> None:
    if crashed or outcome.interrupted:
        result = "interrupted"
    else:
        result = "failed" if outcome.failed else "succeeded"
    digest = hashlib.sha256(plan.model_dump_json().encode("utf-8")).hexdigest()
    writer.append_history(
        HistoryEntry(
            operation="destroy" if plan.destroy else "apply",
            started_serial=started_serial,
            finished_serial=writer.serial,
            started_at=started_at,
            finished_at=utc_now(),
            plan_digest=f"sha256:{digest}",
            summary=f"{plan.summary.line()}; {outcome.summary()}",
            outcome=result,
        )
    )
