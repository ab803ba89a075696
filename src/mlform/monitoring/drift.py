"""Data drift report: does the current data still look like the reference data?

:func:`drift_report` runs one statistical test per column (the statistics live in
:mod:`mlform.monitoring.stats`) and decides per column and for the whole data set, with
Evidently's rules (0.7, ``evidently.legacy.calculations.stattests`` and
``evidently.legacy.calculations.data_drift``) so that a verdict here is the verdict
Evidently's ``DataDriftPreset`` gives on the same data:

* Method ``"auto"`` (Evidently's ``get_default_stattest``), by the number of reference
  rows (``reference_rows``, default the finite values of the column) and the number of
  distinct values in reference and current together:

  ======================  =========================  ===========================
  column                  reference <= 1000 rows     reference > 1000 rows
  ======================  =========================  ===========================
  numeric, > 5 values     ``ks``                     ``wasserstein``
  numeric, 3-5 values     ``chi2``                   ``jensenshannon``
  numeric, <= 2 values    ``ztest``                  ``jensenshannon``
  categorical, > 2        ``chi2``                   ``jensenshannon``
  categorical, <= 2       ``ztest``                  ``jensenshannon``
  ======================  =========================  ===========================

* A named ``method`` applies to every column, and must suit its type as Evidently
  requires: ``ks`` and ``wasserstein`` numeric columns only, ``chi2`` and ``ztest``
  categorical only, ``jensenshannon`` and ``psi`` both.
* Thresholds: 0.05 for the p-values (``ks``, ``chi2``, ``ztest``), 0.1 for the
  distances; a given ``threshold`` applies to whichever test each column gets
  (Evidently's ``stattest_threshold``).
* A column drifts when ``ks`` p <= threshold, ``chi2`` or ``ztest`` p < threshold, or
  a distance >= threshold (each as Evidently compares them). The data set drifts when
  the share of drifted columns is >= ``drift_share``.
* NaN and +/-inf are dropped per column; a column with no finite value left in either
  sample is an error (Evidently raises too).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

from mlform.monitoring import stats
from mlform.monitoring.stats import SortedColumns

METHODS: Final = ("ks", "chi2", "ztest", "wasserstein", "jensenshannon", "psi")
P_VALUE_METHODS: Final = frozenset({"ks", "chi2", "ztest"})
DEFAULT_THRESHOLDS: Final = {
    "ks": 0.05,
    "chi2": 0.05,
    "ztest": 0.05,
    "wasserstein": 0.1,
    "jensenshannon": 0.1,
    "psi": 0.1,
}
_ALIASES: Final = {"chisquare": "chi2", "z": "ztest"}  # Evidently's names
_NUMERIC_ONLY: Final = frozenset({"ks", "wasserstein"})
_CATEGORICAL_ONLY: Final = frozenset({"chi2", "ztest"})
_SMALL_REFERENCE: Final = 1000  # get_default_stattest: reference rows <= 1000
_FEW_VALUES: Final = 5  # numeric columns with <= 5 values are tested as categories
_BINARY: Final = 2


@dataclass(frozen=True, slots=True)
class ColumnDrift:
    """The test of one column: its score, the threshold, and the verdict."""

    column: str
    method: str  # "ks" | "chi2" | "ztest" | "wasserstein" | "jensenshannon" | "psi"
    score: float  # p-value for ks/chi2/ztest; the distance for the others
    threshold: float
    drifted: bool
    kind: str  # "p_value" | "distance"

    def describe(self) -> str:
        """One line for plans and alerts, e.g. ``ks p=0.003 <= 0.05 on column x``.

        The operator is the comparison that decided: the drift rule when the column
        drifted (``<=`` for ks, ``<`` for chi2 and ztest, ``>=`` for distances), its
        negation when it did not.
        """
        op = _operator(self.method, self.drifted)
        score, threshold = _format_pair(self.score, self.threshold)
        prefix = "p=" if self.kind == "p_value" else ""
        return f"{self.method} {prefix}{score} {op} {threshold} on column {self.column}"

    def to_dict(self) -> dict[str, object]:
        return {
            "column": self.column,
            "method": self.method,
            "score": self.score,
            "threshold": self.threshold,
            "drifted": self.drifted,
            "kind": self.kind,
        }

    def margin(self) -> float:
        """How far past its threshold the score is, as a log ratio: positive when it
        drifted (further is larger), negative when not (closer is nearer 0)."""
        if math.isnan(self.score):
            return -math.inf
        if self.kind == "p_value":
            return _log_ratio(self.threshold, self.score)
        return _log_ratio(self.score, self.threshold)


@dataclass(frozen=True, slots=True)
class DriftReport:
    """Every column's test and the verdict for the data set."""

    columns: tuple[ColumnDrift, ...]
    drift_share: float  # the configured share (default 0.5)
    drifted_share: float  # fraction of columns that drifted
    dataset_drift: bool  # drifted_share >= drift_share
    reference_rows: int  # rows of the reference compared
    current_rows: int

    def worst(self) -> ColumnDrift | None:
        """The drifted column furthest past its threshold; without drift, the column
        closest to drifting; None for a report without columns."""
        drifted = [c for c in self.columns if c.drifted]
        pool = drifted or list(self.columns)
        return max(pool, key=ColumnDrift.margin, default=None)

    @property
    def drifted_columns(self) -> tuple[ColumnDrift, ...]:
        return tuple(c for c in self.columns if c.drifted)

    def to_dict(self) -> dict[str, object]:
        return {
            "columns": [c.to_dict() for c in self.columns],
            "drift_share": self.drift_share,
            "drifted_share": self.drifted_share,
            "dataset_drift": self.dataset_drift,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
        }


def drift_report(
    reference: NDArray[np.floating] | SortedColumns,
    current: NDArray[np.floating],
    columns: Sequence[str],
    *,
    method: str = "auto",
    threshold: float | None = None,
    bins: int = 30,
    categorical: Collection[str] = (),
    drift_share: float = 0.5,
    reference_rows: int | None = None,
) -> DriftReport:
    """Test every column of ``current`` against ``reference`` (module docstring).

    ``reference`` and ``current`` are ``(rows, columns)`` float arrays, categorical
    columns as float codes; ``reference`` may instead be :func:`stats.sort_columns`
    of it, sorted once for many reports. ``method`` is ``"auto"`` or one of
    :data:`METHODS` (Evidently's ``"chisquare"`` and ``"z"`` are accepted too).
    ``bins`` is accepted for PSI but, as in Evidently 0.7 (whose ``get_binned_data``
    ignores its ``n_bins``), has no effect: numeric columns are binned with Sturges'
    rule over both samples, others by value. ``reference_rows`` is the size that picks
    the automatic method (the full training size when ``reference`` is a sample of it).
    """
    names = tuple(columns)
    categorical_names = {categorical} if isinstance(categorical, str) else set(categorical)
    cur_array = np.asarray(current, dtype=np.float64)
    if isinstance(reference, SortedColumns):
        ref_shape: tuple[int, ...] = (reference.rows, reference.columns)
    else:
        reference = _two_d(reference, "reference")
        ref_shape = reference.shape
    _validate(ref_shape, cur_array, names, method, threshold, bins, drift_share)
    unknown = sorted(categorical_names - set(names))
    if unknown:
        raise ValueError(f"categorical column(s) not among the columns: {', '.join(unknown)}")
    if reference_rows is not None and reference_rows < 1:
        raise ValueError(f"reference_rows must be at least 1, got {reference_rows}")
    ref = reference if isinstance(reference, SortedColumns) else stats.sort_columns(reference)
    cur = stats.sort_columns(cur_array)
    for label, sample in (("reference", ref), ("current", cur)):
        empty = np.flatnonzero(sample.counts == 0)
        if empty.size:
            raise ValueError(
                f"column {names[int(empty[0])]!r} has no values in the {label} data "
                "(all NaN or inf); drift cannot be tested"
            )

    is_categorical = np.array([name in categorical_names for name in names], dtype=np.bool_)
    if method == "auto":
        size = ref.counts if reference_rows is None else np.full(len(names), reference_rows)
        chosen = _auto_methods(ref, cur, is_categorical, size)
    else:
        name = _ALIASES.get(method, method)
        _check_types(name, names, is_categorical)
        chosen = np.full(len(names), name, dtype=object)

    scores = np.empty(len(names), dtype=np.float64)
    for name in METHODS:
        selected = np.flatnonzero(chosen == name).astype(np.int64)
        if selected.size:
            compute = _SCORES[name]
            try:
                scores[selected] = compute(
                    ref.take(selected), cur.take(selected), is_categorical[selected]
                )
            except stats.ColumnError as error:
                column = names[int(selected[error.column])]
                raise ValueError(f"{name} on column {column!r}: {error.reason}") from None

    results = tuple(
        _column(names[j], str(chosen[j]), float(scores[j]), threshold) for j in range(len(names))
    )
    drifted_share = sum(c.drifted for c in results) / len(results)
    return DriftReport(
        columns=results,
        drift_share=drift_share,
        drifted_share=drifted_share,
        dataset_drift=bool(drifted_share >= drift_share),
        reference_rows=int(ref_shape[0]),
        current_rows=int(cur_array.shape[0]),
    )


# --- internals ----------------------------------------------------------------------------


def _two_d(data: NDArray[np.floating], label: str) -> NDArray[np.float64]:
    array = np.asarray(data, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(
            f"{label} must be a 2-D array (rows, columns), got {array.ndim} dimension(s)"
        )
    return array


def _validate(
    ref_shape: tuple[int, ...],
    current: NDArray[np.float64],
    names: tuple[str, ...],
    method: str,
    threshold: float | None,
    bins: int,
    drift_share: float,
) -> None:
    if current.ndim != 2:
        raise ValueError(
            f"current must be a 2-D array (rows, columns), got {current.ndim} dimension(s)"
        )
    ref_rows, ref_columns = ref_shape
    if ref_columns != current.shape[1]:
        raise ValueError(
            f"reference has {ref_columns} column(s) and current {current.shape[1]}; they must match"
        )
    if len(names) != ref_columns:
        raise ValueError(f"{len(names)} column name(s) given for {ref_columns} column(s)")
    if not names:
        raise ValueError("no columns to test")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"duplicate column name(s): {', '.join(duplicates)}")
    if ref_rows == 0:
        raise ValueError("reference data is empty (0 rows)")
    if current.shape[0] == 0:
        raise ValueError("current data is empty (0 rows)")
    if method != "auto" and _ALIASES.get(method, method) not in METHODS:
        raise ValueError(
            f"unknown drift method {method!r}; expected 'auto' or one of {', '.join(METHODS)}"
        )
    if threshold is not None and not (math.isfinite(threshold) and threshold >= 0):
        raise ValueError(f"threshold must be a finite number >= 0, got {threshold}")
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    if not 0 <= drift_share <= 1:
        raise ValueError(f"drift_share must be between 0 and 1, got {drift_share}")


def _check_types(method: str, names: tuple[str, ...], is_categorical: NDArray[np.bool_]) -> None:
    if method in _NUMERIC_ONLY and is_categorical.any():
        bad = names[int(np.flatnonzero(is_categorical)[0])]
        raise ValueError(
            f"method {method!r} applies to numeric columns only; {bad!r} is categorical"
        )
    if method in _CATEGORICAL_ONLY and not is_categorical.all():
        bad = names[int(np.flatnonzero(~is_categorical)[0])]
        raise ValueError(
            f"method {method!r} applies to categorical columns only; {bad!r} is numeric "
            "(list it in categorical=)"
        )


def _auto_methods(
    ref: SortedColumns,
    cur: SortedColumns,
    is_categorical: NDArray[np.bool_],
    reference_size: NDArray[np.integer],
) -> NDArray[np.object_]:
    """Evidently's ``get_default_stattest`` for every column."""
    k = ref.columns
    small = reference_size <= _SMALL_REFERENCE
    # Distinct values of reference and current together, needed exactly only where
    # both have few: above that, a numeric column has more than 5 whatever the union.
    few = stats.distinct_counts(ref) <= _FEW_VALUES
    few &= stats.distinct_counts(cur) <= _FEW_VALUES
    exact = np.flatnonzero(few | (is_categorical & small)).astype(np.int64)
    n_values = np.full(k, _FEW_VALUES + 1, dtype=np.int64)
    if exact.size:
        n_values[exact] = stats.union_distinct_counts(ref.take(exact), cur.take(exact))
    category_test = np.where(n_values > _BINARY, "chi2", "ztest")
    numeric_small = np.where(n_values <= _FEW_VALUES, category_test, "ks")
    numeric_large = np.where(n_values <= _FEW_VALUES, "jensenshannon", "wasserstein")
    numeric = np.where(small, numeric_small, numeric_large)
    categorical = np.where(small, category_test, "jensenshannon")
    return np.where(is_categorical, categorical, numeric).astype(object)


def _ks_score(ref: SortedColumns, cur: SortedColumns, _: NDArray[np.bool_]) -> NDArray[np.float64]:
    return stats.ks(ref, cur)[1]


def _chi2_score(
    ref: SortedColumns, cur: SortedColumns, _: NDArray[np.bool_]
) -> NDArray[np.float64]:
    return stats.chisquare(ref, cur)[1]


def _z_score(ref: SortedColumns, cur: SortedColumns, _: NDArray[np.bool_]) -> NDArray[np.float64]:
    return stats.ztest(ref, cur)[1]


def _wasserstein_score(
    ref: SortedColumns, cur: SortedColumns, _: NDArray[np.bool_]
) -> NDArray[np.float64]:
    return stats.wasserstein(ref, cur)


def _js_score(
    ref: SortedColumns, cur: SortedColumns, categorical: NDArray[np.bool_]
) -> NDArray[np.float64]:
    return stats.jensenshannon(ref, cur, categorical=categorical)


def _psi_score(
    ref: SortedColumns, cur: SortedColumns, categorical: NDArray[np.bool_]
) -> NDArray[np.float64]:
    return stats.psi(ref, cur, categorical=categorical)


_SCORES: Final[
    dict[
        str,
        Callable[[SortedColumns, SortedColumns, NDArray[np.bool_]], NDArray[np.float64]],
    ]
] = {
    "ks": _ks_score,
    "chi2": _chi2_score,
    "ztest": _z_score,
    "wasserstein": _wasserstein_score,
    "jensenshannon": _js_score,
    "psi": _psi_score,
}


def _column(name: str, method: str, score: float, threshold: float | None) -> ColumnDrift:
    limit = DEFAULT_THRESHOLDS[method] if threshold is None else float(threshold)
    return ColumnDrift(
        column=name,
        method=method,
        score=score,
        threshold=limit,
        drifted=_drifted(method, score, limit),
        kind="p_value" if method in P_VALUE_METHODS else "distance",
    )


def _drifted(method: str, score: float, threshold: float) -> bool:
    if method == "ks":
        return score <= threshold
    if method in P_VALUE_METHODS:
        return score < threshold
    return score >= threshold


def _operator(method: str, drifted: bool) -> str:
    if method == "ks":
        return "<=" if drifted else ">"
    if method in P_VALUE_METHODS:
        return "<" if drifted else ">="
    return ">=" if drifted else "<"


def _format_pair(score: float, threshold: float) -> tuple[str, str]:
    """Both numbers with 3 significant digits, or more where 3 would make a score that
    differs from the threshold print the same."""
    for digits in (3, 6, 17):
        text = f"{score:.{digits}g}", f"{threshold:.{digits}g}"
        if text[0] != text[1] or score == threshold:
            return text
    return text


def _log_ratio(high: float, low: float) -> float:
    if high == low:
        return 0.0
    if low <= 0:
        return math.inf
    if high <= 0:
        return -math.inf
    return math.log(high / low)
