"""Data drift at scale: mlform's drift_report against Evidently's DataDriftPreset.

Run with ``.venv/bin/python benchmarks/drift.py`` (``--rows``, ``--ref-rows``,
``--columns``, ``--repeat``, ``--small-rows``, ``--small-ref-rows``, ``--cases``).

Two cases, both generated with NumPy from one seed (the same data for both tools):

* ``large``: ``--rows`` (1,000,000) current rows against ``--ref-rows`` (100,000)
  reference rows, ``--columns`` (20) continuous numeric columns. With more than 1000
  reference rows both tools pick the normed Wasserstein distance (threshold 0.1).
* ``small``: ``--small-rows`` (10,000) against ``--small-ref-rows`` (1000), the same
  columns except the last four, which hold 4 values (chi-squared) and 2 values (Z-test);
  the continuous ones get the Kolmogorov-Smirnov test (exact p-values at this size).

In both, a quarter of the columns are shifted in mean (+0.25 sd) and a quarter in
scale (x1.3), so half drift and the data set drifts (share 0.5 >= 0.5).

Each tool runs in a fresh subprocess (``--worker``) that generates the data, records
its peak RSS so far (imports + data: the baseline), runs the report ``--repeat`` times
and records its peak RSS again; the wall time is the median of the runs. mlform is
``drift_report(reference, current, names)`` on the arrays, the reference sorted anew
each run. Evidently is ``Report([DataDriftPreset()], include_tests=True).run(...)`` on
``Dataset.from_pandas`` of DataFrames that wrap the same arrays without copying; the
preset's defaults are its automatic stat tests, the same rule as mlform's. Its
per-column verdicts come from its tests, the data-set verdict from
DriftedColumnsCount's share >= 0.5. Plain NumPy and Evidently as installed: no threads
are started by either (BLAS is not used by mlform's statistics).

Printed: a markdown table for docs/benchmarks.md, the load average before and after,
and whether the verdicts of the two tools agree. Target (not asserted): mlform >= 10x
faster on the large case.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import warnings
import zlib
from typing import Any

import numpy as np

SEED = 20240611


def generate(case: str, rows: int, ref_rows: int, columns: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference and current data for a case; deterministic."""
    rng = np.random.default_rng(SEED)
    reference = rng.standard_normal((ref_rows, columns))
    current = rng.standard_normal((rows, columns))
    for j in range(columns):  # column by column: no large temporaries in the baseline
        if j % 4 == 0:
            current[:, j] += 0.25
        elif j % 4 == 1:
            current[:, j] *= 1.3
    if case == "small" and columns >= 4:
        for sample, size, shifted in ((reference, ref_rows, False), (current, rows, True)):
            shares = [0.1, 0.2, 0.3, 0.4] if not shifted else [0.25, 0.25, 0.25, 0.25]
            sample[:, -4] = rng.choice(4, size, p=shares)  # chi-squared, shifted
            sample[:, -3] = rng.choice(4, size, p=[0.1, 0.2, 0.3, 0.4])  # chi-squared
            sample[:, -2] = rng.binomial(1, 0.5 if shifted else 0.3, size)  # Z-test, shifted
            sample[:, -1] = rng.binomial(1, 0.3, size)  # Z-test
    return reference, current


def _peak_rss_mib() -> float:
    # ru_maxrss is in KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(tool: str, case: str, rows: int, ref_rows: int, columns: int, repeat: int) -> None:
    """Runs in its own process: prints one JSON line with times, memory and verdicts."""
    names = [f"f{j:02d}" for j in range(columns)]
    run = _mlform_runner(names) if tool == "mlform" else _evidently_runner(names)
    reference, current = generate(case, rows, ref_rows, columns)
    checksum = zlib.crc32(reference.data) ^ zlib.crc32(current.data)  # no copies
    prepared = run.prepare(reference, current)
    baseline = _peak_rss_mib()
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = run.run(prepared)
        times.append(time.perf_counter() - start)
    verdicts = run.verdicts(result)
    print(
        json.dumps(
            {
                "tool": tool,
                "case": case,
                "checksum": checksum,
                "times": times,
                "baseline_mib": baseline,
                "peak_mib": _peak_rss_mib(),
                **verdicts,
            }
        )
    )


class _Runner:
    def prepare(self, reference: np.ndarray, current: np.ndarray) -> Any:
        raise NotImplementedError

    def run(self, prepared: Any) -> Any:
        raise NotImplementedError

    def verdicts(self, result: Any) -> dict[str, Any]:
        raise NotImplementedError


def _mlform_runner(names: list[str]) -> _Runner:
    from mlform.monitoring.drift import DriftReport, drift_report

    class Runner(_Runner):
        def prepare(self, reference: np.ndarray, current: np.ndarray) -> Any:
            return reference, current

        def run(self, prepared: Any) -> DriftReport:
            return drift_report(prepared[0], prepared[1], names)

        def verdicts(self, result: DriftReport) -> dict[str, Any]:
            return {
                "drifted": {c.column: c.drifted for c in result.columns},
                "methods": sorted({c.method for c in result.columns}),
                "dataset_drift": result.dataset_drift,
            }

    return Runner()


def _evidently_runner(names: list[str]) -> _Runner:
    import pandas as pd
    import pandas.core.dtypes.common as pandas_common

    # Evidently 0.7.23 imports pandas.core.dtypes.common.infer_dtype_from_object, which
    # pandas 3 removed; drift never calls it (see tests/unit/monitoring).
    if not hasattr(pandas_common, "infer_dtype_from_object"):
        pandas_common.infer_dtype_from_object = lambda dtype: np.dtype(dtype).type  # type: ignore[attr-defined]
    warnings.simplefilter("ignore")  # this process only: deprecations on import and run
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    methods = {
        "K-S p_value": "ks",
        "chi-square p_value": "chi2",
        "Z-test p_value": "ztest",
        "Wasserstein distance (normed)": "wasserstein",
        "Jensen-Shannon distance": "jensenshannon",
    }

    class Runner(_Runner):
        def prepare(self, reference: np.ndarray, current: np.ndarray) -> Any:
            return (
                pd.DataFrame(reference, columns=names, copy=False),
                pd.DataFrame(current, columns=names, copy=False),
            )

        def run(self, prepared: Any) -> Any:
            definition = DataDefinition(numerical_columns=names)
            report = Report([DataDriftPreset()], include_tests=True)
            return report.run(
                Dataset.from_pandas(prepared[1], data_definition=definition),
                Dataset.from_pandas(prepared[0], data_definition=definition),
            )

        def verdicts(self, result: Any) -> dict[str, Any]:
            prefix = "Value Drift for column "
            drifted = {
                t.name.removeprefix(prefix): t.status.value == "FAIL"
                for t in result.tests_results
                if t.name.startswith(prefix)
            }
            metrics = result.dict()["metrics"]
            share = next(
                m["value"]["share"]
                for m in metrics
                if m["metric_name"].startswith("DriftedColumnsCount")
            )
            used = {
                methods.get(m["config"]["method"], m["config"]["method"])
                for m in metrics
                if m["metric_name"].startswith("ValueDrift")
            }
            return {"drifted": drifted, "methods": sorted(used), "dataset_drift": share >= 0.5}

    return Runner()


def _run_worker(tool: str, case: str, rows: int, ref_rows: int, args: argparse.Namespace) -> Any:
    command = [
        sys.executable,
        __file__,
        "--worker",
        tool,
        "--case",
        case,
        "--rows",
        str(rows),
        "--ref-rows",
        str(ref_rows),
        "--columns",
        str(args.columns),
        "--repeat",
        str(args.repeat),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{tool} worker failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f} (1 min), {five:.2f} (5 min)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="current rows, large case")
    parser.add_argument("--ref-rows", type=int, default=100_000, help="reference rows, large")
    parser.add_argument("--small-rows", type=int, default=10_000, help="current rows, small")
    parser.add_argument("--small-ref-rows", type=int, default=1000, help="reference rows, small")
    parser.add_argument("--columns", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3, help="runs per tool; median reported")
    parser.add_argument(
        "--cases", nargs="+", default=["large", "small"], choices=["large", "small"]
    )
    parser.add_argument("--worker", choices=["mlform", "evidently"], help=argparse.SUPPRESS)
    parser.add_argument("--case", choices=["large", "small"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.case, args.rows, args.ref_rows, args.columns, args.repeat)
        return

    from importlib.metadata import version

    print(
        f"# drift benchmark: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs; numpy {np.__version__}, scipy {version('scipy')}, "
        f"pandas {version('pandas')}, evidently {version('evidently')}"
    )
    print(f"load average before: {_load()}")
    rows_out, agreements = [], []
    for case in args.cases:
        rows, ref_rows = (
            (args.rows, args.ref_rows)
            if case == "large"
            else (args.small_rows, args.small_ref_rows)
        )
        results = {
            tool: _run_worker(tool, case, rows, ref_rows, args) for tool in ("mlform", "evidently")
        }
        mine, theirs = results["mlform"], results["evidently"]
        if mine["checksum"] != theirs["checksum"]:
            raise SystemExit(f"{case}: the two workers generated different data")
        median = {tool: statistics.median(r["times"]) for tool, r in results.items()}
        ratio = median["evidently"] / median["mlform"]
        for tool, r in results.items():
            drifted = sum(r["drifted"].values())
            rows_out.append(
                f"| {case}: {ref_rows:,} ref x {rows:,} cur x {args.columns} | {tool} "
                f"| {', '.join(r['methods'])} | {median[tool]:.3f} | {r['times'][0]:.3f} "
                f"| {'1.0' if tool == 'evidently' else f'{ratio:.1f}'} "
                f"| {r['peak_mib']:.0f} | {r['baseline_mib']:.0f} "
                f"| {r['peak_mib'] - r['baseline_mib']:.0f} "
                f"| {drifted}/{len(r['drifted'])} | {r['dataset_drift']} |"
            )
        differ = sorted(
            c for c in mine["drifted"] if mine["drifted"][c] != theirs["drifted"].get(c)
        )
        same = not differ and mine["dataset_drift"] == theirs["dataset_drift"]
        agreements.append(
            f"{case}: verdicts agree: {'yes' if same else 'NO'}"
            + (f" (columns differing: {', '.join(differ)})" if differ else "")
            + f"; mlform {ratio:.1f}x faster (median of {args.repeat})"
        )
        for tool, r in results.items():
            drifted_names = " ".join(c for c, d in r["drifted"].items() if d)
            agreements.append(
                f"  {tool} drifted: {drifted_names}; dataset drift: {r['dataset_drift']}"
            )
    print()
    print(
        "| case | tool | tests | median wall (s) | first run (s) | speed-up vs Evidently "
        "| peak RSS (MiB) | baseline RSS (MiB) | increment (MiB) | drifted columns "
        "| dataset drift |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for line in rows_out:
        print(line)
    print()
    for line in agreements:
        print(line)
    print(f"load average after: {_load()}")
    print(
        "speed-up: Evidently's median / mlform's. baseline RSS: peak RSS of the fresh "
        "worker process after imports and data generation; increment: peak during the "
        "runs minus that baseline. first run: includes first-touch page faults and lazy "
        "imports."
    )


if __name__ == "__main__":
    main()
