"""The plan views: human text, JSON and markdown."""

from __future__ import annotations

import json
from pathlib import Path

from mlform.addresses import Kind
from mlform.plan.compute import compute_plan
from mlform.plan.model import PLAN_FORMAT_VERSION, Plan
from mlform.plan.render.human import NO_CHANGES, render_human
from mlform.plan.render.json import render_json
from mlform.plan.render.markdown import MAX_COMMENT_CHARS, render_markdown
from mlform.plan.testing import declared, desired_system, state_as_applied


def _plan(n: int, applied: bool = False, supported: frozenset[Kind] = frozenset(Kind)) -> Plan:
    objects = [declared("data.d", {"path": "d.csv"})]
    objects += [
        declared(f"model.m{i:05d}", {"trainer": {"epochs": 10, "note": "x" * 40}}, ["data.d"])
        for i in range(n)
    ]
    desired = desired_system(objects, {"data.d": {"data": "sha256:1"}})
    state = state_as_applied(desired) if applied else None
    return compute_plan(desired, state, supported_kinds=supported, mlform_version="0.1.0")


def test_human_no_changes() -> None:
    text = render_human(_plan(2, applied=True), detailed=False, color=False)
    assert text.strip() == NO_CHANGES
    detailed = render_human(_plan(2, applied=True), detailed=True, color=False)
    assert "model.m00001" in detailed and NO_CHANGES in detailed


def test_human_creates_with_provider_note_and_colour() -> None:
    plan = _plan(1, supported=frozenset({Kind.DATA}))
    text = render_human(plan, detailed=False, color=False, width=100)
    assert "  + model.m00000  create" in text
    assert "(provider not built yet — apply will skip this step)" in text
    assert text.rstrip().endswith("Plan: 2 to create, 0 to update, 0 to retrain, 0 to destroy")
    assert "\x1b[" not in text
    assert "\x1b[" in render_human(plan, detailed=False, color=True)


def test_json_is_versioned_and_stable() -> None:
    text = render_json(_plan(3))
    document = json.loads(text)
    assert document["format_version"] == PLAN_FORMAT_VERSION
    assert document["summary"]["line"].startswith("Plan: 4 to create")
    assert text == render_json(_plan(3))
    assert text.endswith("}\n")


def test_markdown_no_changes_and_template_override(tmp_path: Path) -> None:
    text = render_markdown(_plan(1, applied=True))
    assert "No changes. The system matches the configuration." in text
    assert "[!CAUTION]" not in text
    (tmp_path / "plan_comment.md.j2").write_text("custom {{ summary_line }}\n")
    assert render_markdown(_plan(1), [tmp_path]) == (
        "custom Plan: 2 to create, 0 to update, 0 to retrain, 0 to destroy\n"
    )


def test_markdown_of_ten_thousand_objects_is_truncated_under_the_limit() -> None:
    plan = _plan(10_000)
    text = render_markdown(plan)
    assert len(text) < MAX_COMMENT_CHARS
    assert text.startswith("### mlform plan")
    assert "**Plan: 10001 to create" in text
    assert "more objects not shown, see the JSON plan" in text
    assert "`model.m00000`" in text
