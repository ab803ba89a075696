"""A content-addressed artifact store: a model's files kept under their sha256 digest.

The digest of a directory is the sha256 of its *manifest*: one line
``<file sha256>  <relative posix path>`` per file, sorted by path (the format of
``sha256sum``). Equal contents give equal digests whatever the file times or order, and
storing the same directory twice is a no-op. Layout::

    <root>/sha256/<hex>/<the files, as in the source directory>

Files are copied into a temporary directory beside the target, fsynced, then renamed
into place in one step, so a reader never sees a half-stored artifact. Stored files are
made read-only; :meth:`ArtifactStore.verify` recomputes the digest to detect tampering.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import stat
import uuid
from pathlib import Path

from mlform.registry.errors import ArtifactError
from mlform.state.atomic import fsync_directory

__all__ = ["ArtifactStore", "digest_dir", "manifest_of"]

PREFIX = "sha256:"
_HEX_RE = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise ArtifactError(f"artifact directory {directory} does not exist")
    found: list[Path] = []
    for path in sorted(directory.rglob("*")):
        if path.is_symlink():
            raise ArtifactError(f"artifact files must be regular files, not links: {path}")
        if path.is_file():
            found.append(path)
    if not found:
        raise ArtifactError(f"artifact directory {directory} holds no files")
    return found


def manifest_of(directory: Path) -> str:
    """The canonical manifest text of ``directory`` (``<sha256>  <path>`` lines, sorted)."""
    entries = sorted(
        (p.relative_to(directory).as_posix(), _file_sha256(p)) for p in _files(directory)
    )
    return "".join(f"{digest}  {name}\n" for name, digest in entries)


def digest_dir(directory: Path) -> str:
    """``sha256:<hex>`` of the manifest of ``directory``."""
    return PREFIX + hashlib.sha256(manifest_of(directory).encode("utf-8")).hexdigest()


def _hex(digest: str) -> str:
    hex_part = digest.removeprefix(PREFIX)
    if not _HEX_RE.match(hex_part):
        raise ArtifactError(
            f"{digest!r} is not an artifact digest: expected 'sha256:' and 64 hex digits"
        )
    return hex_part


class ArtifactStore:
    """Artifacts under ``<root>/sha256/<hex>/``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._base = self.root / "sha256"

    def put_dir(self, files_dir: Path) -> str:
        """Store the files of ``files_dir``; returns their digest (idempotent, atomic)."""
        source = Path(files_dir)
        digest = digest_dir(source)
        target = self._base / _hex(digest)
        if target.is_dir():
            if self.verify(digest):
                return digest
            raise ArtifactError(
                f"artifact {digest} is already stored but its files were changed ({target}); "
                "remove that directory and store the artifact again"
            )
        self._base.mkdir(parents=True, exist_ok=True)
        staging = self._base / f".tmp-{uuid.uuid4().hex}"
        try:
            for path in _files(source):
                dest = staging / path.relative_to(source)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, dest)
                with dest.open("rb") as handle:
                    os.fsync(handle.fileno())
                dest.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
            if digest_dir(staging) != digest:
                raise ArtifactError(f"files in {source} changed while they were being stored")
            try:
                os.rename(staging, target)
            except OSError:
                if not target.is_dir():
                    raise
                # Another process stored the same content first: theirs is as good as ours.
            fsync_directory(self._base)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        return digest

    def path_of(self, digest: str) -> Path:
        """The directory holding the artifact ``digest``; ArtifactError when absent."""
        path = self._base / _hex(digest)
        if not path.is_dir():
            raise ArtifactError(f"artifact {digest} is not in the store at {self.root}")
        return path

    def exists(self, digest: str) -> bool:
        return (self._base / _hex(digest)).is_dir()

    def verify(self, digest: str) -> bool:
        """Whether the stored files still hash to ``digest`` (False when missing or changed)."""
        path = self._base / _hex(digest)
        if not path.is_dir():
            return False
        try:
            return digest_dir(path) == PREFIX + _hex(digest)
        except (ArtifactError, OSError):
            return False

    def list(self) -> list[str]:
        """Digests of the stored artifacts."""
        if not self._base.is_dir():
            return []
        return sorted(PREFIX + p.name for p in self._base.iterdir() if _HEX_RE.match(p.name))

    def remove(self, digest: str) -> None:
        """Delete a stored artifact (garbage collection); a no-op when absent."""
        path = self._base / _hex(digest)
        if path.is_dir():
            for child in path.rglob("*"):
                with contextlib.suppress(OSError):
                    child.chmod(stat.S_IRWXU)
            shutil.rmtree(path)
