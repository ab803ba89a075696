"""The step graph of an apply: which steps of a plan must finish before which.

Creates, updates and replacements run after the steps of the objects they depend on.
Deletions run the other way round: an object is deleted only after every step on the
objects that depend on it (dependents first), so nothing is removed while in use.
No-op changes are not steps.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mlform.plan.model import Action, Plan, ResourceChange
from mlform.state.model import StateDocument


@dataclass(frozen=True, slots=True)
class StepGraph:
    # The plan's non-no-op changes, in plan order.
    steps: tuple[ResourceChange, ...]
    # address -> addresses of the steps that must finish first.
    prerequisites: dict[str, frozenset[str]]
    # address -> addresses of the steps that wait for it.
    dependents: dict[str, frozenset[str]]

    def order(self, address: str) -> int:
        """Position of the step in the plan (ties are scheduled in plan order)."""
        for index, step in enumerate(self.steps):
            if step.address == address:
                return index
        raise KeyError(address)

    def descendants(self, address: str) -> list[str]:
        """Every step that transitively waits for ``address``, in plan order."""
        seen: set[str] = set()
        stack = [address]
        while stack:
            for dependent in self.dependents.get(stack.pop(), frozenset()):
                if dependent not in seen:
                    seen.add(dependent)
                    stack.append(dependent)
        return [s.address for s in self.steps if s.address in seen]


def build_step_graph(plan: Plan, recorded: StateDocument | None = None) -> StepGraph:
    """The step graph of ``plan``; ``recorded`` supplies dependencies of deleted objects."""
    steps = tuple(c for c in plan.changes if c.action is not Action.NOOP)
    by_address = {c.address: c for c in steps}
    prereqs: dict[str, set[str]] = {c.address: set() for c in steps}
    for change in steps:
        uses = _dependencies(change, recorded)
        if change.action is Action.DELETE:
            # Upstream objects being deleted wait for this one (dependents first).
            for upstream in uses:
                if upstream in by_address and by_address[upstream].action is Action.DELETE:
                    prereqs[upstream].add(change.address)
            continue
        for upstream in uses:
            other = by_address.get(upstream)
            if other is None:
                continue
            if other.action is Action.DELETE:
                # Still using an object planned for deletion: delete it afterwards.
                prereqs[upstream].add(change.address)
            else:
                prereqs[change.address].add(upstream)
    dependents: dict[str, set[str]] = {c.address: set() for c in steps}
    for address, before in prereqs.items():
        for upstream in before:
            dependents[upstream].add(address)
    return StepGraph(
        steps=steps,
        prerequisites={a: frozenset(p) for a, p in prereqs.items()},
        dependents={a: frozenset(d) for a, d in dependents.items()},
    )


def _dependencies(change: ResourceChange, recorded: StateDocument | None) -> Iterable[str]:
    found = set(change.depends_on)
    record = None if recorded is None else recorded.get(change.address)
    if record is not None and change.action is Action.DELETE:
        found.update(record.depends_on)
    return sorted(found)
