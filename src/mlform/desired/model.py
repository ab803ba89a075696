"""Value types of the desired system (the resolved spec, ready to plan against state)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from mlform.addresses import Address


@dataclass(frozen=True, slots=True)
class DesiredObject:
    address: Address
    # The object's resolved config as plain JSON-able data. ``${secret:}`` values are
    # already redacted to tokens (see mlform.secrets) and never appear here in clear.
    config: Mapping[str, Any]
    depends_on: tuple[Address, ...] = ()
    # Named fingerprints, each ``sha256:<hex>``: "config" (the whole config), and as
    # applicable "data" (content of a data source), "code:<module>" (a user module
    # named by _target_), "toolchain" (versions that change results).
    fingerprints: Mapping[str, str] = field(default_factory=dict)
    # Merkle digest of what dependents consume: the content part of the config,
    # the data/code/toolchain fingerprints and the content digests of upstream objects.
    content_digest: str = ""
    source_file: str | None = None


@dataclass(frozen=True, slots=True)
class DesiredSystem:
    project: str
    stack: str
    # Objects in a deterministic topological order (dependencies first).
    objects: Mapping[Address, DesiredObject]
    # Digest over every object's fingerprints and the global settings (target,
    # backend); a saved plan is stale when this moves.
    input_digest: str = ""
    # Global settings that are not objects (project, target, backend, policies),
    # redacted, kept for renderers and providers.
    settings: Mapping[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[DesiredObject]:
        return iter(self.objects.values())

    def __len__(self) -> int:
        return len(self.objects)

    def get(self, address: Address) -> DesiredObject | None:
        return self.objects.get(address)
