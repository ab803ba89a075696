"""Artifact store, versions and aliases, model card and reference statistics."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from mlform.evaluation import check_fairness, check_gates
from mlform.registry.artifacts import ArtifactStore, manifest_of
from mlform.registry.card import CardInputs, render_card
from mlform.registry.errors import ArtifactError, RegistryError, UnknownRefError
from mlform.registry.reference import QUANTILE_LEVELS, reference_stats
from mlform.registry.runs import RunRecord, RunStore, git_commit
from mlform.registry.versions import ModelRegistry
from mlform.spec.models import Card

ADDRESS = "model.churn"


def _files(directory: Path, contents: dict[str, bytes]) -> Path:
    for name, data in contents.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return directory


# -- artifacts ---------------------------------------------------------------------------


def test_put_dir_is_content_addressed_and_idempotent(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "artifacts")
    a = _files(tmp_path / "a", {"model.pkl": b"weights", "meta/params.json": b"{}"})
    b = _files(tmp_path / "b", {"meta/params.json": b"{}", "model.pkl": b"weights"})
    digest = store.put_dir(a)
    assert digest.startswith("sha256:") and len(digest) == 7 + 64
    assert store.put_dir(a) == digest
    assert store.put_dir(b) == digest  # same content, another directory
    assert store.list() == [digest]
    stored = store.path_of(digest)
    assert (stored / "meta" / "params.json").read_bytes() == b"{}"
    assert store.verify(digest)
    assert manifest_of(a).splitlines()[0].endswith("  meta/params.json")
    assert not list(stored.parent.glob(".tmp-*"))
    c = _files(tmp_path / "c", {"model.pkl": b"other weights"})
    assert store.put_dir(c) != digest


def test_tampering_is_detected(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "artifacts")
    digest = store.put_dir(_files(tmp_path / "a", {"model.pkl": b"weights"}))
    stored = store.path_of(digest) / "model.pkl"
    stored.chmod(stat.S_IRUSR | stat.S_IWUSR)
    stored.write_bytes(b"evil")
    assert not store.verify(digest)
    with pytest.raises(ArtifactError, match="files were changed"):
        store.put_dir(tmp_path / "a")
    (store.path_of(digest) / "extra.txt").write_text("x")
    assert not store.verify(digest)


def test_artifact_errors(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "artifacts")
    with pytest.raises(ArtifactError, match="not an artifact digest"):
        store.path_of("md5:abc")
    with pytest.raises(ArtifactError, match="not in the store"):
        store.path_of("sha256:" + "0" * 64)
    assert not store.verify("sha256:" + "0" * 64)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError, match="holds no files"):
        store.put_dir(tmp_path / "empty")


# -- versions and aliases ----------------------------------------------------------------


def _registry(tmp_path: Path) -> tuple[ModelRegistry, str]:
    registry = ModelRegistry(tmp_path / "registry")
    digest = registry.artifacts.put_dir(_files(tmp_path / "model", {"model.pkl": b"w"}))
    return registry, digest


def test_versions_are_numbered_and_rejected_ones_kept_with_reasons(tmp_path: Path) -> None:
    registry, digest = _registry(tmp_path)
    gates = check_gates({"roc_auc": ">= 0.95"}, {"roc_auc": 0.9})
    v1 = registry.register(ADDRESS, digest, status="accepted", metrics={"roc_auc": 0.96})
    v2 = registry.register(
        ADDRESS, digest, status="rejected", metrics={"roc_auc": 0.9}, gate_results=gates
    )
    v3 = registry.register(ADDRESS, digest, status="accepted", metrics={"roc_auc": 0.97})
    assert [v.ref for v in (v1, v2, v3)] == [f"{ADDRESS}@v{n}" for n in (1, 2, 3)]
    assert v2.reasons == [gates[0].message]
    assert v2.gate_results[0]["passed"] is False
    assert [v.version for v in registry.list_versions(ADDRESS)] == [1, 2, 3]
    assert registry.get(f"{ADDRESS}@v2") == v2
    assert registry.resolve(f"{ADDRESS}@latest") == v3
    assert registry.resolve(ADDRESS) == v3  # no champion: the latest
    assert registry.addresses() == [ADDRESS]


def test_rejected_versions_never_get_aliases(tmp_path: Path) -> None:
    registry, digest = _registry(tmp_path)
    registry.register(ADDRESS, digest, status="rejected", metrics={}, reasons=["too weak"])
    with pytest.raises(RegistryError, match=r"rejected.*too weak"):
        registry.set_alias(ADDRESS, "champion", 1)
    assert registry.aliases(ADDRESS) == {}
    assert registry.alias_history(ADDRESS) == []


def test_alias_moves_are_recorded(tmp_path: Path) -> None:
    registry, digest = _registry(tmp_path)
    for auc in (0.95, 0.96):
        registry.register(ADDRESS, digest, status="accepted", metrics={"roc_auc": auc})
    registry.set_alias(ADDRESS, "champion", 1, reason="first")
    registry.set_alias(ADDRESS, "challenger", f"{ADDRESS}@v2")
    assert registry.champion_metrics(ADDRESS) == {"roc_auc": 0.95}
    move = registry.set_alias(ADDRESS, "champion", 2, reason="promoted")
    assert (move.from_version, move.to_version) == (1, 2)
    registry.remove_alias(ADDRESS, "challenger")
    assert registry.aliases(ADDRESS) == {"champion": 2}
    champion = registry.alias_of(ADDRESS, "champion")
    assert champion is not None and champion.version == 2
    assert registry.resolve(f"{ADDRESS}@champion").version == 2
    assert registry.resolve(ADDRESS).version == 2
    assert registry.aliases_for(champion) == ["champion"]
    history = [(m.alias, m.from_version, m.to_version) for m in registry.alias_history(ADDRESS)]
    assert history == [
        ("champion", None, 1),
        ("challenger", None, 2),
        ("champion", 1, 2),
        ("challenger", 2, None),
    ]


def test_bad_refs_say_what_exists(tmp_path: Path) -> None:
    registry, digest = _registry(tmp_path)
    registry.register(ADDRESS, digest, status="accepted", metrics={})
    with pytest.raises(
        UnknownRefError,
        match=r"model.churn@v7 does not exist.*versions of "
        r"model.churn: v1; aliases: none",
    ):
        registry.resolve(f"{ADDRESS}@v7")
    with pytest.raises(UnknownRefError, match=r"no versions of model.other.*model.churn"):
        registry.resolve("model.other")
    with pytest.raises(UnknownRefError, match="registry holds models only"):
        registry.resolve("data.churn")
    with pytest.raises(UnknownRefError, match="after '@'"):
        registry.resolve(f"{ADDRESS}@V1!")
    with pytest.raises(UnknownRefError, match="invalid alias"):
        registry.set_alias(ADDRESS, "v2", 1)
    with pytest.raises(RegistryError, match="not in the artifact store"):
        registry.register(ADDRESS, "sha256:" + "1" * 64, status="accepted", metrics={})


def test_register_writes_card_reference_and_lineage_naming_the_version(tmp_path: Path) -> None:
    registry, digest = _registry(tmp_path)
    mv = registry.register(
        ADDRESS,
        digest,
        status="accepted",
        metrics={"roc_auc": np.float64(0.9), "log_loss": float("nan")},
        card_markdown=lambda v: f"# card of {v.ref}\n",
        reference_stats={"rows": np.int64(3)},
        lineage=lambda v: {"version": v.ref},
    )
    assert mv.metrics == {"roc_auc": 0.9, "log_loss": None}
    card = registry.file_of(mv, "card")
    assert card is not None and card.read_text() == f"# card of {ADDRESS}@v1\n"
    assert registry.reference_stats(mv.ref) == {"rows": 3}
    assert registry.lineage(mv.ref) == {"version": mv.ref}


def test_a_registration_that_died_before_its_commit_is_skipped(tmp_path: Path) -> None:
    registry, digest = _registry(tmp_path)
    registry.register(ADDRESS, digest, status="accepted", metrics={})
    (registry.version_dir(ADDRESS, 2)).mkdir()  # no version.json: died mid-way
    assert [v.version for v in registry.list_versions(ADDRESS)] == [1]
    assert registry.register(ADDRESS, digest, status="accepted", metrics={}).version == 3


_WORKER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from mlform.registry.versions import ModelRegistry
    registry = ModelRegistry(Path(sys.argv[1]))
    for _ in range(int(sys.argv[3])):
        mv = registry.register("model.churn", sys.argv[2], status="accepted", metrics={})
        print(mv.version)
    """
)


def test_concurrent_registration_gives_distinct_versions(tmp_path: Path) -> None:
    registry, digest = _registry(tmp_path)
    per_process = 8
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(registry.root), digest, str(per_process)],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONWARNINGS": "error"},
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    numbers = sorted(int(n) for out in outputs for n in out.split())
    assert numbers == list(range(1, 2 * per_process + 1))
    assert [v.version for v in registry.list_versions(ADDRESS)] == numbers


# -- model card --------------------------------------------------------------------------


def test_card_contains_the_configured_fields_and_escapes_values() -> None:
    card = Card(
        intended_use="Triage <script>alert(1)</script> biopsies.",
        limitations="Trained on 569 biopsies from one clinic.",
        ethical_considerations="Reviewed by a pathologist.",
        caveats="Not for children.",
        owners=["ml-platform@example.org"],
        references=["https://doi.org/10.1000/xyz"],
    )
    gates = check_gates(
        {"roc_auc": ">= 0.95", "must_beat_champion": {"metric": "roc_auc", "tolerance": 0.005}},
        {"roc_auc": 0.97},
        None,
    )
    pred = np.array([1, 0] * 10)
    fairness = check_fairness(pred, {"sex": np.array(["F"] * 10 + ["M"] * 10)})
    text = render_card(
        CardInputs(
            ref="model.diagnosis@v3",
            status="accepted",
            task="classification",
            framework="sklearn",
            feature_set="diagnosis",
            label="target",
            feature_names=["mean_radius", "a|b"],
            rows={"train": 455, "test": 114},
            digest="sha256:" + "a" * 64,
            card=card,
            metrics={"roc_auc": 0.97, "accuracy": 0.93},
            gate_results=gates,
            fairness=fairness,
            hardware={"device": "cuda", "cuda_name": "NVIDIA H100"},
            duration_s=12.5,
        )
    )
    assert "# Model card: `model.diagnosis@v3`" in text
    for needle in (
        "Trained on 569 biopsies from one clinic.",
        "Reviewed by a pathologist.",
        "Not for children.",
        "ml-platform@example.org",
        "https://doi.org/10.1000/xyz",
        "| train | 455 |",
        "| roc_auc | 0.97 |",
        "| must_beat_champion | roc_auc |",
        "✅ pass",
        "| sex |",
        "NVIDIA H100",
        "sha256:" + "a" * 64,
    ):
        assert needle in text, needle
    assert "<script>" not in text and "&lt;script&gt;" in text


def test_card_without_config_says_so(tmp_path: Path) -> None:
    text = render_card(
        CardInputs(
            ref="model.x@v1",
            status="rejected",
            task="regression",
            framework="torch",
            feature_set="f",
            label="y",
            feature_names=[],
            rows={"train": 10},
            reasons=["rmse = 3, required <= 1: fails"],
        ),
        project_dir=tmp_path,
    )
    assert "Not stated" in text and "Rejected" in text and "No fairness check" in text


def test_project_template_overrides_the_card(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "model_card.md.j2").write_text("custom {{ ref }}\n")
    inputs = CardInputs("model.x@v1", "accepted", "regression", "sklearn", "f", "y", [], {})
    assert render_card(inputs, project_dir=tmp_path) == "custom model.x@v1\n"


# -- reference statistics ----------------------------------------------------------------


def test_reference_stats_match_numpy() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3000, 3)).astype(np.float32)
    x[:, 2] = 7.0
    x[10, 0] = np.nan
    y = rng.integers(0, 2, 3000)
    stats = reference_stats(
        x, ["a", "b", "c"], task="classification", y=y, predictions=y, classes=("B", "M")
    )
    json.dumps(stats, allow_nan=False)  # JSON-able, no NaN
    assert stats["rows"] == 3000 and stats["sample_size"] == 1000
    for j, name in enumerate("abc"):
        col = x[:, j].astype(np.float64)
        col = col[np.isfinite(col)]
        f = stats["features"][name]
        assert f["count"] == col.size and f["missing"] == 3000 - col.size
        assert f["mean"] == pytest.approx(col.mean())
        assert f["std"] == pytest.approx(col.std())
        assert (f["min"], f["max"]) == (pytest.approx(col.min()), pytest.approx(col.max()))
        assert list(f["quantiles"]) == [f"{q:g}" for q in QUANTILE_LEVELS]
        assert f["quantiles"]["0.5"] == pytest.approx(np.quantile(col, 0.5))
        edges = np.array(f["histogram"]["edges"])
        assert edges.size == 31 and len(f["histogram"]["counts"]) == 30
        expected, _ = np.histogram(col, bins=edges)
        assert f["histogram"]["counts"] == expected.tolist()
        assert sum(f["histogram"]["counts"]) == col.size
        assert len(f["sample"]) <= 1000 and set(f["sample"]) <= set(col.tolist())
    assert stats["label"]["counts"] == {"B": int((y == 0).sum()), "M": int((y == 1).sum())}
    assert sum(stats["predictions"]["frequencies"].values()) == pytest.approx(1.0)


def test_reference_stats_regression_label_and_small_data() -> None:
    x = np.arange(10, dtype=np.float32).reshape(5, 2)
    stats = reference_stats(x, ["a", "b"], task="regression", y=np.arange(5.0))
    assert stats["sample_size"] == 5
    assert stats["label"]["kind"] == "numeric" and stats["label"]["mean"] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="expected"):
        reference_stats(x, ["a"], task="regression")


# -- run records -------------------------------------------------------------------------


def test_run_store_save_list_get_compare(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs")
    a = RunRecord(
        "run-a",
        ADDRESS,
        "2024-01-01T00:00:00Z",
        status="succeeded",
        params={"max_depth": 8, "n": 200},
        metrics={"roc_auc": 0.9},
        epochs=[{"epoch": 1, "metrics": {"val_loss": 0.3}, "seconds": 1.0}],
    )
    b = RunRecord(
        "run-b",
        ADDRESS,
        "2024-01-02T00:00:00Z",
        status="failed",
        params={"max_depth": 6, "n": 200},
        metrics={"roc_auc": 0.95},
        error="boom",
    )
    c = RunRecord("run-c", "model.other", "2024-01-03T00:00:00Z")
    for record in (b, a, c):
        store.save(record)
    assert [r.run_id for r in store.list()] == ["run-a", "run-b", "run-c"]
    assert [r.run_id for r in store.list(ADDRESS)] == ["run-a", "run-b"]
    assert store.get("run-a") == RunRecord.from_dict(a.to_dict())
    rows = {row.key: row.values for row in store.compare(["run-a", "run-b"])}
    assert rows["params.max_depth"] == {"run-a": 8, "run-b": 6}
    assert rows["metrics.roc_auc"] == {"run-a": 0.9, "run-b": 0.95}
    assert "params.n" not in rows
    with pytest.raises(UnknownRefError, match=r"no run 'nope'.*run-a, run-b, run-c"):
        store.get("nope")
    with pytest.raises(UnknownRefError, match="not a run id"):
        store.get("../etc")


def test_git_commit_never_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert git_commit(tmp_path) is None
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "git").write_text("#!/bin/sh\necho " + "ab" * 20 + "\n")
    (fake / "git").chmod(0o755)
    monkeypatch.setenv("PATH", str(fake))
    assert git_commit(tmp_path) == "ab" * 20
    (fake / "git").write_text("#!/bin/sh\necho 'fatal: not a git repository' >&2\nexit 128\n")
    assert git_commit(tmp_path) is None
