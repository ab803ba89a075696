"""mlform's drift verdicts and scores against Evidently's on the same data.

Evidently 0.7 (``evidently>=0.7,<0.8``, a dev dependency). The per-column comparisons
use its legacy API, ``evidently.legacy.report.Report`` with ``DataDriftTable``: its
result names the stat test chosen for each column, its score, threshold and verdict,
and the data-set verdict, which is everything compared here. The 0.7 API
(``evidently.Report`` with ``presets.DataDriftPreset``) runs the same code
(``get_one_column_drift``) per column; one test checks that its verdicts agree too.

Scores are compared to a relative 1e-9. Where they can differ, and why, in practice
by 1e-13 or less:

* wasserstein: mlform integrates the difference of the quantile functions, SciPy
  (called by Evidently) that of the CDFs: the same integral summed in a different order;
  the reference std comes from NumPy on sorted values, Evidently's from pandas.
* jensenshannon and psi: the same shares, summed in another order (per-column bincount
  against NumPy's pairwise sum).
* ks, chi2 and ztest p-values: the same SciPy functions of the same integers; equal in
  practice.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlform.monitoring.drift import DriftReport, drift_report

RTOL = 1e-9

# Evidently's stat test display names
METHOD_NAMES = {
    "K-S p_value": "ks",
    "chi-square p_value": "chi2",
    "Z-test p_value": "ztest",
    "Wasserstein distance (normed)": "wasserstein",
    "Jensen-Shannon distance": "jensenshannon",
    "PSI": "psi",
}
COLUMNS = ["normal", "rounded", "three", "binary", "exponential", "category", "flag"]
CATEGORICAL = ["category", "flag"]
NUMERIC = [c for c in COLUMNS if c not in CATEGORICAL]


def _import_evidently() -> SimpleNamespace:
    # Evidently 0.7.23 imports pandas.core.dtypes.common.infer_dtype_from_object, a private
    # helper that pandas 3 removed; it is only used by Evidently's column-type test, never
    # by drift, so a stand-in lets the package import under pandas 3.
    import pandas.core.dtypes.common as pandas_common

    if not hasattr(pandas_common, "infer_dtype_from_object"):
        pandas_common.infer_dtype_from_object = lambda dtype: np.dtype(dtype).type  # type: ignore[attr-defined]
    with warnings.catch_warnings():
        # On import: numpy.core (Evidently), litestar's own deprecations, and pandas 3's
        # Pandas4Warning for the option plotly sets; all DeprecationWarning subclasses.
        warnings.simplefilter("ignore", DeprecationWarning)
        from evidently import DataDefinition, Dataset, Report
        from evidently.legacy.metrics import DataDriftTable
        from evidently.legacy.pipeline.column_mapping import ColumnMapping
        from evidently.legacy.report import Report as LegacyReport
        from evidently.presets import DataDriftPreset
    return SimpleNamespace(
        Report=Report,
        Dataset=Dataset,
        DataDefinition=DataDefinition,
        DataDriftPreset=DataDriftPreset,
        LegacyReport=LegacyReport,
        DataDriftTable=DataDriftTable,
        ColumnMapping=ColumnMapping,
    )


@contextlib.contextmanager
def _evidently_run_warnings() -> Iterator[None]:
    """The warnings Evidently's drift code raises, silenced while it runs."""
    with warnings.catch_warnings():
        # SciPy's chisquare divides by an expected count of 0 for a value the reference
        # never saw (Evidently passes it through; the p-value is 0).
        warnings.filterwarnings("ignore", "divide by zero encountered", RuntimeWarning)
        # Evidently drops NaN with DataFrame.dropna(inplace=True), deprecated in pandas 3.1.
        warnings.filterwarnings("ignore", "The inplace keyword", DeprecationWarning)
        yield


@pytest.fixture(scope="module")
def evidently() -> SimpleNamespace:
    return _import_evidently()


@dataclass(frozen=True)
class Case:
    ref_rows: int
    cur_rows: int
    shift: float
    seed: int
    missing: bool = False

    def data(self) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        return self._sample(rng, self.ref_rows, 0.0), self._sample(rng, self.cur_rows, self.shift)

    def _sample(self, rng: np.random.Generator, rows: int, shift: float) -> np.ndarray:
        x = np.column_stack(
            [
                rng.normal(shift, 1.0, rows),
                np.round(rng.normal(0.0, 1.0 + shift, rows), 1),
                rng.choice(3, rows, p=[0.5 - shift / 2, 0.3, 0.2 + shift / 2]) * 1.5,
                rng.binomial(1, 0.3 + shift / 2, rows),
                rng.exponential(1.0 + shift, rows),
                rng.choice(6, rows, p=_category_shares(shift)),
                rng.binomial(1, 0.6 - shift / 2, rows) + 7.0,
            ]
        ).astype(np.float64)
        if self.missing:
            x[rng.random(x.shape) < 0.05] = np.nan
        return x


def _category_shares(shift: float) -> list[float]:
    shares = np.array([0.3, 0.25, 0.2, 0.15, 0.1, 0.0]) + shift * np.array([-1, 0, 0, 0, 0.5, 0.5])
    return list(shares / shares.sum())


CASES = [
    Case(ref, cur, shift, seed)
    for ref, cur in [(400, 300), (1000, 900), (1001, 800), (3000, 2500)]
    for shift in (0.0, 0.3)
    for seed in (0, 1, 2)
] + [Case(1500, 1200, 0.3, 3, missing=True), Case(800, 700, 0.0, 4, missing=True)]


def _legacy(
    ev: SimpleNamespace,
    ref: np.ndarray,
    cur: np.ndarray,
    *,
    method: str | None = None,
    threshold: float | None = None,
    drift_share: float = 0.5,
) -> Any:
    table = ev.DataDriftTable(stattest=method, stattest_threshold=threshold)
    report = ev.LegacyReport(metrics=[table])
    mapping = ev.ColumnMapping(
        target=None,
        prediction=None,
        datetime=None,
        numerical_features=[c for c in COLUMNS if c in NUMERIC],
        categorical_features=CATEGORICAL,
    )
    with _evidently_run_warnings():
        report.run(
            reference_data=pd.DataFrame(ref, columns=COLUMNS),
            current_data=pd.DataFrame(cur, columns=COLUMNS),
            column_mapping=mapping,
        )
    result = table.get_result()
    share = result.number_of_drifted_columns / result.number_of_columns
    return result, bool(share >= drift_share)


def _assert_same(ours: DriftReport, theirs: Any, their_dataset_drift: bool) -> None:
    assert ours.dataset_drift == their_dataset_drift
    assert ours.drifted_share == pytest.approx(theirs.share_of_drifted_columns, rel=1e-15)
    for column in ours.columns:
        expected = theirs.drift_by_columns[column.column]
        assert column.method == METHOD_NAMES[expected.stattest_name], column.column
        assert column.threshold == expected.stattest_threshold
        assert column.drifted == expected.drift_detected, column.describe()
        assert column.score == pytest.approx(expected.drift_score, rel=RTOL, abs=1e-15)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_auto_matches_evidently(evidently: SimpleNamespace, case: Case) -> None:
    ref, cur = case.data()
    ours = drift_report(ref, cur, COLUMNS, categorical=CATEGORICAL)
    theirs, dataset_drift = _legacy(evidently, ref, cur)
    _assert_same(ours, theirs, dataset_drift)


@pytest.mark.parametrize("method", ["psi", "jensenshannon"])
@pytest.mark.parametrize("case", [Case(600, 500, 0.0, 5), Case(2500, 2000, 0.3, 6)], ids=str)
def test_named_method_matches_evidently(
    evidently: SimpleNamespace, case: Case, method: str
) -> None:
    ref, cur = case.data()
    ours = drift_report(ref, cur, COLUMNS, method=method, categorical=CATEGORICAL)
    theirs, dataset_drift = _legacy(evidently, ref, cur, method=method)
    _assert_same(ours, theirs, dataset_drift)


@pytest.mark.parametrize(
    ("method", "threshold", "drift_share"),
    [("psi", 0.02, 0.5), (None, 0.2, 0.3), ("jensenshannon", 0.05, 0.9)],
)
def test_thresholds_and_drift_share_match_evidently(
    evidently: SimpleNamespace, method: str | None, threshold: float, drift_share: float
) -> None:
    ref, cur = Case(900, 900, 0.1, 7).data()
    ours = drift_report(
        ref,
        cur,
        COLUMNS,
        method=method or "auto",
        threshold=threshold,
        categorical=CATEGORICAL,
        drift_share=drift_share,
    )
    theirs, dataset_drift = _legacy(
        evidently, ref, cur, method=method, threshold=threshold, drift_share=drift_share
    )
    _assert_same(ours, theirs, dataset_drift)


def test_cases_cover_both_verdicts() -> None:
    """The cases above see drift and no drift, per column and for the data set, for
    every automatic method."""
    seen: dict[str, set[bool]] = {}
    datasets = set()
    for case in CASES:
        report = drift_report(*case.data(), COLUMNS, categorical=CATEGORICAL)
        datasets.add(report.dataset_drift)
        for column in report.columns:
            seen.setdefault(column.method, set()).add(column.drifted)
    assert datasets == {True, False}
    assert seen == {
        m: {True, False} for m in ("ks", "chi2", "ztest", "wasserstein", "jensenshannon")
    }


@pytest.mark.parametrize("case", [Case(700, 600, 0.3, 8), Case(2000, 1500, 0.0, 9)], ids=str)
def test_evidently_07_preset_agrees(evidently: SimpleNamespace, case: Case) -> None:
    """The 0.7 API's DataDriftPreset: per-column verdicts from its tests, the share of
    drifted columns from DriftedColumnsCount."""
    ref, cur = case.data()
    ours = drift_report(ref, cur, COLUMNS, categorical=CATEGORICAL)
    definition = evidently.DataDefinition(
        numerical_columns=NUMERIC, categorical_columns=CATEGORICAL
    )
    report = evidently.Report([evidently.DataDriftPreset()], include_tests=True)
    with _evidently_run_warnings():
        snapshot = report.run(
            evidently.Dataset.from_pandas(
                pd.DataFrame(cur, columns=COLUMNS), data_definition=definition
            ),
            evidently.Dataset.from_pandas(
                pd.DataFrame(ref, columns=COLUMNS), data_definition=definition
            ),
        )
    verdicts = {
        test.name.removeprefix("Value Drift for column "): test.status.value == "FAIL"
        for test in snapshot.tests_results
        if test.name.startswith("Value Drift for column ")
    }
    assert verdicts == {c.column: c.drifted for c in ours.columns}
    share = next(
        m for m in snapshot.dict()["metrics"] if m["metric_name"].startswith("DriftedColumnsCount")
    )
    assert share["value"]["share"] == pytest.approx(ours.drifted_share)
