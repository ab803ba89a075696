"""The markdown view of a plan, for a pull-request comment (template plan_comment.md.j2).

Summary first, a loud ``[!CAUTION]`` block when anything is deleted or replaced, a table
of changes, per-object details collapsed in ``<details>``. The result is always shorter
than :data:`MAX_COMMENT_CHARS` (GitHub's comment limit): details, then table rows, are
cut with a note pointing at the JSON plan.
"""

from __future__ import annotations

import importlib.resources
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

import mlform
from mlform.plan.model import Plan, ResourceChange
from mlform.plan.render.values import (
    ACTION_WORDS,
    PROVIDER_NOTE,
    describe_field,
    is_destructive,
    rollout_steps,
)

__all__ = ["MAX_COMMENT_CHARS", "TEMPLATE_NAME", "default_template_dirs", "render_markdown"]

MAX_COMMENT_CHARS = 65_536
TEMPLATE_NAME = "plan_comment.md.j2"
_DESTRUCTIVE_SHOWN = 20
_WHY_CHARS = 140
_POLICY_SHOWN = 50  # violations listed in the comment; `mlform policy check` has them all
_EXEMPTIONS_SHOWN = 20
_EXEMPTION_CHARS = 200


def default_template_dirs() -> list[Path]:
    """The installed ``mlform/_templates``, then the checkout's ``templates/``."""
    dirs: list[Path] = []
    installed = importlib.resources.files("mlform") / "_templates"
    if installed.is_dir():
        dirs.append(Path(str(installed)))
    dirs.append(Path(mlform.__file__).resolve().parents[2] / "templates")
    return [d for d in dirs if d.is_dir()]


def render_markdown(plan: Plan, template_dirs: Sequence[Path] | None = None) -> str:
    """The PR comment for ``plan``; the first template dir holding the template wins."""
    search = [Path(d) for d in template_dirs or ()] + default_template_dirs()
    env = Environment(
        loader=FileSystemLoader([str(d) for d in search]),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["cell"] = _cell
    env.filters["md"] = _md
    env.filters["code"] = _code
    template = env.get_template(TEMPLATE_NAME)
    changed = [c for c in plan.changes if c.action.value != "no-op"]
    base = _base_context(plan, changed)

    def render(n_rows: int, n_details: int) -> str:
        context = dict(base)
        context["rows"] = [_row(c) for c in changed[:n_rows]]
        context["rows_omitted"] = len(changed) - n_rows
        context["details"] = [_detail(c) for c in changed[:n_details]]
        context["omitted"] = len(changed) - n_details
        return _tidy(template.render(context))

    text = render(len(changed), len(changed))
    if len(text) < MAX_COMMENT_CHARS:
        return text
    if len(render(len(changed), 0)) < MAX_COMMENT_CHARS:
        best = _largest(lambda n: len(render(len(changed), n)) < MAX_COMMENT_CHARS, len(changed))
        return render(len(changed), best)
    best = _largest(lambda n: len(render(n, 0)) < MAX_COMMENT_CHARS, len(changed))
    return render(best, 0)


def _largest(fits: Callable[[int], bool], upper: int) -> int:
    """The largest n in [0, upper] with fits(n), for a monotone predicate true at 0."""
    low, high = 0, upper
    while low < high:
        mid = (low + high + 1) // 2
        if fits(mid):
            low = mid
        else:
            high = mid - 1
    return low


def _base_context(plan: Plan, changed: list[ResourceChange]) -> dict[str, Any]:
    destructive = [c for c in changed if is_destructive(c)]
    return {
        "project": plan.project,
        "stack": plan.stack,
        "summary_line": plan.summary.line(),
        "has_changes": plan.has_changes,
        "destructive": [
            {
                "address": c.address,
                "verb": "destroyed"
                if c.action.value == "delete"
                else "replaced (destroyed, then created)",
            }
            for c in destructive[:_DESTRUCTIVE_SHOWN]
        ],
        "destructive_total": len(destructive),
        "destructive_more": max(0, len(destructive) - _DESTRUCTIVE_SHOWN),
        "unchanged": plan.summary.no_op,
        "provider_note": PROVIDER_NOTE,
        "mlform_version": plan.mlform_version,
        "format_version": plan.format_version,
        "serial": plan.serial,
        "input_digest": plan.input_digest[:19] + ("…" if len(plan.input_digest) > 19 else ""),
        "policy": _policy(plan),
    }


def _policy(plan: Plan) -> dict[str, Any] | None:
    """The policy section: violations (capped) and exemptions in force (capped)."""
    from mlform.policy.render.plan_results import plan_policy, result_location

    policy = plan_policy(plan.policy_results, plan.policy_exemptions)
    if not policy.notable:
        return None
    return {
        "summary_line": policy.summary_line(),
        "mandatory": policy.mandatory,
        "violations": [
            {
                "level": r.level,
                "rule": r.rule,
                "address": r.address or "",
                "message": _clip(r.message, _WHY_CHARS),
                "where": result_location(r),
            }
            for r in policy.violations[:_POLICY_SHOWN]
        ],
        "violations_more": max(0, len(policy.violations) - _POLICY_SHOWN),
        "exempted": [
            {
                "rule": e.rule,
                "address": e.address or "",
                "reason": _clip(f"{e.reason} (until {e.expires})", _EXEMPTION_CHARS),
                "message": _clip("; ".join(e.waives) or "nothing in this plan", _WHY_CHARS),
            }
            for e in policy.exemptions[:_EXEMPTIONS_SHOWN]
        ],
        "exempted_more": max(0, len(policy.exemptions) - _EXEMPTIONS_SHOWN),
    }


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _row(change: ResourceChange) -> dict[str, Any]:
    why = change.reasons[0].message if change.reasons else ""
    if len(change.reasons) > 1:
        why += f" (+{len(change.reasons) - 1} more)"
    if len(why) > _WHY_CHARS:
        why = why[: _WHY_CHARS - 1] + "…"
    return {
        "symbol": change.action.symbol,
        "address": change.address,
        "action": ACTION_WORDS[change.action],
        "why": why,
        "available": change.provider_available,
    }


def _detail(change: ResourceChange) -> dict[str, Any]:
    return {
        "symbol": change.action.symbol,
        "address": change.address,
        "action": ACTION_WORDS[change.action],
        "available": change.provider_available,
        "steps": rollout_steps(change),
        "reasons": [
            {"message": r.message, "fields": [describe_field(f, 200) for f in r.fields]}
            for r in change.reasons
        ],
    }


def _tidy(text: str) -> str:
    """At most one blank line in a row; exactly one newline at the end."""
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n") + "\n"


def _md(text: str) -> str:
    """Plain text safe in markdown prose: no HTML tags."""
    return text.replace("&", "&amp;").replace("<", "&lt;")


def _cell(text: str) -> str:
    """Plain text safe in a table cell: no pipes, no line breaks, no HTML."""
    return _md(text).replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    """An inline code span that survives backticks inside ``text``."""
    fence = "`"
    while fence in text:
        fence += "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"
