"""Fingerprints: canonical digests, the file cache, data sources, code and toolchain."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from mlform.desired.code import code_fingerprints, find_project_module
from mlform.desired.fingerprint import (
    FingerprintCache,
    canonical_json,
    data_fingerprint,
    digest,
    short_digest,
)
from mlform.errors import ConfigError

OLD = 1_000_000_000_000_000_000  # mtime_ns far in the past relative to the fake clock


def test_canonical_json_and_digest() -> None:
    assert canonical_json({"b": 1, "a": ["é", 2]}) == '{"a":["é",2],"b":1}'
    expected = "sha256:" + hashlib.sha256(b'{"a":1,"b":2}').hexdigest()
    assert digest({"b": 2, "a": 1}) == expected
    assert digest({"a": 1}) != digest({"a": 2})
    assert short_digest("sha256:ab12cd34ef56") == "sha256:ab12cd34…"
    assert short_digest("sha256:ab12cd34ef56", prefix=False) == "ab12cd34…"
    assert short_digest(None) == "none"


def _write(path: Path, text: str, mtime_ns: int = OLD) -> None:
    path.write_text(text)
    os.utime(path, ns=(mtime_ns, mtime_ns))


def test_cache_rehashes_only_when_size_or_mtime_change(tmp_path: Path) -> None:
    data = tmp_path / "d.csv"
    _write(data, "a,b\n1,2\n")
    cache_file = tmp_path / "cache" / "fingerprints.json"
    first = FingerprintCache(cache_file, clock=lambda: OLD + 10**12)
    value = first.file_digest(data)
    assert value == "sha256:" + hashlib.sha256(b"a,b\n1,2\n").hexdigest()
    first.save()
    assert json.loads(cache_file.read_text())["format_version"] == 1

    second = FingerprintCache(cache_file, clock=lambda: OLD + 10**12)
    assert second.file_digest(data) == value
    assert second.hashed == []  # served from the cache

    _write(data, "a,b\n1,3\n", OLD + 5)  # same size, new mtime
    changed = second.file_digest(data)
    assert changed != value and second.hashed == [data.resolve()]


def test_cache_does_not_trust_a_file_modified_just_now(tmp_path: Path) -> None:
    data = tmp_path / "d.csv"
    _write(data, "x")
    cache = FingerprintCache(tmp_path / "c.json", clock=lambda: OLD + 1)
    cache.file_digest(data)
    cache.file_digest(data)
    assert len(cache.hashed) == 2


def test_corrupt_cache_is_ignored(tmp_path: Path) -> None:
    cache_file = tmp_path / "fingerprints.json"
    cache_file.write_text("{not json")
    data = tmp_path / "d.csv"
    _write(data, "x")
    cache = FingerprintCache(cache_file, clock=lambda: OLD + 10**12)
    assert cache.file_digest(data).startswith("sha256:")
    cache.save()
    assert str(data.resolve()) in json.loads(cache_file.read_text())["files"]


def test_file_data_fingerprint_and_missing_file(tmp_path: Path) -> None:
    _write(tmp_path / "p.csv", "a\n1\n")
    value = data_fingerprint({"kind": "file", "path": "p.csv"}, project_dir=tmp_path, key="data.p")
    assert value.startswith("sha256:")
    with pytest.raises(ConfigError) as caught:
        data_fingerprint({"kind": "file", "path": "nope.csv"}, project_dir=tmp_path, key="data.p")
    diagnostic = caught.value.diagnostics[0]
    assert diagnostic.key == "data.p.path"
    assert "nope.csv" in diagnostic.summary


def test_sql_fingerprints(tmp_path: Path) -> None:
    _write(tmp_path / "db.sqlite", "bytes")
    sqlite = {"kind": "sql", "database": "sqlite:///db.sqlite", "query": "SELECT 1"}
    one = data_fingerprint(sqlite, project_dir=tmp_path, key="data.s")
    _write(tmp_path / "db.sqlite", "other", OLD + 1)
    assert data_fingerprint(sqlite, project_dir=tmp_path, key="data.s") != one
    pg = {"kind": "sql", "url": "postgresql://db/x", "query": "SELECT 1"}
    pg2 = {**pg, "query": "SELECT 2"}
    assert data_fingerprint(pg, project_dir=tmp_path, key="d") != data_fingerprint(
        pg2, project_dir=tmp_path, key="d"
    )


def test_sklearn_dataset_fingerprint_without_import() -> None:
    value = data_fingerprint(
        {"kind": "sklearn", "dataset": "breast_cancer"}, project_dir=Path("."), key="data.t"
    )
    assert value.startswith("sha256:")
    assert value != data_fingerprint(
        {"kind": "sklearn", "dataset": "iris"}, project_dir=Path("."), key="data.t"
    )
    with pytest.raises(ConfigError) as caught:
        data_fingerprint({"kind": "sklearn", "dataset": "nope"}, project_dir=Path("."), key="d.t")
    assert caught.value.diagnostics[0].key == "d.t.dataset"


def test_code_fingerprints_for_project_and_library_targets(tmp_path: Path) -> None:
    (tmp_path / "ml").mkdir()
    (tmp_path / "ml" / "__init__.py").write_text("")
    (tmp_path / "ml" / "pipelines.py").write_text("def make(): ...\n")
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "sub" / "__init__.py").write_text("X = 1\n")
    assert find_project_module("ml.pipelines.make", tmp_path) == (
        "ml.pipelines",
        tmp_path / "ml" / "pipelines.py",
    )
    assert find_project_module("pkg.sub.Thing", tmp_path) == (
        "pkg.sub",
        tmp_path / "pkg" / "sub" / "__init__.py",
    )
    assert find_project_module("sklearn.ensemble.X", tmp_path) is None

    fps = code_fingerprints(["ml.pipelines.make"], project_dir=tmp_path)
    assert set(fps) == {"code:ml.pipelines"}
    model = code_fingerprints(
        ["ml.pipelines.make", "sklearn.svm.SVC"], project_dir=tmp_path, framework="sklearn"
    )
    assert set(model) == {"code:ml.pipelines", "toolchain"}
    (tmp_path / "ml" / "pipelines.py").write_text("def make(): return 1\n")
    edited = code_fingerprints(["ml.pipelines.make"], project_dir=tmp_path)
    assert edited["code:ml.pipelines"] != fps["code:ml.pipelines"]
    torch = code_fingerprints([], project_dir=tmp_path, framework="torch")
    assert (
        torch["toolchain"]
        != code_fingerprints([], project_dir=tmp_path, framework="sklearn")["toolchain"]
    )
