"""Drift: recorded objects whose live outputs no longer match the state.

:func:`detect_drift` asks each object's provider what is live now (``read``) and
compares it with the outputs recorded at apply. Read-only: the state is not changed.
Infrastructure (processes, Kubernetes objects) is checked for the whole stack at once
by the engine; :func:`record_drift` notes what it found on the owning objects, which
makes the next plan update them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlform.diagnostics import Diagnostic
from mlform.infra.model import InfraChange, InfraOp

if TYPE_CHECKING:
    from mlform.providers.base import ProviderContext
    from mlform.providers.registry import ProviderRegistry
    from mlform.state.model import StateDocument


@dataclass(frozen=True)
class DriftItem:
    address: str
    detail: str


@dataclass(frozen=True)
class RefreshResult:
    drifted: tuple[DriftItem, ...]
    checked: int
    diagnostics: tuple[Diagnostic, ...] = ()


def detect_drift(
    state: StateDocument, registry: ProviderRegistry, context: ProviderContext
) -> RefreshResult:
    """Every recorded object of a kind with a provider, checked against what is live."""
    from mlform.addresses import Address
    from mlform.providers.base import ReadRequest
    from mlform.workspace import address_order

    drifted: list[DriftItem] = []
    diagnostics: list[Diagnostic] = []
    checked = 0
    for record in sorted(state.objects.values(), key=address_order):
        address = Address.parse(record.address)
        provider = registry.get(address.kind)
        if provider is None:
            continue
        checked += 1
        live = provider.read(ReadRequest(address, record.config, record.outputs, context))
        diagnostics.extend(live.diagnostics)
        if live.outputs is None:
            drifted.append(DriftItem(record.address, "no longer exists"))
        elif dict(live.outputs) != record.outputs:
            changed = sorted(
                k
                for k in set(live.outputs) | set(record.outputs)
                if live.outputs.get(k) != record.outputs.get(k)
            )
            drifted.append(DriftItem(record.address, "changed: " + ", ".join(changed)))
    return RefreshResult(tuple(drifted), checked, tuple(diagnostics))


def owns_infrastructure(state: StateDocument) -> bool:
    return any(record.outputs.get("infrastructure") for record in state.objects.values())


def infrastructure_drift(
    changes: Sequence[InfraChange],
) -> dict[str, list[str]]:
    """Engine changes found by a refresh, as one sentence per resource, by owner address."""
    by_owner: dict[str, list[str]] = {}
    for change in changes:
        what = "is gone" if change.op is InfraOp.GONE else "changed"
        if change.op is InfraOp.DRIFTED and change.fields:
            what = f"changed ({', '.join(change.fields)})"
        by_owner.setdefault(str(change.owner), []).append(f"{change.name} {what}")
    return by_owner


def record_drift(state: StateDocument, drift: Mapping[str, list[str]]) -> StateDocument:
    """``state`` with each drifted owner's outputs carrying ``drift`` (read by the planner)."""
    objects = dict(state.objects)
    for address, items in drift.items():
        record = objects.get(address)
        if record is not None:
            outputs = {**record.outputs, "drift": list(items)}
            objects[address] = record.model_copy(update={"outputs": outputs})
    return state.model_copy(update={"objects": objects})
