"""The system spec: pydantic models of every config section (``extra="forbid"``).

:func:`load_system_from` composes a project's config and validates it into a
:class:`~mlform.spec.declared.LoadedSystem`; :func:`validate_spec` validates plain data.
"""

from __future__ import annotations

from mlform.spec.declared import DeclaredObject, LoadedSystem
from mlform.spec.load import load_system, load_system_from, validate_spec
from mlform.spec.system import SystemSpec

__all__ = [
    "DeclaredObject",
    "LoadedSystem",
    "SystemSpec",
    "load_system",
    "load_system_from",
    "validate_spec",
]
