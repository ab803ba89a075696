"""Finding the spec type that validates a given config key (to list valid keys and choices)."""

from __future__ import annotations

import types
from collections.abc import Sequence
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel


def _strip(tp: Any) -> Any:
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    return tp


def _members(tp: Any) -> list[Any]:
    tp = _strip(tp)
    if get_origin(tp) in (Union, types.UnionType):
        return [_strip(m) for m in get_args(tp) if m is not type(None)]
    return [tp]


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _matches(model: type[BaseModel], node: Any) -> bool:
    """Whether every literal-typed key of ``model`` present in ``node`` has an allowed value."""
    if not isinstance(node, dict):
        return False
    for name, field in model.model_fields.items():
        annotation = _strip(field.annotation)
        key = field.alias or name
        literal = get_origin(annotation) is Literal
        if literal and key in node and node[key] not in get_args(annotation):
            return False
    return True


def as_model(tp: Any, node: Any) -> type[BaseModel] | None:
    """The model class among ``tp``'s union members that ``node`` would validate as."""
    models: list[type[BaseModel]] = [m for m in _members(tp) if _is_model(m)]
    if len(models) == 1:
        return models[0]
    return next((model for model in models if _matches(model, node)), None)


def field_type(model: type[BaseModel], key: str) -> Any:
    for name, field in model.model_fields.items():
        if key in (name, field.alias):
            return field.annotation
    return None


def type_at(root: type[BaseModel], path: Sequence[str | int], data: Any) -> Any:
    """The annotation that validates ``path`` inside ``data`` (None when unknown)."""
    tp: Any = root
    node = data
    for part in path:
        model = as_model(tp, node)
        if model is not None:
            tp = field_type(model, str(part))
        else:
            container = next((m for m in _members(tp) if get_origin(m) in (dict, list)), None)
            if container is None:
                return None
            args = get_args(container)
            tp = args[-1] if args else None
        if tp is None:
            return None
        node = _child(node, part)
    return tp


def _child(node: Any, part: str | int) -> Any:
    if isinstance(node, dict):
        return node.get(part)
    if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
        return node[part]
    return None


def keys_of(tp: Any, node: Any) -> list[str]:
    """The keys the model at ``tp`` accepts (aliases where set)."""
    model = as_model(tp, node)
    if model is None:
        return []
    return [field.alias or name for name, field in model.model_fields.items()]


def required_keys_of(tp: Any, node: Any) -> list[str]:
    model = as_model(tp, node)
    if model is None:
        return []
    return [f.alias or n for n, f in model.model_fields.items() if f.is_required()]


def tags_of(tp: Any, discriminator: str) -> list[str]:
    """The allowed values of ``discriminator`` across the union ``tp``."""
    tags: list[str] = []
    for member in _members(tp):
        if _is_model(member):
            annotation = _strip(field_type(member, discriminator))
            if get_origin(annotation) is Literal:
                tags.extend(str(v) for v in get_args(annotation))
    return tags
