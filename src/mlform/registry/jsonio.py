"""JSON records on disk: atomic writes (temp file, fsync, rename) and checked reads."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mlform.registry.errors import RegistryError
from mlform.state.atomic import write_atomic

__all__ = ["jsonable", "read_json", "write_json"]


def jsonable(value: Any) -> Any:
    """``value`` with NumPy scalars/arrays, tuples and paths made JSON-able; NaN/inf -> None."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, str | int | bool):
        return value
    return str(value)


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    text = json.dumps(jsonable(data), indent=2, ensure_ascii=False, allow_nan=False)
    write_atomic(path, text + "\n")


def read_json(path: Path, *, what: str) -> Any:
    """The JSON in ``path``; :class:`RegistryError` naming ``what`` when it is unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RegistryError(f"{what} is missing: {path}") from None
    except OSError as exc:
        raise RegistryError(f"{what} cannot be read ({exc.strerror}): {path}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RegistryError(
            f"{what} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}): {path}"
        ) from None
