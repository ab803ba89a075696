"""What the spec hands to the desired-system stage: one record per declared object.

This is the contract between :mod:`mlform.spec` (which validates) and
:mod:`mlform.desired` (which fingerprints and orders). It holds plain data only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlform.addresses import Address
from mlform.diagnostics import Diagnostic


@dataclass(frozen=True, slots=True)
class DeclaredObject:
    address: Address
    # The object's validated spec dumped to JSON-able data (by alias, so ``_target_``
    # keeps its name; defaults filled in; resource profiles referenced by name are
    # expanded under ``resources``). Secret values are redaction tokens.
    config: Mapping[str, Any]
    depends_on: tuple[Address, ...] = ()
    # Config key path that declares the object, e.g. "models.diagnosis".
    key: str = ""
    # File the object's declaration came from (relative to the project dir), if known.
    source_file: str | None = None
    # Dotted ``_target_`` paths found anywhere inside the object's config.
    code_targets: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LoadedSystem:
    """A composed and validated system, ready to resolve into a DesiredSystem."""

    project: str
    stack: str
    project_dir: Path
    objects: tuple[DeclaredObject, ...]
    # Non-object sections (project, resources, policies, target, backend), redacted.
    settings: Mapping[str, Any] = field(default_factory=dict)
    # Config key path -> (file relative to project dir, 1-based line or None).
    provenance: Mapping[str, tuple[str, int | None]] = field(default_factory=dict)
    # Warnings found while validating (e.g. a column that could not be confirmed).
    warnings: tuple[Diagnostic, ...] = ()
    # The command-line overrides it was composed with, as given (a training Job's pod
    # composes the same config with them).
    overrides: tuple[str, ...] = ()
