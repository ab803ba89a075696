"""Shared wording of the plan views: values, field changes and action phrases."""

from __future__ import annotations

import json
from typing import Any

from mlform.plan.model import Action, FieldChange, ResourceChange

__all__ = [
    "ACTION_WORDS",
    "PROVIDER_NOTE",
    "SENSITIVE",
    "describe_field",
    "format_value",
    "is_destructive",
    "rollout_steps",
]

SENSITIVE = "(sensitive value)"
PROVIDER_NOTE = "(provider not built yet — apply will skip this step)"
ACTION_WORDS: dict[Action, str] = {
    Action.CREATE: "create",
    Action.UPDATE: "update",
    Action.REPLACE: "replace",
    Action.DELETE: "destroy",
    Action.RETRAIN: "retrain",
    Action.ROLLOUT: "roll out",
    Action.NOOP: "no change",
}


def format_value(value: Any, limit: int = 80) -> str:
    """Compact JSON of a config value, shortened to ``limit`` characters."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(", ", ": "))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_field(change: FieldChange, limit: int = 80) -> tuple[str, str]:
    """``("~", "trainer.epochs: 10 -> 20")``; secrets as ``(sensitive value)``."""
    if change.added:
        shown = SENSITIVE if change.sensitive else format_value(change.new, limit)
        return "+", f"{change.path}: {shown}"
    if change.removed:
        shown = SENSITIVE if change.sensitive else format_value(change.old, limit)
        return "-", f"{change.path}: {shown} (removed)"
    if change.sensitive:
        return "~", f"{change.path}: {SENSITIVE}"
    old, new = format_value(change.old, limit), format_value(change.new, limit)
    return "~", f"{change.path}: {old} -> {new}"


def is_destructive(change: ResourceChange) -> bool:
    return change.action in (Action.DELETE, Action.REPLACE)


def rollout_steps(change: ResourceChange) -> str | None:
    """How a deployment's rollout will move traffic (its strategy's steps), or None."""
    if change.action is not Action.ROLLOUT or change.kind != "deployment" or not change.after:
        return None
    from mlform.rollout.strategy import Strategy

    try:
        return "steps: " + Strategy.from_config(change.after).describe()
    except (ValueError, KeyError, TypeError):
        return None
