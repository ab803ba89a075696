"""The built-in policy packs, one module per pack, registered as entry points.

Each module exposes ``PACK`` (a :class:`~mlform.policy.pack.RulePack`). :data:`BUILTIN`
lists them in catalogue order for callers that want them without entry-point discovery.
"""

from __future__ import annotations

from mlform.policy.pack import RulePack
from mlform.policy.packs import (
    delivery,
    destroy_protection,
    evaluation,
    fairness,
    gpu_quota,
    model_card,
    pii,
    registries,
)

BUILTIN: tuple[RulePack, ...] = (
    pii.PACK,
    delivery.PACK,
    gpu_quota.PACK,
    model_card.PACK,
    evaluation.PACK,
    fairness.PACK,
    destroy_protection.PACK,
    registries.PACK,
)

__all__ = ["BUILTIN"]
