"""Building objects from ``_target_`` blocks (Hydra's ``instantiate``, kept inside mlform.config).

A ``_target_`` block is a mapping with the dotted path of a callable under ``_target_`` and
its keyword arguments under the other keys; values may be nested blocks. :func:`instantiate`
adds arguments only known at run time (an optimizer's ``params``, a module's
``in_features``), which win over keys of the same name in the block.

Mistakes in the block itself (a path that does not import, a keyword the callable does not
take) raise :class:`TargetError` naming the dotted path. Exceptions raised *by* the callable
propagate unchanged, so the caller's user-code boundary can point at the user's frame.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate as hydra_instantiate

from mlform.errors import MlformError

__all__ = ["TargetError", "instantiate", "target_path"]


class TargetError(MlformError):
    """A ``_target_`` block cannot be turned into a call: bad path, bad keywords."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


def target_path(block: Mapping[str, Any]) -> str:
    """The dotted path under ``_target_``; :class:`TargetError` when there is none."""
    path = block.get("_target_")
    if not isinstance(path, str) or not path:
        raise TargetError("<no _target_>", "the block has no _target_ naming a callable")
    return path


def instantiate(block: Mapping[str, Any], *args: Any, **kwargs: Any) -> Any:
    """Call the block's ``_target_`` with its keys plus ``args``/``kwargs``; return the result."""
    path = target_path(block)
    _locate(path)
    config = {key: value for key, value in block.items() if key != "_partial_"}
    try:
        deferred = hydra_instantiate({**config, "_partial_": True, "_convert_": "all"})
    except InstantiationException as error:
        cause = error.__cause__ or error
        raise TargetError(path, f"a nested block failed: {_first_line(cause)}") from error
    _check_call(path, deferred.func, (*deferred.args, *args), {**deferred.keywords, **kwargs})
    return deferred(*args, **kwargs)


def _locate(path: str) -> Any:
    """Import ``path``'s module and walk its attributes.

    A module or attribute that does not exist is a :class:`TargetError`; any other exception
    raised while importing (the user's module failing at import time) propagates unchanged.
    """
    parts = path.split(".")
    if not all(parts):
        raise TargetError(path, "is not a dotted path like package.module.Name")
    obj: Any = _import(path, parts[0], None)
    for index, part in enumerate(parts[1:], start=1):
        if hasattr(obj, part):
            obj = getattr(obj, part)
            continue
        name = ".".join(parts[: index + 1])
        obj = _import(path, name, obj)
    if not callable(obj):
        raise TargetError(path, f"names a {type(obj).__name__}, not a class or function")
    return obj


def _import(path: str, module: str, parent: Any) -> Any:
    if parent is None or hasattr(parent, "__path__"):  # a package may hold the module
        try:
            return importlib.import_module(module)
        except ModuleNotFoundError as error:
            if error.name != module:
                raise  # the module exists but imports a missing one: the user's problem
    if parent is None:
        problem = (
            f"cannot be imported: no module named {module!r} (is it in the project, or "
            "installed in this environment?)"
        )
    else:
        owner = getattr(parent, "__name__", type(parent).__name__)
        problem = f"cannot be imported: {owner!r} has no attribute {module.rpartition('.')[2]!r}"
    raise TargetError(path, problem)


def _check_call(path: str, func: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):  # builtins without a signature: let the call decide
        return
    try:
        signature.bind(*args, **kwargs)
    except TypeError as error:
        accepted = [
            name
            for name, p in signature.parameters.items()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
        raise TargetError(
            path,
            f"cannot be called with keys {sorted(kwargs)}: {error} "
            f"(it accepts: {', '.join(accepted) or 'no keywords'})",
        ) from error


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    line = text.splitlines()[0] if text else ""
    return f"{type(error).__name__}: {line}" if line else type(error).__name__
