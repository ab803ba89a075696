"""The provider protocol (docs/adr/0003-provider-protocol.md).

Modelled on Terraform's ``providers.Interface`` and Pulumi's dynamic
``ResourceProvider``: validate / read / diff / create / update / delete, each with a
request and a result value. Providers do the I/O; they never print, they report
progress through ``ProviderContext.progress`` and problems as diagnostics.

Retrain and rollout are updates with a different ``action``; replace is a delete of
the old object followed by a create.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from mlform.addresses import Address, Kind
from mlform.diagnostics import Diagnostic
from mlform.infra.provisioning import Provisioner


@dataclass(frozen=True, slots=True)
class ProviderContext:
    project_dir: Path
    state_dir: Path  # the backend directory (.mlform/ by default)
    stack: str
    # Reports progress of the running step: message, and fraction done when known.
    progress: Callable[[str, float | None], None] = lambda _m, _f: None
    # Turns a redacted config value back into clear text (for ${secret:} tokens).
    reveal: Callable[[Any], Any] = lambda value: value
    # The stack's target type (local | kubernetes | render) and its infrastructure
    # engine; None where nothing may be provisioned (unit tests, read-only commands).
    target: str = "local"
    infrastructure: Provisioner | None = None
    # The redacted non-object sections (project, resources, policies, target, backend).
    settings: Mapping[str, Any] = field(default_factory=dict)
    # Around a wait that uses no machine (the infrastructure engine): the apply may start
    # another step meanwhile (mlform.apply.slots). Outside an apply it does nothing.
    idle: Callable[[], AbstractContextManager[None]] = nullcontext
    # Whether another step of the apply may still reach the engine now (a step at work, or
    # one ready to start): the engine's batching stops waiting for company when not.
    # Outside an apply it cannot tell, and says so (True).
    company: Callable[[], bool] = lambda: True
    # The command-line overrides the config was composed with (a training Job passes them on).
    overrides: tuple[str, ...] = ()

    @property
    def artifact_dir(self) -> Path:
        return self.state_dir / "artifacts"


@dataclass(frozen=True, slots=True)
class ValidateRequest:
    address: Address
    config: Mapping[str, Any]
    context: ProviderContext


@dataclass(frozen=True, slots=True)
class ReadRequest:
    address: Address
    config: Mapping[str, Any]
    outputs: Mapping[str, Any]
    context: ProviderContext


@dataclass(frozen=True, slots=True)
class ReadResult:
    # Live outputs, or None when the object no longer exists.
    outputs: Mapping[str, Any] | None
    diagnostics: tuple[Diagnostic, ...] = ()


@dataclass(frozen=True, slots=True)
class DiffRequest:
    address: Address
    prior_config: Mapping[str, Any]
    config: Mapping[str, Any]
    prior_outputs: Mapping[str, Any]
    context: ProviderContext


@dataclass(frozen=True, slots=True)
class DiffResult:
    changed: bool
    replace_fields: tuple[str, ...] = ()
    detail: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ApplyRequest:
    address: Address
    action: str  # create | update | retrain | rollout
    config: Mapping[str, Any]
    prior_config: Mapping[str, Any] | None
    prior_outputs: Mapping[str, Any]
    # Outputs of the upstream objects this one depends on, by address string.
    upstream_outputs: Mapping[str, Mapping[str, Any]]
    context: ProviderContext
    fingerprints: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ApplyResult:
    outputs: Mapping[str, Any]
    diagnostics: tuple[Diagnostic, ...] = ()
    # "applied", or "rejected" for a model candidate that failed its gates.
    status: str = "applied"


@dataclass(frozen=True, slots=True)
class DeleteRequest:
    address: Address
    prior_config: Mapping[str, Any]
    prior_outputs: Mapping[str, Any]
    context: ProviderContext


@dataclass(frozen=True, slots=True)
class DeleteResult:
    diagnostics: tuple[Diagnostic, ...] = ()


class StepFailed(Exception):
    """Raised by a provider for an expected failure of a step, with diagnostics."""

    def __init__(self, diagnostic: Diagnostic) -> None:
        super().__init__(diagnostic.summary)
        self.diagnostic = diagnostic


@runtime_checkable
class Provider(Protocol):
    kind: Kind

    def validate(self, request: ValidateRequest) -> tuple[Diagnostic, ...]: ...

    def read(self, request: ReadRequest) -> ReadResult: ...

    def diff(self, request: DiffRequest) -> DiffResult: ...

    def create(self, request: ApplyRequest) -> ApplyResult: ...

    def update(self, request: ApplyRequest) -> ApplyResult: ...

    def delete(self, request: DeleteRequest) -> DeleteResult: ...
