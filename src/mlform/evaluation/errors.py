"""The error evaluation raises for a metric or gate it cannot evaluate."""

from __future__ import annotations

from mlform.errors import MlformError


class EvaluationError(MlformError, ValueError):
    """A metric name is unknown, or a metric cannot be computed from what was given."""
