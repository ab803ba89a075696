"""The schema default of an object's config key, as the config records it.

A release that adds a key with a default (``models.X.training``, ``deployments.X.env``)
must not make every recorded object look changed: the planner asks here whether a key
that the recorded config lacks holds its default in the desired one
(:func:`mlform.plan.reasons.detect_config`), and leaves such keys alone.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, TypeAdapter

from mlform.addresses import Kind
from mlform.spec.data import DataSpec
from mlform.spec.deployments import DeploymentSpec
from mlform.spec.features import FeatureSpec
from mlform.spec.models import ModelSpec
from mlform.spec.monitors import MonitorSpec

NO_DEFAULT: Any = object()

_SECTIONS: dict[Kind, Any] = {
    Kind.DATA: DataSpec,
    Kind.FEATURES: FeatureSpec,
    Kind.MODEL: ModelSpec,
    Kind.DEPLOYMENT: DeploymentSpec,
    Kind.MONITOR: MonitorSpec,
}


def _classes(annotation: Any) -> list[type[BaseModel]]:
    """The spec classes behind a section's type (a class, or an annotated union of them)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _classes(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [c for arg in typing.get_args(annotation) for c in _classes(arg)]
    return []


def schema_default(kind: Kind, key: str) -> Any:
    """The JSON form of ``key``'s default for objects of ``kind``; ``NO_DEFAULT`` when the
    key is required, unknown, or its default differs between the kind's variants."""
    found: list[Any] = []
    for cls in _classes(_SECTIONS.get(kind)):
        field = cls.model_fields.get(key)
        if field is None:
            continue
        if field.is_required():
            return NO_DEFAULT
        value = field.get_default(call_default_factory=True)
        found.append(TypeAdapter(Any).dump_python(value, mode="json", by_alias=True))
    if not found or any(value != found[0] for value in found[1:]):
        return NO_DEFAULT
    return found[0]


def added_at_default(kind: Kind, key: str, old: dict[str, Any], new: dict[str, Any]) -> bool:
    """``key`` is missing from the recorded ``old`` config and at its default in ``new``."""
    if key in old or key not in new:
        return False
    default = schema_default(kind, key)
    return default is not NO_DEFAULT and bool(new[key] == default)
