"""Policy results in the plan views: the human "Policy:" block and the markdown section."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_golden_plans import representative_plan

from mlform.plan.model import Plan, PolicyExemption, PolicyResult
from mlform.plan.render.human import render_human
from mlform.plan.render.markdown import MAX_COMMENT_CHARS, render_markdown
from mlform.policy.render.plan_results import plan_policy

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "golden"

RESULTS = (
    PolicyResult(
        rule="custom.min-replicas",
        level="advisory",
        passed=False,
        message="deployment diagnosis-api runs 1 replica",
        address="deployment.diagnosis-api",
        key="deployments.diagnosis-api.replicas",
        file="configs/deployments/diagnosis_api.yaml",
        line=7,
    ),
    PolicyResult(
        rule="pii.encryption",
        level="mandatory",
        passed=False,
        message="data.patients has PII column email but no encryption | at rest",
        address="data.patients",
        key="data.patients",
        file="configs/data/patients.yaml",
        line=3,
    ),
    PolicyResult(
        rule="fairness.ratio",
        level="mandatory",
        passed=False,
        message="model.diagnosis has no fairness gate",
        address="model.diagnosis",
        exempted_by="Fairness audit scheduled (until 2030-06-30)",
        file="configs/models/diagnosis.yaml",
        line=12,
    ),
    PolicyResult(rule="model-card.required", level="advisory", passed=True, message="ok"),
)


EXEMPTIONS = (
    PolicyExemption(
        rule="fairness.ratio",
        address="model.diagnosis",
        reason="Fairness audit scheduled",
        expires="2030-06-30",
        file="configs/system.yaml",
        line=52,
        waives=("model.diagnosis has no fairness gate",),
    ),
    PolicyExemption(
        rule="registries.approved",
        reason="Images are mirrored by the platform team",
        expires="2027-01-31",
        file="stacks/prod.yaml",
        line=30,
    ),
)


def _with_policy(plan: Plan, results: tuple[PolicyResult, ...] = RESULTS) -> Plan:
    exemptions = EXEMPTIONS if any(r.exempted_by for r in results) else ()
    return plan.model_copy(update={"policy_results": results, "policy_exemptions": exemptions})


def test_plan_policy_classifies_and_counts() -> None:
    policy = plan_policy(RESULTS)
    assert [r.rule for r in policy.violations] == ["pii.encryption", "custom.min-replicas"]
    assert [r.rule for r in policy.exempted] == ["fairness.ratio"]
    assert policy.summary_line() == "Policy: 1 mandatory, 1 advisory violations, 1 exempted"
    assert not plan_policy([RESULTS[3]]).notable


def test_human_plan_shows_policy_block() -> None:
    text = render_human(_with_policy(representative_plan()), width=100)
    block = text[text.index("Policy: ") :].splitlines()
    assert block == [
        "Policy: 1 mandatory, 1 advisory violations, 1 exempted",
        "  [mandatory] pii.encryption  data.patients",
        "      data.patients has PII column email but no encryption | at rest "
        "(configs/data/patients.yaml:3)",
        "  [advisory] custom.min-replicas  deployment.diagnosis-api",
        "      deployment diagnosis-api runs 1 replica (configs/deployments/diagnosis_api.yaml:7)",
        "  Exemptions in force:",
        "    fairness.ratio  model.diagnosis",
        "      Fairness audit scheduled (until 2030-06-30) (configs/system.yaml:52)",
        "      waives: model.diagnosis has no fairness gate",
        "    registries.approved",
        "      Images are mirrored by the platform team (until 2027-01-31) (stacks/prod.yaml:30)",
        "      waives: nothing in this plan",
    ]


def test_human_plan_without_findings_has_no_policy_block() -> None:
    text = render_human(_with_policy(representative_plan(), (RESULTS[3],)), width=100)
    assert "Policy:" not in text


def test_markdown_policy_section_after_summary() -> None:
    text = render_markdown(_with_policy(representative_plan()))
    summary = text.index("**Plan: ")
    section = text.index("#### Policy: 1 mandatory, 1 advisory violations, 1 exempted")
    table = text.index("| | Object | Action | Why |")
    assert summary < section < table
    assert "> [!IMPORTANT]" in text
    assert (
        "| **mandatory** | `pii.encryption` | `data.patients` | data.patients has PII column "
        "email but no encryption \\| at rest | `configs/data/patients.yaml:3` |" in text
    )
    assert "| advisory | `custom.min-replicas` | `deployment.diagnosis-api` |" in text
    assert (
        "- `fairness.ratio` on `model.diagnosis`: Fairness audit scheduled (until 2030-06-30); "
        "waives: model.diagnosis has no fairness gate" in text
    )
    assert (
        "- `registries.approved`: Images are mirrored by the platform team (until 2027-01-31); "
        "waives: nothing in this plan" in text
    )
    assert "model-card.required" not in text


def test_markdown_stays_under_the_comment_limit_with_many_violations() -> None:
    from test_plan_render import _plan

    many = tuple(
        PolicyResult(
            rule=f"custom.rule-{i % 7}",
            level="mandatory" if i % 2 else "advisory",
            passed=False,
            message="x" * 500,
            address=f"model.m{i:05d}",
            exempted_by="because " * 60 if i % 3 == 0 else None,
            file="configs/models/m.yaml",
            line=i + 1,
        )
        for i in range(2000)
    )
    text = render_markdown(_with_policy(_plan(1500), many))
    assert len(text) < MAX_COMMENT_CHARS
    assert "#### Policy: " in text
    assert "more (see `mlform policy check`)" in text


PLAN_GOLDENS = {
    "plan_policy_human.txt": lambda plan: render_human(plan, color=False, width=100),
    "plan_policy.md": render_markdown,
}


@pytest.mark.parametrize("name", sorted(PLAN_GOLDENS))
def test_plan_with_policy_matches_golden(name: str, request: pytest.FixtureRequest) -> None:
    text = PLAN_GOLDENS[name](_with_policy(representative_plan()))
    path = GOLDEN_DIR / name
    if request.config.getoption("--update-goldens"):
        path.write_text(text, encoding="utf-8")
    assert path.is_file(), f"{path} is missing: run pytest --update-goldens"
    assert text == path.read_text(encoding="utf-8")
