"""The four-fifths rule: selection rates across the groups of each sensitive column.

For each sensitive column, the selection rate of a group is the share of its rows
predicted as the positive class. The ratio is the lowest rate over the highest; the
column passes when it is at least ``min_ratio`` (0.8 by default, the "four-fifths"
rule of the US EEOC guidelines).

Groups with fewer than ``min_group_rows`` rows are too small for a meaningful rate:
they are reported (``small_groups``, with their count and rate) but left out of the
ratio. A column with fewer than two groups large enough cannot be assessed and fails,
saying so. When no group is ever selected all rates are equal and the ratio is 1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mlform.evaluation.errors import EvaluationError
from mlform.training.types import Array

__all__ = ["MIN_GROUP_ROWS", "FairnessResult", "check_fairness"]

MIN_GROUP_ROWS = 5
MISSING_GROUP = "<missing>"


@dataclass(frozen=True, slots=True)
class FairnessResult:
    column: str
    ratio: float | None  # None: fewer than two groups large enough to compare
    rates: dict[str, float]  # group -> selection rate (every group, small ones included)
    counts: dict[str, int]  # group -> rows
    small_groups: tuple[str, ...]  # groups under min_group_rows, left out of the ratio
    min_ratio: float
    passed: bool
    message: str

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["small_groups"] = list(self.small_groups)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FairnessResult:
        return cls(
            column=str(data["column"]),
            ratio=None if data.get("ratio") is None else float(data["ratio"]),
            rates={str(k): float(v) for k, v in dict(data.get("rates", {})).items()},
            counts={str(k): int(v) for k, v in dict(data.get("counts", {})).items()},
            small_groups=tuple(str(g) for g in data.get("small_groups", ())),
            min_ratio=float(data.get("min_ratio", 0.8)),
            passed=bool(data["passed"]),
            message=str(data.get("message", "")),
        )


def _group_keys(values: Array) -> Array:
    """Group labels as strings; None and NaN become ``<missing>``."""
    raw = np.asarray(values, dtype=object).ravel()
    out = np.empty(raw.shape, dtype=object)
    for i, v in enumerate(raw):
        missing = v is None or (isinstance(v, float) and math.isnan(v))
        out[i] = MISSING_GROUP if missing else str(v)
    return out.astype(str)


def check_fairness(
    y_pred: Array,
    sensitive: Mapping[str, Array],
    columns: list[str] | tuple[str, ...] | None = None,
    *,
    min_ratio: float = 0.8,
    positive_class: int = 1,
    min_group_rows: int = MIN_GROUP_ROWS,
) -> list[FairnessResult]:
    """One :class:`FairnessResult` per sensitive column (``columns``, default: all given)."""
    pred = np.asarray(y_pred).ravel()
    wanted = list(sensitive) if columns is None else list(columns)
    results = []
    for column in wanted:
        if column not in sensitive:
            raise EvaluationError(
                f"fairness: sensitive column {column!r} is not in the evaluation data "
                f"(sensitive columns there: {', '.join(sensitive) or 'none'}); declare it "
                "under the feature set's `sensitive:`"
            )
        groups = _group_keys(sensitive[column])
        if groups.size != pred.size:
            raise EvaluationError(
                f"fairness: column {column!r} has {groups.size} rows but there are "
                f"{pred.size} predictions"
            )
        results.append(_one(column, groups, pred == positive_class, min_ratio, min_group_rows))
    return results


def _one(
    column: str, groups: Array, selected: Array, min_ratio: float, min_rows: int
) -> FairnessResult:
    names, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    positives = np.bincount(inverse, weights=selected.astype(np.float64), minlength=names.size)
    rates_arr = positives / counts
    rates = {str(n): float(r) for n, r in zip(names, rates_arr, strict=True)}
    count_map = {str(n): int(c) for n, c in zip(names, counts, strict=True)}
    small = tuple(str(n) for n, c in zip(names, counts, strict=True) if c < min_rows)
    large = counts >= min_rows
    small_note = (
        f"; groups under {min_rows} rows left out: "
        + ", ".join(f"{g} ({count_map[g]} rows)" for g in small)
        if small
        else ""
    )
    if int(large.sum()) < 2:
        return FairnessResult(
            column,
            None,
            rates,
            count_map,
            small,
            min_ratio,
            False,
            f"{column}: cannot compare selection rates, fewer than two groups have at least "
            f"{min_rows} rows{small_note}",
        )
    kept = rates_arr[large]
    low, high = float(kept.min()), float(kept.max())
    ratio = 1.0 if high == 0.0 else low / high
    passed = ratio >= min_ratio - 1e-12
    low_group = str(names[large][int(kept.argmin())])
    high_group = str(names[large][int(kept.argmax())])
    return FairnessResult(
        column,
        ratio,
        rates,
        count_map,
        small,
        min_ratio,
        passed,
        f"{column}: selection rate ratio {ratio:.3f} ({low_group} {low:.3f} / {high_group} "
        f"{high:.3f}), required >= {min_ratio:g}: {'passes' if passed else 'fails'}"
        f"{small_note}",
    )
