"""Fingerprints: ``sha256:<hex>`` digests of configs, data content and file contents.

* :func:`digest` hashes any JSON-able value through :func:`canonical_json` (sorted keys,
  no whitespace, UTF-8), so equal values always give equal digests.
* :class:`FingerprintCache` remembers each file's size, ``mtime_ns`` and digest, so a
  large data file is read in full only when its size or modification time changed.
* :func:`data_fingerprint` digests what a data source config points at (see
  :mod:`mlform.desired.code` for code and toolchain fingerprints).

This module reads files; it never prints and never writes anything but the cache.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mlform.diagnostics import Diagnostic
from mlform.errors import ConfigError

__all__ = [
    "CACHE_FORMAT_VERSION",
    "FingerprintCache",
    "canonical_json",
    "data_fingerprint",
    "digest",
    "digest_bytes",
    "file_digest",
    "short_digest",
]

CACHE_FORMAT_VERSION = 1
_CHUNK = 1 << 20
# A file modified this recently may change again within the same mtime tick: hash it,
# but do not trust its (size, mtime) next time ("racy git").
_RACY_WINDOW_NS = 2_000_000_000

# Files bundled with scikit-learn (sklearn/datasets/data/) behind each dataset loader.
SKLEARN_DATA_FILES: dict[str, tuple[str, ...]] = {
    "breast_cancer": ("breast_cancer.csv",),
    "iris": ("iris.csv",),
    "wine": ("wine_data.csv",),
    "digits": ("digits.csv.gz",),
    "diabetes": ("diabetes_data_raw.csv.gz", "diabetes_target.csv.gz"),
    "linnerud": ("linnerud_exercise.csv", "linnerud_physiological.csv"),
}


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, non-ASCII kept: the one text form every digest hashes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def digest(value: Any) -> str:
    """``sha256:<hex>`` of the canonical JSON of ``value``."""
    return digest_bytes(canonical_json(value).encode("utf-8"))


def short_digest(value: str | None, *, prefix: bool = True, length: int = 8) -> str:
    """``sha256:ab12cd34…`` (or ``ab12cd34…``); ``none`` when there is no digest."""
    if not value:
        return "none"
    algo, _, hexpart = value.partition(":")
    if not hexpart:
        algo, hexpart = "", value
    text = hexpart[:length] + "…"
    return f"{algo}:{text}" if prefix and algo else text


def file_digest(path: Path) -> str:
    """``sha256:<hex>`` of a file's bytes, read in chunks."""
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            hasher.update(chunk)
    return "sha256:" + hasher.hexdigest()


class FingerprintCache:
    """File digests keyed by absolute path, trusted while size and ``mtime_ns`` are unchanged.

    Persisted as JSON at ``path`` (the caller passes ``<state_dir>/cache/fingerprints.json``)
    by :meth:`save`, atomically. A missing or corrupt cache file is ignored.
    """

    def __init__(self, path: Path | None = None, *, clock: Callable[[], int] = time.time_ns):
        self.path = path
        self._clock = clock
        self._entries: dict[str, dict[str, Any]] = self._read() if path is not None else {}
        self._dirty = False
        self.hashed: list[Path] = []  # files read in full by this instance (for tests, stats)

    def forget(self) -> None:
        """Trust nothing cached: every file is hashed in full again (``plan --refresh``)."""
        self._entries.clear()
        self._dirty = True

    def _read(self) -> dict[str, dict[str, Any]]:
        assert self.path is not None
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(document, dict) or document.get("format_version") != (
            CACHE_FORMAT_VERSION
        ):
            return {}
        files = document.get("files")
        if not isinstance(files, dict):
            return {}
        return {k: v for k, v in files.items() if _valid_entry(v)}

    def file_digest(self, path: Path) -> str:
        """The digest of ``path``, from the cache when its size and mtime are unchanged."""
        resolved = path.resolve()
        stat = resolved.stat()
        key = str(resolved)
        entry = self._entries.get(key)
        if entry and entry["size"] == stat.st_size and entry["mtime_ns"] == stat.st_mtime_ns:
            return str(entry["digest"])
        value = file_digest(resolved)
        self.hashed.append(resolved)
        if self._clock() - stat.st_mtime_ns > _RACY_WINDOW_NS:
            self._entries[key] = {
                "size": stat.st_size,
                "mtime_ns": stat.st_mtime_ns,
                "digest": value,
            }
            self._dirty = True
        elif key in self._entries:
            del self._entries[key]
            self._dirty = True
        return value

    def save(self) -> None:
        """Write the cache atomically if it changed; failing to write is not an error."""
        if self.path is None or not self._dirty:
            return
        document = {"format_version": CACHE_FORMAT_VERSION, "files": self._entries}
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with tmp.open("w", encoding="utf-8") as handle:
                handle.write(canonical_json(document))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
            self._dirty = False
        except OSError:
            tmp.unlink(missing_ok=True)


def _valid_entry(entry: Any) -> bool:
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("size"), int)
        and isinstance(entry.get("mtime_ns"), int)
        and isinstance(entry.get("digest"), str)
    )


# -- data sources -----------------------------------------------------------------------


def data_fingerprint(
    config: Mapping[str, Any],
    *,
    project_dir: Path,
    key: str,
    cache: FingerprintCache | None = None,
) -> str:
    """The content fingerprint of a data source; ConfigError when its data cannot be found.

    ``key`` is the config key path of the source (``data.tumors``), used in diagnostics.
    """
    kind = config.get("kind", "file")
    if kind == "sklearn":
        return _sklearn_fingerprint(str(config.get("dataset", "")), key)
    if kind == "sql":
        return _sql_fingerprint(config, project_dir, key, cache)
    return digest({"kind": kind, "file": _file_part(config, "path", project_dir, key, cache)})


def _file_part(
    config: Mapping[str, Any],
    field: str,
    project_dir: Path,
    key: str,
    cache: FingerprintCache | None,
) -> str:
    raw = config.get(field)
    if not isinstance(raw, str) or not raw:
        raise ConfigError(
            [
                Diagnostic.error(
                    f"{key}.{field} is not set",
                    "Give the path of the data file.",
                    key=f"{key}.{field}",
                )
            ]
        )
    path = Path(raw) if Path(raw).is_absolute() else project_dir / raw
    if not path.is_file():
        raise ConfigError(
            [
                Diagnostic.error(
                    f"data file {raw} does not exist",
                    f"{key}.{field} points at {path}, which is not a file. Fix the path "
                    "(relative paths are relative to the project directory) or create the file.",
                    key=f"{key}.{field}",
                )
            ]
        )
    return cache.file_digest(path) if cache is not None else file_digest(path)


_SQL_LOCATION_FIELDS = ("database", "path", "url", "dsn", "connection")


def _sql_fingerprint(
    config: Mapping[str, Any], project_dir: Path, key: str, cache: FingerprintCache | None
) -> str:
    query = config.get("query", "")
    field = next((f for f in _SQL_LOCATION_FIELDS if isinstance(config.get(f), str)), None)
    location = str(config.get(field, "")) if field else ""
    engine = str(config.get("engine") or config.get("dialect") or location.partition(":")[0])
    if engine.startswith("postgres") or not location or location == ":memory:":
        # Content of a server database is checked by `plan --refresh`; the query is what we know.
        return digest({"kind": "sql", "engine": engine, "query": query})
    assert field is not None
    for scheme in ("sqlite:///", "duckdb:///", "sqlite://", "duckdb://"):
        if location.startswith(scheme):
            location = location[len(scheme) :]
            break
    file_part = _file_part({field: location}, field, project_dir, key, cache)
    return digest({"kind": "sql", "file": file_part, "query": query})


def _sklearn_fingerprint(dataset: str, key: str) -> str:
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise ConfigError(
            [
                Diagnostic.error(
                    "scikit-learn is not installed",
                    f"{key} uses a dataset bundled with scikit-learn; install scikit-learn.",
                    key=f"{key}.kind",
                )
            ]
        )
    files = SKLEARN_DATA_FILES.get(dataset)
    if files is None:
        raise ConfigError(
            [
                Diagnostic.error(
                    f"unknown scikit-learn dataset {dataset!r}",
                    f"Use one of: {', '.join(sorted(SKLEARN_DATA_FILES))}.",
                    key=f"{key}.dataset",
                )
            ]
        )
    data_dir = Path(spec.origin).parent / "datasets" / "data"
    digests = {name: file_digest(data_dir / name) for name in files if (data_dir / name).is_file()}
    version = importlib.metadata.version("scikit-learn")
    return digest({"kind": "sklearn", "dataset": dataset, "version": version, "files": digests})
