"""Reference statistics of the training data, stored with each version for drift monitors.

Per numeric feature: count, missing, mean, std, min, max, quantiles, a histogram over
``bins`` equal-width bins spanning the reference's [min, max] (fixed edges, so PSI and
Wasserstein can bin current data the same way later) and a seeded sample of at most
``sample_size`` values (for KS tests, which Evidently uses up to 1,000 reference rows).
For the label and the predictions: class counts and frequencies (classification) or the
same numeric summary (regression). Everything is computed column-wise with NumPy and
returned as plain JSON-able values.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from mlform.training.types import Array, Task

__all__ = ["FORMAT_VERSION", "QUANTILE_LEVELS", "class_frequencies", "reference_stats"]

FORMAT_VERSION = 1
QUANTILE_LEVELS = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)
DEFAULT_BINS = 30
DEFAULT_SAMPLE = 1000


def reference_stats(
    x: Array,
    feature_names: Sequence[str],
    *,
    task: Task,
    y: Array | None = None,
    predictions: Array | None = None,
    classes: Sequence[Any] = (),
    bins: int = DEFAULT_BINS,
    sample_size: int = DEFAULT_SAMPLE,
    seed: int = 0,
) -> dict[str, Any]:
    """The reference statistics of ``x`` (rows × features) and of the label/predictions."""
    matrix = np.asarray(x, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[1] != len(feature_names):
        raise ValueError(
            f"x has shape {matrix.shape}, expected (rows, {len(feature_names)}) for the "
            "given feature names"
        )
    rows = matrix.shape[0]
    rng = np.random.default_rng(seed)
    sample_rows = np.sort(rng.choice(rows, size=min(rows, sample_size), replace=False))
    summaries = _numeric_columns(matrix, bins, matrix[sample_rows])
    out: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "task": task,
        "rows": rows,
        "bins": bins,
        "sample_size": int(sample_rows.size),
        "quantile_levels": list(QUANTILE_LEVELS),
        "features": dict(zip(feature_names, summaries, strict=True)),
    }
    for key, values in (("label", y), ("predictions", predictions)):
        if values is None:
            continue
        arr = np.asarray(values).ravel()
        if task == "classification":
            out[key] = class_frequencies(arr, classes)
        else:
            col = arr.astype(np.float64)[:, None]
            out[key] = _numeric_columns(col, bins, col[sample_rows[sample_rows < col.shape[0]]])[0]
    return out


def class_frequencies(values: Array, classes: Sequence[Any] = ()) -> dict[str, Any]:
    """``{"kind": "categorical", "counts": {...}, "frequencies": {...}}``.

    Integer class ids are named by ``classes`` (index = id) when given; every declared
    class appears, with 0 when absent.
    """
    arr = np.asarray(values).ravel()
    names, counts = np.unique(arr, return_counts=True)
    found = {_class_name(v, classes): int(c) for v, c in zip(names.tolist(), counts, strict=True)}
    all_counts = {str(c): 0 for c in classes}
    all_counts.update(found)
    total = max(int(arr.size), 1)
    return {
        "kind": "categorical",
        "count": int(arr.size),
        "counts": all_counts,
        "frequencies": {k: v / total for k, v in all_counts.items()},
    }


def _class_name(value: Any, classes: Sequence[Any]) -> str:
    if classes and isinstance(value, int) and 0 <= value < len(classes):
        return str(classes[value])
    return str(value)


def _none_if_nan(values: Array) -> list[float | None]:
    return [None if not np.isfinite(v) else float(v) for v in values]


def _numeric_columns(matrix: Array, bins: int, sample: Array) -> list[dict[str, Any]]:
    """Summaries of every column of ``matrix`` at once."""
    finite = np.isfinite(matrix)
    count = finite.sum(axis=0)
    clean = np.where(finite, matrix, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns give NaN, then None
        mean = np.nanmean(clean, axis=0)
        std = np.nanstd(clean, axis=0)
        low = np.nanmin(clean, axis=0)
        high = np.nanmax(clean, axis=0)
        quantiles = np.nanquantile(clean, QUANTILE_LEVELS, axis=0)  # (levels, features)
    edges, hist = _histograms(clean, finite, low, high, bins)
    summaries = []
    for j in range(matrix.shape[1]):
        col_sample = sample[:, j]
        summaries.append(
            {
                "kind": "numeric",
                "count": int(count[j]),
                "missing": int(matrix.shape[0] - count[j]),
                "mean": _none_if_nan(mean[j : j + 1])[0],
                "std": _none_if_nan(std[j : j + 1])[0],
                "min": _none_if_nan(low[j : j + 1])[0],
                "max": _none_if_nan(high[j : j + 1])[0],
                "quantiles": dict(
                    zip(
                        (f"{q:g}" for q in QUANTILE_LEVELS),
                        _none_if_nan(quantiles[:, j]),
                        strict=True,
                    )
                ),
                "histogram": {
                    "edges": _none_if_nan(edges[j]),
                    "counts": [int(c) for c in hist[j]],
                },
                "sample": [float(v) for v in col_sample[np.isfinite(col_sample)]],
            }
        )
    return summaries


def _histograms(
    clean: Array, finite: Array, low: Array, high: Array, bins: int
) -> tuple[Array, Array]:
    """Equal-width edges over each column's [min, max] and the counts in each bin.

    A constant column gets bins of width 1/bins around its value. Values are binned like
    ``np.histogram``: half-open bins, the last one closed.
    """
    features = clean.shape[1]
    lo = np.where(np.isfinite(low), low, 0.0)
    hi = np.where(np.isfinite(high), high, 0.0)
    flat = hi <= lo
    lo = np.where(flat, lo - 0.5, lo)
    hi = np.where(flat, hi + 0.5, hi)
    width = (hi - lo) / bins
    edges = lo[:, None] + width[:, None] * np.arange(bins + 1)[None, :]
    edges[:, -1] = hi
    with np.errstate(invalid="ignore"):
        idx = np.floor((clean - lo[None, :]) * (bins / (hi - lo))[None, :])
    idx = np.clip(np.nan_to_num(idx, nan=0.0), 0, bins - 1).astype(np.int64)
    # Rounding can put a value on an edge in the wrong bin: correct it as np.histogram does.
    value = np.where(finite, clean, 0.0).T  # (features, rows)
    idx_t = idx.T
    below = value < np.take_along_axis(edges, idx_t, axis=1)
    idx_t = idx_t - below
    above = (value >= np.take_along_axis(edges, idx_t + 1, axis=1)) & (idx_t != bins - 1)
    idx = (idx_t + above).T
    offsets = idx + (np.arange(features) * bins)[None, :]
    counts = np.bincount(offsets[finite], minlength=features * bins).reshape(features, bins)
    return edges, counts
