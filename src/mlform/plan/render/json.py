"""The JSON view of a plan: versioned, deterministic, byte-identical for equal plans."""

from __future__ import annotations

import io
import json
from typing import Any, TextIO

from mlform.plan.model import Plan

__all__ = ["plan_document", "render_json", "write_json"]


def plan_document(plan: Plan) -> dict[str, Any]:
    """The plan as plain JSON data (``format_version`` first-class, summary line included)."""
    document = plan.model_dump(mode="json")
    document["summary"]["line"] = plan.summary.line()
    return document


_ENCODER = json.JSONEncoder(sort_keys=True, indent=2, separators=(",", ": "), ensure_ascii=False)


def write_json(plan: Plan, out: TextIO) -> None:
    """Stream the JSON plan to ``out`` chunk by chunk (no list of every chunk in memory)."""
    for chunk in _ENCODER.iterencode(plan_document(plan)):
        out.write(chunk)
    out.write("\n")


def render_json(plan: Plan) -> str:
    """Sorted keys, two-space indent, fixed separators, UTF-8 kept, one trailing newline."""
    buffer = io.StringIO()
    write_json(plan, buffer)
    return buffer.getvalue()
