"""Building blocks shared by every spec section: the base model and constrained strings.

Every spec model is ``extra="forbid", frozen=True``. The one documented exception is a
``_target_`` block (:class:`TargetSpec`): it names a callable and passes any other keys
to it as keyword arguments.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from mlform.addresses import NAME_PATTERN


class SpecModel(BaseModel):
    """Base of every spec model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


NAME_RE = re.compile(rf"^{NAME_PATTERN}$")
Name = Annotated[str, StringConstraints(pattern=rf"^{NAME_PATTERN}$")]
Labels = dict[str, str]

_DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(text: str) -> float:
    """Seconds in a duration like ``"250ms"``, ``"60s"``, ``"5m"``, ``"12h"``, ``"3650d"``."""
    match = _DURATION_RE.match(text.strip())
    if match is None:
        raise ValueError(
            f"{text!r} is not a duration: write a number and a unit (ms, s, m, h, d, w), "
            "e.g. '60s', '5m' or '30d'"
        )
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def _check_duration(text: str) -> str:
    parse_duration(text)
    return text


Duration = Annotated[str, AfterValidator(_check_duration)]

COMPARISON_RE = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*$")


def parse_comparison(text: str) -> tuple[str, float]:
    """``(">=", 0.95)`` from ``">= 0.95"``."""
    match = COMPARISON_RE.match(text)
    if match is None:
        raise ValueError(
            f"{text!r} is not a comparison: write an operator (>=, <=, >, <, ==, !=) and a "
            "number, e.g. '>= 0.95'"
        )
    return match.group(1), float(match.group(2))


def _check_comparison(text: str) -> str:
    parse_comparison(text)
    return text


Comparison = Annotated[str, AfterValidator(_check_comparison)]

_QUANTITY_RE = re.compile(r"^\d+(\.\d+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
_CPU_RE = re.compile(r"^\d+(\.\d+)?m?$")


def _check_memory(text: str) -> str:
    if not _QUANTITY_RE.match(text):
        raise ValueError(
            f"{text!r} is not a Kubernetes memory quantity: write e.g. '512Mi', '8Gi' or '1G'"
        )
    return text


def _check_cpu(value: int | float | str) -> int | float | str:
    if isinstance(value, str) and not _CPU_RE.match(value):
        raise ValueError(f"{value!r} is not a CPU quantity: write e.g. 2, 0.5 or '500m'")
    if not isinstance(value, str) and value <= 0:
        raise ValueError("cpu must be greater than 0")
    return value


Memory = Annotated[str, AfterValidator(_check_memory)]
Cpu = Annotated[int | float | str, AfterValidator(_check_cpu)]

_TARGET_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")


class TargetSpec(BaseModel):
    """A Hydra ``_target_`` block: the callable's dotted path plus its keyword arguments."""

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

    target: str = Field(alias="_target_", pattern=_TARGET_RE.pattern)


def target_block(path: str, **kwargs: Any) -> TargetSpec:
    """A TargetSpec built in code (for defaults)."""
    return TargetSpec.model_validate({"_target_": path, **kwargs})
