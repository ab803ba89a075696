"""Per-kind change rules: which config fields matter to whom, and which action a change takes.

One small table shared by the desired-system stage (which digests an object's
*content*: what its dependents consume) and the planner (which turns differences
into actions). Keeping both sides on one table is what makes "apply then plan shows
no changes" hold.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlform.addresses import Kind
from mlform.plan.model import Action


@dataclass(frozen=True, slots=True)
class KindRules:
    kind: Kind
    # Top-level config keys whose change touches only this object, not what its
    # dependents consume (a model card, a replica count).
    local_fields: frozenset[str]
    # Top-level config keys whose change destroys and recreates the object.
    replace_fields: frozenset[str]
    # Action when the object's content (anything outside local_fields, its data,
    # code or toolchain) changed.
    on_content_change: Action
    # Action when an upstream object's content changed since this object was applied.
    on_upstream_change: Action
    # Action when only local fields changed.
    on_local_change: Action = Action.UPDATE

    def content_view(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """The part of ``config`` that dependents consume."""
        return {k: v for k, v in config.items() if k not in self.local_fields}


_COMMON_LOCAL = frozenset({"description", "labels", "owner"})

RULES: dict[Kind, KindRules] = {
    Kind.DATA: KindRules(
        Kind.DATA,
        local_fields=_COMMON_LOCAL | {"freshness", "retention_days", "encryption"},
        replace_fields=frozenset(),
        on_content_change=Action.UPDATE,
        on_upstream_change=Action.UPDATE,
    ),
    Kind.FEATURES: KindRules(
        Kind.FEATURES,
        local_fields=_COMMON_LOCAL | {"online_store"},
        replace_fields=frozenset({"offline_store"}),
        on_content_change=Action.UPDATE,
        on_upstream_change=Action.UPDATE,
    ),
    Kind.MODEL: KindRules(
        Kind.MODEL,
        local_fields=_COMMON_LOCAL
        # where and how it trains (a Job, nodes, timeout) is not what it learns
        | {"card", "gates", "fairness", "metrics", "resources", "approvals", "training"},
        replace_fields=frozenset({"framework"}),
        on_content_change=Action.RETRAIN,
        on_upstream_change=Action.RETRAIN,
    ),
    Kind.DEPLOYMENT: KindRules(
        Kind.DEPLOYMENT,
        local_fields=_COMMON_LOCAL
        | {"replicas", "resources", "autoscaling", "strategy", "target", "image", "port", "env"},
        replace_fields=frozenset({"target"}),
        on_content_change=Action.ROLLOUT,
        on_upstream_change=Action.ROLLOUT,
    ),
    Kind.MONITOR: KindRules(
        Kind.MONITOR,
        local_fields=_COMMON_LOCAL | {"alerts", "schedule", "on_breach"},
        replace_fields=frozenset({"deployment"}),
        on_content_change=Action.UPDATE,
        on_upstream_change=Action.UPDATE,
    ),
}


def rules_for(kind: Kind) -> KindRules:
    return RULES[kind]
