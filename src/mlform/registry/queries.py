"""The read side of the registry for ``mlform runs|models|lineage``: plain values, no I/O
beyond reading the records under a stack's state directory::

    <state dir>/registry/   the ModelRegistry (versions, aliases, artifacts, cards, lineage)
    <state dir>/runs/       the RunStore (one JSON record per training run)

Errors are :class:`~mlform.registry.errors.UnknownRefError` messages that name the
argument and list what exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlform.registry.errors import UnknownRefError
from mlform.registry.refs import ModelRef
from mlform.registry.runs import CompareRow, RunRecord, RunStore
from mlform.registry.versions import AliasMove, ModelRegistry, ModelVersion

__all__ = [
    "ModelSummary",
    "VersionDetails",
    "compare_runs",
    "lineage_record",
    "list_models",
    "list_runs",
    "list_versions",
    "registry_for",
    "run_store_for",
    "show_model",
    "show_run",
]


def registry_for(state_dir: Path) -> ModelRegistry:
    return ModelRegistry(Path(state_dir) / "registry")


def run_store_for(state_dir: Path) -> RunStore:
    return RunStore(Path(state_dir) / "runs")


@dataclass(frozen=True, slots=True)
class ModelSummary:
    address: str
    versions: int
    rejected: int
    latest: str  # e.g. model.churn@v3
    latest_status: str
    aliases: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "versions": self.versions,
            "rejected": self.rejected,
            "latest": self.latest,
            "latest_status": self.latest_status,
            "aliases": {a: f"v{n}" for a, n in self.aliases.items()},
        }


@dataclass(frozen=True, slots=True)
class VersionDetails:
    version: ModelVersion
    aliases: list[str]
    card_path: Path | None
    reference_path: Path | None
    lineage_path: Path | None
    artifact_path: Path | None
    artifact_verified: bool | None  # None: no artifact
    alias_history: list[AliasMove] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = self.version.to_dict()
        data.update(
            aliases=list(self.aliases),
            card_path=None if self.card_path is None else str(self.card_path),
            reference_path=None if self.reference_path is None else str(self.reference_path),
            lineage_path=None if self.lineage_path is None else str(self.lineage_path),
            artifact_path=None if self.artifact_path is None else str(self.artifact_path),
            artifact_verified=self.artifact_verified,
            alias_history=[m.to_dict() for m in self.alias_history],
        )
        return data


def _resolve(registry: ModelRegistry, text: str, argument: str) -> ModelVersion:
    ref = ModelRef.parse(text, argument=argument)
    try:
        return registry.resolve(ref)
    except UnknownRefError as exc:
        raise UnknownRefError(f"{argument} {text!r}: {exc}") from None


def list_models(state_dir: Path) -> list[ModelSummary]:
    """One summary per registered model, by address."""
    registry = registry_for(state_dir)
    summaries = []
    for address in registry.addresses():
        versions = registry.list_versions(address)
        latest = versions[-1]
        summaries.append(
            ModelSummary(
                address=address,
                versions=len(versions),
                rejected=sum(1 for v in versions if not v.accepted),
                latest=latest.ref,
                latest_status=latest.status,
                aliases=registry.aliases(address),
            )
        )
    return summaries


def list_versions(state_dir: Path, address: str) -> list[ModelVersion]:
    registry = registry_for(state_dir)
    versions = registry.list_versions(ModelRef.parse(address, argument="ADDRESS").address)
    if not versions:
        known = ", ".join(registry.addresses()) or "none"
        raise UnknownRefError(
            f"ADDRESS {address!r}: no versions are registered (models in the registry: {known})"
        )
    return versions


def show_model(state_dir: Path, ref: str, *, argument: str = "ADDRESS") -> VersionDetails:
    """A version (``model.churn``, ``@v3``, ``@champion``, ``@latest``) with its aliases and files.

    A bare address means the champion, or the latest version when there is no champion.
    """
    registry = registry_for(state_dir)
    mv = _resolve(registry, ref, argument)
    artifact_path = None
    verified = None
    if mv.digest is not None:
        verified = registry.artifacts.verify(mv.digest)
        if registry.artifacts.exists(mv.digest):
            artifact_path = registry.artifacts.path_of(mv.digest)
    history = [
        m
        for m in registry.alias_history(mv.address)
        if mv.version in (m.from_version, m.to_version)
    ]
    return VersionDetails(
        version=mv,
        aliases=registry.aliases_for(mv),
        card_path=registry.file_of(mv, "card"),
        reference_path=registry.file_of(mv, "reference"),
        lineage_path=registry.file_of(mv, "lineage"),
        artifact_path=artifact_path,
        artifact_verified=verified,
        alias_history=history,
    )


def lineage_record(state_dir: Path, ref: str, *, argument: str = "ADDRESS") -> dict[str, Any]:
    """The stored OpenLineage RunEvent of a version."""
    registry = registry_for(state_dir)
    mv = _resolve(registry, ref, argument)
    if registry.file_of(mv, "lineage") is None:
        raise UnknownRefError(f"{argument} {ref!r}: {mv.ref} has no lineage record")
    return registry.lineage(mv.ref)


def list_runs(state_dir: Path, address: str | None = None) -> list[RunRecord]:
    if address is not None:
        address = ModelRef.parse(address, argument="ADDRESS").address
    return run_store_for(state_dir).list(address)


def show_run(state_dir: Path, run_id: str) -> RunRecord:
    return run_store_for(state_dir).get(run_id)


def compare_runs(state_dir: Path, run_ids: Sequence[str]) -> list[CompareRow]:
    return run_store_for(state_dir).compare(run_ids)
