"""Policy check at scale: every built-in pack plus custom CEL rules over generated systems.

Run with ``.venv/bin/python benchmarks/policy_scale.py`` (``--sizes 100 1000 5000``).
Each system is a mix of 10 % data sources (half with PII columns), 20 % feature sets,
30 % models, 20 % deployments and 20 % monitors, shaped like the example in ``configs/``,
with a plan that rolls out every deployment (so plan-aware rules run too). The
PolicyInput is built directly (no Hydra), so only evaluation is timed.

Printed per size: the full evaluation (all built-in packs + custom rules, cel-python),
the custom CEL rules alone with cel-python, and the named baseline "cel-rust": the same
custom rules evaluated with the other CEL library, common-expression-language (``cel``,
Rust bindings), one Context per evaluation as its API needs, with the ratio
cel-rust / cel-python. Target (not asserted): 1,000 objects < 1 s.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import date
from typing import Any

from mlform.policy.cel_rules import compile_expression, read_rules, run_rules
from mlform.policy.engine import evaluate
from mlform.policy.model import PolicyInput
from mlform.policy.packs import BUILTIN

RULES = [
    {
        "id": "custom.min-replicas",
        "expression": "spec.deployments.all(n, spec.deployments[n].replicas >= 2)",
    },
    {"id": "custom.owner", "for_each": "models", "expression": "has(object.owner)"},
    {
        "id": "custom.canary",
        "for_each": "deployments",
        "expression": "object.strategy.type == 'canary' "
        "&& object.strategy.analysis.metrics.size() > 0",
    },
    {
        "id": "custom.no-delete",
        "for_each": "deployments",
        "requires_plan": True,
        "expression": "change == null || change.action != 'delete'",
    },
    {
        "id": "custom.labels",
        "expression": "spec.monitors.exists(n, spec.monitors[n].type == 'latency') "
        "|| spec.monitors.size() == 0",
    },
]


def generate(size: int) -> PolicyInput:
    n = {
        k: max(1, int(size * share))
        for k, share in (
            ("data", 0.1),
            ("features", 0.2),
            ("models", 0.3),
            ("deployments", 0.2),
            ("monitors", 0.2),
        )
    }
    columns = {f"c{j}": {"type": "float64"} for j in range(8)}
    data = {
        f"d{i}": {
            "kind": "file",
            "path": f"data/d{i}.csv",
            "schema": {"columns": {**columns, "email": {"type": "string", "pii": i % 2 == 0}}},
            "retention_days": 365,
            "encryption": {"at_rest": True},
        }
        for i in range(n["data"])
    }
    features = {
        f"f{i}": {
            "sources": [f"d{i % n['data']}"],
            "entity": ["id"],
            "sensitive": ["c1"],
            "query": f"SELECT id, c0, c1, c2 FROM d{i % n['data']} AS src",
        }
        for i in range(n["features"])
    }
    models = {
        f"m{i}": {
            "framework": "sklearn",
            "features": f"f{i % n['features']}",
            "owner": "team",
            "gates": {"roc_auc": ">= 0.9", "must_beat_champion": None},
            "fairness": {"sensitive": ["c1"], "min_ratio": 0.8},
            "card": {"intended_use": "x", "limitations": "y"},
            "resources": "gpu" if i % 50 == 0 else "cpu",
        }
        for i in range(n["models"])
    }
    strategy = {
        "type": "canary",
        "steps": [{"weight": 100}],
        "analysis": {"metrics": [{"name": "success_rate", "threshold": ">= 0.99"}]},
    }
    deployments = {
        f"api{i}": {
            "model": f"m{i % n['models']}",
            "replicas": 2,
            "resources": "cpu",
            "image": f"ghcr.io/acme/api{i}:1",
            "strategy": strategy,
        }
        for i in range(n["deployments"])
    }
    monitors = {
        f"mon{i}": {"deployment": f"api{i % n['deployments']}", "type": "latency"}
        for i in range(n["monitors"])
    }
    spec = {
        "project": {"name": "bench", "team": "ml"},
        "resources": {
            "profiles": {"cpu": {"cpu": 1}, "gpu": {"gpu": {"count": 1}}},
            "quotas": {"ml": {"gpus": 1000}},
        },
        "policies": {
            "packs": [p.name for p in BUILTIN],
            "settings": {"approved_registries": ["ghcr.io/acme"]},
            "rules": RULES,
        },
        "data": data,
        "features": features,
        "models": models,
        "deployments": deployments,
        "monitors": monitors,
    }
    provenance = {
        f"{section}.{name}": (f"configs/{section}/{name}.yaml", 1)
        for section in ("data", "features", "models", "deployments", "monitors")
        for name in spec[section]
    }
    plan = {"changes": [{"address": f"deployment.{d}", "action": "rollout"} for d in deployments]}
    return PolicyInput(spec, provenance, "prod", date(2026, 11, 24), plan)


def cel_rust(inp: PolicyInput) -> int:
    """The baseline: the same custom rules with common-expression-language (Rust)."""
    import cel

    failures = 0
    plan = dict(inp.plan or {})
    changes = {c["address"]: c for c in plan.get("changes", [])}
    kinds = {"models": "model", "deployments": "deployment"}
    for raw in RULES:
        program = cel.compile(raw["expression"])
        base = {"spec": dict(inp.spec), "stack": inp.stack, "plan": plan}
        section = raw.get("for_each")
        if section is None:
            failures += not program.execute(cel.Context(base))
            continue
        for name, obj in inp.spec[section].items():
            change = changes.get(f"{kinds[section]}.{name}")
            ctx = cel.Context({**base, "name": name, "object": obj, "change": change})
            failures += not program.execute(ctx)
    return failures


def best_of(repeat: int, fn: Callable[[], Any]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[100, 1000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    header = (
        f"{'objects':>8} {'findings':>8} {'evaluate s':>11} {'cel-python s':>13} "
        f"{'cel-rust s':>11} {'ratio rust/py':>14}"
    )
    print(header)
    print("-" * len(header))
    for size in args.sizes:
        inp = generate(size)
        compile_expression.cache_clear()
        report = evaluate(inp, packs=BUILTIN)
        assert not report.diagnostics, report.diagnostics
        full = best_of(args.repeat, lambda i=inp: evaluate(i, packs=BUILTIN))
        rules = read_rules(inp.spec["policies"])
        py = best_of(args.repeat, lambda i=inp, r=rules: run_rules(i, r))
        rust = best_of(1 if size > 1000 else args.repeat, lambda i=inp: cel_rust(i))
        print(
            f"{size:>8} {len(report.findings):>8} {full:>11.3f} {py:>13.3f} {rust:>11.3f} "
            f"{rust / py:>14.1f}"
        )
    print(
        "\nevaluate = all built-in packs + custom CEL rules (cel-python), best of "
        f"{args.repeat}; cel-python / cel-rust = the {len(RULES)} custom rules alone."
    )


if __name__ == "__main__":
    main()
