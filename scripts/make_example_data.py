"""Generate data/patients.csv, the synthetic patient register of the example system.

Seeded, so the committed file is reproducible: ``python scripts/make_example_data.py``.
One row per biopsy of scikit-learn's breast-cancer dataset (569 rows). ``sex`` is the
sensitive column of the example's fairness gate; it is assigned half and half within each
diagnosis, independently of everything else, so that the gate measures the model and not
the sampling noise of a small group (a realistic 7 % of male patients leaves about eight
in the test split, where one prediction moves a group's selection rate by 12 points).
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

ROWS = 569
OUT = Path(__file__).resolve().parent.parent / "data" / "patients.csv"


def main() -> None:
    rng = np.random.default_rng(20261123)
    from sklearn.datasets import load_breast_cancer

    diagnosis = load_breast_cancer().target
    sexes = np.empty(ROWS, dtype=object)
    for label in np.unique(diagnosis):
        rows = rng.permutation(np.flatnonzero(diagnosis == label))
        sexes[rows[::2]], sexes[rows[1::2]] = "F", "M"
    start = datetime(2024, 1, 1, tzinfo=UTC)
    regions = ["north", "south", "east", "west"]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["sample_id", "email", "sex", "age", "region", "registered_at"])
        for i in range(ROWS):
            sex = sexes[i]
            age = int(np.clip(rng.normal(56, 12), 21, 90))
            region = regions[int(rng.integers(0, 4))]
            when = start + timedelta(minutes=int(rng.integers(0, 60 * 24 * 600)))
            writer.writerow([i, f"patient{i:04d}@example.org", sex, age, region, when.isoformat()])


if __name__ == "__main__":
    main()
