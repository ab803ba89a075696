"""Plan at scale: resolve, plan and render systems of 100, 1,000 and 10,000 objects.

Run with ``.venv/bin/python benchmarks/plan_scale.py`` (``--sizes 100 1000`` to choose).
Each system is a realistic mix (10 % data, 20 % feature sets, 30 % models, 20 %
deployments, 20 % monitors, each depending on one to three upstream objects) with
configs shaped like the example in ``configs/``. The recorded state is the system as
applied before ~10 % of its objects were edited (half content, half local edits).

Printed per size: resolve, plan and render-json times, peak traced memory (resolve + plan +
render, measured in a separate untimed pass), and the
named baseline "naive": a planner that runs deepdiff on every object's config (no
config-fingerprint short-circuit), timed side by side, with the ratio naive / plan.
Targets (not asserted): 1,000 objects plan < 1 s; 10,000 < 5 s and < 500 MB.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from mlform.addresses import Address, Kind
from mlform.desired.fingerprint import FingerprintCache
from mlform.desired.model import DesiredSystem
from mlform.desired.resolve import resolve
from mlform.plan.compute import compute_plan
from mlform.plan.render.json import render_json, write_json
from mlform.plan.testing import state_as_applied
from mlform.spec.declared import DeclaredObject, LoadedSystem
from mlform.state.model import StateDocument
from mlform.state.store import LocalStateStore

MIX = [
    (Kind.DATA, 0.1),
    (Kind.FEATURES, 0.2),
    (Kind.MODEL, 0.3),
    (Kind.DEPLOYMENT, 0.2),
    (Kind.MONITOR, 0.2),
]
UPSTREAM = {
    Kind.FEATURES: Kind.DATA,
    Kind.MODEL: Kind.FEATURES,
    Kind.DEPLOYMENT: Kind.MODEL,
    Kind.MONITOR: Kind.DEPLOYMENT,
}


def _config(kind: Kind, i: int, edit: str | None) -> dict[str, Any]:
    base: dict[str, Any] = {"description": f"object {i} of a generated system", "owner": "team-a"}
    if kind is Kind.DATA:
        base |= {
            "kind": "sql",
            "url": "postgresql://warehouse/prod",
            "query": f"SELECT * FROM events_{i} WHERE ts > now() - interval '30 days'",
            "schema": {
                "columns": {f"c{c}": {"type": "float64", "nullable": c % 3 == 0} for c in range(12)}
            },
            "retention_days": 365,
        }
    elif kind is Kind.FEATURES:
        base |= {
            "entity": ["id"],
            "query": f"SELECT * FROM t{i}",
            "transforms": [
                {"op": "derive", "column": f"r{c}", "expression": f"a{c} / b"} for c in range(6)
            ],
            "split": {"test_size": 0.2, "seed": 42, "stratify": "target"},
            "offline_store": {"format": "parquet"},
            "label": "target",
        }
    elif kind is Kind.MODEL:
        base |= {
            "framework": "sklearn",
            "task": "classification",
            "estimator": {
                "_target_": "sklearn.ensemble.RandomForestClassifier",
                "n_estimators": 200,
                "max_depth": 8,
                "random_state": 42,
            },
            "metrics": ["roc_auc", "accuracy", "f1"],
            "gates": {"roc_auc": ">= 0.95", "accuracy": ">= 0.9"},
            "card": {"intended_use": "Decision support.", "limitations": "Synthetic."},
        }
    elif kind is Kind.DEPLOYMENT:
        base |= {
            "alias": "champion",
            "replicas": 2,
            "resources": {"cpu": 1, "memory": "2Gi"},
            "strategy": {
                "type": "canary",
                "steps": [{"weight": w, "pause": "60s"} for w in (10, 25, 50, 100)],
            },
        }
    else:
        base |= {
            "type": "data_drift",
            "columns": [f"c{c}" for c in range(4)],
            "window": {"size": 500},
            "schedule": {"every": "5m"},
            "alerts": [{"sink": "log"}],
            "on_breach": "retrain",
        }
    if edit == "content":  # one nested field, the way a person edits a config
        if kind is Kind.DATA:
            base["query"] += " AND valid"
        elif kind is Kind.FEATURES:
            base["split"]["seed"] = 7
        elif kind is Kind.MODEL:
            base["estimator"]["max_depth"] = 12
        elif kind is Kind.DEPLOYMENT:
            base["alias"] = "challenger"
        else:
            base["columns"].append("c9")
    elif edit == "local":
        base["description"] += " (edited)"
    return base


def generate(n: int, project_dir: Path, *, edited: bool, seed: int = 7) -> LoadedSystem:
    rng = random.Random(seed)
    by_kind: dict[Kind, list[Address]] = {k: [] for k in Kind}
    objects: list[DeclaredObject] = []
    counts = [(kind, max(1, int(n * share))) for kind, share in MIX]
    i = 0
    for kind, count in counts:
        for _ in range(count):
            address = Address(kind, f"{kind.value}{i:05d}")
            parents = by_kind.get(UPSTREAM.get(kind, kind), []) if kind in UPSTREAM else []
            deps = tuple(sorted(set(rng.sample(parents, min(len(parents), rng.randint(1, 3))))))
            roll = rng.random()
            edit = None
            if edited and roll < 0.05:
                edit = "content"
            elif edited and roll < 0.10:
                edit = "local"
            config = _config(kind, i, edit)
            targets = ("sklearn.ensemble.RandomForestClassifier",) if kind is Kind.MODEL else ()
            objects.append(
                DeclaredObject(
                    address,
                    config,
                    deps,
                    address.config_key,
                    f"configs/{kind.section}.yaml",
                    targets,
                )
            )
            by_kind[kind].append(address)
            i += 1
    return LoadedSystem("bench", "dev", project_dir, tuple(objects), {"target": {"type": "local"}})


def naive_plan(desired: DesiredSystem, state: StateDocument) -> int:
    """The baseline's extra work: deepdiff every object's config against its record.

    Timed on top of the plan, it stands for a planner without the short-circuit.
    """
    from deepdiff import DeepDiff  # lazy, as in mlform: it pulls in pandas and numpy

    changed = 0
    for obj in desired:
        record = state.objects.get(str(obj.address))
        if record is not None and DeepDiff(record.config, dict(obj.config), view="tree"):
            changed += 1
    return changed


def measure(n: int, project_dir: Path) -> dict[str, float]:
    before = resolve(generate(n, project_dir, edited=False))
    state = state_as_applied(before)
    loaded = generate(n, project_dir, edited=True)
    cache = FingerprintCache(project_dir / "cache.json")
    t0 = time.perf_counter()
    desired = resolve(loaded, cache=cache)
    t1 = time.perf_counter()
    plan = compute_plan(desired, state, supported_kinds=frozenset(Kind), mlform_version="bench")
    t2 = time.perf_counter()
    render_json(plan)
    t3 = time.perf_counter()
    naive_plan(desired, state)
    naive = time.perf_counter() - t3 + (t2 - t1)
    # Memory in a second pass: tracemalloc slows everything down, so it is not timed.
    tracemalloc.start()
    again = compute_plan(
        resolve(loaded, cache=cache), state, supported_kinds=frozenset(Kind), mlform_version="b"
    )
    render_json(again)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "objects": len(desired),
        "resolve": t1 - t0,
        "plan": t2 - t1,
        "json": t3 - t2,
        "peak_mb": peak / 1e6,
        "naive": naive,
        "changes": plan.summary.changes,
    }


def write_state_child(n: int, directory: Path) -> None:
    """In a fresh process: record the unedited system as a state file (like an earlier apply)."""
    state = state_as_applied(resolve(generate(n, directory, edited=False)))
    LocalStateStore(directory / "state").write(state, expected_serial=None)


def plan_rss_child(n: int, directory: Path) -> None:
    """In a fresh process: what `mlform plan` holds: read state, resolve, plan, render JSON."""
    state = LocalStateStore(directory / "state").read()
    desired = resolve(generate(n, directory, edited=True))
    plan = compute_plan(desired, state, supported_kinds=frozenset(Kind), mlform_version="b")
    with open(os.devnull, "w") as sink:
        write_json(plan, sink)
    print(_peak_rss_mb())


def _peak_rss_mb() -> float:
    """VmHWM of this process (ru_maxrss would include the forking parent's peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def plan_rss_mb(n: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("--write-state", "--rss-child"):
            out = subprocess.run(
                [sys.executable, __file__, mode, str(n), tmp],
                capture_output=True,
                text=True,
                check=True,
            )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1_000, 10_000])
    parser.add_argument("--rss-child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--write-state", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write_state:
        write_state_child(int(args.write_state[0]), Path(args.write_state[1]))
        return
    if args.rss_child:
        plan_rss_child(int(args.rss_child[0]), Path(args.rss_child[1]))
        return
    # Warm-up: the planner imports deepdiff (and with it pandas) the first time two lists
    # differ; that one-off import (~0.3 s) is not part of the per-size timings.
    import deepdiff  # noqa: F401

    header = (
        f"{'objects':>8} {'changes':>8} {'resolve s':>10} {'plan s':>8} {'json s':>8} "
        f"{'peak MB':>8} {'RSS MB':>7} {'naive s':>8} {'naive/plan':>10}"
    )
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            r = measure(n, Path(tmp))
            print(
                f"{r['objects']:>8.0f} {r['changes']:>8.0f} {r['resolve']:>10.3f} "
                f"{r['plan']:>8.3f} {r['json']:>8.3f} {r['peak_mb']:>8.1f} "
                f"{plan_rss_mb(n):>7.0f} "
                f"{r['naive']:>8.3f} {r['naive'] / r['plan']:>9.1f}x"
            )
    print(
        "\nnaive = the same plan with deepdiff run on every object's config (no "
        "config-fingerprint short-circuit).\npeak MB = Python allocations during resolve + "
        "plan + render (tracemalloc).\nRSS MB = peak resident memory of a fresh process that "
        "reads the state file, resolves, plans and writes the JSON plan (interpreter and "
        "libraries included), as `mlform plan --format json` does."
    )


if __name__ == "__main__":
    main()
