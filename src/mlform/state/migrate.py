"""Upgrade steps for older state documents, applied in a chain up to the current format.

Each step takes the raw JSON mapping of one format version and returns the mapping of
the next; :func:`migrate_document` runs them in order. Documents newer than this mlform
are refused: a newer mlform wrote them and an older one must not rewrite them.

Format history (docs/adr/0001-state-format.md):

* **v0** (pre-release shape): ``{"version": 0, "lineage", "serial",
  "resources": [{"address", "kind", "config", "outputs", "digest", "deps"}]}``.
* **v1**: ``{"format_version": 1, "lineage", "serial", "mlform_version", "project",
  "stack", "objects": {address: RecordedObject}}``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mlform.errors import StateError
from mlform.state.model import STATE_FORMAT_VERSION

RawDocument = dict[str, Any]
UpgradeStep = Callable[[RawDocument], RawDocument]


def _upgrade_v0_to_v1(raw: RawDocument) -> RawDocument:
    objects: dict[str, Any] = {}
    for resource in raw.get("resources", []):
        address = str(resource["address"])
        objects[address] = {
            "address": address,
            "kind": str(resource.get("kind") or address.partition(".")[0]),
            "status": "applied",
            "config": resource.get("config", {}),
            "fingerprints": {},
            "content_digest": resource.get("digest", ""),
            "upstream": {},
            "depends_on": list(resource.get("deps", [])),
            "outputs": resource.get("outputs", {}),
            "error": None,
            "updated_at": None,
            "updated_serial": int(raw.get("serial", 0)),
        }
    return {
        "format_version": 1,
        "lineage": raw["lineage"],
        "serial": int(raw.get("serial", 0)),
        "mlform_version": "",
        "project": "",
        "stack": "",
        "objects": objects,
    }


# UPGRADES[n] turns a version-n document into a version-(n+1) document.
UPGRADES: dict[int, UpgradeStep] = {0: _upgrade_v0_to_v1}


def document_version(raw: RawDocument) -> int:
    """The format version a raw document declares (``version`` in v0, ``format_version`` after)."""
    value = raw.get("format_version", raw.get("version"))
    if not isinstance(value, int) or isinstance(value, bool):
        raise StateError(
            "the state document has no integer format_version; it was not written by mlform "
            "or is damaged"
        )
    return value


def migrate_document(
    raw: RawDocument,
    *,
    target: int = STATE_FORMAT_VERSION,
    upgrades: dict[int, UpgradeStep] | None = None,
) -> RawDocument:
    """Upgrade ``raw`` step by step to format ``target``; refuse newer or unknown versions."""
    steps = UPGRADES if upgrades is None else upgrades
    version = document_version(raw)
    if version > target:
        raise StateError(
            f"the state uses format version {version}, newer than this mlform understands "
            f"(up to {target}): upgrade mlform to read it"
        )
    current = raw
    while version < target:
        step = steps.get(version)
        if step is None:
            raise StateError(
                f"no upgrade step from state format version {version}: this mlform cannot "
                "migrate it; restore a snapshot with `mlform state import`"
            )
        current = step(current)
        version = document_version(current)
    return current
