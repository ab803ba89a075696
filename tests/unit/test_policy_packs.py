"""Each built-in rule fires on a minimal bad config and stays quiet on the example system."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from mlform.policy.engine import evaluate
from mlform.policy.inputs import policy_input
from mlform.policy.model import Level, PolicyInput, PolicyReport
from mlform.policy.packs import BUILTIN
from mlform.policy.packs.pii import pii_columns_read
from mlform.policy.packs.registries import approved
from mlform.spec import load_system_from

ROOT = Path(__file__).resolve().parents[2]
TODAY = date(2026, 11, 24)
ALL_PACKS = [pack.name for pack in BUILTIN]


def good_spec() -> dict[str, Any]:
    """A small system that passes every built-in rule, in any stack."""
    return {
        "project": {"name": "p", "team": "ml"},
        "resources": {
            "profiles": {"gpu": {"cpu": 8, "gpu": {"count": 1, "type": "a100"}}},
            "quotas": {"ml": {"gpus": 4}},
        },
        "policies": {
            "packs": list(ALL_PACKS),
            "settings": {"approved_registries": ["ghcr.io/acme"]},
        },
        "data": {
            "people": {
                "schema": {"columns": {"id": {"type": "int64"}, "email": {"pii": True}}},
                "retention_days": 30,
                "encryption": {"at_rest": True},
            }
        },
        "features": {
            "f": {"sources": ["people"], "query": "SELECT id FROM people", "sensitive": ["sex"]}
        },
        "models": {
            "m": {
                "features": "f",
                "gates": {"roc_auc": ">= 0.9", "must_beat_champion": None},
                "fairness": {"sensitive": ["sex"], "min_ratio": 0.8},
                "card": {"intended_use": "triage", "limitations": "small data"},
                "resources": "gpu",
            }
        },
        "deployments": {
            "api": {
                "model": "m",
                "replicas": 2,
                "image": "ghcr.io/acme/api:1",
                "strategy": {"type": "canary", "analysis": {"metrics": [{"name": "sr"}]}},
            }
        },
        "monitors": {},
    }


def run(
    spec: dict[str, Any], *, stack: str = "prod", plan: dict[str, Any] | None = None
) -> PolicyReport:
    return evaluate(PolicyInput(spec, {}, stack, TODAY, plan), packs=BUILTIN)


def fired(report: PolicyReport) -> set[str]:
    assert report.diagnostics == ()
    return {f.rule for f in report.findings}


def test_good_spec_passes_every_rule_with_and_without_plan() -> None:
    plan = {"changes": [{"address": "deployment.api", "action": "rollout"}]}
    assert fired(run(good_spec())) == set()
    assert fired(run(good_spec(), plan=plan)) == set()
    assert fired(run(good_spec(), stack="dev", plan=plan)) == set()


def _mutate(path: str, value: Any) -> dict[str, Any]:
    spec = copy.deepcopy(good_spec())
    *parents, last = path.split("/")
    node = spec
    for part in parents:
        node = node[part]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return spec


_DELETE = object()

BAD = [
    ("pii.encryption", "data/people/encryption", _DELETE, "data.people.schema.columns.email.pii"),
    (
        "pii.encryption",
        "data/people/encryption",
        {"at_rest": False},
        "data.people.encryption.at_rest",
    ),
    ("pii.retention", "data/people/retention_days", None, "data.people.schema.columns.email.pii"),
    ("pii.approval", "features/f/query", "SELECT id, email FROM people", "models.m.features"),
    ("pii.approval", "features/f/query", None, "models.m.features"),
    ("pii.approval", "features/f/query", "SELECT p.* FROM people AS p", "models.m.features"),
    (
        "delivery.progressive",
        "deployments/api/strategy",
        {"type": "rolling"},
        "deployments.api.strategy.type",
    ),
    (
        "delivery.progressive",
        "deployments/api/strategy",
        {"type": "canary", "analysis": {"metrics": []}},
        "deployments.api.strategy.analysis.metrics",
    ),
    ("gpu-quota.team", "deployments/api/resources", "gpu", "resources.quotas.ml.gpus"),
    ("model-card.required", "models/m/card", {"intended_use": "x"}, "models.m.card"),
    ("model-card.required", "models/m/card", None, "models.m"),
    ("evaluation.gate", "models/m/gates", {"must_beat_champion": None}, "models.m.gates"),
    ("fairness.ratio", "models/m/fairness", None, "models.m.features"),
    (
        "fairness.ratio",
        "models/m/fairness",
        {"sensitive": ["sex"], "min_ratio": 0.5},
        "models.m.fairness.min_ratio",
    ),
    (
        "fairness.ratio",
        "models/m/fairness",
        {"sensitive": ["age"], "min_ratio": 0.9},
        "models.m.fairness",
    ),
    (
        "registries.approved",
        "deployments/api/image",
        "docker.io/evil/api:1",
        "deployments.api.image",
    ),
]


@pytest.mark.parametrize(("rule", "path", "value", "key"), BAD)
def test_rule_fires_on_minimal_bad_config(rule: str, path: str, value: Any, key: str) -> None:
    if rule == "gpu-quota.team":  # 2 replicas x 1 GPU + 1 training GPU fits 4; 6 max does not
        spec = _mutate(path, value)
        spec["deployments"]["api"]["autoscaling"] = {"min_replicas": 2, "max_replicas": 6}
    else:
        spec = _mutate(path, value)
    report = run(spec)
    assert fired(report) == {rule}
    (finding,) = report.findings
    assert finding.key == key
    assert finding.message


def test_delivery_analysis_fires_only_for_a_planned_rollout() -> None:
    spec = _mutate("deployments/api/strategy", {"type": "canary", "analysis": {"metrics": []}})
    rollout = {"changes": [{"address": "deployment.api", "action": "rollout"}]}
    noop = {"changes": [{"address": "deployment.api", "action": "no-op"}]}
    assert fired(run(spec, stack="dev", plan=rollout)) == {"delivery.analysis"}
    assert fired(run(spec, stack="dev", plan=noop)) == set()
    assert fired(run(spec, stack="dev")) == set()


@pytest.mark.parametrize("action", ["delete", "replace"])
def test_destroy_protection_fires_in_prod_only(action: str) -> None:
    plan = {"changes": [{"address": "deployment.old", "action": action, "source_file": "x.yaml"}]}
    report = run(good_spec(), plan=plan)
    assert fired(report) == {"destroy-protection.prod"}
    assert report.findings[0].level is Level.MANDATORY
    assert report.findings[0].file == "x.yaml"  # a deleted object has no config key left
    assert fired(run(good_spec(), stack="dev", plan=plan)) == set()
    spec = good_spec()
    spec["policies"]["settings"]["prod_stacks"] = ["live"]
    assert fired(run(spec, stack="live", plan=plan)) == {"destroy-protection.prod"}
    assert fired(run(spec, stack="prod", plan=plan)) == set()


def test_prod_only_rules_are_quiet_outside_prod() -> None:
    spec = _mutate("deployments/api/strategy", {"type": "rolling"})
    spec["models"]["m"]["card"] = None
    assert fired(run(spec, stack="dev")) == set()
    assert fired(run(spec, stack="production")) == {"delivery.progressive", "model-card.required"}


def test_blue_green_counts_as_progressive_unless_promoted_blind() -> None:
    manual = _mutate("deployments/api/strategy", {"type": "blue_green", "auto_promote": False})
    blind = _mutate("deployments/api/strategy", {"type": "blue_green", "auto_promote": True})
    assert fired(run(manual)) == set()
    assert fired(run(blind)) == {"delivery.progressive"}


def test_pii_approval_is_satisfied_by_an_approval_exclusion_or_drop() -> None:
    spec = _mutate("features/f/query", "SELECT id, email FROM people")
    spec["models"]["m"]["approvals"] = [{"by": "dpo", "reason": "r", "columns": ["email"]}]
    assert fired(run(spec)) == set()
    spec["models"]["m"]["approvals"] = [{"by": "d", "reason": "r", "columns": ["people.email"]}]
    assert fired(run(spec)) == set()
    spec["models"]["m"]["approvals"] = []
    spec["models"]["m"]["exclude_columns"] = ["email"]
    assert fired(run(spec)) == set()
    spec["models"]["m"]["exclude_columns"] = []
    spec["features"]["f"]["transforms"] = [{"op": "drop", "columns": ["email"]}]
    assert fired(run(spec)) == set()


def test_pii_query_heuristic() -> None:
    cols = ["email"]
    assert pii_columns_read(None, "people", cols) == cols
    assert pii_columns_read("SELECT * FROM people", "people", cols) == cols
    assert (
        pii_columns_read("SELECT t.*, p.age FROM t JOIN people p USING (id)", "people", cols) == []
    )
    assert pii_columns_read("SELECT p.* FROM people p", "people", cols) == cols
    assert pii_columns_read("SELECT count(*) FROM people", "people", cols) == []
    assert pii_columns_read("SELECT EMAIL_hash FROM people", "people", cols) == []
    assert pii_columns_read("SELECT Email FROM people", "people", cols) == cols


def test_registry_prefix_stops_at_a_path_boundary() -> None:
    assert approved("ghcr.io/acme/api:1", ["ghcr.io/acme"])
    assert approved("ghcr.io/acme/api:1", ["ghcr.io/acme/"])
    assert not approved("ghcr.io/acme-evil/api:1", ["ghcr.io/acme"])
    spec = good_spec()
    del spec["policies"]["settings"]["approved_registries"]
    spec["deployments"]["api"]["image"] = "docker.io/anything"
    assert fired(run(spec)) == set()


def test_every_builtin_rule_is_described() -> None:
    rules = [r for pack in BUILTIN for r in pack.rules]
    assert len({r.id for r in rules}) == len(rules) == 11
    for rule in rules:
        assert rule.id.startswith(rule.pack + ".")
        assert rule.title and rule.description and rule.help
    mandatory = {r.id for r in rules if r.default_level is Level.MANDATORY}
    assert mandatory == {
        "pii.encryption",
        "pii.retention",
        "pii.approval",
        "destroy-protection.prod",
    }


@pytest.fixture(scope="module")
def example() -> Iterator[dict[str, Any]]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFORM_SECRET_ALERT_TOKEN", "x")
        yield {stack: load_system_from(ROOT, stack, []) for stack in ("dev", "prod")}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_example_passes_every_builtin_rule(example: dict[str, Any], stack: str) -> None:
    plan = {"changes": [{"address": "deployment.diagnosis-api", "action": "rollout"}]}
    for the_plan in (None, plan):
        report = evaluate(policy_input(example[stack], plan=the_plan, today=TODAY))
        assert report.diagnostics == ()
        builtin = [f for f in report.findings if not f.rule.startswith("custom.")]
        assert builtin == []
        ids = {r.id for r in report.rules}
        assert {r.id for p in BUILTIN for r in p.rules} - ids == (
            set() if the_plan else {"delivery.analysis", "destroy-protection.prod"}
        )
    # The example's own custom rule asks prod for two replicas; dev runs one, which is fine.
    assert report.findings == ()


def test_example_custom_rule_fires_for_a_single_replica_prod_deployment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFORM_SECRET_ALERT_TOKEN", "x")
    overrides = [
        "deployments.diagnosis-api.replicas=1",
        "deployments.diagnosis-api.autoscaling=null",
    ]
    loaded = load_system_from(ROOT, "prod", overrides)
    report = evaluate(policy_input(loaded, plan=None, today=TODAY))
    [finding] = [f for f in report.findings if f.rule == "custom.min-replicas"]
    assert finding.address == "deployment.diagnosis-api"
    assert finding.key == "deployments.diagnosis-api" and finding.line
    assert report.exit_code() == 0
