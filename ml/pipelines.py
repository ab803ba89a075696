"""Estimator factories for the example system.

mlform fingerprints this file: editing it makes the next plan retrain the models
whose ``_target_`` names it.
"""

from __future__ import annotations

from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler


def make_forest(
    n_estimators: int = 200, max_depth: int | None = None, random_state: int = 0
) -> Pipeline:
    """A scaled random forest; scaling is a no-op for trees but keeps inputs comparable."""
    return Pipeline(
        [
            ("scale", StandardScaler()),
            (
                "forest",
                RandomForestClassifier(
                    n_estimators=n_estimators, max_depth=max_depth, random_state=random_state
                ),
            ),
        ]
    )
