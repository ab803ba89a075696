"""Confirm and execute a plan under the state lock; what apply, destroy and rollback return.

The caller (``mlform.api``) takes the lock, reads the state and makes or checks the
plan; :func:`walk` asks for confirmation and hands the plan to the executor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlform.diagnostics import Diagnostic
from mlform.events import EventSink

if TYPE_CHECKING:
    from mlform.apply.executor import ApplyOutcome
    from mlform.plan.model import Plan
    from mlform.spec.declared import LoadedSystem
    from mlform.state.model import StateDocument
    from mlform.state.store import LocalStateStore


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


def walk(
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
    from mlform.workspace import provider_context, provider_registry

    if not the_plan.has_changes:
        return ApplyResult(the_plan, None, warnings=tuple(warnings))
    if confirm is not None and not confirm(the_plan):
        return ApplyResult(the_plan, None, cancelled=True, warnings=tuple(warnings))
    outcome = execute(
        the_plan,
        StateWriter(store, state),
        provider_registry(),
        provider_context(loaded, state),
        parallelism=parallelism,
        sink=sink,
        should_stop=should_stop,
    )
    return ApplyResult(the_plan, outcome, warnings=tuple(warnings))
