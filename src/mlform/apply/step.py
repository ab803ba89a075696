"""Run one step of an apply: mark it pending, call the provider, record what happened.

The provider call sits behind an error boundary: an expected failure
(:class:`~mlform.providers.base.StepFailed`) becomes its diagnostic, anything else
becomes a diagnostic naming the provider, the step and the error, never a traceback.
State errors are not caught here: they stop the apply.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlform.addresses import Address
from mlform.diagnostics import Diagnostic, Severity
from mlform.plan.model import Action, ResourceChange
from mlform.providers.base import (
    ApplyRequest,
    ApplyResult,
    DeleteRequest,
    Provider,
    ProviderContext,
    StepFailed,
)
from mlform.state.model import ObjectStatus, RecordedObject
from mlform.state.timestamps import utc_now
from mlform.state.writer import StateWriter


@dataclass(frozen=True, slots=True)
class StepResult:
    outcome: str  # succeeded | failed
    message: str = ""
    outputs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    diagnostics: tuple[Diagnostic, ...] = ()


def run_step(
    change: ResourceChange,
    provider: Provider,
    writer: StateWriter,
    context: ProviderContext,
    *,
    upstream_digests: Mapping[str, str],
) -> StepResult:
    """Apply ``change`` with ``provider``, committing state before and after."""
    address = change.address
    previous = writer.get(address)
    writer.mark_pending(address, change.kind, depends_on=change.depends_on, updated_at=utc_now())
    deleted = False
    try:
        if change.action in (Action.DELETE, Action.REPLACE) and previous is not None:
            provider.delete(
                DeleteRequest(
                    address=Address.parse(address),
                    prior_config=previous.config,
                    prior_outputs=previous.outputs,
                    context=context,
                )
            )
            deleted = True
        if change.action is Action.DELETE:
            writer.remove(address)
            return StepResult("succeeded", "deleted")
        result = _create_or_update(change, provider, writer, context, deleted)
    except StepFailed as failure:
        diagnostic = _located(failure.diagnostic, address)
        return _fail(change, writer, diagnostic, keep_outputs=not deleted)
    except Exception as exc:  # the error boundary around provider code
        diagnostic = Diagnostic.error(
            f"provider for {change.kind} failed: {type(exc).__name__}: {exc}",
            f"The {change.action.value} step of {address} raised an unexpected error. The "
            "object is recorded as failed and the steps that depend on it were skipped; fix "
            "the cause and run apply again to retry it.",
            address=address,
        )
        return _fail(change, writer, diagnostic, keep_outputs=not deleted)
    return _record(change, writer, result, upstream_digests)


def _create_or_update(
    change: ResourceChange,
    provider: Provider,
    writer: StateWriter,
    context: ProviderContext,
    deleted: bool,
) -> ApplyResult:
    previous = None if deleted else writer.get(change.address)
    creating = change.action in (Action.CREATE, Action.REPLACE)
    upstream_outputs = {
        dep: record.outputs for dep in change.depends_on if (record := writer.get(dep)) is not None
    }
    request = ApplyRequest(
        address=Address.parse(change.address),
        action="create" if creating else change.action.value,
        config=change.after or {},
        prior_config=None if creating or previous is None else previous.config,
        prior_outputs={} if previous is None else previous.outputs,
        upstream_outputs=upstream_outputs,
        context=context,
        fingerprints=change.fingerprints,
    )
    return provider.create(request) if creating else provider.update(request)


def _record(
    change: ResourceChange,
    writer: StateWriter,
    result: ApplyResult,
    upstream_digests: Mapping[str, str],
) -> StepResult:
    address = change.address
    diagnostics = tuple(_located(d, address) for d in result.diagnostics)
    rejected = result.status == ObjectStatus.REJECTED.value
    error = None
    if rejected:
        errors = [d.summary for d in diagnostics if d.severity is Severity.ERROR]
        error = errors[0] if errors else f"{address} candidate rejected by its evaluation gates"
        if not errors:
            diagnostics += (
                Diagnostic.error(
                    error,
                    "The candidate was recorded as rejected; the running deployment was left "
                    "alone and the steps that depend on it were skipped.",
                    address=address,
                ),
            )
    writer.record(
        RecordedObject(
            address=address,
            kind=change.kind,
            status=ObjectStatus.REJECTED if rejected else ObjectStatus.APPLIED,
            config=dict(change.after or {}),
            fingerprints=dict(change.fingerprints),
            content_digest=change.content_digest or "",
            upstream={
                dep: upstream_digests[dep] for dep in change.depends_on if dep in upstream_digests
            },
            depends_on=list(change.depends_on),
            outputs=dict(result.outputs),
            error=error,
            updated_at=utc_now(),
        )
    )
    if rejected:
        return StepResult("failed", error or "rejected", result.outputs, diagnostics)
    return StepResult("succeeded", change.action.value, result.outputs, diagnostics)


def _fail(
    change: ResourceChange, writer: StateWriter, diagnostic: Diagnostic, *, keep_outputs: bool
) -> StepResult:
    writer.mark_failed(
        change.address,
        change.kind,
        diagnostic.summary,
        depends_on=change.depends_on,
        updated_at=utc_now(),
        keep_outputs=keep_outputs,
    )
    return StepResult("failed", diagnostic.summary, diagnostics=(diagnostic,))


def _located(diagnostic: Diagnostic, address: str) -> Diagnostic:
    if diagnostic.address is not None:
        return diagnostic
    return dataclasses.replace(diagnostic, address=address)
