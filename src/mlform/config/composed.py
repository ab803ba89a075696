"""The result of composing a system config: plain data plus where every key came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class ComposedConfig:
    # The composed, fully resolved config as plain dicts/lists/scalars. Secrets are
    # redaction tokens (``<secret:NAME:HMAC16>``), never clear values.
    data: dict[str, Any]
    # Key path ("models.diagnosis.estimator.n_estimators", also intermediate keys and
    # list indices) -> (file relative to the project dir, 1-based line) of the last
    # source that set it; ("<command line>", None) for an override.
    provenance: dict[str, tuple[str, int | None]] = field(default_factory=dict)
    # The stack overlay merged last ("default" when none was chosen).
    stack: str = "default"
    # Source files in composition order, relative to the project dir.
    files: list[str] = field(default_factory=list)
    # Command-line overrides applied, as given.
    overrides: tuple[str, ...] = ()
