"""Named models, and any scikit-learn-compatible classifier given as ``module:callable``.

Every refit starts from ``sklearn.base.clone`` of the prototype built here, so no state leaks
from one round into the next.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone


class ModelError(ValueError):
    """A model spec that cannot be resolved, or an estimator that cannot serve this loop."""


def lightgbm_model(seed: int = 0) -> BaseEstimator:
    import lightgbm

    # LightGBM's defaults (min_child_samples=20, min_data_in_bin=3) give a constant model below
    # about 40 labels, so the first hundred labels would teach it nothing. One thread: on a
    # 2-core machine that also serves requests, spinning OpenMP threads made fits 100x slower.
    return lightgbm.LGBMClassifier(
        n_estimators=100,
        learning_rate=0.1,
        num_leaves=15,
        min_child_samples=2,
        min_data_in_bin=1,
        min_split_gain=0.0,
        reg_lambda=1.0,
        subsample=1.0,
        colsample_bytree=1.0,
        n_jobs=1,
        random_state=seed,
        verbose=-1,
    )


def logreg_model(seed: int = 0) -> BaseEstimator:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=seed))


def forest_model(seed: int = 0) -> BaseEstimator:
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=200, min_samples_leaf=1, n_jobs=1, random_state=seed)


def nb_model(seed: int = 0) -> BaseEstimator:
    from sklearn.naive_bayes import GaussianNB

    return GaussianNB()


class StandardisedSGD(ClassifierMixin, BaseEstimator):
    """Logistic regression trained by SGD on standardised features, with ``partial_fit``.

    A scikit-learn Pipeline has no ``partial_fit``, so the scaler lives inside. It keeps running
    means and variances, so each batch is scaled with everything seen so far.
    """

    def __init__(self, alpha: float = 1e-3, passes: int = 5, random_state: int = 0):
        self.alpha = alpha
        self.passes = passes
        self.random_state = random_state

    def _start(self) -> None:
        from sklearn.linear_model import SGDClassifier
        from sklearn.preprocessing import StandardScaler

        self.scaler_ = StandardScaler()
        self.sgd_ = SGDClassifier(loss="log_loss", alpha=self.alpha, random_state=self.random_state)

    def fit(self, X, y):
        self._start()
        self.scaler_.fit(X)
        self.sgd_.set_params(max_iter=1000, tol=1e-4)
        self.sgd_.fit(self.scaler_.transform(X), y)
        self.classes_ = self.sgd_.classes_
        return self

    def partial_fit(self, X, y, classes=None):
        if not hasattr(self, "sgd_"):
            self._start()
        self.scaler_.partial_fit(X)
        Z = self.scaler_.transform(X)
        for _ in range(self.passes):
            self.sgd_.partial_fit(Z, y, classes=classes)
        self.classes_ = self.sgd_.classes_
        return self

    def predict_proba(self, X):
        return self.sgd_.predict_proba(self.scaler_.transform(X))

    def predict(self, X):
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


def sgd_model(seed: int = 0) -> BaseEstimator:
    return StandardisedSGD(random_state=seed)


def auto_model(seed: int = 0) -> BaseEstimator:
    # auto.py builds on the learners above, so it is imported when used, not at the top.
    from .auto import AutoClassifier

    return AutoClassifier(random_state=seed)


MODELS: dict[str, Callable[..., BaseEstimator]] = {
    "auto": auto_model,  # the default: see auto.py
    "lightgbm": lightgbm_model,
    "logreg": logreg_model,
    "forest": forest_model,
    "nb": nb_model,  # learns incrementally too
    "sgd": sgd_model,  # learns incrementally too
}


# The one default of every host: serve, score, train, simulate, the recipe and the Engine.
DEFAULT_MODEL = "auto"


def with_threads(estimator: BaseEstimator, threads: int) -> BaseEstimator:
    """``estimator`` with every ``n_jobs`` among its parameters (LightGBM, the forests, auto's
    forests) set to ``threads``: threadpoolctl alone does not reach them."""
    names = [name for name in estimator.get_params(deep=True)
             if name == "n_jobs" or name.endswith("__n_jobs")]
    return estimator.set_params(**dict.fromkeys(names, threads)) if names else estimator


def make_model(spec: str = DEFAULT_MODEL, seed: int = 0) -> BaseEstimator:
    """Build the prototype estimator for a spec and check that it can serve the loop.

    ``spec`` is a name from ``MODELS``, ``package.module:callable`` or ``path/to/file.py:callable``.
    The callable is called with ``seed=`` when it accepts it, else with no arguments. It may
    also be an estimator instance rather than a factory.
    """
    if spec in MODELS:
        estimator = MODELS[spec](seed=seed)
    elif ":" in spec:
        estimator = _call_factory(resolve(spec), spec, seed)
    else:
        raise ModelError(
            f"unknown model {spec!r}: use one of {', '.join(MODELS)}, "
            "or module:callable / path/to/file.py:callable"
        )
    check_estimator(estimator, spec)
    return estimator


def describe(estimator: Any) -> str | None:
    """What a fitted model is, in a few words, for the stats and the page."""
    if estimator is None:
        return None
    own = getattr(estimator, "describe", None)
    if callable(own):
        return str(own())
    steps = getattr(estimator, "steps", None)  # a Pipeline: name its last step
    return type(steps[-1][1] if steps else estimator).__name__


def label_probabilities(estimator: Any, X: np.ndarray, n_labels: int) -> np.ndarray:
    """``predict_proba`` spread over every label: ``classes_`` are indices into the labels.

    A fit on answers that lack some label has no column for it; that label gets probability 0.
    Raises ValueError for output that cannot be trusted (wrong shape, NaN, infinity).
    """
    classes = np.asarray(estimator.classes_)
    if classes.ndim != 1 or not np.issubdtype(classes.dtype, np.integer) or (
            len(classes) and (classes.min() < 0 or classes.max() >= n_labels)):
        raise ValueError(f"the model's classes {classes.tolist()} are not indices of its "
                         f"{n_labels} labels")
    if len(X) == 0:
        return np.zeros((0, n_labels), dtype=np.float64)
    raw = np.asarray(estimator.predict_proba(X), dtype=np.float64)
    if raw.shape != (len(X), len(classes)):
        raise ValueError(f"predict_proba returned shape {raw.shape}, expected "
                         f"({len(X)}, {len(classes)})")
    if not np.isfinite(raw).all():
        raise ValueError("predict_proba returned NaN or infinite values")
    if len(classes) == n_labels and (classes == np.arange(n_labels)).all():
        # Every label, in order: the model's own array, not a zero-filled copy of it (a copy
        # only where it is read-only, since rejected labels are zeroed in place).
        return raw if raw.flags.writeable else raw.copy()
    proba = np.zeros((len(X), n_labels), dtype=np.float64)
    proba[:, classes] = raw
    return proba


def check_estimator(estimator: Any, spec: str = "model") -> None:
    for method in ("fit", "predict_proba"):
        if not callable(getattr(estimator, method, None)):
            raise ModelError(
                f"{spec} ({type(estimator).__name__}) has no {method}(); the loop ranks rows by "
                "predicted probabilities, so it needs a classifier with fit and predict_proba"
            )
    try:
        clone(estimator)
    except Exception as e:
        raise ModelError(f"{spec} cannot be cloned for a refit: {e}") from e


def resolve(spec: str) -> Any:
    """The object a ``module:attr`` or ``path/to/file.py:attr`` spec names."""
    target, _, attr = spec.rpartition(":")
    if not target or not attr:
        raise ModelError(f"model spec {spec!r} should look like module:callable")
    if target.endswith(".py") or "/" in target or "\\" in target:
        path = Path(target)
        if not path.is_file():
            raise ModelError(f"model file not found: {path}")
        # A name that is the same in every process, so a saved model's class can be found again.
        digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
        name = f"retrain_loop_user_model_{digest}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise ModelError(f"cannot load model file {path}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as e:
            del sys.modules[name]
            raise ModelError(f"error while loading {path}: {type(e).__name__}: {e}") from e
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as e:
            raise ModelError(f"cannot import {target!r} for model {spec!r}: {e}") from e
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ModelError(f"{target} has no attribute {attr!r}") from None


def _call_factory(obj: Any, spec: str, seed: int) -> Any:
    if isinstance(obj, type) or not hasattr(obj, "fit"):
        if not callable(obj):
            raise ModelError(f"{spec} is neither an estimator nor a callable returning one")
        try:
            params = inspect.signature(obj).parameters
        except (TypeError, ValueError):
            params = {}
        try:
            return obj(seed=seed) if "seed" in params else obj()
        except Exception as e:
            raise ModelError(f"calling {spec}() failed: {type(e).__name__}: {e}") from e
    return obj
