"""Drift: recorded objects whose live outputs no longer match the state.

:func:`detect_drift` asks each object's provider what is live now (``read``) and
compares it with the outputs recorded at apply. Read-only: the state is not changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlform.diagnostics import Diagnostic

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
