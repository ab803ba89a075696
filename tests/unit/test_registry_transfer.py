"""Copying one model version between registries (``mlform models pull``/``push``).

The registries are real (:class:`ModelRegistry` on temporary directories); the artifacts
are small files, since the copy does not care what a model is.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from mlform.registry import transfer
from mlform.registry.artifacts import digest_dir
from mlform.registry.transfer import (
    StoreURI,
    StoreURIError,
    TransferError,
    UnsupportedStoreError,
    copy_version,
    pull,
    push,
)
from mlform.registry.versions import ModelRegistry

ADDRESS = "model.churn"


def _artifact(directory: Path, weights: bytes) -> Path:
    directory.mkdir(parents=True)
    (directory / "model.joblib").write_bytes(weights)
    (directory / "meta.json").write_text('{"framework": "sklearn"}')
    return directory


def _store(root: Path, tmp: Path) -> ModelRegistry:
    """v1 accepted (champion, card, reference, lineage), v2 rejected, v3 accepted."""
    registry = ModelRegistry(root)
    for number, status in ((1, "accepted"), (2, "rejected"), (3, "accepted")):
        digest = registry.artifacts.put_dir(_artifact(tmp / f"a{number}", b"w%d" % number))
        registry.register(
            ADDRESS,
            digest,
            status=status,
            metrics={"accuracy": 0.9},
            reasons=["accuracy too low"] if status == "rejected" else (),
            card_markdown=f"# churn v{number}\n",
            reference_stats={"columns": {"age": {"mean": 40.0}}},
            lineage={"eventType": "COMPLETE"},
        )
    registry.set_alias(ADDRESS, "champion", 1)
    return registry


@pytest.fixture
def store(tmp_path: Path) -> ModelRegistry:
    return _store(tmp_path / "store", tmp_path / "src")


def _uri(registry: ModelRegistry) -> str:
    return f"file://{registry.root}"


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


# -- store URIs --------------------------------------------------------------------------


def test_file_uri_names_an_absolute_directory() -> None:
    assert StoreURI.parse("file:///srv/registry", option="--from").path == Path("/srv/registry")


@pytest.mark.parametrize("scheme", ["s3", "gs", "az", "http", "https"])
def test_remote_schemes_are_refused_until_supported(scheme: str) -> None:
    with pytest.raises(UnsupportedStoreError) as caught:
        StoreURI.parse(f"{scheme}://bucket/registry", option="--from")
    message = str(caught.value)
    assert f"--from {scheme}://bucket/registry" in message
    assert "not supported yet" in message and "file://" in message


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("/srv/registry", "not an artifact store URI"),
        ("file://relative/dir", "needs an absolute path"),
        ("ftp://host/registry", "unknown artifact store scheme 'ftp'"),
    ],
)
def test_malformed_store_uris(uri: str, expected: str) -> None:
    with pytest.raises(StoreURIError, match=expected):
        StoreURI.parse(uri, option="--to")


# -- pull --------------------------------------------------------------------------------


def test_pull_copies_only_what_serving_needs(store: ModelRegistry, tmp_path: Path) -> None:
    destination = tmp_path / "models" / "registry"
    result = pull(f"{ADDRESS}@v3", _uri(store), destination)
    assert result.copied and result.ref == f"{ADDRESS}@v3"
    assert result.files == ("card.md", "reference.json", "version.json")
    pulled = ModelRegistry(destination)
    version = pulled.resolve(f"{ADDRESS}@v3")
    assert version.digest == store.resolve(f"{ADDRESS}@v3").digest == result.digest
    assert pulled.artifacts.list() == [result.digest] and pulled.artifacts.verify(result.digest)
    assert [v.version for v in pulled.list_versions(ADDRESS)] == [3]
    assert pulled.aliases(ADDRESS) == {}
    assert pulled.file_of(version, "lineage") is None
    assert pulled.reference_stats(f"{ADDRESS}@v3") == {"columns": {"age": {"mean": 40.0}}}
    source_dir = store.version_dir(ADDRESS, 3)
    assert (pulled.version_dir(ADDRESS, 3) / "version.json").read_bytes() == (
        source_dir / "version.json"
    ).read_bytes()
    assert not [p for p in destination.parent.iterdir() if p.name.startswith(".")]


def test_an_alias_is_resolved_in_the_store(store: ModelRegistry, tmp_path: Path) -> None:
    result = pull(f"{ADDRESS}@champion", _uri(store), tmp_path / "registry")
    assert result.requested == f"{ADDRESS}@champion" and result.ref == f"{ADDRESS}@v1"


def test_pull_again_is_a_no_op(store: ModelRegistry, tmp_path: Path) -> None:
    destination = tmp_path / "registry"
    pull(f"{ADDRESS}@v1", _uri(store), destination)
    before = _tree(destination)
    again = pull(f"{ADDRESS}@v1", _uri(store), destination)
    assert not again.copied and _tree(destination) == before


def test_pull_into_an_existing_registry_adds_the_version(
    store: ModelRegistry, tmp_path: Path
) -> None:
    destination = tmp_path / "registry"
    pull(f"{ADDRESS}@v1", _uri(store), destination)
    result = pull(f"{ADDRESS}@v3", _uri(store), destination)
    assert result.copied
    assert [v.version for v in ModelRegistry(destination).list_versions(ADDRESS)] == [1, 3]


def test_a_damaged_copy_is_repaired(store: ModelRegistry, tmp_path: Path) -> None:
    destination = tmp_path / "registry"
    result = pull(f"{ADDRESS}@v1", _uri(store), destination)
    weights = ModelRegistry(destination).artifacts.path_of(result.digest) / "model.joblib"
    weights.chmod(stat.S_IRUSR | stat.S_IWUSR)
    weights.write_bytes(b"tampered")
    again = pull(f"{ADDRESS}@v1", _uri(store), destination)
    assert again.copied and ModelRegistry(destination).artifacts.verify(result.digest)


def test_a_dead_registration_in_the_destination_is_replaced(
    store: ModelRegistry, tmp_path: Path
) -> None:
    destination = tmp_path / "registry"
    pull(f"{ADDRESS}@v1", _uri(store), destination)
    dead = ModelRegistry(destination).version_dir(ADDRESS, 3)
    dead.mkdir()
    (dead / "card.md").write_text("half written")
    pull(f"{ADDRESS}@v3", _uri(store), destination)
    assert (dead / "card.md").read_text() == "# churn v3\n"
    assert ModelRegistry(destination).resolve(f"{ADDRESS}@v3").version == 3


def test_a_failed_pull_leaves_no_registry(
    store: ModelRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Interrupted after the artifact, before the version record: nothing to serve."""
    real = transfer._copy_file

    def failing(source: Path, destination: Path) -> None:
        if source.name == "version.json":
            raise OSError(28, "No space left on device")
        real(source, destination)

    monkeypatch.setattr(transfer, "_copy_file", failing)
    destination = tmp_path / "models" / "registry"
    with pytest.raises(TransferError, match=r"model.churn@v1: cannot write .*No space left"):
        pull(f"{ADDRESS}@v1", _uri(store), destination)
    assert list((tmp_path / "models").iterdir()) == []
    monkeypatch.setattr(transfer, "_copy_file", real)
    assert pull(f"{ADDRESS}@v1", _uri(store), destination).copied


# -- errors name the ref and the store ---------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        (f"{ADDRESS}@v9", f"{ADDRESS}@v9 is not in the store"),
        ("model.other@v1", "model.other@v1 is not in the store"),
        ("churn@@v1", "cannot copy 'churn@@v1'"),
    ],
)
def test_unknown_refs(store: ModelRegistry, tmp_path: Path, ref: str, expected: str) -> None:
    with pytest.raises(TransferError) as caught:
        pull(ref, _uri(store), tmp_path / "registry")
    assert expected in str(caught.value) and _uri(store) in str(caught.value)
    assert not (tmp_path / "registry").exists()


def test_a_missing_store(tmp_path: Path) -> None:
    with pytest.raises(TransferError, match=r"model.churn@v1: the store file:///nowhere/x"):
        pull(f"{ADDRESS}@v1", "file:///nowhere/x", tmp_path / "registry")


def test_a_rejected_version_is_refused(store: ModelRegistry, tmp_path: Path) -> None:
    with pytest.raises(TransferError, match=r"model.churn@v2 in the store .* was rejected"):
        pull(f"{ADDRESS}@v2", _uri(store), tmp_path / "registry")


def test_a_digest_mismatch_in_the_store(store: ModelRegistry, tmp_path: Path) -> None:
    digest = store.resolve(f"{ADDRESS}@v1").digest or ""
    weights = store.artifacts.path_of(digest) / "model.joblib"
    weights.chmod(stat.S_IRUSR | stat.S_IWUSR)
    weights.write_bytes(b"tampered")
    with pytest.raises(TransferError) as caught:
        pull(f"{ADDRESS}@v1", _uri(store), tmp_path / "registry")
    message = str(caught.value)
    assert f"{ADDRESS}@v1: digest mismatch in the store {_uri(store)}" in message
    assert digest in message and digest_dir(weights.parent) in message
    assert not (tmp_path / "registry").exists()


def test_a_missing_artifact_in_the_store(store: ModelRegistry, tmp_path: Path) -> None:
    store.artifacts.remove(store.resolve(f"{ADDRESS}@v1").digest or "")
    with pytest.raises(TransferError, match=r"model.churn@v1: its artifact sha256:\w+ is missing"):
        pull(f"{ADDRESS}@v1", _uri(store), tmp_path / "registry")


def test_a_different_version_with_the_same_number_conflicts(tmp_path: Path) -> None:
    first = _store(tmp_path / "first", tmp_path / "f")
    other = ModelRegistry(tmp_path / "other")
    digest = other.artifacts.put_dir(_artifact(tmp_path / "o", b"different"))
    other.register(ADDRESS, digest, status="accepted", metrics={})
    destination = tmp_path / "registry"
    pull(f"{ADDRESS}@v1", _uri(first), destination)
    with pytest.raises(TransferError, match=r"already in .* with another artifact"):
        pull(f"{ADDRESS}@v1", _uri(other), destination)


# -- push --------------------------------------------------------------------------------


def test_push_publishes_into_a_shared_store(store: ModelRegistry, tmp_path: Path) -> None:
    shared = _store(tmp_path / "shared", tmp_path / "s")  # already holds churn v1..v3
    other = ModelRegistry(tmp_path / "project")
    digest = other.artifacts.put_dir(_artifact(tmp_path / "p", b"fraud"))
    other.register("model.fraud", digest, status="accepted", metrics={"auc": 0.8})
    result = push("model.fraud@v1", other.root, _uri(shared))
    assert result.copied and result.destination == _uri(shared)
    assert shared.resolve("model.fraud@v1").digest == digest
    assert [v.version for v in shared.list_versions(ADDRESS)] == [1, 2, 3]
    assert json.loads((shared.version_dir("model.fraud", 1) / "version.json").read_text())[
        "metrics"
    ] == {"auc": 0.8}
    assert not push("model.fraud@v1", other.root, _uri(shared)).copied


def test_copy_version_into_a_file_is_refused(store: ModelRegistry, tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(TransferError, match="is not a directory"):
        copy_version(store.root, f"{ADDRESS}@v1", target, source="s", destination=str(target))
    assert os.path.isfile(target)
