"""The refitter: fit a model on the labelled rows and rank the open ones. No locks, no threads.

``Refitter.refit`` takes what a round needs (the labelled pairs, which rows are open, the labels
rows are known not to have) and returns a ``Refit``: the fitted model and the new ranking, with
its timings. The engine calls it from one thread at a time and decides what to publish; a model
that raises leaves the refitter as it was, so the last good model keeps serving; ``adopt`` tells
it which model serves.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import clone
from threadpoolctl import ThreadpoolController

from .models import label_probabilities
from .pool import Pool
from .ranking import Ranking
from .settings import EngineSettings
from .strategies import (
    coverage_order,
    exclude_labels,
    farthest_first,
    feature_scale,
    get_strategy,
    mix_random,
    prefer_label,
    sort_by,
    spread_near_copies,
)

_THREADS = ThreadpoolController()
# Pools larger than this go to predict_proba in slices of this many rows (Refitter.predict);
# 16k-64k measured alike at 1M rows, 16k-32k best at 100k.
PREDICT_SLICE = 32_768
DISCOVERY_ROUNDS = 5  # rounds that look for missing labels before giving up
COLD_START_SAMPLE = 20_000  # rows the cold start seeds from: a sample covers the space as well


@dataclass
class Refit:
    """One round's result: the model, the ranking of the rows it scored, and what it cost."""

    model: Any
    ranking: Ranking
    candidates: np.ndarray  # the pool rows scored, sorted
    proba: np.ndarray  # their probabilities, aligned with candidates
    y_train: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)
    fed: set[tuple[int, str]] = field(default_factory=set)  # pairs partial_fit saw this round


class Refitter:
    """Fits clones of ``prototype`` and ranks rows by ``settings.strategy``."""

    def __init__(self, pool: Pool, labels: list[str], settings: EngineSettings, prototype: Any):
        self.pool = pool
        self.labels = labels
        self.settings = settings
        self.prototype = prototype
        self.label_index = {label: i for i, label in enumerate(labels)}
        self.rng = np.random.default_rng(settings.seed)
        self._scorer = get_strategy(settings.strategy)
        self._scale: np.ndarray | None = None  # feature spreads, for telling copies apart
        self._discovery_rounds = 0  # rounds that gave part of their head to far rows
        self._fed: set[tuple[int, str]] = set()  # pairs the serving model's partial_fit saw

    def training_data(self, labelled: list[tuple[int, str]]) -> tuple[np.ndarray, np.ndarray]:
        """Features and label indices for ``(input_hash, label)`` pairs whose rows are in the pool."""
        indices, y = [], []
        for input_hash, label in labelled:
            index = self.pool.index_of(input_hash)
            label_index = self.label_index.get(label)
            if index is None or label_index is None:
                continue
            indices.append(index)
            y.append(label_index)
        return self.pool.X[np.asarray(indices, dtype=np.int64)], np.asarray(y, dtype=np.int64)

    def cold_start(self, open_rows: np.ndarray) -> Ranking:
        """Before any model: rows that cover the feature space (k-means++ seeding), then the
        rest shuffled. ``open_rows`` is a bool per pool row."""
        rows = np.flatnonzero(open_rows)
        if len(rows) == 0:
            return Ranking(rows, None, None, 0)
        k = self.settings.cold_start_rows
        # Seeding is O(rows x seeds); a sample of the pool covers the space as well.
        sample = rows
        if len(sample) > COLD_START_SAMPLE:
            sample = np.sort(self.rng.choice(rows, COLD_START_SAMPLE, replace=False))
        seeds = sample[coverage_order(self.pool.X[sample], k, self.rng)][:k]
        rest = np.setdiff1d(rows, seeds)
        return Ranking(np.concatenate([seeds, self.rng.permutation(rest)]), None, None, 0)

    def refit(self, labelled: list[tuple[int, str]], open_rows: np.ndarray,
              rejected: dict[int, set[int]], round: int, serving: Any = None) -> Refit | None:
        """Fit on ``labelled``, score the ``open_rows`` and rank them as round ``round``.

        None while fewer than two labels have answers: no model can tell them apart yet.
        ``serving`` is the model in use, which an incremental update starts from. Whatever the
        model raises propagates, and this refitter keeps its state.
        """
        started = time.perf_counter()
        X_train, y_train = self.training_data(labelled)
        if len(np.unique(y_train)) < 2:
            return None
        with _THREADS.limit(limits=self.settings.threads):
            if self.settings.update == "incremental":
                model, fed = self._partial_fit(labelled, X_train, y_train, serving)
            else:
                model, fed = clone(self.prototype).fit(X_train, y_train), set()
            fit_done = time.perf_counter()
            candidates = np.flatnonzero(open_rows)
            proba = exclude_labels(self.predict(model, candidates), candidates, rejected)
        score_done = time.perf_counter()
        ranking = self._rank(proba, candidates, X_train, y_train, round)
        return Refit(model, ranking, candidates, proba, y_train, fed=fed, timings={
            "fit_ms": (fit_done - started) * 1000, "score_ms": (score_done - fit_done) * 1000,
            "rank_ms": (time.perf_counter() - score_done) * 1000})

    def adopt(self, refit: Refit) -> None:
        """The engine serves ``refit``'s model from now on: an incremental update goes on from
        what it saw."""
        self._fed |= refit.fed

    def _rank(self, proba: np.ndarray, candidates: np.ndarray, X_train: np.ndarray,
              y_train: np.ndarray, round: int) -> Ranking:
        s = self.settings
        utility = self._scorer(proba, self.rng)
        if s.prefer is not None:
            utility = prefer_label(utility, proba, self.label_index[s.prefer])
        # Drawn for every row, as a full sort would, so a seed gives the same order as before.
        jitter = self.rng.random(utility.shape[0])
        tags = {}
        if s.explore > 0:  # random picks come from the whole order, so sort it all
            order, n_sorted = sort_by(utility, jitter)
            per_batch = s.ranked_per_batch
            order, explored = mix_random(order, min(1.0, s.explore * s.batch_size / per_batch),
                                         per_batch, self.rng)
            tags["explore"] = candidates[explored]
        else:  # a round serves its head; the rest is sorted only if someone reads that far
            order, n_sorted = sort_by(utility, jitter, head=max(50 * s.batch_size, 1000))
        order, n_sorted, far = self._with_discovery(order, n_sorted, candidates, X_train, y_train)
        tags["discovery"] = candidates[far]
        if s.distinct > 0 and s.strategy != "random":  # the baseline stays pure
            if self._scale is None:
                self._scale = feature_scale(self.pool.X)
            order = spread_near_copies(order, n_sorted, self.pool.X, candidates, self._scale,
                                       window=5 * s.batch_size, tol=s.distinct)
        return Ranking.partial(candidates, utility, proba, round, order, n_sorted, jitter, tags)

    def _with_discovery(self, order, n_sorted, candidates, X_train, y_train
                        ) -> tuple[np.ndarray, int, np.ndarray]:
        """While a label has no answers, give part of the next batch to far-away rows.

        ``order`` is final in its first ``n_sorted`` positions (at least a batch); so is the
        returned one, which has the far rows in its head and the sorted rows less those. The
        far rows' positions come third.
        """
        s = self.settings
        missing = np.bincount(y_train, minlength=len(self.labels)) == 0
        k = round(s.discovery * s.batch_size)
        # The random strategy is the baseline that others are measured against; keep it pure.
        # A label still missing after a few rounds of far rows is rare rather than far away
        # (Seattle's snow days); more far rows would only spend labels, so the search stops.
        if (not missing.any() or k == 0 or len(order) <= k or s.strategy == "random"
                or self._discovery_rounds >= DISCOVERY_ROUNDS):
            return order, n_sorted, order[:0]
        self._discovery_rounds += 1
        far = farthest_first(self.pool.X, candidates, X_train, k, self.rng)
        keep = ~np.isin(order, far)
        rest = order[keep]
        head = max(s.ranked_per_batch - len(far), 0)
        n_sorted = int(keep[:n_sorted].sum()) + len(far)
        return np.concatenate([rest[:head], far, rest[head:]]), n_sorted, far

    def _partial_fit(self, labelled, X_train, y_train, serving
                     ) -> tuple[Any, set[tuple[int, str]]]:
        """Update a copy of the serving model on the answers it has not seen.

        The copy keeps the last good model serving if ``partial_fit`` fails. Classes are declared
        up front, so a batch without some label still yields probabilities for every label.
        """
        classes = np.arange(len(self.labels))
        if serving is None:
            model = clone(self.prototype)
            model.partial_fit(X_train, y_train, classes=classes)
            return model, set(labelled)
        new = [pair for pair in labelled if pair not in self._fed]
        model = copy.deepcopy(serving)
        X_new, y_new = self.training_data(new)
        if len(y_new):
            model.partial_fit(X_new, y_new, classes=classes)
        return model, set(new)

    def predict(self, model: Any, candidates: np.ndarray) -> np.ndarray:
        """Probabilities for the rows ``candidates`` (sorted, distinct pool indices).

        A large pool goes to ``predict_proba`` in slices: no copy of the whole open part of X
        (80 MB at 1M x 20), and every intermediate stays in cache. Rows are scored one by one
        either way, so the probabilities are the same, bit for bit.
        """
        X, n_labels = self.pool.X, len(self.labels)
        every_row = len(candidates) == len(X)  # nothing answered or out: X itself, not a copy
        if len(candidates) <= PREDICT_SLICE:
            return label_probabilities(model, X if every_row else X[candidates], n_labels)
        proba = np.empty((len(candidates), n_labels), dtype=np.float64)
        for start in range(0, len(candidates), PREDICT_SLICE):
            stop = start + PREDICT_SLICE
            part = X[start:stop] if every_row else X[candidates[start:stop]]
            proba[start:stop] = label_probabilities(model, part, n_labels)
        return proba
