"""The plan: what will change, and why. Frozen, serialisable, rendered by views.

A plan is built by :func:`mlform.plan.compute.compute_plan` from values only (no
I/O, no clock). Every change carries its reasons: the config fields that changed
(``old -> new``), fingerprints that moved (data, code, toolchain), or the upstream
cause chain that reached it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

PLAN_FORMAT_VERSION = "1.0"


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    REPLACE = "replace"
    DELETE = "delete"
    RETRAIN = "retrain"
    ROLLOUT = "rollout"
    NOOP = "no-op"

    @property
    def symbol(self) -> str:
        return _SYMBOLS[self]


_SYMBOLS = {
    Action.CREATE: "+",
    Action.UPDATE: "~",
    Action.REPLACE: "-/+",
    Action.DELETE: "-",
    Action.RETRAIN: "↻",
    Action.ROLLOUT: "»",
    Action.NOOP: " ",
}


class ReasonKind(StrEnum):
    NEW = "new"  # declared in config, not in state
    REMOVED = "removed"  # in state, no longer declared
    CONFIG_CHANGED = "config-changed"
    DATA_CHANGED = "data-changed"
    CODE_CHANGED = "code-changed"
    TOOLCHAIN_CHANGED = "toolchain-changed"
    UPSTREAM_CHANGED = "upstream-changed"
    INCOMPLETE = "incomplete"  # a previous apply failed or was interrupted on this object
    DRIFTED = "drifted"  # refresh found its live infrastructure gone or changed
    ROLLOUT_PENDING = "rollout-pending"  # a rollout is paused or was interrupted midway
    MONITOR_BREACHED = "monitor-breached"  # a monitor with on_breach: retrain breached
    REQUESTED = "requested"  # asked for explicitly (rollback, -replace, destroy)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FieldChange(_Frozen):
    """One config field that differs: ``trainer.epochs: 10 -> 20``."""

    path: str
    old: Any = None
    new: Any = None
    added: bool = False
    removed: bool = False
    sensitive: bool = False


class Reason(_Frozen):
    kind: ReasonKind
    message: str
    fields: tuple[FieldChange, ...] = ()
    upstream: str | None = None
    # The cause chain from the root cause to this object, one link per hop, e.g.
    # ("data.customers content changed sha256:ab12… -> cd34…", "features.churn update").
    chain: tuple[str, ...] = ()


class InfraResourceChange(_Frozen):
    """One infrastructure resource of an object, as the next apply will change it."""

    name: str
    type: str  # "process", "kubernetes:apps/v1:Deployment"
    op: str  # create | update | delete | same | gone | drifted
    fields: tuple[str, ...] = ()


class ResourceChange(_Frozen):
    address: str
    kind: str
    action: Action
    reasons: tuple[Reason, ...] = ()
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    depends_on: tuple[str, ...] = ()
    fingerprints: dict[str, str] = Field(default_factory=dict)
    content_digest: str | None = None
    # False when no provider for this kind is built yet; plan and apply say so plainly.
    provider_available: bool = True
    source_file: str | None = None
    # The object's own infrastructure resources (servers, Kubernetes objects), if any.
    infrastructure: tuple[InfraResourceChange, ...] = ()


class PlanSummary(_Frozen):
    create: int = 0
    update: int = 0
    replace: int = 0
    delete: int = 0
    retrain: int = 0
    rollout: int = 0
    no_op: int = 0

    @property
    def changes(self) -> int:
        return self.create + self.update + self.replace + self.delete + self.retrain + self.rollout

    @property
    def destroy(self) -> int:
        """Objects destroyed, counting replacements (destroyed then created)."""
        return self.delete + self.replace

    def line(self) -> str:
        """Terraform-like summary; replacements count as one create and one destroy."""
        parts = [
            f"{self.create + self.replace} to create",
            f"{self.update} to update",
            f"{self.retrain} to retrain",
        ]
        if self.rollout:
            parts.append(f"{self.rollout} to roll out")
        parts.append(f"{self.destroy} to destroy")
        return "Plan: " + ", ".join(parts)


class PolicyResult(_Frozen):
    rule: str
    level: str
    passed: bool
    message: str
    address: str | None = None
    exempted_by: str | None = None
    key: str | None = None
    file: str | None = None
    line: int | None = None


class PolicyExemption(_Frozen):
    """An exemption in force when the plan was made, and what it waived in this plan."""

    rule: str
    address: str | None = None
    reason: str
    expires: str  # ISO date
    file: str | None = None
    line: int | None = None
    waives: tuple[str, ...] = ()  # messages of the findings it waived (may be none)


class Plan(_Frozen):
    format_version: str = PLAN_FORMAT_VERSION
    mlform_version: str
    project: str
    stack: str
    # Command-line overrides the plan was made with; applying a saved plan recomposes
    # the config with them to check that no input moved.
    overrides: tuple[str, ...] = ()
    lineage: str | None = None  # state lineage the plan was made against (None: no state yet)
    serial: int = 0  # state serial the plan was made against
    destroy: bool = False
    changes: tuple[ResourceChange, ...] = ()
    summary: PlanSummary = PlanSummary()
    # Digests of every input the plan was made from: per-object fingerprints plus the
    # whole-system input digest. A saved plan is stale when any of these moved.
    input_digest: str = ""
    diagnostics: tuple[dict[str, Any], ...] = ()
    policy_results: tuple[PolicyResult, ...] = ()
    policy_exemptions: tuple[PolicyExemption, ...] = ()

    @property
    def has_changes(self) -> bool:
        return self.summary.changes > 0

    def change_for(self, address: str) -> ResourceChange | None:
        for change in self.changes:
            if change.address == address:
                return change
        return None
