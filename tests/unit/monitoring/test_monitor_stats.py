"""The drift statistics (mlform.monitoring.stats) against SciPy, column by column, and the
report API (mlform.monitoring.drift) on its own.

SciPy computes the same statistic for: ks_2samp (statistic and p-value, exact and
asymptotic), chisquare, wasserstein_distance and spatial.distance.jensenshannon; the
Z-test is checked against its formula and statsmodels' proportions_ztest; PSI against
its formula over bins from np.histogram. The binning is Evidently's get_binned_data,
transcribed below one column at a time.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import spatial
from scipy import stats as scipy_stats

from mlform.monitoring import stats
from mlform.monitoring.drift import ColumnDrift, DriftReport, drift_report

RTOL = 1e-9


def _column(x: np.ndarray) -> np.ndarray:
    return x[np.isfinite(x)]


def _sample(seed: int, rows: int, columns: int = 4, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(shift, 1.0, size=(rows, columns))
    x[:, 1] = np.round(x[:, 1], 1)  # ties
    if columns > 2:
        x[:, 2] = rng.exponential(1.0 + shift, size=rows)
    if columns > 3:
        x[:, 3] = rng.integers(0, 8, size=rows)  # few values
    return x


def _binned(ref: np.ndarray, cur: np.ndarray, categorical: bool, feel_zeroes: bool):
    """Evidently's get_binned_data for one column (NaN already dropped)."""
    if not categorical and len(np.unique(ref)) > 20:
        edges = np.histogram_bin_edges(np.concatenate([ref, cur]), bins="sturges")
        r = np.histogram(ref, edges)[0] / len(ref)
        c = np.histogram(cur, edges)[0] / len(cur)
    else:
        keys = np.union1d(ref, cur)
        r = np.array([np.count_nonzero(ref == key) / len(ref) for key in keys])
        c = np.array([np.count_nonzero(cur == key) / len(cur) for key in keys])
    if feel_zeroes:
        for shares in (r, c):
            smallest = shares[shares != 0].min()
            shares[shares == 0] = smallest / 10**6 if smallest <= 0.0001 else 0.0001
    return r, c


def _chisquare_scipy(ref: np.ndarray, cur: np.ndarray):
    keys = np.union1d(ref, cur)
    observed = [np.count_nonzero(cur == key) for key in keys]
    expected = [np.count_nonzero(ref == key) * (len(cur) / len(ref)) for key in keys]
    with np.errstate(divide="ignore"):  # an unseen category: expected 0
        return scipy_stats.chisquare(observed, expected)


def _per_column(ref: np.ndarray, cur: np.ndarray, f: Callable[[np.ndarray, np.ndarray], float]):
    return np.array([f(_column(ref[:, j]), _column(cur[:, j])) for j in range(ref.shape[1])])


# --- Kolmogorov-Smirnov ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "m"),
    [
        (1, 1),
        (5, 3),
        (40, 40),  # exact, equal sizes
        (300, 250),  # exact, unequal
        (1000, 10_000),  # exact at the limit
        (1000, 10_001),  # asymptotic just past it
        (20_000, 3_000),  # asymptotic
    ],
)
@pytest.mark.parametrize("shift", [0.0, 0.15])
def test_ks_matches_scipy(n: int, m: int, shift: float) -> None:
    ref, cur = _sample(n, n), _sample(m + 1, m, shift=shift)
    statistic, p_value = stats.ks(ref, cur)
    expected = [scipy_stats.ks_2samp(ref[:, j], cur[:, j]) for j in range(ref.shape[1])]
    np.testing.assert_allclose(statistic, [e.statistic for e in expected], rtol=RTOL, atol=0)
    np.testing.assert_allclose(p_value, [e.pvalue for e in expected], rtol=RTOL, atol=1e-300)


@pytest.mark.parametrize(("n", "m"), [(30, 30), (50, 80), (7, 200), (1, 9)])
def test_ks_exact_port_matches_scipy(monkeypatch: pytest.MonkeyPatch, n: int, m: int) -> None:
    """The fallback used if SciPy's private exact routine ever moves."""
    monkeypatch.setattr(stats, "_SCIPY_EXACT", None)
    ref, cur = _sample(3, n), _sample(4, m, shift=0.4)
    statistic, p_value = stats.ks(ref, cur)
    expected = [scipy_stats.ks_2samp(ref[:, j], cur[:, j]) for j in range(ref.shape[1])]
    np.testing.assert_allclose(statistic, [e.statistic for e in expected], rtol=RTOL)
    np.testing.assert_allclose(p_value, [e.pvalue for e in expected], rtol=RTOL)


_values = hnp.arrays(
    np.float64,
    st.tuples(st.integers(1, 60), st.just(3)),
    elements=st.one_of(
        st.integers(-5, 5).map(float),
        st.floats(-1e6, 1e6, allow_nan=False, allow_subnormal=False),
        st.sampled_from([math.nan, math.inf]),
    ),
)


def _has_values(*samples: np.ndarray) -> bool:
    return all(np.isfinite(x).any(axis=0).all() for x in samples)


# SciPy warns where its exact p-value fails and it falls back to the asymptotic one
# (mlform does the same, silently).
@pytest.mark.filterwarnings("ignore:ks_2samp. Exact calculation unsuccessful:RuntimeWarning")
@settings(max_examples=150, deadline=None)
@given(ref=_values, cur=_values)
def test_ks_and_wasserstein_match_scipy_on_any_data(ref: np.ndarray, cur: np.ndarray) -> None:
    assume(_has_values(ref, cur))
    statistic, p_value = stats.ks(ref, cur)
    expected = [scipy_stats.ks_2samp(_column(ref[:, j]), _column(cur[:, j])) for j in range(3)]
    np.testing.assert_allclose(statistic, [e.statistic for e in expected], rtol=RTOL)
    np.testing.assert_allclose(p_value, [e.pvalue for e in expected], rtol=RTOL)
    distance = stats.wasserstein(ref, cur, normed=False)
    np.testing.assert_allclose(
        distance, _per_column(ref, cur, scipy_stats.wasserstein_distance), rtol=RTOL, atol=1e-9
    )


@settings(max_examples=100, deadline=None)
@given(
    ref=hnp.arrays(
        np.float64,
        st.tuples(st.integers(21, 80), st.just(2)),
        elements=st.integers(-40, 40).map(float),
    ),
    cur=hnp.arrays(
        np.float64,
        st.tuples(st.integers(1, 80), st.just(2)),
        elements=st.integers(-60, 60).map(float),
    ),
)
def test_jensenshannon_and_psi_match_on_any_data(ref: np.ndarray, cur: np.ndarray) -> None:
    """Integer data on a fine histogram: many values fall exactly on bin edges."""
    js = stats.jensenshannon(ref, cur, categorical=[False, True])
    psi = stats.psi(ref, cur, categorical=[False, True])
    for j, categorical in enumerate([False, True]):
        r, c = _binned(ref[:, j], cur[:, j], categorical, feel_zeroes=False)
        assert js[j] == pytest.approx(spatial.distance.jensenshannon(r, c), rel=RTOL, abs=1e-12)
        r, c = _binned(ref[:, j], cur[:, j], categorical, feel_zeroes=True)
        assert psi[j] == pytest.approx(np.sum((r - c) * np.log(r / c)), rel=RTOL, abs=1e-12)


# --- chi-squared and Z ------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_chisquare_matches_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ref = rng.integers(0, 5, size=(400, 3)).astype(float)
    cur = rng.integers(0, 5, size=(300, 3)).astype(float)
    cur[:, 1] = rng.integers(0, 7, size=300)  # values 5 and 6 unseen in the reference
    cur[:, 2] = rng.choice(5, size=300, p=[0.4, 0.3, 0.1, 0.1, 0.1])
    statistic, p_value = stats.chisquare(ref, cur)
    expected = [_chisquare_scipy(ref[:, j], cur[:, j]) for j in range(3)]
    np.testing.assert_allclose(statistic, [e.statistic for e in expected], rtol=RTOL)
    np.testing.assert_allclose(p_value, [e.pvalue for e in expected], rtol=RTOL, atol=1e-300)
    assert statistic[1] == math.inf
    assert p_value[1] == 0.0


@settings(max_examples=100, deadline=None)
@given(
    ref=hnp.arrays(
        np.float64,
        st.tuples(st.integers(1, 40), st.just(2)),
        elements=st.sampled_from([0.0, 1.0, 2.0, 3.5]),
    ),
    cur=hnp.arrays(
        np.float64,
        st.tuples(st.integers(1, 40), st.just(2)),
        elements=st.sampled_from([0.0, 1.0, 2.0, 3.5]),
    ),
)
def test_chisquare_matches_scipy_on_any_counts(ref: np.ndarray, cur: np.ndarray) -> None:
    statistic, p_value = stats.chisquare(ref, cur)
    for j in range(2):
        expected = _chisquare_scipy(ref[:, j], cur[:, j])
        np.testing.assert_allclose(statistic[j], expected.statistic, rtol=RTOL)
        np.testing.assert_allclose(p_value[j], expected.pvalue, rtol=RTOL, equal_nan=True)


def _z_formula(ref: np.ndarray, cur: np.ndarray) -> tuple[float, float]:
    low = min(ref.min(), cur.min())
    n1, n2 = len(ref), len(cur)
    p1, p2 = np.count_nonzero(ref != low) / n1, np.count_nonzero(cur != low) / n2
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    z = (p1 - p2) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return z, 2 * (1 - scipy_stats.norm.cdf(abs(z)))


@pytest.mark.parametrize(
    ("n", "m", "p_ref", "p_cur"),
    [(500, 400, 0.3, 0.3), (50, 60, 0.2, 0.5), (1000, 9000, 0.01, 0.02)],
)
def test_ztest_matches_formula_and_statsmodels(n: int, m: int, p_ref: float, p_cur: float) -> None:
    from statsmodels.stats.proportion import proportions_ztest

    rng = np.random.default_rng(n)
    ref = np.column_stack([rng.binomial(1, p_ref, n), 3.0 + 2 * rng.binomial(1, p_ref, n)])
    cur = np.column_stack([rng.binomial(1, p_cur, m), 3.0 + 2 * rng.binomial(1, p_cur, m)])
    z, p_value = stats.ztest(ref.astype(float), cur.astype(float))
    for j in range(2):
        expected_z, expected_p = _z_formula(ref[:, j], cur[:, j])
        assert z[j] == pytest.approx(expected_z, rel=RTOL)
        assert p_value[j] == pytest.approx(expected_p, rel=RTOL, abs=1e-300)
        counts = [
            np.count_nonzero(ref[:, j] != ref[:, j].min()),
            np.count_nonzero(cur[:, j] != ref[:, j].min()),
        ]
        sm_z, sm_p = proportions_ztest(counts, [n, m])
        assert z[j] == pytest.approx(sm_z, rel=RTOL)
        # statsmodels uses 2 * sf(|z|); Evidently's 2 * (1 - cdf(|z|)) agrees to 1e-16 abs
        assert p_value[j] == pytest.approx(sm_p, abs=RTOL)


def test_ztest_constant_columns() -> None:
    ref = np.array([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    cur = np.array([[1.0, 2.0, 1.0], [1.0, 2.0, 1.0], [1.0, 2.0, 2.0]])
    z, p_value = stats.ztest(ref, cur)
    assert p_value[0] == 1.0 and z[0] == 0.0  # one value, the same in both
    assert p_value[1] < 0.05  # one value each, different
    assert p_value[2] == pytest.approx(_z_formula(ref[:, 2], cur[:, 2])[1], rel=RTOL)


# --- Wasserstein, Jensen-Shannon, PSI ----------------------------------------------------


@pytest.mark.parametrize(("n", "m"), [(1, 1), (3, 7), (1000, 1000), (2000, 15_000), (997, 1009)])
def test_wasserstein_matches_scipy(n: int, m: int) -> None:
    ref, cur = _sample(n, n), _sample(m, m, shift=0.3)
    expected = _per_column(
        ref,
        cur,
        lambda r, c: scipy_stats.wasserstein_distance(r, c) / max(float(np.std(r)), 0.001),
    )
    np.testing.assert_allclose(stats.wasserstein(ref, cur), expected, rtol=RTOL)


@pytest.mark.parametrize("categorical", [False, True])
@pytest.mark.parametrize(("n", "m", "shift"), [(2000, 1500, 0.0), (2000, 1500, 0.3), (40, 30, 0.2)])
def test_jensenshannon_and_psi_match_scipy(n: int, m: int, shift: float, categorical: bool) -> None:
    ref, cur = _sample(n + 7, n), _sample(m + 9, m, shift=shift)
    if categorical:
        ref, cur = np.round(ref), np.round(cur)
    js = stats.jensenshannon(ref, cur, categorical=categorical)
    psi = stats.psi(ref, cur, categorical=categorical)
    for j in range(ref.shape[1]):
        r, c = _binned(ref[:, j], cur[:, j], categorical, feel_zeroes=False)
        assert js[j] == pytest.approx(spatial.distance.jensenshannon(r, c), rel=RTOL, abs=1e-12)
        r, c = _binned(ref[:, j], cur[:, j], categorical, feel_zeroes=True)
        assert psi[j] == pytest.approx(np.sum((r - c) * np.log(r / c)), rel=RTOL, abs=1e-12)


def test_histogram_bins_are_numpys_exactly() -> None:
    """Sturges edges from a vectorised linspace, counts from a vectorised search: the
    same integers as np.histogram over np.histogram_bin_edges."""
    rng = np.random.default_rng(5)
    ref = rng.lognormal(size=(3000, 5)) * [1, 1e-9, 1e9, 3, 1]
    cur = rng.lognormal(size=(5000, 5)) * [1, 1e-9, 1e9, 3, 2]
    ref[:, 4] = np.round(ref[:, 4], 2)  # values on the edges
    binned = stats._binned(
        stats.sort_columns(ref), stats.sort_columns(cur), np.zeros(5, bool), feel_zeroes=False
    )
    for j in range(5):
        r, c = _binned(ref[:, j], cur[:, j], False, feel_zeroes=False)
        np.testing.assert_array_equal(binned.ref[binned.row == j], r)
        np.testing.assert_array_equal(binned.cur[binned.row == j], c)


def test_psi_of_identical_samples_is_zero_and_unseen_values_raise_it() -> None:
    ref = np.array([[0.0], [1.0], [1.0], [2.0]])
    assert stats.psi(ref, ref, categorical=True)[0] == 0.0
    assert stats.jensenshannon(ref, ref, categorical=True)[0] == 0.0
    cur = np.array([[0.0], [1.0], [3.0], [3.0]])
    assert stats.psi(ref, cur, categorical=True)[0] > 1
    r, c = _binned(ref[:, 0], cur[:, 0], True, feel_zeroes=False)
    expected = spatial.distance.jensenshannon(r, c)
    assert stats.jensenshannon(ref, cur, categorical=True)[0] == pytest.approx(expected, rel=RTOL)


# --- missing values, constant and tiny columns ---------------------------------------------


def test_nan_and_inf_are_dropped_per_column() -> None:
    ref, cur = _sample(1, 500), _sample(2, 400, shift=0.2)
    rng = np.random.default_rng(3)
    ref_holes, cur_holes = ref.copy(), cur.copy()
    ref_holes[rng.random(ref.shape) < 0.1] = np.nan
    cur_holes[rng.random(cur.shape) < 0.2] = np.nan
    ref_holes[0, 0], cur_holes[1, 2] = np.inf, -np.inf
    for j in range(4):
        r, c = _column(ref_holes[:, j]), _column(cur_holes[:, j])
        assert stats.ks(ref_holes, cur_holes)[1][j] == pytest.approx(
            scipy_stats.ks_2samp(r, c).pvalue, rel=RTOL
        )
        assert stats.wasserstein(ref_holes, cur_holes)[j] == pytest.approx(
            scipy_stats.wasserstein_distance(r, c) / max(float(np.std(r)), 0.001), rel=RTOL
        )
        js = spatial.distance.jensenshannon(*_binned(r, c, False, feel_zeroes=False))
        assert stats.jensenshannon(ref_holes, cur_holes)[j] == pytest.approx(js, rel=RTOL)


def test_constant_columns() -> None:
    ref = np.full((50, 2), 3.0)
    cur = np.column_stack([np.full(40, 3.0), np.full(40, 3.5)])
    statistic, p_value = stats.ks(ref, cur)
    assert list(statistic) == [0.0, 1.0]
    assert p_value[0] == 1.0
    assert p_value[1] == pytest.approx(scipy_stats.ks_2samp(ref[:, 1], cur[:, 1]).pvalue, rel=RTOL)
    # the reference std is 0, so the distance is divided by the 0.001 floor
    np.testing.assert_allclose(stats.wasserstein(ref, cur), [0.0, 500.0], rtol=RTOL)
    assert list(stats.jensenshannon(ref, cur)) == pytest.approx(
        [0.0, spatial.distance.jensenshannon([1, 0], [0, 1])]
    )


def test_one_row_each() -> None:
    ref, cur = np.array([[1.0, 0.0]]), np.array([[2.0, 0.0]])
    statistic, p_value = stats.ks(ref, cur)
    expected = scipy_stats.ks_2samp([1.0], [2.0])
    assert (statistic[0], p_value[0]) == (expected.statistic, expected.pvalue)
    assert stats.wasserstein(ref, cur)[0] == pytest.approx(1.0 / 0.001)
    assert stats.ztest(ref, cur)[1][1] == 1.0
    assert stats.chisquare(ref, cur)[1][0] == 0.0  # 2.0 never seen in the reference


def test_empty_column_after_dropping_nan_is_an_error() -> None:
    ref = np.array([[1.0, 2.0], [1.5, 3.0]])
    cur = np.array([[1.0, np.nan], [2.0, np.inf]])
    with pytest.raises(ValueError, match="column 1 has no finite values in the current"):
        stats.ks(ref, cur)
    with pytest.raises(ValueError, match="'b' has no values in the current data"):
        drift_report(ref, cur, ["a", "b"])


def test_sorted_reference_can_be_reused() -> None:
    ref, cur = _sample(1, 3000), _sample(2, 2000, shift=0.1)
    prepared = stats.sort_columns(ref)
    np.testing.assert_array_equal(stats.wasserstein(prepared, cur), stats.wasserstein(ref, cur))
    assert drift_report(prepared, cur, list("abcd")) == drift_report(ref, cur, list("abcd"))
    fortran = np.asfortranarray(ref)
    np.testing.assert_array_equal(stats.sort_columns(fortran).values, prepared.values)


@settings(max_examples=100, deadline=None)
@given(
    data=hnp.arrays(
        np.float64,
        st.tuples(st.integers(1, 30), st.integers(1, 4)),
        elements=st.integers(-3, 3).map(float),
    ),
    queries=hnp.arrays(np.float64, st.integers(1, 10), elements=st.floats(-4, 4)),
    side=st.sampled_from(["left", "right"]),
)
def test_row_search_is_searchsorted(data: np.ndarray, queries: np.ndarray, side: str) -> None:
    sorted_data = stats.sort_columns(data)
    q = np.broadcast_to(queries, (data.shape[1], queries.size)).copy()
    found = stats._search_rows(sorted_data.values, sorted_data.counts, q, side)  # type: ignore[arg-type]
    for j in range(data.shape[1]):
        np.testing.assert_array_equal(found[j], np.searchsorted(np.sort(data[:, j]), queries, side))  # type: ignore[call-overload]


def test_distinct_counts() -> None:
    ref = np.array([[1.0, 0.0], [1.0, -0.0], [2.0, np.nan]])
    cur = np.array([[3.0, 5.0]])
    assert list(stats.distinct_counts(ref)) == [2, 1]
    assert list(stats.union_distinct_counts(ref, cur)) == [3, 2]


def test_stats_reject_bad_shapes() -> None:
    with pytest.raises(ValueError, match="2-D"):
        stats.ks(np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="must match"):
        stats.wasserstein(np.zeros((3, 2)), np.zeros((3, 3)))


# --- the report API ---------------------------------------------------------------------------


def test_report_shape_and_verdicts() -> None:
    ref, cur = _sample(1, 500), _sample(2, 400)
    cur[:, 0] += 1.0
    ref[:, 3] %= 4  # 4 values
    cur[:, 3] %= 4
    report = drift_report(ref, cur, ["x", "y", "z", "w"])
    assert isinstance(report, DriftReport)
    assert [c.method for c in report.columns] == ["ks", "ks", "ks", "chi2"]
    assert [c.drifted for c in report.columns] == [True, False, False, False]
    assert report.drifted_share == 0.25 and report.dataset_drift is False
    assert (report.reference_rows, report.current_rows) == (500, 400)
    worst = report.worst()
    assert worst is not None and worst.column == "x"
    assert report.to_dict()["columns"][0] == worst.to_dict()
    large = drift_report(ref, cur, ["x", "y", "z", "w"], reference_rows=5000, drift_share=0.25)
    assert [c.method for c in large.columns] == ["wasserstein"] * 3 + ["jensenshannon"]
    assert large.dataset_drift  # 1 of 4 >= 0.25


def test_report_methods_and_thresholds() -> None:
    ref, cur = _sample(1, 300), _sample(2, 300, shift=0.05)
    report = drift_report(ref, cur, list("abcd"), method="psi", threshold=0.0)
    assert all(c.method == "psi" and c.threshold == 0.0 and c.drifted for c in report.columns)
    report = drift_report(ref, cur, list("abcd"), method="auto", threshold=1.0)
    assert all(c.threshold == 1.0 and c.drifted for c in report.columns)  # p <= 1
    report = drift_report(
        np.round(ref), np.round(cur), list("abcd"), method="chisquare", categorical=list("abcd")
    )
    assert {c.method for c in report.columns} == {"chi2"}
    one = drift_report(ref, cur, list("abcd"), categorical="d")  # one name, not letters
    assert [c.method for c in one.columns] == ["ks", "ks", "ks", "chi2"]


def test_worst_without_drift_is_the_closest() -> None:
    report = DriftReport(
        columns=(
            ColumnDrift("a", "ks", 0.5, 0.05, False, "p_value"),
            ColumnDrift("b", "psi", 0.09, 0.1, False, "distance"),
            ColumnDrift("c", "chi2", 0.07, 0.05, False, "p_value"),
        ),
        drift_share=0.5,
        drifted_share=0.0,
        dataset_drift=False,
        reference_rows=10,
        current_rows=10,
    )
    worst = report.worst()
    assert worst is not None and worst.column == "b"
    assert DriftReport((), 0.5, 0.0, False, 0, 0).worst() is None


def test_describe() -> None:
    assert (
        ColumnDrift("x", "ks", 0.0031, 0.05, True, "p_value").describe()
        == "ks p=0.0031 <= 0.05 on column x"
    )
    assert (
        ColumnDrift("x", "chi2", 0.2, 0.05, False, "p_value").describe()
        == "chi2 p=0.2 >= 0.05 on column x"
    )
    assert (
        ColumnDrift("mean_radius", "psi", 0.31234, 0.1, True, "distance").describe()
        == "psi 0.312 >= 0.1 on column mean_radius"
    )
    assert ColumnDrift("x", "wasserstein", 0.0999996, 0.1, False, "distance").describe() == (
        "wasserstein 0.0999996 < 0.1 on column x"
    )
    assert (
        ColumnDrift("x", "ks", 0.07, 0.05, False, "p_value")
        .describe()
        .endswith("p=0.07 > 0.05 on column x")
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"reference": np.zeros((3, 2)), "current": np.zeros((3, 3))}, "must match"),
        ({"columns": ["a"]}, "1 column name"),
        ({"columns": ["a", "a"]}, "duplicate"),
        ({"method": "kl"}, "unknown drift method 'kl'"),
        ({"current": np.zeros((0, 2))}, "current data is empty"),
        ({"reference": np.zeros((0, 2))}, "reference data is empty"),
        ({"reference": np.zeros(3)}, "2-D"),
        ({"threshold": math.nan}, "threshold"),
        ({"bins": 0}, "bins"),
        ({"drift_share": 1.5}, "drift_share"),
        ({"categorical": ["zz"]}, "zz"),
        ({"method": "ks", "categorical": ["b"]}, "numeric columns only; 'b'"),
        ({"method": "ztest"}, "categorical columns only; 'a'"),
        ({"reference_rows": 0}, "reference_rows"),
        ({"reference": np.zeros((3, 0)), "current": np.zeros((3, 0)), "columns": []}, "no columns"),
    ],
)
def test_report_rejects_bad_input(kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {
        "reference": np.ones((3, 2)),
        "current": np.ones((3, 2)),
        "columns": ["a", "b"],
    }
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        drift_report(**arguments)  # type: ignore[arg-type]
