"""A historic state snapshot as the desired system: what a rollback plans towards.

Objects created since the snapshot are then planned for deletion, and changed ones
are updated back to the config recorded then.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlform.desired.model import DesiredSystem
    from mlform.spec.declared import LoadedSystem
    from mlform.state.model import StateDocument


def desired_from_state(snapshot: StateDocument, loaded: LoadedSystem) -> DesiredSystem:
    """The objects that existed at ``snapshot``, with the config and fingerprints they had then.

    A record marked pending or failed by a step that was creating it (no config was ever
    applied) did not exist yet at that serial, so it is left out: the rollback deletes it
    if it exists now. A pending or failed record that keeps an earlier config existed with
    that config, so it is rolled back to it.
    """
    from mlform.addresses import Address
    from mlform.desired.model import DesiredObject, DesiredSystem
    from mlform.workspace import address_order

    objects = {}
    for record in sorted(snapshot.objects.values(), key=address_order):
        if not record.config:
            continue
        address = Address.parse(record.address)
        objects[address] = DesiredObject(
            address=address,
            config=record.config,
            depends_on=tuple(Address.parse(d) for d in record.depends_on),
            fingerprints=record.fingerprints,
            content_digest=record.content_digest,
        )
    return DesiredSystem(
        project=loaded.project,
        stack=loaded.stack,
        objects=objects,
        input_digest=f"rollback:{snapshot.lineage}:{snapshot.serial}",
        settings=loaded.settings,
    )
