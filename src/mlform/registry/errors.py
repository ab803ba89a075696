"""Errors of the model registry, run store and artifact store.

``RegistryError`` derives from :class:`mlform.errors.MlformError`, so the CLI boundary
prints its message (which says what exists and what to do) without a traceback::

    RegistryError            a record cannot be read or written
    ├── UnknownRefError      a model, version, alias or run that does not exist
    └── ArtifactError        an artifact is missing or its content no longer matches
"""

from __future__ import annotations

from mlform.errors import MlformError


class RegistryError(MlformError):
    """A registry, run or lineage record cannot be read or written."""


class UnknownRefError(RegistryError):
    """A reference names no recorded model, version, alias or run."""


class ArtifactError(RegistryError):
    """An artifact is missing from the store or its files were changed."""
