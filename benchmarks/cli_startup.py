"""How fast does ``mlform --help`` start? Target: under 0.3 s.

Runs, side by side in one process: the baseline ``python -c pass`` (the interpreter
alone), ``python -c "import hydra"`` (what an eager import of the config stack would
cost), and ``mlform --help``; prints the median of N runs and ratios to the baseline.
No thresholds are asserted: this prints figures for docs/benchmarks.md.

    .venv/bin/python benchmarks/cli_startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def _median_seconds(cmd: list[str], runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    py = sys.executable
    cases = {
        "baseline: python -c pass": [py, "-c", "pass"],
        "python -c 'import hydra, pydantic'": [py, "-c", "import hydra, pydantic"],
        "mlform --help": [py, "-m", "mlform", "--help"],
        "mlform plan --help": [py, "-m", "mlform", "plan", "--help"],
    }
    results = {name: _median_seconds(cmd, runs) for name, cmd in cases.items()}
    base = results["baseline: python -c pass"]
    print(f"{'command':<38} {'median s':>9} {'x baseline':>11}")
    for name, seconds in results.items():
        print(f"{name:<38} {seconds:>9.3f} {seconds / base:>11.2f}")


if __name__ == "__main__":
    main()
