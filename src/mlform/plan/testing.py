"""In-memory builders for tests and benchmarks: desired systems and "as if applied" states.

Pure helpers, no I/O. ``state_as_applied(desired)`` records every desired object the way
a successful apply would (config, fingerprints, content digest, upstream digests), so
planning ``desired`` against it yields only no-ops.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from mlform.addresses import Address
from mlform.desired.model import DesiredSystem
from mlform.desired.resolve import assemble
from mlform.spec.declared import DeclaredObject
from mlform.state.model import ObjectStatus, RecordedObject, StateDocument

__all__ = ["TEST_LINEAGE", "declared", "desired_system", "recorded_from", "state_as_applied"]

TEST_LINEAGE = "00000000-0000-4000-8000-000000000000"


def declared(
    address: str,
    config: Mapping[str, Any],
    depends_on: Iterable[str] = (),
    *,
    source_file: str | None = None,
) -> DeclaredObject:
    """A DeclaredObject from plain strings: ``declared("model.m", {...}, ["features.f"])``."""
    parsed = Address.parse(address)
    return DeclaredObject(
        address=parsed,
        config=dict(config),
        depends_on=tuple(Address.parse(d) for d in depends_on),
        key=parsed.config_key,
        source_file=source_file,
    )


def desired_system(
    objects: Iterable[DeclaredObject],
    external: Mapping[str, Mapping[str, str]] | None = None,
    *,
    project: str = "demo",
    stack: str = "dev",
    settings: Mapping[str, Any] | None = None,
) -> DesiredSystem:
    """A DesiredSystem; ``external`` gives data/code/toolchain fingerprints by address string."""
    fingerprints = {Address.parse(k): dict(v) for k, v in (external or {}).items()}
    return assemble(project, stack, list(objects), fingerprints, settings=settings)


def recorded_from(
    desired: DesiredSystem,
    address: str,
    *,
    status: ObjectStatus = ObjectStatus.APPLIED,
    outputs: Mapping[str, Any] | None = None,
) -> RecordedObject:
    """The record a successful apply of ``address`` would leave."""
    obj = desired.objects[Address.parse(address)]
    return RecordedObject(
        address=str(obj.address),
        kind=obj.address.kind.value,
        status=status,
        config=dict(obj.config),
        fingerprints=dict(obj.fingerprints),
        content_digest=obj.content_digest,
        upstream={str(d): desired.objects[d].content_digest for d in obj.depends_on},
        depends_on=[str(d) for d in obj.depends_on],
        outputs=dict(outputs if outputs is not None else {"id": str(obj.address)}),
    )


def state_as_applied(
    desired: DesiredSystem, *, serial: int = 1, lineage: str = TEST_LINEAGE
) -> StateDocument:
    """A state in which every desired object was applied successfully."""
    return StateDocument(
        lineage=lineage,
        serial=serial,
        project=desired.project,
        stack=desired.stack,
        objects={str(o.address): recorded_from(desired, str(o.address)) for o in desired},
    )
