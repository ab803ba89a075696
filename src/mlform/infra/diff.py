"""Per-resource changes between recorded and desired infrastructure (pure).

What ``plan --detailed`` shows under an object: which of its resources the next apply
creates, updates or deletes, and which inputs differ; computed offline from the
records in state, the way Terraform shows a resource's attribute diff.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mlform.infra.model import InfraChange, InfraOp, InfraResource


def diff_resources(
    recorded: Sequence[InfraResource], desired: Sequence[InfraResource]
) -> tuple[InfraChange, ...]:
    old = {r.name: r for r in recorded}
    new = {r.name: r for r in desired}
    changes: list[InfraChange] = []
    for name in sorted(old.keys() | new.keys()):
        before, after = old.get(name), new.get(name)
        if after is None:
            assert before is not None
            changes.append(InfraChange(before.owner, name, before.kind, InfraOp.DELETE))
        elif before is None:
            changes.append(InfraChange(after.owner, name, after.kind, InfraOp.CREATE))
        else:
            fields = changed_paths(before.inputs(), after.inputs())
            op = InfraOp.UPDATE if fields or before.kind != after.kind else InfraOp.SAME
            changes.append(InfraChange(after.owner, name, after.kind, op, fields))
    return tuple(changes)


def changed_paths(old: Any, new: Any, prefix: str = "", limit: int = 8) -> tuple[str, ...]:
    """Dotted paths of the leaves that differ (``spec.replicas``), at most ``limit``."""
    found: list[str] = []
    _walk(old, new, prefix, found)
    if len(found) > limit:
        return (*found[:limit], f"and {len(found) - limit} more")
    return tuple(found)


def _walk(old: Any, new: Any, prefix: str, found: list[str]) -> None:
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for key in sorted(set(old) | set(new), key=str):
            path = f"{prefix}.{key}" if prefix else str(key)
            _walk(old.get(key), new.get(key), path, found)
    elif old != new:
        found.append(prefix or "(value)")
