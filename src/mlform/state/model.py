"""The state document (format documented in docs/adr/0001-state-format.md).

A versioned JSON document: ``format_version``, ``lineage`` (a UUID fixed when the
state is first created), ``serial`` (incremented on every committed write), and
one record per object with its applied config, fingerprints, the content digests of
the upstream objects it was built from, provider outputs and status.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

STATE_FORMAT_VERSION = 1


class ObjectStatus(StrEnum):
    APPLIED = "applied"  # the last step on this object finished
    PENDING = "pending"  # a step started and did not finish (killed, or still running)
    FAILED = "failed"  # the last step failed; the previous outputs are kept
    REJECTED = "rejected"  # a model candidate failed its evaluation gates


class RecordedObject(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    address: str
    kind: str
    status: ObjectStatus = ObjectStatus.APPLIED
    config: dict[str, Any] = Field(default_factory=dict)
    fingerprints: dict[str, str] = Field(default_factory=dict)
    content_digest: str = ""
    # address -> content digest of each upstream object when this one was applied.
    upstream: dict[str, str] = Field(default_factory=dict)
    depends_on: list[str] = Field(default_factory=list)
    outputs: dict[str, Any] = Field(default_factory=dict)
    # The last error message when status is failed/rejected.
    error: str | None = None
    updated_at: str | None = None  # RFC 3339, set by the writer (never by the planner)
    updated_serial: int = 0


class HistoryEntry(BaseModel):
    """One finished operation (an apply, a destroy, a rollback, an import)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    operation: str
    started_serial: int
    finished_serial: int
    started_at: str
    finished_at: str
    plan_digest: str | None = None
    summary: str = ""
    outcome: str = "succeeded"  # succeeded | failed | interrupted


class StateDocument(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    format_version: int = STATE_FORMAT_VERSION
    lineage: str
    serial: int = 0
    mlform_version: str = ""
    project: str = ""
    stack: str = ""
    objects: dict[str, RecordedObject] = Field(default_factory=dict)

    def get(self, address: str) -> RecordedObject | None:
        return self.objects.get(address)
