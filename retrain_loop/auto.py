"""``auto``, the default learner: a soft vote of a linear model and two tree ensembles.

Chosen by measurement on ten real datasets (BENCHMARKS.md, "Choosing the default learner"):
while labels are few, no single learner wins everywhere. Standardised logistic regression is
best where classes are nearly linear (penguins, breast cancer, the colours' smooth regions),
random forests and extra-trees where they are not (cars, wine, digits), and LightGBM trails
both below a few hundred labels. The average of their probabilities had the best margin AULC
of all learners on seven of the ten datasets and was within 0.006 of the best on the other
three, since the linear model smooths the trees' blocky probabilities and the trees bend where
the line cannot. Margin sampling ranks by those probabilities, so their quality is what it
rests on.

Cost: two ensembles of ``n_estimators`` trees each (100) grow as many trees as the ``forest``
learner's 200, and the logistic regression costs little beside them, so a refit round of
``auto`` stays close to one of ``forest`` (scripts/bench_refit.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.ensemble import ExtraTreesClassifier

from .models import forest_model, logreg_model


class AutoClassifier(ClassifierMixin, BaseEstimator):
    """Soft vote: the mean of the members' ``predict_proba``, weighted by ``weights``.

    Members, in order: the ``logreg`` learner (standardised logistic regression), the
    ``forest`` learner with ``n_estimators`` trees, and extra-trees of as many. The linear model
    weighs as much as the two forests together (2, 1, 1): with equal thirds the trees outvoted
    it where it is the better learner (colours, penguins), and a vote with one kind of forest
    fell short on cars (extra-trees) or penguins (random forest). ``random_state`` seeds all
    three, so a seed gives the same model every time. ``describe()`` names the members used.
    """

    MEMBERS = ("logreg", "forest", "extra-trees")

    def __init__(self, n_estimators: int = 100, weights: tuple[float, ...] = (2.0, 1.0, 1.0),
                 random_state: int = 0, n_jobs: int = 1):
        self.n_estimators = n_estimators
        self.weights = weights
        self.random_state = random_state
        self.n_jobs = n_jobs  # the forests' threads

    def _members(self) -> list[BaseEstimator]:
        seed = self.random_state
        return [
            logreg_model(seed),
            forest_model(seed).set_params(n_estimators=self.n_estimators, n_jobs=self.n_jobs),
            ExtraTreesClassifier(n_estimators=self.n_estimators, n_jobs=self.n_jobs,
                                 random_state=seed),
        ]

    def fit(self, X: Any, y: Any) -> AutoClassifier:
        if len(self.weights) != len(self.MEMBERS) or min(self.weights) < 0 or not sum(self.weights):
            raise ValueError(f"weights must be {len(self.MEMBERS)} non-negative numbers, not all 0")
        y = np.asarray(y)
        self.classes_ = np.unique(y)
        self.estimators_ = [clone(m).fit(X, y) for m, w in zip(self._members(), self.weights)
                            if w > 0]
        self.weights_ = np.array([w for w in self.weights if w > 0], dtype=np.float64)
        self.weights_ /= self.weights_.sum()
        self.n_features_in_ = np.shape(X)[1]
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        proba = None
        for estimator, weight in zip(self.estimators_, self.weights_):
            part = weight * estimator.predict_proba(X)
            proba = part if proba is None else proba + part
        return proba

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    def describe(self) -> str:
        used = [name for name, w in zip(self.MEMBERS, self.weights) if w > 0]
        return "soft vote of " + " + ".join(used)

