"""Drift statistics of two samples, computed for every column at once.

Each public function takes a reference and a current sample as 2-D arrays
``(rows, columns)`` (or as :class:`SortedColumns`, the reference sorted once and reused)
and returns one value per column. The work is done on column-sorted copies
(:func:`sort_columns`): one ``np.sort`` per sample for all columns, after which every
statistic is a fixed number of array operations across the columns (a vectorised binary
search replaces ``np.searchsorted`` per column; counts per value come from run lengths
of the sorted rows and one ``np.lexsort``). Python loops remain only over a handful of
things: chunks of a few thousand rows in the cache-friendly transpose before the sort,
groups of columns with the same number of finite values, blocks of columns that bound
the size of temporaries, and the exact Kolmogorov-Smirnov p-value, a scalar function
of ``(n1, n2, D)`` per column. A column that cannot be tested (no finite values) raises
:class:`ColumnError`, a ``ValueError`` carrying the column's index.

The formulas are Evidently's (0.7, ``evidently.legacy.calculations.stattests``), which
are SciPy's:

* Missing values: NaN and +/-inf are dropped per column (Evidently replaces inf by NaN
  and drops NaN before every test).
* ``ks``: ``scipy.stats.ks_2samp`` two-sided, method ``auto``: exact p-value when
  ``max(n1, n2) <= 10000`` (SciPy's own routine), else Smirnov's asymptotic
  ``kstwo.sf(D, round(n1 n2 / (n1 + n2)))``; in the exact regime the statistic is
  SciPy's rounded ``h / lcm(n1, n2)``, and where the exact computation fails SciPy's
  fallback to the asymptotic p-value is taken (without SciPy's warning).
* ``chisquare``: ``scipy.stats.chisquare(f_obs, f_exp)`` over the values seen in either
  sample, ``f_obs`` the current counts and ``f_exp`` the reference counts times
  ``n_cur / n_ref``; a value absent from the reference gives ``f_exp = 0``, an infinite
  statistic and p = 0 (SciPy does the same, with a divide-by-zero warning).
* ``ztest``: Evidently's two-proportion Z-test of "value != smallest value" with the
  pooled proportion, p = ``2 * (1 - Phi(|z|))``; p = 1 when both samples hold one and
  the same value.
* ``wasserstein``: ``scipy.stats.wasserstein_distance`` divided by
  ``max(std(reference), 0.001)`` (population std). Computed as the integral of the
  difference of the two quantile functions, whose breakpoints ``i/n`` and ``j/m`` do
  not depend on the data: equal to SciPy's CDF integral up to rounding.
* ``jensenshannon`` and ``psi``: over Evidently's ``get_binned_data``: for a numeric
  column with more than 20 distinct reference values, the shares of each sample in the
  ``np.histogram_bin_edges(reference + current, "sturges")`` bins; otherwise the shares
  of every value seen in either sample. Evidently's ``n_bins`` argument is not used by
  that function, so PSI's 30 bins never apply. PSI replaces empty bins ("feel zeroes")
  by ``min(non-zero share) / 1e6`` when that minimum is at most 1e-4, else by 1e-4, and
  is ``sum((r - c) * ln(r / c))``; Jensen-Shannon is ``scipy.spatial.distance
  .jensenshannon`` (natural log) of the raw shares.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special
from scipy import stats as scipy_stats

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

KS_EXACT_MAX_N: Final = 10_000
"""``ks_2samp(method="auto")`` computes the exact p-value up to this sample size."""

_BLOCK_ELEMENTS: Final = 1 << 22  # elements per temporary (32 MiB of float64)
_TRANSPOSE_ROWS: Final = 4096  # rows per chunk of the cache-friendly transpose
_HIST_MIN_DISTINCT: Final = 20  # get_binned_data: histogram when distinct reference > 20
_NORM_FLOOR: Final = 0.001  # wasserstein_distance_norm: max(std(reference), 0.001)
_FEEL_ZEROES_SHARE: Final = 0.0001


class ColumnError(ValueError):
    """A column the statistic cannot be computed for; ``column`` is its index."""

    def __init__(self, column: int, reason: str) -> None:
        super().__init__(f"column {column} {reason}")
        self.column = column
        self.reason = reason


@dataclass(frozen=True, slots=True)
class SortedColumns:
    """A sample with each column sorted, stored as rows of a ``(columns, rows)`` array.

    Row ``j`` of :attr:`values` is column ``j`` of the sample in ascending order; its
    first ``counts[j]`` entries are the finite values, the rest NaN (what NaN and +/-inf
    became). Build one with :func:`sort_columns`; pass it instead of an array to reuse
    the sort (a reference compared with many current windows).
    """

    values: FloatArray
    counts: IntArray

    @property
    def columns(self) -> int:
        return int(self.values.shape[0])

    @property
    def rows(self) -> int:
        return int(self.values.shape[1])

    def take(self, columns: IntArray) -> SortedColumns:
        """The given columns (indices), in that order."""
        if columns.size == self.columns and np.array_equal(columns, np.arange(self.columns)):
            return self
        return SortedColumns(np.ascontiguousarray(self.values[columns]), self.counts[columns])


def sort_columns(data: ArrayLike) -> SortedColumns:
    """Sort every column of a ``(rows, columns)`` array; NaN and +/-inf are dropped."""
    x = np.asarray(data, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D array (rows, columns), got {x.ndim} dimension(s)")
    values = _transpose(x)
    finite = np.isfinite(values)
    counts = np.count_nonzero(finite, axis=1).astype(np.int64)
    if int(counts.sum()) != values.size:
        np.copyto(values, np.nan, where=~finite)
    values.sort(axis=1)
    return SortedColumns(values, counts)


def ks(
    reference: ArrayLike | SortedColumns, current: ArrayLike | SortedColumns
) -> tuple[FloatArray, FloatArray]:
    """Two-sample Kolmogorov-Smirnov test per column: ``(statistic, p_value)``.

    ``scipy.stats.ks_2samp(reference, current)`` (two-sided, method ``auto``).
    """
    ref, cur = _pair(reference, current)
    return _ks_pvalues(_ks_statistic(ref, cur), ref.counts, cur.counts)


def chisquare(
    reference: ArrayLike | SortedColumns, current: ArrayLike | SortedColumns
) -> tuple[FloatArray, FloatArray]:
    """Pearson's chi-squared test of the current counts per value against the reference
    shares: ``(statistic, p_value)`` per column (Evidently's ``chisquare``)."""
    ref, cur = _pair(reference, current)
    table = _value_table(ref, cur)
    n_ref = ref.counts[table.row].astype(np.float64)
    n_cur = cur.counts[table.row].astype(np.float64)
    expected = table.ref * (n_cur / n_ref)
    observed = table.cur.astype(np.float64)
    with np.errstate(divide="ignore"):
        terms = (observed - expected) ** 2 / expected
    statistic = _row_sums(table.row, terms, ref.columns)
    p_value = special.chdtrc((table.keys - 1).astype(np.float64), statistic)
    return statistic, np.asarray(p_value, dtype=np.float64)


def ztest(
    reference: ArrayLike | SortedColumns, current: ArrayLike | SortedColumns
) -> tuple[FloatArray, FloatArray]:
    """Two-proportion Z-test per column: ``(z, p_value)`` (Evidently's ``z``).

    The proportion tested is that of values other than the smallest value seen in
    either sample (a binary column's larger value). When both samples hold a single,
    identical value the p-value is 1 and ``z`` is reported as 0.
    """
    ref, cur = _pair(reference, current)
    n = ref.counts
    m = cur.counts
    rows = np.arange(ref.columns)
    ref_low, ref_high = ref.values[:, 0], ref.values[rows, n - 1]
    cur_low, cur_high = cur.values[:, 0], cur.values[rows, m - 1]
    key = np.minimum(ref_low, cur_low)[:, None]
    p1 = (n - _search_rows(ref.values, n, key, "right")[:, 0]) / n
    p2 = (m - _search_rows(cur.values, m, key, "right")[:, 0]) / m
    pooled = (p1 * n + p2 * m) / (n + m)
    constant = (ref_low == ref_high) & (cur_low == cur_high) & (ref_low == cur_low)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1.0 / n + 1.0 / m))
    p_value = 2 * (1 - special.ndtr(np.abs(z)))
    z[constant] = 0.0
    p_value[constant] = 1.0
    return z, p_value


def wasserstein(
    reference: ArrayLike | SortedColumns,
    current: ArrayLike | SortedColumns,
    *,
    normed: bool = True,
) -> FloatArray:
    """First Wasserstein distance per column, divided by ``max(std(reference), 0.001)``
    unless ``normed=False`` (then ``scipy.stats.wasserstein_distance``)."""
    ref, cur = _pair(reference, current)
    distance = _wasserstein_distance(ref, cur)
    if not normed:
        return distance
    return distance / np.maximum(_std(ref), _NORM_FLOOR)


def jensenshannon(
    reference: ArrayLike | SortedColumns,
    current: ArrayLike | SortedColumns,
    *,
    categorical: bool | ArrayLike = False,
) -> FloatArray:
    """Jensen-Shannon distance (natural log) per column between the binned shares of
    the two samples (Evidently's ``get_binned_data`` without "feel zeroes")."""
    ref, cur = _pair(reference, current)
    binned = _binned(ref, cur, _categorical_mask(categorical, ref.columns), feel_zeroes=False)
    k, row = ref.columns, binned.row
    p = binned.ref / _row_sums(row, binned.ref, k)[row]
    q = binned.cur / _row_sums(row, binned.cur, k)[row]
    mid = (p + q) / 2.0
    left = _row_sums(row, special.rel_entr(p, mid), k)
    right = _row_sums(row, special.rel_entr(q, mid), k)
    return np.asarray(np.sqrt((left + right) / 2.0), dtype=np.float64)


def psi(
    reference: ArrayLike | SortedColumns,
    current: ArrayLike | SortedColumns,
    *,
    categorical: bool | ArrayLike = False,
) -> FloatArray:
    """Population stability index per column: ``sum((r - c) * ln(r / c))`` over the
    binned shares, empty bins filled as Evidently does ("feel zeroes")."""
    ref, cur = _pair(reference, current)
    binned = _binned(ref, cur, _categorical_mask(categorical, ref.columns), feel_zeroes=True)
    terms = (binned.ref - binned.cur) * np.log(binned.ref / binned.cur)
    return _row_sums(binned.row, terms, ref.columns)


def distinct_counts(sample: ArrayLike | SortedColumns) -> IntArray:
    """Number of distinct finite values in each column."""
    sorted_sample = _as_sorted(sample)
    return np.asarray(np.count_nonzero(_run_starts(sorted_sample), axis=1), dtype=np.int64)


def union_distinct_counts(
    reference: ArrayLike | SortedColumns, current: ArrayLike | SortedColumns
) -> IntArray:
    """Number of distinct finite values in each column of both samples together
    (Evidently's ``pd.concat([reference, current]).nunique()``)."""
    ref, cur = _pair(reference, current, require_values=False)
    return np.asarray(_value_table(ref, cur).keys, dtype=np.int64)


# --- preparation ----------------------------------------------------------------------


def _transpose(x: FloatArray) -> FloatArray:
    """A C-contiguous ``(columns, rows)`` copy of ``x``.

    ``np.array(x.T, order="C")`` on a large C-ordered ``x`` walks memory with a stride
    of one row per element and is several times slower than this copy by chunks of
    rows, whose reads and writes stay in cache.
    """
    if x.flags.f_contiguous:
        return np.array(x.T, order="C")
    rows, columns = x.shape
    out = np.empty((columns, rows), dtype=np.float64)
    for start in range(0, rows, _TRANSPOSE_ROWS):
        stop = start + _TRANSPOSE_ROWS
        out[:, start:stop] = x[start:stop].T
    return out


def _as_sorted(sample: ArrayLike | SortedColumns) -> SortedColumns:
    return sample if isinstance(sample, SortedColumns) else sort_columns(sample)


def _pair(
    reference: ArrayLike | SortedColumns,
    current: ArrayLike | SortedColumns,
    *,
    require_values: bool = True,
) -> tuple[SortedColumns, SortedColumns]:
    ref = _as_sorted(reference)
    cur = _as_sorted(current)
    if ref.columns != cur.columns:
        raise ValueError(
            f"reference has {ref.columns} column(s) and current {cur.columns}; they must match"
        )
    if require_values:
        for name, sample in (("reference", ref), ("current", cur)):
            empty = np.flatnonzero(sample.counts == 0)
            if empty.size:
                raise ColumnError(
                    int(empty[0]),
                    f"has no finite values in the {name} sample (after dropping NaN and inf)",
                )
    return ref, cur


def _categorical_mask(categorical: bool | ArrayLike, columns: int) -> BoolArray:
    mask = np.broadcast_to(np.asarray(categorical, dtype=np.bool_), (columns,))
    return np.asarray(mask, dtype=np.bool_)


def _blocks(indices: IntArray, width: int, per_element: int = 1) -> Iterator[IntArray]:
    """``indices`` in consecutive groups whose temporaries of ``width`` elements per
    column stay within the block budget."""
    size = max(1, _BLOCK_ELEMENTS // max(1, width * per_element))
    for start in range(0, indices.size, size):
        yield indices[start : start + size]


# --- sorted-row primitives ------------------------------------------------------------


def _search_rows(
    values: FloatArray, counts: IntArray, queries: FloatArray, side: Literal["left", "right"]
) -> IntArray:
    """``np.searchsorted(values[i, :counts[i]], queries[i], side)`` for every row ``i``
    at once: a binary search over all (row, query) pairs in lock step."""
    rows, width = values.shape
    lo = np.zeros(queries.shape, dtype=np.int64)
    hi = np.broadcast_to(counts[:, None], queries.shape).astype(np.int64)
    if width == 0 or queries.size == 0:
        return lo
    flat = np.ascontiguousarray(values).reshape(-1)
    base = (np.arange(rows, dtype=np.int64) * width)[:, None]
    compare: Callable[[Any, Any], BoolArray] = np.less if side == "left" else np.less_equal
    for _ in range(int(counts.max()).bit_length()):
        mid = (lo + hi) >> 1
        probe = flat[base + np.minimum(mid, width - 1)]
        right = compare(probe, queries) & (lo < hi)
        lo = np.where(right, mid + 1, lo)
        hi = np.where(right, hi, mid)
    return lo


def _run_starts(sample: SortedColumns) -> BoolArray:
    """True at the first position of each run of equal finite values in each row."""
    values, counts = sample.values, sample.counts
    starts = np.empty(values.shape, dtype=np.bool_)
    if values.shape[1] == 0:
        return starts
    starts[:, 0] = True
    np.not_equal(values[:, 1:], values[:, :-1], out=starts[:, 1:])
    starts &= np.arange(values.shape[1]) < counts[:, None]
    return starts


def _runs(sample: SortedColumns) -> tuple[IntArray, FloatArray, IntArray]:
    """Distinct finite values per column as flat ``(column, value, count)`` arrays,
    ordered by column then value."""
    row, position = np.nonzero(_run_starts(sample))
    row = row.astype(np.int64)
    position = position.astype(np.int64)
    value = sample.values[row, position]
    end = np.empty_like(position)
    end[:-1] = position[1:]
    last = np.ones(row.size, dtype=np.bool_)
    last[:-1] = row[1:] != row[:-1]
    end[last] = sample.counts[row[last]]
    return row, value, end - position


@dataclass(frozen=True, slots=True)
class _ValueTable:
    """Counts of every value seen in either sample, flat and ordered by column."""

    row: IntArray  # column of each entry
    value: FloatArray
    ref: FloatArray  # counts (exact integers stored as float64)
    cur: FloatArray
    keys: IntArray  # distinct values per column


def _value_table(ref: SortedColumns, cur: SortedColumns) -> _ValueTable:
    ref_row, ref_value, ref_count = _runs(ref)
    cur_row, cur_value, cur_count = _runs(cur)
    row = np.concatenate([ref_row, cur_row])
    value = np.concatenate([ref_value, cur_value])
    count = np.concatenate([ref_count, cur_count]).astype(np.float64)
    from_ref = np.concatenate([np.ones(ref_row.size, np.bool_), np.zeros(cur_row.size, np.bool_)])
    order = np.lexsort((value, row))
    row, value, count, from_ref = row[order], value[order], count[order], from_ref[order]
    new = np.ones(row.size, dtype=np.bool_)
    new[1:] = (row[1:] != row[:-1]) | (value[1:] != value[:-1])
    group = np.cumsum(new) - 1
    size = int(group[-1]) + 1 if group.size else 0
    return _ValueTable(
        row=row[new],
        value=value[new],
        ref=_row_sums(group, np.where(from_ref, count, 0.0), size),
        cur=_row_sums(group, np.where(from_ref, 0.0, count), size),
        keys=np.bincount(row[new], minlength=ref.columns).astype(np.int64),
    )


def _row_sums(row: IntArray, weights: ArrayLike, rows: int) -> FloatArray:
    """Sum of ``weights`` per row index (``rows`` results)."""
    return np.asarray(np.bincount(row, weights=weights, minlength=rows), dtype=np.float64)


def _std(sample: SortedColumns) -> FloatArray:
    """Population standard deviation of the finite values of each column."""
    values, counts = sample.values, sample.counts
    full = counts == values.shape[1]
    if full.all():
        return np.asarray(np.std(values, axis=1), dtype=np.float64)
    out = np.empty(sample.columns, dtype=np.float64)
    if full.any():
        out[full] = np.std(values[full], axis=1)
    out[~full] = np.nanstd(values[~full], axis=1)
    return out


# --- Kolmogorov-Smirnov -----------------------------------------------------------------


def _ks_statistic(ref: SortedColumns, cur: SortedColumns) -> FloatArray:
    """``sup |F_ref - F_cur|`` per column, bit for bit as ``ks_2samp`` computes it.

    Let A be the sample with fewer rows and B the other. ``F_A - F_B`` is largest at a
    point of A (right-continuous counts there); ``F_B - F_A`` is largest just before a
    distinct value of A, at the count of B strictly below it. So two binary searches of
    A's points in B (``side="right"`` and ``"left"``) and A's own run boundaries give
    every candidate, each the same ``count / n`` difference SciPy evaluates.
    """
    a, b = (ref, cur) if ref.rows <= cur.rows else (cur, ref)
    out = np.zeros(ref.columns, dtype=np.float64)
    width = a.rows
    index = np.arange(width, dtype=np.int64)
    for block in _blocks(np.arange(ref.columns, dtype=np.int64), width, per_element=8):
        a_block, b_block = a.take(block), b.take(block)
        na = a_block.counts[:, None]
        nb = b_block.counts[:, None]
        starts = _run_starts(a_block)
        # count of A strictly below each point: the start of its run
        a_below = np.maximum.accumulate(np.where(starts, index, 0), axis=1)
        # count of A at or below each point: the start of the next run (or n_A)
        next_start = np.full(a_block.values.shape, width, dtype=np.int64)
        next_start[:, :-1] = np.where(starts[:, 1:], index[1:], width)
        a_upto = np.minimum(np.minimum.accumulate(next_start[:, ::-1], axis=1)[:, ::-1], na)
        b_upto = _search_rows(b_block.values, b_block.counts, a_block.values, "right")
        b_below = _search_rows(b_block.values, b_block.counts, a_block.values, "left")
        above = a_upto / na - b_upto / nb
        below = b_below / nb - a_below / na
        best = np.where(index < na, np.maximum(above, below), 0.0)
        out[block] = np.maximum(best.max(axis=1), 0.0)
    return out


def _ks_pvalues(
    statistic: FloatArray, n_ref: IntArray, n_cur: IntArray
) -> tuple[FloatArray, FloatArray]:
    d = statistic.copy()
    p_value = np.empty_like(d)
    exact = np.maximum(n_ref, n_cur) <= KS_EXACT_MAX_N
    for j in np.flatnonzero(exact):
        success, d[j], p_value[j] = _ks_exact(int(n_ref[j]), int(n_cur[j]), float(d[j]))
        exact[j] = success
    asymptotic = ~exact
    if asymptotic.any():
        large = np.maximum(n_ref, n_cur)[asymptotic].astype(np.float64)
        small = np.minimum(n_ref, n_cur)[asymptotic].astype(np.float64)
        effective = np.round(large * small / (large + small))
        p_value[asymptotic] = scipy_stats.kstwo.sf(d[asymptotic], effective)
    return d, np.clip(p_value, 0.0, 1.0)


def _ks_exact(n1: int, n2: int, d: float) -> tuple[bool, float, float]:
    """SciPy's exact two-sided p-value: ``(success, rounded statistic, p_value)``."""
    g = math.gcd(n1, n2)
    if _SCIPY_EXACT is not None:
        success, rounded, p_value = _SCIPY_EXACT(n1, n2, g, d, "two-sided")
        return bool(success), float(rounded), float(p_value)
    return _ks_exact_port(n1, n2, g, d)


def _ks_exact_port(n1: int, n2: int, g: int, d: float) -> tuple[bool, float, float]:
    """A transcription of ``scipy.stats._stats_py._attempt_exact_2kssamp`` (two-sided),
    used only when that private function cannot be imported."""
    lcm = (n1 // g) * n2
    h = round(d * lcm)
    d = h * 1.0 / lcm
    if h == 0:
        return True, d, 1.0
    try:
        with np.errstate(invalid="raise", over="raise"):
            if n1 == n2:
                p_value = _prob_outside_square(n1, h)
            else:
                p_value = _outer_prob_inside_method(n1, n2, g, h)
    except (FloatingPointError, OverflowError):
        return False, d, math.nan
    return (0 <= p_value <= 1), d, p_value


def _prob_outside_square(n: int, h: int) -> float:
    p = 0.0
    k = n // h
    while k >= 0:
        p1 = 1.0
        for j in range(h):
            p1 = (n - k * h - j) * p1 / (n + k * h + j + 1)
        p = p1 * (1.0 - p)
        k -= 1
    return 2 * p


def _outer_prob_inside_method(m: int, n: int, g: int, h: int) -> float:
    if m < n:
        m, n = n, m
    mg = m // g
    ng = n // g
    minj, maxj = 0, min(math.ceil(h / mg), n + 1)
    curlen = maxj - minj
    a = np.ones(min(2 * maxj + 2, n + 1), dtype=np.float64)
    a[minj:maxj] = 0.0
    for i in range(1, m + 1):
        lastminj, lastlen = minj, curlen
        minj = min(max(math.floor((ng * i - h) / mg) + 1, 0), n)
        maxj = min(math.ceil((ng * i + h) / mg), n + 1)
        if maxj <= minj:
            return 1.0
        val = 0.0 if minj == 0 else 1.0
        for jj in range(maxj - minj):
            j = jj + minj
            val = (float(a[jj + minj - lastminj]) * i + val * j) / (i + j)
            a[jj] = val
        curlen = maxj - minj
        if lastlen > curlen:
            a[maxj - minj : maxj - minj + (lastlen - curlen)] = 1
    return float(a[maxj - minj - 1])


def _scipy_exact() -> Callable[..., tuple[Any, Any, Any]] | None:
    try:
        from scipy.stats._stats_py import _attempt_exact_2kssamp
    except ImportError:  # pragma: no cover - private SciPy API moved
        return None
    return _attempt_exact_2kssamp  # type: ignore[no-any-return]


_SCIPY_EXACT = _scipy_exact()


# --- Wasserstein --------------------------------------------------------------------------


def _wasserstein_distance(ref: SortedColumns, cur: SortedColumns) -> FloatArray:
    """``scipy.stats.wasserstein_distance`` per column, as the integral over ``t`` of
    ``|Q_ref(t) - Q_cur(t)|``: with n and m finite values the quantile functions step at
    ``i/n`` and ``j/m``, so each interval between merged steps pairs a fixed index of
    each sorted sample, the same for every column with those counts."""
    out = np.empty(ref.columns, dtype=np.float64)
    pairs = np.stack([ref.counts, cur.counts], axis=1)
    unique_pairs, group = np.unique(pairs, axis=0, return_inverse=True)
    group = group.reshape(-1)
    for g, (n, m) in enumerate(unique_pairs.tolist()):
        ref_repeat, cur_repeat, widths = _quantile_grid(n, m)
        columns = np.flatnonzero(group == g).astype(np.int64)
        for block in _blocks(columns, widths.size, per_element=2):
            gap = np.repeat(ref.values[block, :n], ref_repeat, axis=1)
            gap -= np.repeat(cur.values[block, :m], cur_repeat, axis=1)
            np.abs(gap, out=gap)
            out[block] = np.einsum("ij,j->i", gap, widths)
    return out


def _quantile_grid(n: int, m: int) -> tuple[IntArray, IntArray, FloatArray]:
    """For samples of n and m values: how many merged intervals each sorted value of
    either sample spans, and the widths of those intervals (they sum to 1)."""
    if n * m >= 2**62:
        raise ValueError(f"samples of {n} and {m} values are too large to compare")
    steps = np.concatenate(
        [np.arange(n + 1, dtype=np.int64) * m, np.arange(m + 1, dtype=np.int64) * n]
    )
    steps.sort(kind="stable")
    keep = np.empty(steps.size, dtype=np.bool_)
    keep[0] = True
    np.not_equal(steps[1:], steps[:-1], out=keep[1:])
    steps = steps[keep]
    left = steps[:-1]
    ref_repeat = np.bincount(left // m, minlength=n).astype(np.int64)
    cur_repeat = np.bincount(left // n, minlength=m).astype(np.int64)
    widths = np.diff(steps) / float(n * m)
    return ref_repeat, cur_repeat, widths


# --- binned shares (Jensen-Shannon, PSI) ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Binned:
    """Shares of each sample per bin (or value), flat and ordered by column."""

    row: IntArray
    ref: FloatArray
    cur: FloatArray


def _binned(
    ref: SortedColumns, cur: SortedColumns, categorical: BoolArray, *, feel_zeroes: bool
) -> _Binned:
    k = ref.columns
    histogram = ~categorical & (distinct_counts(ref) > _HIST_MIN_DISTINCT)
    parts: list[tuple[IntArray, FloatArray, FloatArray]] = []
    by_value = np.flatnonzero(~histogram).astype(np.int64)
    if by_value.size:
        table = _value_table(ref.take(by_value), cur.take(by_value))
        row = by_value[table.row]
        parts.append((row, table.ref / ref.counts[row], table.cur / cur.counts[row]))
    by_bin = np.flatnonzero(histogram).astype(np.int64)
    if by_bin.size:
        parts.extend(_histogram_shares(ref.take(by_bin), cur.take(by_bin), by_bin))
    row = np.concatenate([p[0] for p in parts])
    order = np.argsort(row, kind="stable")
    binned = _Binned(
        row=row[order],
        ref=np.concatenate([p[1] for p in parts])[order],
        cur=np.concatenate([p[2] for p in parts])[order],
    )
    if feel_zeroes:
        _feel_zeroes(binned.row, binned.ref, k)
        _feel_zeroes(binned.row, binned.cur, k)
    return binned


def _histogram_shares(
    ref: SortedColumns, cur: SortedColumns, columns: IntArray
) -> list[tuple[IntArray, FloatArray, FloatArray]]:
    """Shares per ``np.histogram_bin_edges(reference + current, "sturges")`` bin."""
    rows = np.arange(ref.columns)
    n, m = ref.counts, cur.counts
    low = np.minimum(ref.values[:, 0], cur.values[:, 0])
    high = np.maximum(ref.values[rows, n - 1], cur.values[rows, m - 1])
    width = (high - low) / (np.log2(n + m) + 1.0)
    flat = low == high
    first = np.where(flat, low - 0.5, low)
    last = np.where(flat, high + 0.5, high)
    with np.errstate(divide="ignore", invalid="ignore"):
        bins = np.where(width != 0, np.ceil((last - first) / width), 1.0).astype(np.int64)
    parts: list[tuple[IntArray, FloatArray, FloatArray]] = []
    for count in np.unique(bins).tolist():
        group = np.flatnonzero(bins == count).astype(np.int64)
        edges = np.linspace(first[group], last[group], count + 1, endpoint=True, axis=1)
        if np.any(edges[:, :-1] >= edges[:, 1:]):
            bad = int(columns[group[np.any(edges[:, :-1] >= edges[:, 1:], axis=1)][0]])
            raise ColumnError(
                bad, f"has too many histogram bins ({count}) for the range of its values"
            )
        shares = []
        for sample in (ref.take(group), cur.take(group)):
            below = _search_rows(sample.values, sample.counts, edges[:, :-1], "left")
            total = sample.counts[:, None]
            per_bin = np.diff(np.concatenate([below, total], axis=1), axis=1)
            shares.append((per_bin / total).reshape(-1))
        parts.append((np.repeat(columns[group], count), shares[0], shares[1]))
    return parts


def _feel_zeroes(row: IntArray, share: FloatArray, columns: int) -> None:
    """Evidently's ``get_binned_data(feel_zeroes=True)``: empty bins get
    ``min(non-zero) / 1e6`` if that minimum is at most 1e-4, else 1e-4 (in place)."""
    smallest = np.full(columns, np.inf)
    np.minimum.at(smallest, row, np.where(share != 0, share, np.inf))
    fill = np.where(smallest <= _FEEL_ZEROES_SHARE, smallest / 10**6, _FEEL_ZEROES_SHARE)
    empty = share == 0
    share[empty] = fill[row[empty]]
