"""Copying one model version between registries: ``mlform models pull`` and ``push``.

Every model-serving pod on Kubernetes starts with an init container running
``mlform models pull model.NAME@vN --from <artifact store> --to /models/registry``; the
server container then runs ``mlform serve model.NAME@vN --registry /models/registry``
(:func:`mlform.infra.kubernetes.model_deployment_objects`). An artifact store is a registry
laid out like a stack's ``<state dir>/registry`` (:mod:`mlform.registry.versions`) behind a
URI; ``mlform models push`` publishes a version of the project's registry to one.

What is copied is what serving the version needs: its version record, its artifact (the
content-addressed files), its reference statistics and its card; not the lineage record,
the aliases or the other versions. The rules:

* **verified**: the artifact's files must hash to the digest in the version record, in the
  store before copying and at the destination after (:func:`~mlform.registry.artifacts.
  digest_dir`); a mismatch is an error naming the ref and the store, and nothing is served;
* **atomic**: a destination that does not exist yet is built in a temporary directory
  beside it and renamed into place in one step; in an existing registry the artifact and
  the version directory (``version.json`` written last, its commit) are each staged and
  renamed, under the registry's lock. A reader never sees a version whose files are
  incomplete;
* **idempotent**: copying a version the destination already holds with the same digest
  succeeds and changes nothing (a restarted init container re-runs its pull); a damaged
  copy of the artifact is replaced; a version already there with *another* digest is a
  conflict (versions are immutable).

Stores are ``file://`` URIs of an absolute directory (a volume mounted into the pod, the
same path on every node). ``s3://``, ``gs://``, ``az://`` and ``http(s)://`` are recognised
and refused with :class:`UnsupportedStoreError` until they are implemented.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mlform.registry.artifacts import ArtifactStore, digest_dir
from mlform.registry.errors import ArtifactError, RegistryError
from mlform.registry.jsonio import read_json
from mlform.registry.refs import ModelRef
from mlform.registry.versions import (
    CARD_FILE,
    REFERENCE_FILE,
    VERSION_FILE,
    ModelRegistry,
    ModelVersion,
)
from mlform.state.atomic import fsync_directory

__all__ = [
    "REMOTE_SCHEMES",
    "StoreURI",
    "StoreURIError",
    "Transfer",
    "TransferError",
    "UnsupportedStoreError",
    "copy_version",
    "pull",
    "push",
]

REMOTE_SCHEMES = ("s3", "gs", "az", "http", "https")
# Copied with the version record, when the source has them: what the server and the
# drift monitors read. ``version.json`` is always copied, and last.
_VERSION_EXTRAS = (CARD_FILE, REFERENCE_FILE)


class TransferError(RegistryError):
    """A version cannot be copied; the message names the ref, the store and what to do."""


class StoreURIError(TransferError):
    """An artifact store URI that is malformed (a usage error: the CLI exits with 2)."""


class UnsupportedStoreError(StoreURIError):
    """An artifact store URI whose scheme mlform recognises but cannot read or write yet."""


@dataclass(frozen=True, slots=True)
class StoreURI:
    """An artifact store: its URI as given and the registry directory it names."""

    uri: str
    path: Path

    @classmethod
    def parse(cls, uri: str, *, option: str) -> StoreURI:
        """``file:///abs/dir`` -> its directory; :class:`StoreURIError` naming ``option``."""
        scheme, sep, rest = uri.partition("://")
        if not sep or not scheme:
            raise StoreURIError(
                f"{option} {uri!r} is not an artifact store URI; write file:///absolute/dir "
                "(a registry directory, e.g. file:///srv/mlform/registry)"
            )
        scheme = scheme.lower()
        if scheme in REMOTE_SCHEMES:
            raise UnsupportedStoreError(
                f"{option} {uri}: {scheme}:// artifact stores are not supported yet; use a "
                "file:// store, a registry directory mounted on every node (e.g. "
                "file:///mnt/mlform/registry, published there with `mlform models push REF "
                "--to file:///mnt/mlform/registry`)"
            )
        if scheme != "file":
            raise StoreURIError(
                f"{option} {uri}: unknown artifact store scheme {scheme!r}; use "
                "file:///absolute/dir (s3, gs, az, http and https are not supported yet)"
            )
        if not rest.startswith("/"):
            raise StoreURIError(
                f"{option} {uri}: a file:// store needs an absolute path after file:// "
                f"(file:///{rest.lstrip('/')} for /{rest.lstrip('/')}, no host name)"
            )
        return cls(uri, Path(rest))

    def __str__(self) -> str:
        return self.uri


@dataclass(frozen=True, slots=True)
class Transfer:
    """What a pull or push did."""

    requested: str  # the ref as given (may be an alias)
    ref: str  # the version copied, model.NAME@vN
    digest: str
    source: str
    destination: str
    files: tuple[str, ...]  # the version directory's files, e.g. ('card.md', 'version.json')
    copied: bool  # False: the destination already held this version (nothing changed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "requested": self.requested,
            "ref": self.ref,
            "digest": self.digest,
            "source": self.source,
            "destination": self.destination,
            "files": list(self.files),
            "copied": self.copied,
        }


def pull(ref: str, store_uri: str, to_dir: Path) -> Transfer:
    """``mlform models pull``: version ``ref`` from the store ``store_uri`` into ``to_dir``."""
    store = StoreURI.parse(store_uri, option="--from")
    return copy_version(store.path, ref, Path(to_dir), source=store.uri, destination=str(to_dir))


def push(ref: str, registry_root: Path, store_uri: str) -> Transfer:
    """``mlform models push``: version ``ref`` of the registry at ``registry_root`` into
    the store ``store_uri``."""
    store = StoreURI.parse(store_uri, option="--to")
    return copy_version(
        Path(registry_root), ref, store.path, source=str(registry_root), destination=store.uri
    )


def copy_version(
    source_root: Path, ref: str, destination_root: Path, *, source: str, destination: str
) -> Transfer:
    """Copy version ``ref`` of the registry at ``source_root`` into the registry at
    ``destination_root`` (created when missing). ``source``/``destination`` name the two
    registries in messages (the store URI, the directory)."""
    version = _resolve(source_root, ref, source)
    assert version.digest is not None  # _resolve refuses versions without an artifact
    artifact = _verified_source_artifact(source_root, version, source)
    version_dir = ModelRegistry(source_root).version_dir(version.address, version.version)
    names = (*_VERSION_EXTRAS, VERSION_FILE)
    files = tuple(sorted(n for n in names if (version_dir / n).is_file()))
    result = Transfer(ref, version.ref, version.digest, source, destination, files, True)
    try:
        if _build_fresh(destination_root, version, artifact, version_dir, files, result):
            return result
        if _already_there(destination_root, version):  # checked without writing, no lock
            return replace(result, copied=False)
        with ModelRegistry(destination_root).write_lock():
            copied = _merge(destination_root, version, artifact, version_dir, files, result)
    except OSError as exc:
        raise TransferError(
            f"{version.ref}: cannot write it to {destination} ({exc.strerror or exc}: "
            f"{exc.filename or destination_root}); nothing was committed, retry once the "
            "destination is writable"
        ) from exc
    _check_destination(destination_root, version, result)
    return replace(result, copied=copied)


def _resolve(root: Path, ref: str, store: str) -> ModelVersion:
    try:
        parsed = ModelRef.parse(ref)
    except RegistryError as exc:
        raise TransferError(f"cannot copy {ref!r} from {store}: {exc}") from None
    if not root.is_dir():
        raise TransferError(
            f"{parsed}: the store {store} does not exist (no directory {root}); give the "
            "registry a stack publishes to (`mlform models push` writes one)"
        )
    try:
        version = ModelRegistry(root).resolve(parsed)
    except RegistryError as exc:
        raise TransferError(f"{parsed} is not in the store {store}: {exc}") from None
    if not version.accepted or version.digest is None:
        why = "; ".join(version.reasons) or "it failed its gates"
        raise TransferError(
            f"{version.ref} in the store {store} was rejected ({why}); only accepted versions "
            "can be served or published"
        )
    return version


def _verified_source_artifact(root: Path, version: ModelVersion, store: str) -> Path:
    digest = version.digest or ""
    try:
        path = ArtifactStore(root / "artifacts").path_of(digest)
        actual = digest_dir(path)
    except (ArtifactError, OSError) as exc:
        raise TransferError(
            f"{version.ref}: its artifact {digest} is missing from the store {store} ({exc}); "
            "push the version to the store again"
        ) from None
    if actual != digest:
        raise TransferError(
            f"{version.ref}: digest mismatch in the store {store}: the artifact files hash to "
            f"{actual}, the version records {digest} (corrupted or modified); push the "
            "version to the store again"
        )
    return path


def _build_fresh(
    root: Path,
    version: ModelVersion,
    artifact: Path,
    version_dir: Path,
    files: tuple[str, ...],
    result: Transfer,
) -> bool:
    """Build a missing destination registry beside it and rename it into place.

    False when ``root`` already exists (or appeared meanwhile): the caller merges."""
    if root.exists() or root.is_symlink():
        if not root.is_dir():
            raise TransferError(
                f"{version.ref}: the destination {result.destination} is not a directory"
            )
        return False
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = root.parent / f".{root.name}.{uuid.uuid4().hex}.tmp"
    try:
        _merge(staging, version, artifact, version_dir, files, result)
        _check_destination(staging, version, result)
        try:
            os.rename(staging, root)
        except OSError:
            if not root.is_dir():
                raise
            return False  # another pull created it first: merge into theirs
        fsync_directory(root.parent)
    finally:
        _remove_tree(staging)
    return True


def _merge(
    root: Path,
    version: ModelVersion,
    artifact: Path,
    version_dir: Path,
    files: tuple[str, ...],
    result: Transfer,
) -> bool:
    """Put the artifact and the version directory into the registry at ``root``.

    True when something was written; False when the version was already there."""
    digest = version.digest or ""
    store = ArtifactStore(root / "artifacts")
    wrote = False
    if store.exists(digest) and not store.verify(digest):
        store.remove(digest)  # a damaged copy (an interrupted repair, a tampered file)
    if not store.exists(digest):
        stored = store.put_dir(artifact)
        if stored != digest:
            raise TransferError(
                f"{version.ref}: digest mismatch copying from {result.source}: the artifact "
                f"changed while it was copied ({stored}, recorded {digest}); retry"
            )
        wrote = True
    target = ModelRegistry(root).version_dir(version.address, version.version)
    existing = _committed_digest(target)
    if existing is not None:
        if existing != digest:
            raise TransferError(
                f"{version.ref} is already in {result.destination} with another artifact "
                f"({existing}, {result.source} has {digest}); versions never change: "
                "publish under a new version, or use another destination"
            )
        return wrote
    staging = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
    try:
        staging.mkdir(parents=True)
        for name in (*[f for f in files if f != VERSION_FILE], VERSION_FILE):
            _copy_file(version_dir / name, staging / name)
        fsync_directory(staging)
        if target.exists():  # a registration that died before its commit
            _remove_tree(target)
        os.rename(staging, target)
        fsync_directory(target.parent)
    finally:
        _remove_tree(staging)
    return True


def _already_there(root: Path, version: ModelVersion) -> bool:
    target = ModelRegistry(root).version_dir(version.address, version.version)
    digest = version.digest or ""
    return _committed_digest(target) == digest and ArtifactStore(root / "artifacts").verify(digest)


def _committed_digest(version_dir: Path) -> str | None:
    """The artifact digest of the committed version in ``version_dir``; None if uncommitted."""
    path = version_dir / VERSION_FILE
    if not path.is_file():
        return None
    try:
        return str(ModelVersion.from_dict(read_json(path, what="version record")).digest)
    except (KeyError, TypeError, ValueError) as exc:
        raise TransferError(f"version record {path} is malformed ({exc})") from None


def _check_destination(root: Path, version: ModelVersion, result: Transfer) -> None:
    """Read the copy back as a server would: the version resolves, its artifact verifies."""
    copied = ModelRegistry(root).resolve(version.ref)
    if copied.digest != version.digest or not ArtifactStore(root / "artifacts").verify(
        version.digest or ""
    ):
        raise TransferError(
            f"{version.ref}: digest mismatch after copying from {result.source} to "
            f"{result.destination}: the copied artifact does not hash to {version.digest}; "
            "check the destination's disk and retry"
        )


def _copy_file(source: Path, destination: Path) -> None:
    shutil.copyfile(source, destination)
    with destination.open("rb") as handle:
        os.fsync(handle.fileno())


def _remove_tree(path: Path) -> None:
    if not path.exists():
        return
    for child in path.rglob("*"):  # stored artifacts are read-only
        with contextlib.suppress(OSError):
            child.chmod(0o700 if child.is_dir() else 0o600)
    shutil.rmtree(path, ignore_errors=True)
