"""A model that answers correctly but slowly: the "bad version" of the rollout tests.

Copied into the test project's ``ml/`` package; ``delay_s`` is a hyper-parameter, so a
config change trains a new version whose every prediction waits that long.
"""

from __future__ import annotations

import time
from typing import Any

from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import RandomForestClassifier


class SlowForest(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    def __init__(
        self,
        n_estimators: int = 50,
        max_depth: int | None = None,
        random_state: int = 0,
        delay_s: float = 0.0,
    ) -> None:
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.random_state = random_state
        self.delay_s = delay_s

    def fit(self, x: Any, y: Any) -> SlowForest:
        self.forest_ = RandomForestClassifier(
            n_estimators=self.n_estimators,
            max_depth=self.max_depth,
            random_state=self.random_state,
        ).fit(x, y)
        self.classes_ = self.forest_.classes_
        return self

    def predict_proba(self, x: Any) -> Any:
        time.sleep(self.delay_s)
        return self.forest_.predict_proba(x)

    def predict(self, x: Any) -> Any:
        time.sleep(self.delay_s)
        return self.forest_.predict(x)
