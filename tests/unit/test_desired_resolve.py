"""resolve(): order, fingerprints, Merkle content digests and diagnostics."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlform.addresses import Address
from mlform.desired.fingerprint import FingerprintCache
from mlform.desired.resolve import resolve
from mlform.errors import ConfigError
from mlform.plan.testing import declared, desired_system
from mlform.spec.declared import DeclaredObject, LoadedSystem


def _loaded(tmp_path: Path, objects: list[DeclaredObject]) -> LoadedSystem:
    return LoadedSystem(
        project="demo",
        stack="dev",
        project_dir=tmp_path,
        objects=tuple(objects),
        settings={"target": {"type": "local"}},
        provenance={"data.p.path": ("configs/data/p.yaml", 3)},
    )


def _project(tmp_path: Path) -> list[DeclaredObject]:
    (tmp_path / "ml").mkdir()
    (tmp_path / "ml" / "pipelines.py").write_text("def make(): ...\n")
    (tmp_path / "p.csv").write_text("a\n1\n")
    for path in (tmp_path / "p.csv", tmp_path / "ml" / "pipelines.py"):
        os.utime(path, ns=(10**18, 10**18))  # old enough for the cache to trust
    model = DeclaredObject(
        address=Address.parse("model.m"),
        config={"framework": "sklearn", "estimator": {"_target_": "ml.pipelines.make"}},
        depends_on=(Address.parse("features.f"),),
        key="models.m",
        code_targets=("ml.pipelines.make",),
    )
    return [
        model,
        declared("features.f", {"sources": ["p"]}, ["data.p"]),
        declared("data.p", {"kind": "file", "path": "p.csv", "owner": "x"}),
    ]


def test_resolve_orders_and_fingerprints(tmp_path: Path) -> None:
    cache = FingerprintCache(tmp_path / ".mlform" / "cache" / "fingerprints.json")
    desired = resolve(_loaded(tmp_path, _project(tmp_path)), cache=cache)
    assert [str(o.address) for o in desired] == ["data.p", "features.f", "model.m"]
    data, features, model = desired
    assert set(data.fingerprints) == {"config", "data"}
    assert set(features.fingerprints) == {"config"}
    assert set(model.fingerprints) == {"config", "code:ml.pipelines", "toolchain"}
    assert model.depends_on == (Address.parse("features.f"),)
    assert desired.input_digest.startswith("sha256:")
    assert (tmp_path / ".mlform" / "cache" / "fingerprints.json").is_file()


def test_content_digest_is_merkle_over_content_and_upstream(tmp_path: Path) -> None:
    base = desired_system(
        [declared("data.p", {"path": "a", "owner": "x"}), declared("model.m", {}, ["data.p"])],
        {"data.p": {"data": "sha256:1"}},
    )
    local_only = desired_system(
        [declared("data.p", {"path": "a", "owner": "y"}), declared("model.m", {}, ["data.p"])],
        {"data.p": {"data": "sha256:1"}},
    )
    new_data = desired_system(
        [declared("data.p", {"path": "a", "owner": "x"}), declared("model.m", {}, ["data.p"])],
        {"data.p": {"data": "sha256:2"}},
    )
    m = Address.parse("model.m")
    p = Address.parse("data.p")
    # owner is a local field: the config fingerprint moves, the content digest does not.
    assert base.objects[p].fingerprints["config"] != local_only.objects[p].fingerprints["config"]
    assert base.objects[p].content_digest == local_only.objects[p].content_digest
    assert base.objects[m].content_digest == local_only.objects[m].content_digest
    # New data content moves the digest of the data and of everything downstream.
    assert base.objects[p].content_digest != new_data.objects[p].content_digest
    assert base.objects[m].content_digest != new_data.objects[m].content_digest
    assert base.input_digest != local_only.input_digest != new_data.input_digest


def test_missing_data_file_is_a_diagnostic_with_key_and_file(tmp_path: Path) -> None:
    objects = _project(tmp_path)
    (tmp_path / "p.csv").unlink()
    with pytest.raises(ConfigError) as caught:
        resolve(_loaded(tmp_path, objects))
    [diagnostic] = caught.value.diagnostics
    assert diagnostic.key == "data.p.path"
    assert (diagnostic.file, diagnostic.line) == ("configs/data/p.yaml", 3)
    assert diagnostic.address == "data.p"


def test_cycle_and_undeclared_dependency_are_diagnostics(tmp_path: Path) -> None:
    cyclic = [
        declared("features.a", {}, ["features.b"]),
        declared("features.b", {}, ["features.a"]),
        declared("model.m", {}, ["features.zzz"]),
    ]
    with pytest.raises(ConfigError) as caught:
        resolve(_loaded(tmp_path, cyclic))
    summaries = [d.summary for d in caught.value.diagnostics]
    assert "model.m depends on features.zzz, which is not declared" in summaries
    assert "dependency cycle: features.a -> features.b -> features.a" in summaries
    cycle = next(d for d in caught.value.diagnostics if "cycle" in d.summary)
    assert cycle.key == "features.a"
