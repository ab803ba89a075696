"""Fuzzing: malformed configs always give ConfigError with diagnostics (or a valid system).

Three generators, 1,500+ cases in all:
- seeded random mutations of the composed example (wrong types, unknown keys, deleted
  required keys, bad names and references, cycles) validated as plain data;
- Hypothesis-generated values planted at random keys of the example;
- file-level mutations (YAML garbage, bad interpolations, unknown keys, broken defaults)
  run through the whole Hydra path in a temporary project.
Nothing else may escape: any other exception fails the test.
"""

from __future__ import annotations

import copy
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlform.config import ComposedConfig, compose_system
from mlform.diagnostics import Diagnostic, Severity
from mlform.errors import ConfigError
from mlform.spec import LoadedSystem, load_system, load_system_from

REPO = Path(__file__).resolve().parents[2]
Example = tuple[dict[str, Any], dict[str, tuple[str, int | None]], Path]

GARBAGE: list[Any] = [
    None,
    0,
    -1,
    3.5,
    True,
    "",
    "x",
    "bad name!",
    "${oops",
    [],
    [1, "a"],
    {},
    {"?": 1},
    {"kind": "nope"},
    "10 parsecs",
    10**12,
    ["sample_id", None],
    {"_target_": 5},
]


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Example]:
    root = tmp_path_factory.mktemp("fuzz")
    for part in ("configs", "stacks"):
        shutil.copytree(REPO / part, root / part)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFORM_SECRET_ALERT_TOKEN", "tok")
        patch.setenv("MLFORM_SECRET_KEY", "fuzz-key")
        composed = compose_system(root, "prod", [])
        yield composed.data, composed.provenance, root


def outcome(data: Any, example: Example) -> str:
    """'valid' or 'error'; fails the test on anything but ConfigError with diagnostics."""
    composed = ComposedConfig(data=data, provenance=example[1], stack="prod")
    try:
        loaded = load_system(composed, example[2])
    except ConfigError as exc:
        assert_diagnostics(exc)
        return "error"
    assert isinstance(loaded, LoadedSystem)
    return "valid"


def assert_diagnostics(exc: ConfigError) -> None:
    assert exc.diagnostics, "ConfigError without diagnostics"
    assert any(d.severity is Severity.ERROR for d in exc.diagnostics)
    for diag in exc.diagnostics:
        assert isinstance(diag, Diagnostic)
        assert diag.summary and diag.detail
        str(diag)  # renders


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(node, dict):
        for key, child in node.items():
            yield (*prefix, key)
            yield from paths(child, (*prefix, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield (*prefix, index)
            yield from paths(child, (*prefix, index))


def parent_of(data: Any, path: tuple[Any, ...]) -> Any:
    node = data
    for part in path[:-1]:
        node = node[part]
    return node


def mutate(data: dict[str, Any], rng: random.Random) -> None:
    all_paths = list(paths(data))
    path = rng.choice(all_paths)
    parent = parent_of(data, path)
    op = rng.randrange(8)
    if op == 0:  # wrong type / wrong value
        parent[path[-1]] = copy.deepcopy(rng.choice(GARBAGE))
    elif op == 1:  # unknown key
        container = parent if isinstance(parent, dict) else data
        container[rng.choice(["colour", "epoch", "replica", "_target", "x-y", "schema"])] = 1
    elif op == 2:  # deleted key or list item
        del parent[path[-1]]
    elif op == 3 and isinstance(parent, dict):  # renamed object / key
        parent[rng.choice(["bad name", "ok-name", "Ünïcode", "a" * 70])] = parent.pop(path[-1])
    elif op == 4:  # broken reference
        for spec in objects(data, rng.choice(["features", "models", "deployments", "monitors"])):
            for key in ("sources", "features", "model", "deployment", "resources"):
                if key in spec:
                    spec[key] = ["ghost"] if key == "sources" else "ghost"
    elif op == 5:  # feature cycle
        if isinstance(data.get("features"), dict):
            data["features"]["loop"] = {"entity": ["sample_id"], "sources": ["loop"]}
    elif op == 6:  # whole section replaced
        data[rng.choice(list(data))] = copy.deepcopy(rng.choice(GARBAGE))
    else:  # discriminator changed
        for section, key in (("data", "kind"), ("models", "framework")):
            for spec in objects(data, section):
                spec[key] = rng.choice(["file", "sql", "sklearn", "torch", "excel", 3])


def objects(data: dict[str, Any], section: str) -> list[dict[str, Any]]:
    """The object specs of ``section`` that are still mappings."""
    specs = data.get(section)
    if not isinstance(specs, dict):
        return []
    return [spec for spec in specs.values() if isinstance(spec, dict)]


def test_seeded_mutations_of_the_example(example: Example) -> None:
    counts = {"valid": 0, "error": 0}
    for seed in range(1000):
        rng = random.Random(seed)
        data = copy.deepcopy(example[0])
        for _ in range(rng.randint(1, 3)):
            if isinstance(data, dict) and data:
                mutate(data, rng)
        counts[outcome(data, example)] += 1
    assert counts["error"] > 700, counts  # the mutations really are mistakes


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)


@settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(value=json_values, pick=st.integers(min_value=0))
def test_hypothesis_values_at_random_keys(example: Example, value: Any, pick: int) -> None:
    data = copy.deepcopy(example[0])
    all_paths = list(paths(data))
    path = all_paths[pick % len(all_paths)]
    parent_of(data, path)[path[-1]] = value
    outcome(data, example)


FILES = [
    "configs/system.yaml",
    "configs/models/diagnosis.yaml",
    "configs/deployments/diagnosis_api.yaml",
    "configs/data/patients.yaml",
    "stacks/dev.yaml",
]
SNIPPETS = [
    "  - ]\n",
    "\tkey: tab\n",
    "x: [1, 2\n",
    "a: b: c\n",
    "'unterminated\n",
    "colour: red\n",
    "epochs: ${env:MLFORM_FUZZ_UNSET}\n",
    "bad: ${nope.nothing}\n",
    "bad: ${\n",
    "bad: ${unknown_resolver:x}\n",
    "token: ${secret:fuzz_missing}\n",
    "- listitem\n",
    "defaults: [nothing/here]\n",
    "hash: ${file_hash:no/such/file}\n",
    "? complex\n",
    "&a x: *b\n",
]


def test_file_level_mutations_through_hydra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFORM_SECRET_KEY", "fuzz-key")
    monkeypatch.delenv("MLFORM_FUZZ_UNSET", raising=False)
    counts = {"valid": 0, "error": 0}
    for seed in range(150):
        rng = random.Random(seed)
        project = tmp_path / f"p{seed}"
        for part in ("configs", "stacks"):
            shutil.copytree(REPO / part, project / part)
        rel = rng.choice(FILES)
        lines = (project / rel).read_text().splitlines(keepends=True)
        at = rng.randrange(len(lines) + 1)
        if rng.random() < 0.3 and lines:
            del lines[min(at, len(lines) - 1)]
        else:
            indent = " " * rng.choice([0, 2, 4])
            lines.insert(at, indent + rng.choice(SNIPPETS))
        (project / rel).write_text("".join(lines))
        overrides = rng.choice([[], ["models.diagnosis.estimator.max_depth=3"], ["~models"]])
        try:
            load_system_from(project, "dev", overrides)
        except ConfigError as exc:
            assert_diagnostics(exc)
            counts["error"] += 1
        else:
            counts["valid"] += 1
        shutil.rmtree(project)
    assert counts["error"] > 75, counts
