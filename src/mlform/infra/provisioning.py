"""How providers reach the stack's infrastructure engine, without importing it.

A provider whose object owns long-lived resources calls
``context.infrastructure.provision(owner, resources)``: afterwards the owner's
infrastructure is exactly ``resources`` (an empty sequence removes it all). The
implementation (:mod:`mlform.pulumi_engine.provisioner`) runs one Pulumi update of the
whole stack's program, so other owners' resources are left as they are.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from mlform.addresses import Address
from mlform.infra.model import InfraChange, InfraResource

# Live outputs of one owner's resources, by resource name.
OwnerOutputs = dict[str, dict[str, Any]]


# Called with each resource change while the engine works (live progress).
ChangeCallback = Callable[[InfraChange], None]


class Provisioner(Protocol):
    def provision(
        self,
        owner: Address,
        resources: Sequence[InfraResource],
        *,
        refresh: bool = False,
        on_change: ChangeCallback | None = None,
        company: Callable[[], bool] | None = None,
    ) -> OwnerOutputs:
        """Make ``owner``'s infrastructure exactly ``resources``; ``refresh`` first asks
        the engine what is live (so a resource that died is recreated). ``company`` says
        whether another caller may still join this engine run (None: unknown)."""
        ...

    def drift(self) -> tuple[InfraChange, ...]:
        """What is live now differs from what the engine recorded (changes nothing)."""
        ...

    def refresh(self) -> tuple[InfraChange, ...]:
        """Like :meth:`drift`, and the engine's records follow the live world."""
        ...


class LazyProvisioner:
    """Builds the real provisioner on first use, so commands that never provision
    (a no-op apply, a plan) never import or start the engine."""

    def __init__(self, factory: Callable[[], Provisioner]) -> None:
        self._factory = factory
        self._real: Provisioner | None = None
        self._lock = threading.Lock()

    def _get(self) -> Provisioner:
        with self._lock:
            if self._real is None:
                self._real = self._factory()
            return self._real

    def provision(
        self,
        owner: Address,
        resources: Sequence[InfraResource],
        *,
        refresh: bool = False,
        on_change: ChangeCallback | None = None,
        company: Callable[[], bool] | None = None,
    ) -> OwnerOutputs:
        return self._get().provision(
            owner, resources, refresh=refresh, on_change=on_change, company=company
        )

    def drift(self) -> tuple[InfraChange, ...]:
        return self._get().drift()

    def refresh(self) -> tuple[InfraChange, ...]:
        return self._get().refresh()


def recorded_infrastructure(
    outputs_by_address: Mapping[str, Mapping[str, Any]],
) -> dict[Address, tuple[InfraResource, ...]]:
    """The infrastructure each recorded object owns, from its outputs' ``infrastructure``."""
    from mlform.infra.model import from_record

    owned: dict[Address, tuple[InfraResource, ...]] = {}
    for address, outputs in outputs_by_address.items():
        records = outputs.get("infrastructure")
        if records:
            owned[Address.parse(address)] = tuple(from_record(r) for r in records)
    return owned
