"""Field-level config differences (``trainer.epochs: 10 -> 20``); lists diffed by deepdiff.

Only called for objects whose config fingerprint moved. A value that holds a secret
token on either side is reported as sensitive, with both values hidden.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from mlform.plan.model import FieldChange

__all__ = ["SECRET_TOKEN", "diff_fields", "format_path", "is_secret", "top_level_changes"]

SECRET_TOKEN = re.compile(r"<secret:[^:>]+:[0-9a-f]{16}>")

_ADDED = frozenset({"dictionary_item_added", "iterable_item_added", "attribute_added"})
_REMOVED = frozenset({"dictionary_item_removed", "iterable_item_removed", "attribute_removed"})
_CHANGED = frozenset({"values_changed", "type_changes"})


def is_secret(value: Any) -> bool:
    """Whether a secret token appears anywhere inside ``value``."""
    if isinstance(value, str):
        return SECRET_TOKEN.search(value) is not None
    if isinstance(value, Mapping):
        return any(is_secret(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(is_secret(v) for v in value)
    return False


def format_path(parts: list[Any]) -> str:
    """``['strategy', 'steps', 0, 'weight']`` -> ``strategy.steps[0].weight``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def top_level_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> set[str]:
    """Top-level keys whose values differ (present on one side only counts)."""
    return {k for k in set(old) | set(new) if old.get(k, _MISSING) != new.get(k, _MISSING)}


_MISSING = object()


def diff_fields(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[FieldChange, ...]:
    """Every changed leaf (or added/removed subtree) between two configs, sorted by path.

    Mappings are walked directly (cheap: equal subtrees are skipped by one comparison);
    lists that differ are handed to deepdiff, which reports items added, removed or
    changed by position.
    """
    found: list[tuple[list[Any], FieldChange]] = []
    stack: list[tuple[list[Any], Mapping[str, Any], Mapping[str, Any]]] = [([], old, new)]
    while stack:
        prefix, left, right = stack.pop()
        for key in set(left) | set(right):
            parts = [*prefix, key]
            if key not in right:
                found.append((parts, _change(parts, left[key], None, removed=True)))
            elif key not in left:
                found.append((parts, _change(parts, None, right[key], added=True)))
            else:
                a, b = left[key], right[key]
                if a == b and type(a) is type(b):
                    continue
                if isinstance(a, Mapping) and isinstance(b, Mapping):
                    stack.append((parts, a, b))
                elif isinstance(a, list) and isinstance(b, list):
                    found.extend(_diff_lists(parts, a, b))
                else:
                    found.append((parts, _change(parts, a, b)))
    found.sort(key=lambda item: _sortable(item[0]))
    return tuple(change for _, change in found)


def _diff_lists(
    prefix: list[Any], old: list[Any], new: list[Any]
) -> list[tuple[list[Any], FieldChange]]:
    from deepdiff import DeepDiff  # lazy: deepdiff imports pandas/numpy when present

    tree = DeepDiff(old, new, verbose_level=2, view="tree")
    out: list[tuple[list[Any], FieldChange]] = []
    for report, levels in tree.items():
        if report not in _ADDED | _REMOVED | _CHANGED:
            continue
        for level in levels:
            parts = [*prefix, *level.path(output_format="list")]
            added, removed = report in _ADDED, report in _REMOVED
            before = None if added else level.t1
            after = None if removed else level.t2
            out.append((parts, _change(parts, before, after, added=added, removed=removed)))
    return out


def _change(
    parts: list[Any], old: Any, new: Any, *, added: bool = False, removed: bool = False
) -> FieldChange:
    sensitive = is_secret(old) or is_secret(new)
    return FieldChange(
        path=format_path(parts),
        old=None if sensitive else old,
        new=None if sensitive else new,
        added=added,
        removed=removed,
        sensitive=sensitive,
    )


def _sortable(parts: list[Any]) -> list[tuple[int, int, str]]:
    return [(0, p, "") if isinstance(p, int) else (1, 0, str(p)) for p in parts]
