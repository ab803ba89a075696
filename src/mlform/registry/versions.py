"""The model registry of one stack: numbered versions, aliases and their history.

Every evaluated candidate becomes a version, ``model.churn@v1``, ``@v2``… numbered in
registration order, whether it was accepted or rejected (a rejected version keeps its
reasons and can never carry an alias). Aliases (``champion``, ``challenger``) point at
accepted versions; every move is appended to the alias history. Layout under the root::

    registry.lock                         held while registering or moving an alias
    artifacts/sha256/<hex>/...            content-addressed model files (ArtifactStore)
    models/<address>/v<N>/version.json    the version record (written last: its commit)
    models/<address>/v<N>/card.md         the rendered model card
    models/<address>/v<N>/reference.json  reference statistics for drift monitors
    models/<address>/v<N>/lineage.json    the OpenLineage RunEvent of the training
    models/<address>/aliases.json         {"champion": 3, "challenger": 4}
    models/<address>/alias_history.jsonl  one move per line

Writes are atomic (temp file, fsync, rename) and serialised between processes by an
``fcntl`` lock on ``registry.lock`` (released by the OS when its holder dies).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mlform.registry.artifacts import ArtifactStore
from mlform.registry.errors import RegistryError, UnknownRefError
from mlform.registry.jsonio import jsonable, read_json, write_json
from mlform.registry.refs import LATEST, ModelRef, check_alias_name, parse_model_address
from mlform.state.atomic import append_line, write_atomic
from mlform.state.timestamps import utc_now

__all__ = ["AliasMove", "ModelRegistry", "ModelVersion", "Status"]

Status = Literal["accepted", "rejected"]
CARD_FILE = "card.md"
REFERENCE_FILE = "reference.json"
LINEAGE_FILE = "lineage.json"
VERSION_FILE = "version.json"
_VERSION_DIR_RE = re.compile(r"^v([1-9][0-9]*)$")
_LOCK_POLL_S = 0.02


@dataclass(frozen=True, slots=True)
class ModelVersion:
    address: str
    version: int
    status: Status
    digest: str | None
    created_at: str
    run_id: str | None = None
    metrics: dict[str, float | None] = field(default_factory=dict)
    gate_results: list[dict[str, Any]] = field(default_factory=list)
    fairness: list[dict[str, Any]] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    fingerprints: dict[str, str] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        return f"{self.address}@v{self.version}"

    @property
    def accepted(self) -> bool:
        return self.status == "accepted"

    def to_dict(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "version": self.version,
            "ref": self.ref,
            "status": self.status,
            "digest": self.digest,
            "created_at": self.created_at,
            "run_id": self.run_id,
            "metrics": dict(self.metrics),
            "gate_results": list(self.gate_results),
            "fairness": list(self.fairness),
            "reasons": list(self.reasons),
            "fingerprints": dict(self.fingerprints),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelVersion:
        status = data["status"]
        if status not in ("accepted", "rejected"):
            raise ValueError(f"unknown status {status!r}")
        return cls(
            address=str(data["address"]),
            version=int(data["version"]),
            status=status,
            digest=None if data.get("digest") is None else str(data["digest"]),
            created_at=str(data["created_at"]),
            run_id=None if data.get("run_id") is None else str(data["run_id"]),
            metrics={
                str(k): (None if v is None else float(v))
                for k, v in dict(data.get("metrics", {})).items()
            },
            gate_results=[dict(g) for g in data.get("gate_results", [])],
            fairness=[dict(f) for f in data.get("fairness", [])],
            reasons=[str(r) for r in data.get("reasons", [])],
            fingerprints={str(k): str(v) for k, v in dict(data.get("fingerprints", {})).items()},
        )


@dataclass(frozen=True, slots=True)
class AliasMove:
    time: str
    address: str
    alias: str
    from_version: int | None
    to_version: int | None  # None: the alias was removed
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "address": self.address,
            "alias": self.alias,
            "from": self.from_version,
            "to": self.to_version,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AliasMove:
        return cls(
            time=str(data["time"]),
            address=str(data["address"]),
            alias=str(data["alias"]),
            from_version=None if data.get("from") is None else int(data["from"]),
            to_version=None if data.get("to") is None else int(data["to"]),
            reason=str(data.get("reason", "")),
        )


def _as_dict(item: Any) -> dict[str, Any]:
    if isinstance(item, Mapping):
        return dict(item)
    to_dict = getattr(item, "to_dict", None)
    if callable(to_dict):
        return dict(to_dict())
    raise TypeError(f"cannot record {type(item).__name__}: give a mapping or a result object")


class ModelRegistry:
    """The registry rooted at ``root`` (``<state dir>/registry`` for a stack)."""

    def __init__(self, root: Path, *, lock_timeout: float = 60.0) -> None:
        self.root = Path(root)
        self.artifacts = ArtifactStore(self.root / "artifacts")
        self._models = self.root / "models"
        self._lock_path = self.root / "registry.lock"
        self._lock_timeout = lock_timeout

    # -- locking -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + self._lock_timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise RegistryError(
                            f"the model registry at {self.root} is busy: another mlform process "
                            f"held {self._lock_path} for {self._lock_timeout:g} s; try again"
                        ) from None
                    time.sleep(_LOCK_POLL_S)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def write_lock(self) -> contextlib.AbstractContextManager[None]:
        """The lock every writer of this registry holds (:mod:`mlform.registry.transfer`
        copies versions in under it)."""
        return self._locked()

    # -- paths -------------------------------------------------------------------------

    def _model_dir(self, address: str) -> Path:
        return self._models / address

    def version_dir(self, address: str, version: int) -> Path:
        return self._model_dir(address) / f"v{version}"

    def _version_numbers(self, address: str) -> list[int]:
        model_dir = self._model_dir(address)
        if not model_dir.is_dir():
            return []
        numbers = []
        for child in model_dir.iterdir():
            match = _VERSION_DIR_RE.match(child.name)
            if match and child.is_dir():
                numbers.append(int(match.group(1)))
        return sorted(numbers)

    # -- registering -------------------------------------------------------------------

    def register(
        self,
        address: str,
        digest: str | None,
        *,
        status: Status,
        metrics: Mapping[str, float | None],
        gate_results: Sequence[Any] = (),
        fairness: Sequence[Any] = (),
        run_id: str | None = None,
        card_markdown: str | Callable[[ModelVersion], str] | None = None,
        reference_stats: Mapping[str, Any] | None = None,
        fingerprints: Mapping[str, str] | None = None,
        reasons: Sequence[str] = (),
        lineage: Mapping[str, Any] | Callable[[ModelVersion], Mapping[str, Any]] | None = None,
    ) -> ModelVersion:
        """Record a new version (the next number) and return it.

        ``card_markdown`` and ``lineage`` may be callables given the new version (so the
        card and lineage record can name it); they run under the registry lock. An accepted
        version needs its artifact in :attr:`artifacts`. A rejected version without
        ``reasons`` gets the messages of its failed gates and fairness checks.
        """
        address = parse_model_address(address)
        if status not in ("accepted", "rejected"):
            raise RegistryError(f"status must be 'accepted' or 'rejected', not {status!r}")
        if digest is not None and not self.artifacts.exists(digest):
            raise RegistryError(
                f"artifact {digest} of {address} is not in the artifact store; store it with "
                "artifacts.put_dir() before registering"
            )
        if status == "accepted" and digest is None:
            raise RegistryError(f"an accepted version of {address} needs an artifact digest")
        gates = [jsonable(_as_dict(g)) for g in gate_results]
        fair = [jsonable(_as_dict(f)) for f in fairness]
        why = list(reasons)
        if status == "rejected" and not why:
            why = [str(g.get("message", g.get("name"))) for g in gates if not g.get("passed")]
            why += [str(f.get("message", f.get("column"))) for f in fair if not f.get("passed")]
        with self._locked():
            numbers = self._version_numbers(address)
            number = (numbers[-1] if numbers else 0) + 1
            vdir = self.version_dir(address, number)
            vdir.mkdir(parents=True, exist_ok=False)
            mv = ModelVersion(
                address=address,
                version=number,
                status=status,
                digest=digest,
                created_at=utc_now(),
                run_id=run_id,
                metrics=jsonable(dict(metrics)),
                gate_results=gates,
                fairness=fair,
                reasons=why,
                fingerprints={str(k): str(v) for k, v in (fingerprints or {}).items()},
            )
            if card_markdown is not None:
                text = card_markdown(mv) if callable(card_markdown) else card_markdown
                write_atomic(vdir / CARD_FILE, text)
            if reference_stats is not None:
                write_json(vdir / REFERENCE_FILE, reference_stats)
            if lineage is not None:
                write_json(vdir / LINEAGE_FILE, lineage(mv) if callable(lineage) else lineage)
            write_json(vdir / VERSION_FILE, mv.to_dict())
        return mv

    def save_lineage(self, ref: str, event: Mapping[str, Any]) -> Path:
        """Store (or replace) the lineage record of a version; returns its path."""
        mv = self.resolve(ref)
        path = self.version_dir(mv.address, mv.version) / LINEAGE_FILE
        with self._locked():
            write_json(path, event)
        return path

    # -- reading -----------------------------------------------------------------------

    def addresses(self) -> list[str]:
        """Models with at least one version, sorted."""
        if not self._models.is_dir():
            return []
        return sorted(p.name for p in self._models.iterdir() if self._version_numbers(p.name))

    def _load(self, address: str, number: int) -> ModelVersion | None:
        path = self.version_dir(address, number) / VERSION_FILE
        if not path.is_file():
            return None  # a registration that died before its commit
        data = read_json(path, what=f"version record {address}@v{number}")
        try:
            return ModelVersion.from_dict(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise RegistryError(f"version record {path} is malformed ({exc})") from None

    def list_versions(self, address: str) -> list[ModelVersion]:
        """Every committed version of ``address``, oldest first."""
        address = parse_model_address(address)
        loaded = (self._load(address, n) for n in self._version_numbers(address))
        return [mv for mv in loaded if mv is not None]

    def resolve(self, ref: str | ModelRef) -> ModelVersion:
        """The version a reference names; UnknownRefError listing what exists otherwise."""
        parsed = ref if isinstance(ref, ModelRef) else ModelRef.parse(ref)
        versions = self.list_versions(parsed.address)
        if not versions:
            known = ", ".join(self.addresses()) or "none"
            raise UnknownRefError(
                f"no versions of {parsed.address} are registered (models in the registry: {known})"
            )
        by_number = {mv.version: mv for mv in versions}
        aliases = self.aliases(parsed.address)
        if parsed.version is not None:
            found = by_number.get(parsed.version)
        elif parsed.alias == LATEST:
            found = versions[-1]
        elif parsed.alias is not None:
            number = aliases.get(parsed.alias)
            found = None if number is None else by_number.get(number)
        else:
            number = aliases.get("champion")
            found = by_number.get(number) if number is not None else versions[-1]
        if found is None:
            raise UnknownRefError(f"{parsed} does not exist; {self.describe(parsed.address)}")
        return found

    get = resolve

    def describe(self, address: str) -> str:
        """``versions: v1, v2 (rejected); aliases: champion -> v1`` for error messages."""
        versions = self.list_versions(address)
        listed = ", ".join(
            f"v{mv.version}" + ("" if mv.accepted else " (rejected)") for mv in versions
        )
        aliases = self.aliases(address)
        alias_text = ", ".join(f"{a} -> v{n}" for a, n in sorted(aliases.items())) or "none"
        return f"versions of {address}: {listed or 'none'}; aliases: {alias_text}"

    # -- aliases -----------------------------------------------------------------------

    def aliases(self, address: str) -> dict[str, int]:
        """``{alias: version}`` of ``address``."""
        path = self._model_dir(parse_model_address(address)) / "aliases.json"
        if not path.is_file():
            return {}
        data = read_json(path, what=f"aliases of {address}")
        return {str(k): int(v) for k, v in dict(data).items()}

    def aliases_for(self, mv: ModelVersion) -> list[str]:
        return sorted(a for a, n in self.aliases(mv.address).items() if n == mv.version)

    def alias_of(self, address: str, alias: str) -> ModelVersion | None:
        """The version ``alias`` points at, or None when the alias is not set."""
        number = self.aliases(address).get(alias)
        if number is None:
            return None
        return self._load(parse_model_address(address), number)

    def set_alias(
        self, address: str, alias: str, version: int | str, *, reason: str = ""
    ) -> AliasMove:
        """Point ``alias`` at ``version`` (a number or a ref); refused for rejected versions."""
        address = parse_model_address(address)
        check_alias_name(alias)
        target = (
            self.resolve(f"{address}@v{version}")
            if isinstance(version, int)
            else self.resolve(version)
        )
        if target.address != address:
            raise UnknownRefError(f"{target.ref} is not a version of {address}")
        if not target.accepted:
            why = "; ".join(target.reasons) or "its gates failed"
            raise RegistryError(
                f"{target.ref} was rejected ({why}); a rejected version cannot be {alias}"
            )
        return self._move(address, alias, target.version, reason)

    def remove_alias(self, address: str, alias: str, *, reason: str = "") -> AliasMove:
        address = parse_model_address(address)
        if alias not in self.aliases(address):
            raise UnknownRefError(f"{address} has no alias {alias!r}; {self.describe(address)}")
        return self._move(address, alias, None, reason)

    def _move(self, address: str, alias: str, to: int | None, reason: str) -> AliasMove:
        model_dir = self._model_dir(address)
        with self._locked():
            current = self.aliases(address)
            move = AliasMove(utc_now(), address, alias, current.get(alias), to, reason)
            if to is None:
                current.pop(alias, None)
            else:
                current[alias] = to
            write_json(model_dir / "aliases.json", dict(sorted(current.items())))
            append_line(model_dir / "alias_history.jsonl", json.dumps(move.to_dict()))
        return move

    def alias_history(self, address: str) -> list[AliasMove]:
        path = self._model_dir(parse_model_address(address)) / "alias_history.jsonl"
        if not path.is_file():
            return []
        moves = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                moves.append(AliasMove.from_dict(json.loads(line)))
            except (ValueError, KeyError, TypeError) as exc:
                raise RegistryError(f"{path}:{number} is not an alias move ({exc})") from None
        return moves

    # -- the files of a version --------------------------------------------------------

    def file_of(
        self, mv: ModelVersion, name: Literal["card", "reference", "lineage"]
    ) -> Path | None:
        """Path of the version's card, reference statistics or lineage record, if stored."""
        filename = {"card": CARD_FILE, "reference": REFERENCE_FILE, "lineage": LINEAGE_FILE}[name]
        path = self.version_dir(mv.address, mv.version) / filename
        return path if path.is_file() else None

    def reference_stats(self, ref: str) -> dict[str, Any]:
        mv = self.resolve(ref)
        path = self.file_of(mv, "reference")
        if path is None:
            raise UnknownRefError(f"{mv.ref} has no reference statistics recorded")
        return dict(read_json(path, what=f"reference statistics of {mv.ref}"))

    def lineage(self, ref: str) -> dict[str, Any]:
        mv = self.resolve(ref)
        path = self.file_of(mv, "lineage")
        if path is None:
            raise UnknownRefError(f"{mv.ref} has no lineage record")
        return dict(read_json(path, what=f"lineage record of {mv.ref}"))

    def champion_metrics(self, address: str) -> dict[str, float | None] | None:
        """The current champion's metrics (for ``must_beat_champion``), None without one."""
        champion = self.alias_of(address, "champion")
        return None if champion is None else dict(champion.metrics)
