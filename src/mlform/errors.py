"""The exception tree of mlform.

User mistakes are reported as :mod:`mlform.diagnostics`; exceptions are for bugs
and for carrying diagnostics to the CLI boundary, which renders them and exits
with status 1. Everything mlform raises on purpose derives from :class:`MlformError`::

    MlformError
    ├── DiagnosticsError      one or more user-facing diagnostics (config, spec, plan)
    │   ├── ConfigError       composition or validation of the system config failed
    │   ├── StalePlanError    a saved plan no longer matches state or inputs
    │   ├── PolicyError       a mandatory policy blocks the operation
    │   └── InfraError        Pulumi failed to provision the stack's infrastructure
    ├── StateError            the state backend cannot be read or written
    │   ├── StateLockedError  another process holds the state lock
    │   └── StateConflictError the state serial moved underneath a writer
    ├── ToolchainError        the Pulumi CLI or a plugin is missing (says how to fix it)
    ├── RegistryError         the model registry (mlform.registry.errors)
    │   ├── UnknownRefError   a model reference (model.x@v3, @champion) names nothing
    │   └── ArtifactError     an artifact is missing or fails its digest check
    ├── EvaluationError       a metric is unknown or undefined on the data (mlform.evaluation)
    ├── TargetError           a ``_target_`` cannot be imported or called as configured
    └── UserCodeError         user code (a _target_ module, a transform) raised
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mlform.diagnostics import Diagnostic


class MlformError(Exception):
    """Root of every exception mlform raises on purpose."""


class DiagnosticsError(MlformError):
    """Carries user-facing diagnostics to the CLI or API boundary."""

    def __init__(self, diagnostics: Iterable[Diagnostic], message: str | None = None) -> None:
        self.diagnostics = list(diagnostics)
        first = self.diagnostics[0].summary if self.diagnostics else "error"
        super().__init__(message or first)


class ConfigError(DiagnosticsError):
    """The system config could not be composed or validated."""


class StalePlanError(DiagnosticsError):
    """A saved plan was made against a state or inputs that have since moved."""


class PolicyError(DiagnosticsError):
    """A mandatory policy violation blocks the operation."""


class StateError(MlformError):
    """The state backend could not be read or written."""


class StateLockedError(StateError):
    """Another process holds the state lock."""

    def __init__(self, message: str, holder: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.holder = holder or {}


class StateConflictError(StateError):
    """The state serial changed between read and write."""


class UserCodeError(MlformError):
    """User code raised; carries the step and the user's frame."""

    def __init__(self, step: str, message: str, user_frame: str | None = None) -> None:
        super().__init__(f"{step}: {message}")
        self.step = step
        self.user_frame = user_frame


class ToolchainError(MlformError):
    """A tool mlform runs (the Pulumi CLI, a provider plugin) is missing or the wrong version.

    ``fix`` is the exact command that installs it.
    """

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(f"{message}; run: {fix}")
        self.fix = fix


class InfraError(DiagnosticsError):
    """Pulumi could not provision, refresh or destroy the stack's infrastructure."""
