"""The engine: pack selection, levels, exemptions, the error boundary, provenance, order."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from mlform.diagnostics import Severity
from mlform.policy.discovery import discover_packs
from mlform.policy.engine import evaluate
from mlform.policy.inputs import policy_input
from mlform.policy.locate import locate
from mlform.policy.model import Level, PolicyInput, PolicyReport, RuleInfo
from mlform.policy.pack import RuleContext, RulePack, Violation
from mlform.policy.packs import BUILTIN
from mlform.spec import load_system_from

ROOT = Path(__file__).resolve().parents[2]
TODAY = date(2026, 11, 24)

GATE = RuleInfo("toy.gate", "toy", "t", "d", "h")
NAMED = RuleInfo("toy.named", "toy", "t", "d", "h", default_level=Level.MANDATORY)
PLANNED = RuleInfo("toy.planned", "toy", "t", "d", "h", requires_plan=True)
calls: list[str] = []


def _gate(inp: PolicyInput, ctx: RuleContext) -> Iterator[Violation]:
    calls.append("toy.gate")
    for name, _ in ctx.section("models"):
        yield Violation("toy.gate", f"{name} is bad", f"model.{name}", f"models.{name}.gates")


def _named(inp: PolicyInput, ctx: RuleContext) -> Iterator[Violation]:
    calls.append("toy.named")
    yield Violation("toy.named", "system-wide", None, "project.name")


def _planned(inp: PolicyInput, ctx: RuleContext) -> Iterator[Violation]:
    calls.append("toy.planned")
    yield Violation("toy.planned", "planned", None, None)


TOY = RulePack("toy", ((GATE, _gate), (NAMED, _named), (PLANNED, _planned)))


def _crash(inp: PolicyInput, ctx: RuleContext) -> Iterator[Violation]:
    raise KeyError("boom")
    yield  # pragma: no cover


def _ok(inp: PolicyInput, ctx: RuleContext) -> Iterator[Violation]:
    yield Violation("crashy.ok", "fine")


CRASHY = RulePack(
    "crashy",
    (
        (RuleInfo("crashy.ok", "crashy", "t", "d", "h"), _ok),
        (RuleInfo("crashy.bad", "crashy", "t", "d", "h"), _crash),
    ),
)


def spec(**policies: Any) -> dict[str, Any]:
    return {
        "project": {"name": "p"},
        "models": {"b": {}, "a": {}},
        "policies": {"packs": ["toy"], **policies},
    }


PROVENANCE = {
    "models.a": ("configs/models/a.yaml", 1),
    "models.a.gates": ("configs/models/a.yaml", 7),
    "models.b": ("configs/models/b.yaml", 1),
    "project": ("configs/system.yaml", 3),
    "policies.packs.0": ("configs/system.yaml", 20),
    "policies.exemptions.0": ("configs/system.yaml", 30),
    "policies.exemptions.1": ("stacks/prod.yaml", 4),
}


def run(
    data: dict[str, Any], *, plan: dict[str, Any] | None = None, packs: Any = (TOY,)
) -> PolicyReport:
    calls.clear()
    return evaluate(PolicyInput(data, PROVENANCE, "dev", TODAY, plan), packs=packs)


def test_findings_carry_level_location_and_sorted_order() -> None:
    report = run(spec())
    assert [(f.rule, f.address, f.key) for f in report.findings] == [
        ("toy.gate", "model.a", "models.a.gates"),
        ("toy.gate", "model.b", "models.b.gates"),
        ("toy.named", None, "project.name"),
    ]
    a, b, named = report.findings
    assert (a.file, a.line) == ("configs/models/a.yaml", 7)
    assert (b.file, b.line) == ("configs/models/b.yaml", 1)  # nearest parent key
    assert (named.file, named.line, named.level) == ("configs/system.yaml", 3, Level.MANDATORY)
    assert report.mandatory == (named,) and report.advisory == (a, b)
    assert report.exit_code() == 1
    assert [r.id for r in report.rules] == ["policy.exemption-expired", "toy.gate", "toy.named"]


def test_plan_aware_rules_run_only_with_a_plan() -> None:
    report = run(spec())
    assert "toy.planned" not in calls
    assert "toy.planned" not in {r.id for r in report.rules}
    report = run(spec(), plan={"changes": []})
    assert "toy.planned" in calls
    assert "toy.planned" in {f.rule for f in report.findings}


def test_levels_override_defaults_and_disabled_rules_do_not_run() -> None:
    report = run(spec(levels={"toy.gate": "mandatory", "toy.named": "disabled"}))
    assert calls == ["toy.gate"]
    assert {f.rule for f in report.findings} == {"toy.gate"}
    assert all(f.level is Level.MANDATORY and f.blocking for f in report.findings)
    assert "toy.named" not in {r.id for r in report.rules}
    assert report.diagnostics == ()


def test_unknown_level_and_fixed_level_are_warnings() -> None:
    report = run(spec(levels={"toy.nope": "mandatory", "policy.exemption-expired": "disabled"}))
    summaries = [d.summary for d in report.diagnostics]
    assert all(d.severity is Severity.WARNING for d in report.diagnostics)
    assert any("unknown rule toy.nope" in s for s in summaries)
    assert any("policy.exemption-expired" in s for s in summaries)
    assert {f.rule for f in report.findings} == {"toy.gate", "toy.named"}


def _exemption(address: str | None, expires: str, rule: str = "toy.gate") -> dict[str, Any]:
    return {"rule": rule, "address": address, "reason": "because", "expires": expires}


def test_exemption_in_force_waives_its_address_only() -> None:
    report = run(spec(exemptions=[_exemption("model.a", "2026-11-24")]))  # expires today
    by_address = {f.address: f for f in report.findings if f.rule == "toy.gate"}
    waiver = by_address["model.a"].exempted_by
    assert waiver is not None and waiver.reason == "because" and waiver.line == 30
    assert by_address["model.b"].exempted_by is None
    assert report.exemptions_in_force == (waiver,)
    assert by_address["model.a"] not in report.advisory


def test_exemption_without_address_waives_the_rule_everywhere() -> None:
    report = run(spec(exemptions=[_exemption(None, "2027-01-01", "toy.named")]))
    named = [f for f in report.findings if f.rule == "toy.named"]
    assert named[0].exempted_by is not None and not named[0].blocking
    report = run(spec(exemptions=[_exemption(None, "2027-01-01")]))
    assert all(f.exempted_by for f in report.findings if f.rule == "toy.gate")


def test_expired_exemption_is_a_mandatory_violation_and_waives_nothing() -> None:
    report = run(
        spec(
            levels={"toy.named": "disabled"},
            exemptions=[_exemption("model.c", "2027-01-01"), _exemption("model.a", "2026-11-23")],
        )
    )
    expired = [f for f in report.findings if f.rule == "policy.exemption-expired"]
    assert len(expired) == 1
    (finding,) = expired
    assert finding.level is Level.MANDATORY and finding.blocking
    assert (finding.key, finding.file, finding.line) == (
        "policies.exemptions.1",
        "stacks/prod.yaml",
        4,
    )
    assert "2026-11-23" in finding.message and finding.address == "model.a"
    assert all(f.exempted_by is None for f in report.findings)  # model.c matches nothing
    assert [e.address for e in report.exemptions_in_force] == ["model.c"]
    assert report.exit_code() == 1


def test_exemption_for_unknown_rule_warns() -> None:
    report = run(spec(exemptions=[_exemption(None, "2027-01-01", "nope.rule")]))
    (diag,) = report.diagnostics
    assert diag.severity is Severity.WARNING and diag.key == "policies.exemptions.0.rule"


def test_unknown_pack_is_an_error_naming_the_key_and_available_packs() -> None:
    report = run(spec(packs=["toy", "nope"]))
    (diag,) = report.diagnostics
    assert diag.severity is Severity.ERROR and diag.key == "policies.packs.1"
    assert "nope" in diag.summary and "crashy" not in diag.detail and "toy" in diag.detail
    assert report.exit_code() == 1
    assert {f.rule for f in report.findings} == {"toy.gate", "toy.named"}


def test_crashing_pack_is_contained_and_named() -> None:
    report = run(spec(packs=["crashy", "toy"]), packs=(CRASHY, TOY))
    (diag,) = report.diagnostics
    assert diag.severity is Severity.ERROR
    assert "crashy" in diag.summary and "crashy.bad" in diag.summary
    assert "KeyError" in diag.detail and "boom" in diag.detail
    assert (diag.key, diag.file, diag.line) == ("policies.packs.0", "configs/system.yaml", 20)
    rules = {f.rule for f in report.findings}
    assert {"crashy.ok", "toy.gate", "toy.named"} <= rules  # findings before the crash kept
    assert report.exit_code() == 1


class Rogue:
    name = "toy"
    rules = (GATE,)

    def check(self, inp: PolicyInput, ctx: RuleContext) -> Iterator[Violation]:
        yield Violation("other.rule", "x")
        raise RuntimeError("plain pack")


def test_protocol_pack_undeclared_rule_and_crash_without_rule_name() -> None:
    report = run(spec(), packs=(Rogue(),))
    summaries = [d.summary for d in report.diagnostics]
    assert any("undeclared rule other.rule" in s for s in summaries)
    assert any("failed in rule toy.gate" in s for s in summaries)
    assert report.findings == ()


def test_evaluation_is_deterministic() -> None:
    data = spec(exemptions=[_exemption("model.b", "2027-01-01")])
    first = run(data)
    data["models"] = dict(reversed(list(data["models"].items())))
    assert run(data) == first


def test_locate_falls_back_to_parent_keys() -> None:
    prov = {"data.x": ("a.yaml", 2), "data.x.schema.columns.e": ("a.yaml", 9)}
    assert locate("data.x.schema.columns.e.pii", prov) == ("a.yaml", 9)
    assert locate("data.x.encryption", prov) == ("a.yaml", 2)
    assert locate("models.m", prov) == (None, None)
    assert locate(None, prov) == (None, None)


def test_builtin_packs_are_discovered_through_entry_points() -> None:
    packs, problems = discover_packs()
    assert problems == ()
    assert {p.name for p in BUILTIN} <= {p.name for p in packs}


@pytest.fixture(scope="module")
def prod_system() -> Any:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFORM_SECRET_ALERT_TOKEN", "x")
        overrides = ["data.patients.encryption=null", "models.diagnosis.card.limitations=null"]
        return load_system_from(ROOT, "prod", overrides)


def test_policy_input_rebuilds_the_spec(prod_system: Any) -> None:
    inp = policy_input(prod_system, plan=None, today=TODAY)
    assert set(inp.spec) >= {"project", "data", "features", "models", "deployments", "monitors"}
    assert inp.spec["deployments"]["diagnosis-api"]["replicas"] == 3
    assert inp.spec["policies"]["levels"]["pii.encryption"] == "mandatory"
    assert inp.stack == "prod" and inp.today == TODAY and inp.plan is None


def test_example_findings_point_at_the_yaml_that_set_the_value(prod_system: Any) -> None:
    report = evaluate(policy_input(prod_system, plan=None, today=TODAY))
    found = {f.rule: f for f in report.findings}
    enc = found["pii.encryption"]
    assert (enc.file, enc.line) == ("configs/data/patients.yaml", 11)  # email: {pii: true}
    assert enc.key == "data.patients.schema.columns.email.pii" and enc.blocking
    card = found["model-card.required"]
    assert (card.file, card.line) == ("configs/models/diagnosis.yaml", 20)
    assert card.level is Level.MANDATORY  # advisory by default, raised by stacks/prod.yaml
    assert report.exit_code() == 1
