"""Peer active-learning libraries on the same pools, splits, estimator and seeds as ours.

Runs modAL and scikit-activeml query strategies with exactly the protocol of
``retrain_loop.simulate.run``: the same stratified pool/test ``split``, the same random
``initial_set``, the same estimator (a fresh ``clone(make_model(model, seed))`` fitted from
scratch on all labels every round), the same batch size and budget (the last batch is cut to
the budget, as the engine serves it), and the same ``evaluate`` on the held-out rows. It writes
``DIR/curves.csv`` with ``retrain_loop.simulate.CURVE_COLUMNS``.

Run it in the peer environment (``bash scripts/peers/setup.sh``):

    scripts/peers/.venv/bin/python scripts/peers/run_peers.py --dataset iris --model logreg \
        --seeds 5 --batch-size 10 --initial 10 --budget 300 --test-size 0.3 --out DIR

``refit_ms`` of a row is the wall time of fitting the model on that row's labels plus the
library's query that picks the next batch from that model (the same span as the engine's
refit, which fits and rescores the open rows); the harness's own bookkeeping (which rows are
open, their copy of X, the labels with MISSING) is done before it, untimed. At the last row the query still runs, for a
full batch whose answers are never used, so every row times the same work. Evaluation on the
test set is outside the timing. Every round runs with BLAS/OpenMP limited to one thread, as
the engine's refits do.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import clone
from threadpoolctl import threadpool_limits

from retrain_loop.models import make_model
from retrain_loop.simulate import CURVE_COLUMNS, evaluate, initial_set, split

PEERS = ("modal_margin", "modal_uncertainty_batch", "skactiveml_margin", "skactiveml_badge",
         "skactiveml_typiclust")
DEFAULT_STRATEGIES = ("modal_margin", "modal_uncertainty_batch", "skactiveml_margin",
                      "skactiveml_badge")
# Our own strategies run in this environment for a same-environment check; their rows are
# named e.g. "margin@peer-env" so they never collide with curves from the project's venv.
OURS_SUFFIX = "@peer-env"
MISSING = -1  # scikit-activeml's missing-label marker here: labels are class indices >= 0


def load_dataset(name: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Features, class indices and class names: the suite's own loader, so the splits match."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from learning_datasets import load

    return load(name)


# -- samplers: fit on all labels, then pick the next batch, with each library's own API --------

class ModalSampler:
    """modAL's ActiveLearner: ``teach`` adds the new answers and refits on everything it holds.

    Before each ``teach`` the learner gets a fresh clone of the prototype, so every round is a
    from-scratch fit. modAL queries an array of unlabelled rows and returns positions in it.
    """

    def __init__(self, prototype: Any, query_strategy: Any, X: np.ndarray, y: np.ndarray):
        self.prototype, self.query_strategy, self.X, self.y = prototype, query_strategy, X, y
        self.learner: Any = None
        self.taught: set[int] = set()

    def fit(self, labelled: np.ndarray) -> Any:
        from modAL.models import ActiveLearner

        new = np.array([i for i in labelled if i not in self.taught], dtype=np.int64)
        if self.learner is None:
            self.learner = ActiveLearner(estimator=clone(self.prototype),
                                         query_strategy=self.query_strategy,
                                         X_training=self.X[new], y_training=self.y[new])
        else:
            self.learner.estimator = clone(self.prototype)
            self.learner.teach(self.X[new], self.y[new])
        self.taught.update(new.tolist())
        return self.learner.estimator

    def prepare(self, labelled: np.ndarray) -> None:
        """The harness's own bookkeeping, outside the timed span: the open rows and their copy,
        which a modAL user holds already (modAL queries the array it is given)."""
        self._open = np.setdiff1d(np.arange(len(self.X)), labelled)
        self._X_open = self.X[self._open]

    def query(self, labelled: np.ndarray, n: int) -> np.ndarray:
        picked, _rows = self.learner.query(self._X_open, n_instances=n)
        return self._open[np.asarray(picked, dtype=np.int64)]


class SkactivemlSampler:
    """scikit-activeml: the whole pool with ``MISSING`` for unlabelled rows, and an estimator
    wrapped in ``SklearnClassifier`` that knows every class (``classes``), so its probabilities
    have a column for labels no answer holds yet. The wrapper fits a copy of the fresh clone on
    the labelled rows only; the query gets ``fit_clf=False`` so the round fits once."""

    def __init__(self, prototype: Any, strategy: Any, X: np.ndarray, y: np.ndarray,
                 n_labels: int, seed: int, needs_clf: bool = True):
        self.prototype, self.strategy, self.X, self.y = prototype, strategy, X, y
        self.n_labels, self.seed, self.needs_clf = n_labels, seed, needs_clf
        self.clf: Any = None

    def partial_labels(self, labelled: np.ndarray) -> np.ndarray:
        y = np.full(len(self.y), MISSING, dtype=np.int64)
        y[labelled] = self.y[labelled]
        return y

    def _fit(self, y: np.ndarray) -> Any:
        from skactiveml.classifier import SklearnClassifier

        self.clf = SklearnClassifier(clone(self.prototype), classes=np.arange(self.n_labels),
                                     missing_label=MISSING, random_state=self.seed)
        # The wrapper swallows a failing fit and falls back to class frequencies with only a
        # warning; here that is an error.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            self.clf.fit(self.X, y)
        if not getattr(self.clf, "is_fitted_", False):
            raise RuntimeError("scikit-activeml's SklearnClassifier could not fit the model: "
                               + "; ".join(str(w.message) for w in caught))
        for w in caught:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return self.clf.estimator_

    def prepare(self, labelled: np.ndarray) -> None:
        """The labels with MISSING for open rows, outside the timed span (a user holds them)."""
        self._y = self.partial_labels(labelled)

    def fit(self, labelled: np.ndarray) -> Any:
        return self._fit(self._y)

    def query(self, labelled: np.ndarray, n: int) -> np.ndarray:
        y = self._y
        if self.needs_clf:
            picked = self.strategy.query(self.X, y, clf=self.clf, fit_clf=False, batch_size=n)
        else:
            picked = self.strategy.query(self.X, y, batch_size=n)
        return np.asarray(picked, dtype=np.int64)


def make_sampler(strategy: str, prototype: Any, X: np.ndarray, y: np.ndarray, n_labels: int,
                 seed: int) -> ModalSampler | SkactivemlSampler:
    if strategy == "modal_margin":
        from modAL.uncertainty import margin_sampling

        return ModalSampler(prototype, margin_sampling, X, y)
    if strategy == "modal_uncertainty_batch":
        from modAL.batch import uncertainty_batch_sampling

        return ModalSampler(prototype, uncertainty_batch_sampling, X, y)
    from skactiveml.pool import Badge, TypiClust, UncertaintySampling

    if strategy == "skactiveml_margin":
        qs = UncertaintySampling(method="margin_sampling", missing_label=MISSING,
                                 random_state=seed)
        return SkactivemlSampler(prototype, qs, X, y, n_labels, seed)
    if strategy == "skactiveml_badge":
        # No clf_embedding_flag_name: predict_proba returns probabilities only, so Badge takes
        # the raw features as the embedding (gradient embedding (p - onehot(argmax p)) x X).
        qs = Badge(missing_label=MISSING, random_state=seed)
        return SkactivemlSampler(prototype, qs, X, y, n_labels, seed)
    if strategy == "skactiveml_typiclust":
        # Model-free: k-means on the raw features, the most typical row of uncovered clusters.
        qs = TypiClust(missing_label=MISSING, random_state=seed)
        return SkactivemlSampler(prototype, qs, X, y, n_labels, seed, needs_clf=False)
    raise SystemExit(f"unknown peer strategy {strategy!r}: use one of {', '.join(PEERS)}")


def run_peer(X: np.ndarray, y: np.ndarray, labels: list[str], *, strategy: str, model: str,
             seed: int, batch_size: int, initial: int, budget: int,
             test_size: float) -> list[dict[str, Any]]:
    """One labelling run of a peer strategy; one curve row per fit, as ``simulate.run``."""
    pool_pos, test_pos = split(y, seed, test_size)
    X_pool, y_pool = X[pool_pos], y[pool_pos]
    X_test, y_test = X[test_pos], y[test_pos]
    n_labels = len(labels)
    sampler = make_sampler(strategy, make_model(model, seed=seed), X_pool, y_pool, n_labels, seed)
    labelled = np.asarray(initial_set(y_pool, min(initial, budget), seed), dtype=np.int64)
    curve: list[dict[str, Any]] = []
    while True:
        remaining = budget - len(labelled)
        open_rows = len(y_pool) - len(labelled)
        # The engine serves min(batch, budget left); after the budget, time a full batch.
        n_query = min(batch_size if remaining <= 0 else min(batch_size, remaining), open_rows)
        sampler.prepare(labelled)  # the harness's bookkeeping: not the library's work
        started = time.perf_counter()
        fitted = sampler.fit(labelled)
        picked = sampler.query(labelled, n_query) if n_query > 0 else np.empty(0, np.int64)
        refit_ms = (time.perf_counter() - started) * 1000
        accuracy, macro_f1 = evaluate(fitted, X_test, y_test, n_labels)
        curve.append({"strategy": strategy, "seed": seed, "n_labels": len(labelled),
                      "accuracy": accuracy, "macro_f1": macro_f1, "refit_ms": refit_ms})
        if remaining <= 0 or n_query == 0:
            break
        picked = np.unique(picked)
        if len(picked) != n_query or np.isin(picked, labelled).any():
            raise RuntimeError(f"{strategy} asked for {picked.tolist()}: not {n_query} distinct "
                               "unlabelled rows")
        labelled = np.concatenate([labelled, picked])
    return curve


def run_ours(X: np.ndarray, y: np.ndarray, labels: list[str], *, strategy: str,
             **settings: Any) -> list[dict[str, Any]]:
    """Our engine through ``retrain_loop.simulate.run``, in this environment."""
    from retrain_loop.simulate import run

    name = strategy.removesuffix(OURS_SUFFIX)
    curve = run(X, y, labels, strategy=name, **settings)
    for row in curve:
        row["strategy"] = strategy
    return curve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True,
                        help="a dataset of scripts/learning_datasets.py")
    parser.add_argument("--model", default="logreg",
                        help="a retrain_loop model: logreg, lightgbm, ... (make_model)")
    parser.add_argument("--seeds", type=int, default=5, help="runs with seeds 0..N-1")
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--initial", type=int, default=10)
    parser.add_argument("--budget", type=int, default=300)
    parser.add_argument("--test-size", type=float, default=0.3)
    parser.add_argument("--out", required=True, type=Path, help="folder for curves.csv")
    parser.add_argument("--strategies", nargs="+", default=list(DEFAULT_STRATEGIES),
                        metavar="NAME",
                        help=f"peers: {', '.join(PEERS)} (default: "
                             f"{' '.join(DEFAULT_STRATEGIES)}); also one of ours run in this "
                             f"environment, as margin{OURS_SUFFIX}, random{OURS_SUFFIX}, ...")
    args = parser.parse_args(argv)
    if args.batch_size < 1 or args.seeds < 1 or args.budget < 1:
        parser.error("--batch-size, --seeds and --budget must be at least 1")
    for name in args.strategies:
        if name not in PEERS and not name.endswith(OURS_SUFFIX):
            parser.error(f"unknown strategy {name!r}: use one of {', '.join(PEERS)} "
                         f"or one of ours with the suffix {OURS_SUFFIX}")

    # modAL 0.4.2.1 passes force_all_finite= on every teach; scikit-learn 1.7 warns about it.
    warnings.filterwarnings("ignore", message=".*force_all_finite.*", category=FutureWarning)
    X, y, labels = load_dataset(args.dataset)
    settings = {"model": args.model, "batch_size": args.batch_size, "initial": args.initial,
                "budget": args.budget, "test_size": args.test_size}
    print(f"{args.dataset}: {len(y)} rows, {X.shape[1]} features, {len(labels)} labels; "
          f"model {args.model}, seeds 0..{args.seeds - 1}, batch {args.batch_size}, "
          f"initial {args.initial}, budget {args.budget}", file=sys.stderr)
    curves: list[dict[str, Any]] = []
    with threadpool_limits(limits=1):
        for seed in range(args.seeds):
            for strategy in args.strategies:
                started = time.perf_counter()
                runner = run_ours if strategy.endswith(OURS_SUFFIX) else run_peer
                curve = runner(X, y, labels, strategy=strategy, seed=seed, **settings)
                curves += curve
                last = curve[-1]
                print(f"{strategy:<24} seed {seed}: {len(curve):>3} rounds, "
                      f"{last['n_labels']:>4} labels, accuracy {last['accuracy']:.3f}, "
                      f"macro F1 {last['macro_f1']:.3f}, mean refit_ms "
                      f"{np.mean([r['refit_ms'] for r in curve]):.1f}, "
                      f"{time.perf_counter() - started:.1f} s", file=sys.stderr)

    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "curves.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CURVE_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(curves)
    print(f"wrote {path} ({len(curves)} rows)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
