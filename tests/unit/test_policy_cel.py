"""Custom CEL rules: whole-system and for_each, plan-aware, compile and evaluation errors."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from mlform.diagnostics import Severity
from mlform.policy.cel_rules import compile_expression
from mlform.policy.engine import evaluate
from mlform.policy.model import Level, PolicyInput, PolicyReport

TODAY = date(2026, 11, 24)
PROVENANCE = {
    "policies.rules.0": ("configs/system.yaml", 40),
    "policies.rules.0.expression": ("configs/system.yaml", 42),
    "deployments.api": ("configs/deployments/api.yaml", 1),
    "deployments.web": ("configs/deployments/web.yaml", 1),
}


def spec(*rules: dict[str, Any], **policies: Any) -> dict[str, Any]:
    return {
        "project": {"name": "p", "team": None},
        "deployments": {
            "api": {"replicas": 3, "image": "ghcr.io/a/api", "strategy": {"type": "canary"}},
            "web": {"replicas": 1, "image": None, "strategy": {"type": "rolling"}},
        },
        "models": {},
        "policies": {"packs": [], "rules": list(rules), **policies},
    }


def rule(expression: str, **extra: Any) -> dict[str, Any]:
    return {"id": "custom.r", "expression": expression, **extra}


def run(data: dict[str, Any], plan: dict[str, Any] | None = None) -> PolicyReport:
    return evaluate(PolicyInput(data, PROVENANCE, "dev", TODAY, plan), packs=())


@pytest.mark.parametrize(
    ("expression", "holds"),
    [
        ("spec.deployments.all(n, spec.deployments[n].replicas >= 2)", False),
        ("spec.deployments.all(n, spec.deployments[n].replicas >= 1)", True),
        ("spec.deployments.exists(n, spec.deployments[n].replicas > 2)", True),
        (
            "spec.deployments.map(n, spec.deployments[n].replicas).filter(r, r > 1).size() == 1",
            True,
        ),
        ("has(spec.deployments.api.strategy.type) && !has(spec.deployments.api.autoscaling)", True),
        ("spec.deployments.web.image == null && plan == null", True),
        ("spec.project.team == null || stack == 'prod'", True),
        ("spec.models.size() == 0 && 'api' in spec.deployments", True),
        (
            "spec.deployments.all(n, spec.deployments[n].image == null || "
            "spec.deployments[n].image.startsWith('ghcr.io/'))",
            True,
        ),
    ],
)
def test_whole_system_expressions(expression: str, holds: bool) -> None:
    report = run(spec(rule(expression)))
    assert report.diagnostics == ()
    assert [f.rule for f in report.findings] == ([] if holds else ["custom.r"])


def test_whole_system_violation_points_at_the_rule() -> None:
    report = run(spec(rule("stack == 'prod'", message="only prod", level="mandatory")))
    (finding,) = report.findings
    assert finding.message == "only prod" and finding.level is Level.MANDATORY
    assert (finding.key, finding.file, finding.line) == (
        "policies.rules.0",
        "configs/system.yaml",
        40,
    )
    (info,) = [r for r in report.rules if r.id == "custom.r"]
    assert info.pack == "custom" and info.default_level is Level.MANDATORY
    report = run(spec(rule("stack == 'prod'")))
    assert "stack == 'prod'" in report.findings[0].message  # the default message


def test_for_each_reports_each_failing_object_at_its_file() -> None:
    report = run(spec(rule("object.replicas >= 2 && name != ''", for_each="deployments")))
    (finding,) = report.findings
    assert finding.address == "deployment.web" and finding.key == "deployments.web"
    assert (finding.file, finding.line) == ("configs/deployments/web.yaml", 1)
    assert finding.message.startswith("deployment.web:")


def test_for_each_sees_its_planned_change() -> None:
    plan = {"changes": [{"address": "deployment.api", "action": "delete"}]}
    expr = "change == null || change.action != 'delete'"
    report = run(spec(rule(expr, for_each="deployments")), plan)
    assert [f.address for f in report.findings] == ["deployment.api"]
    assert run(spec(rule(expr, for_each="deployments"))).findings == ()


def test_requires_plan_rules_are_skipped_without_a_plan() -> None:
    data = spec(rule("plan.changes.size() == 0", requires_plan=True))
    report = run(data)
    assert report.findings == () and report.diagnostics == ()
    assert "custom.r" not in {r.id for r in report.rules}
    report = run(data, {"changes": [{"address": "model.m", "action": "retrain"}]})
    assert [f.rule for f in report.findings] == ["custom.r"]


def test_compile_error_is_a_diagnostic_at_the_expression() -> None:
    report = run(spec(rule("spec.deployments[")))
    (diag,) = report.diagnostics
    assert diag.severity is Severity.ERROR and "custom.r" in diag.summary
    assert "compile" in diag.summary
    assert (diag.key, diag.file, diag.line) == (
        "policies.rules.0.expression",
        "configs/system.yaml",
        42,
    )
    assert report.findings == () and report.exit_code() == 1


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("spec.nope.x == 1", "nope"),
        ("1 / 0 == 1", "divide by zero"),
        ("spec.deployments.size()", "must evaluate to a bool"),
    ],
)
def test_evaluation_errors_are_diagnostics(expression: str, fragment: str) -> None:
    report = run(spec(rule(expression)))
    (diag,) = report.diagnostics
    assert diag.key == "policies.rules.0.expression" and "failed to evaluate" in diag.summary
    assert fragment in diag.detail
    assert report.exit_code() == 1


def test_for_each_evaluation_errors_are_reported_once_per_rule() -> None:
    report = run(spec(rule("object.autoscaling.max_replicas > 1", for_each="deployments")))
    (diag,) = report.diagnostics
    assert "deployment.api" in diag.detail and "1 more" in diag.detail


def test_custom_rule_levels_can_be_overridden_or_disabled() -> None:
    data = spec(rule("false"), levels={"custom.r": "mandatory"})
    assert run(data).findings[0].blocking
    data = spec(rule("1 / 0 == 1"), levels={"custom.r": "disabled"})
    report = run(data)
    assert report.findings == () and report.diagnostics == ()


def test_duplicate_rule_id_is_an_error() -> None:
    report = run(spec(rule("true"), rule("false")))
    (diag,) = report.diagnostics
    assert diag.key == "policies.rules.1.id" and diag.severity is Severity.ERROR
    assert report.findings == ()


def test_expressions_are_compiled_once() -> None:
    compile_expression.cache_clear()
    data = spec(rule("object.replicas >= 0", for_each="deployments"))
    run(data)
    run(data)
    info = compile_expression.cache_info()
    assert info.misses == 1 and info.hits == 1
