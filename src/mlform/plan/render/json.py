"""The JSON view of a plan: versioned, deterministic, byte-identical for equal plans."""

from __future__ import annotations

import json
from typing import Any

from mlform.plan.model import Plan

__all__ = ["plan_document", "render_json"]


def plan_document(plan: Plan) -> dict[str, Any]:
    """The plan as plain JSON data (``format_version`` first-class, summary line included)."""
    document = plan.model_dump(mode="json")
    document["summary"]["line"] = plan.summary.line()
    return document


def render_json(plan: Plan) -> str:
    """Sorted keys, two-space indent, fixed separators, UTF-8 kept, one trailing newline."""
    return (
        json.dumps(
            plan_document(plan),
            sort_keys=True,
            indent=2,
            separators=(",", ": "),
            ensure_ascii=False,
        )
        + "\n"
    )
