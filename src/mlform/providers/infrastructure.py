"""A provider whose object is made of long-lived infrastructure (servers, routers, jobs).

Subclasses say *what* the object needs on the stack's target (:meth:`resources`); this
base makes it so through ``context.infrastructure`` (the Pulumi engine) and records
the resources and their live outputs in the object's outputs:

- ``outputs["infrastructure"]``: the resource records (:func:`mlform.infra.model.to_record`),
  which the next apply starts from and ``plan --detailed`` diffs against;
- ``outputs["live"]``: the engine's outputs per resource name (pid, port, url, ...).

``mlform refresh`` writes ``outputs["drift"]`` when a resource died or changed behind
mlform's back; the next plan updates the object for that reason, and the update asks
the engine to refresh before provisioning, so the dead resource is recreated.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

from mlform.addresses import Address, Kind
from mlform.diagnostics import Diagnostic
from mlform.errors import InfraError
from mlform.infra.model import InfraChange, InfraOp, InfraResource, to_record
from mlform.providers.base import (
    ApplyRequest,
    ApplyResult,
    DeleteRequest,
    DeleteResult,
    DiffRequest,
    DiffResult,
    ProviderContext,
    ReadRequest,
    ReadResult,
    StepFailed,
    ValidateRequest,
)


class InfrastructureProvider(ABC):
    """Base for providers of objects backed by infrastructure; see the module docstring."""

    kind: Kind

    @abstractmethod
    def resources(
        self, address: Address, config: Mapping[str, Any], context: ProviderContext
    ) -> Sequence[InfraResource]:
        """The resources ``address`` needs on ``context.target`` (pure: no I/O)."""

    def validate(self, request: ValidateRequest) -> tuple[Diagnostic, ...]:
        try:
            self.resources(request.address, request.config, request.context)
        except ValueError as exc:
            return (Diagnostic.error(str(exc), address=str(request.address)),)
        return ()

    def read(self, request: ReadRequest) -> ReadResult:
        # Live infrastructure is checked for the whole stack at once (mlform refresh);
        # the object itself has nothing else to read.
        return ReadResult(dict(request.outputs))

    def diff(self, request: DiffRequest) -> DiffResult:
        changed = dict(request.prior_config) != dict(request.config)
        return DiffResult(changed=changed)

    def create(self, request: ApplyRequest) -> ApplyResult:
        return self._provision(request)

    def update(self, request: ApplyRequest) -> ApplyResult:
        return self._provision(request)

    def delete(self, request: DeleteRequest) -> DeleteResult:
        try:
            with request.context.idle():
                engine_of(request.context, request.address).provision(
                    request.address, (), company=request.context.company
                )
        except InfraError as failed:
            raise StepFailed(one_diagnostic(failed.diagnostics, request.address)) from failed
        return DeleteResult()

    def _provision(self, request: ApplyRequest) -> ApplyResult:
        wanted = tuple(self.resources(request.address, request.config, request.context))
        drifted = bool(request.prior_outputs.get("drift"))
        live = provision(request.context, request.address, wanted, refresh=drifted)
        return ApplyResult(
            outputs={
                "target": request.context.target,
                "infrastructure": [to_record(r) for r in wanted],
                "live": live,
            }
        )


class RuntimeBase:
    """What every rollout runtime shares: its object, config and context, the real clock,
    and progress reported as the step's (:class:`mlform.rollout.controller.Runtime`)."""

    def __init__(
        self,
        address: Address,
        config: Mapping[str, Any],
        context: ProviderContext,
        *,
        refresh: bool,
    ) -> None:
        self.address = address
        self.config = config
        self.context = context
        self._refresh = refresh  # the first provisioning refreshes first (drift found)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def monotonic(self) -> float:
        return time.monotonic()

    def progress(self, message: str, fraction: float | None) -> None:
        self.context.progress(message, fraction)


def provision(
    context: ProviderContext,
    owner: Address,
    resources: Sequence[InfraResource],
    *,
    refresh: bool = False,
) -> dict[str, dict[str, Any]]:
    """Make ``owner``'s infrastructure exactly ``resources``; its live outputs by name.

    Each resource change is reported as the step's progress; an engine failure becomes
    the step's failure, with the engine's diagnostics.
    """

    def report(change: InfraChange) -> None:
        if change.owner == owner and change.op is not InfraOp.SAME:
            context.progress(f"{change.op.value} {change.type} {change.name}", None)

    try:
        engine = engine_of(context, owner)
        with context.idle():  # batched with other steps' (pulumi_engine/provisioner.py)
            live = engine.provision(
                owner, resources, refresh=refresh, on_change=report, company=context.company
            )
    except InfraError as failed:
        raise StepFailed(one_diagnostic(failed.diagnostics, owner)) from failed
    return dict(live)


def require_local(address: Address, context: ProviderContext, what: str, why: str) -> None:
    """Fail the step when the stack's target is not ``local`` (``what`` runs only there)."""
    if context.target == "local":
        return
    raise StepFailed(
        Diagnostic.error(
            f"{address}: {what} on the {context.target!r} target are not provisioned by "
            "this release",
            f"{why} The kubernetes and render targets provision data, features and models "
            "today; the rest arrives with the Kubernetes target.",
            address=str(address),
        )
    )


def engine_of(context: ProviderContext, address: Address) -> Any:
    if context.infrastructure is None:
        raise StepFailed(
            Diagnostic.error(
                f"{address} needs infrastructure, but no engine is available here",
                "This operation runs without the Pulumi engine. Run `mlform apply` from a "
                "project directory; `mlform doctor` shows whether the engine is installed.",
                address=str(address),
            )
        )
    return context.infrastructure


def one_diagnostic(diagnostics: Sequence[Diagnostic], address: Address) -> Diagnostic:
    """The engine's diagnostics as the step's one diagnostic (the first leads)."""
    if not diagnostics:
        return Diagnostic.error(
            f"{address}: the infrastructure engine failed",
            "Run `mlform refresh`, then apply again.",
            address=str(address),
        )
    first = diagnostics[0]
    more = [f"{d.summary}: {d.detail}" if d.detail else d.summary for d in diagnostics[1:]]
    detail = "\n".join([first.detail, *more]) if more else first.detail
    return Diagnostic.error(first.summary, detail, address=first.address or str(address))
