"""The refitter: fit a model on the labelled rows and rank the open ones. No locks, no threads.

``Refitter.refit`` takes what a round needs (the labelled pairs, which rows are open, the labels
rows are known not to have) and returns a ``Refit``: the fitted model and the new ranking, with
its timings. The engine calls it from one thread at a time and decides what to publish; a model
that raises leaves the refitter as it was, so the last good model keeps serving; ``adopt`` tells
it which model serves.

A round scores every open row, or, in a pool larger than ``round_sample + round_head``, a bounded
candidate set: a fresh uniform sample of ``round_sample`` open rows and the best rows the serving
model has found (``head``: its own round's head and what the background sweep, ``sweep.py``,
found since). So a round costs the same at 100k rows and at 10M, and its head is fresh.

With ``settings.dask`` (a scheduler), a round that scores every open row by design
(``round_sample`` 0, as offline scoring does) has the pool scored on that Dask cluster
(``dask_scoring.py``); ``close`` lets go of it.
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
    utility: np.ndarray  # their utilities, aligned with candidates
    y_train: np.ndarray
    # Whether each candidate is in the round's uniform sample of the open rows; None when the
    # round scored every open row.
    sampled: np.ndarray | None = None
    # Rows of ``also`` that are not candidates, and their probabilities, from the same call.
    also: tuple[np.ndarray, np.ndarray] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    fed: set[tuple[int, str]] = field(default_factory=set)  # pairs partial_fit saw this round


class Refitter:
    """Fits clones of ``prototype`` and ranks rows by ``settings.strategy``."""

    def __init__(self, pool: Pool, labels: list[str], settings: EngineSettings, prototype: Any,
                 *, round_sample: int = 0):
        self.pool = pool
        self.round_sample = round_sample  # 0: every round scores every open row
        self.labels = labels
        self.settings = settings
        self.prototype = prototype
        self.label_index = {label: i for i, label in enumerate(labels)}
        self.rng = np.random.default_rng(settings.seed)
        self._scorer = get_strategy(settings.strategy)
        self._scale: np.ndarray | None = None  # feature spreads, for telling copies apart
        self._discovery_rounds = 0  # rounds that gave part of their head to far rows
        self._fed: set[tuple[int, str]] = set()  # pairs the serving model's partial_fit saw
        # With settings.dask, a round that scores every open row by design (round_sample 0:
        # offline scoring) scores the pool on the cluster, and the sweep (sweep.py) rescores
        # there; the workers read their partitions of the pool file themselves.
        self.dask = None
        if settings.dask:
            from .dask_scoring import DaskPool

            self.dask = DaskPool.open(settings.dask, pool)

    def training_data(self, labelled: list[tuple[int, str]]) -> tuple[np.ndarray, np.ndarray]:
        """Features and label indices for ``(input_hash, label)`` pairs whose rows are in the pool."""
        y = np.fromiter((self.label_index.get(label, -1) for _, label in labelled),
                        dtype=np.int64, count=len(labelled))
        indices = self._indices([input_hash for input_hash, _ in labelled])
        keep = (indices >= 0) & (y >= 0)
        return self.pool.X[indices[keep]], y[keep]

    def _indices(self, hashes: list[Any]) -> np.ndarray:
        """Pool rows of ``hashes``, -1 where none: at once where every hash is an int64."""
        indices_of = getattr(self.pool, "indices_of", None)
        if indices_of is not None and all(type(h) is int for h in hashes):
            try:
                return indices_of(np.array(hashes, dtype=np.int64))
            except OverflowError:
                pass  # a hash that is no int64 is in no pool: one by one
        rows = (self.pool.index_of(h) for h in hashes)
        return np.fromiter((-1 if r is None else r for r in rows), dtype=np.int64,
                           count=len(hashes))

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
        rest = open_rows.copy()  # a mask, not np.setdiff1d's sort of the whole pool
        rest[seeds] = False
        rest = np.flatnonzero(rest)
        return Ranking(np.concatenate([seeds, self.rng.permutation(rest)]), None, None, 0)

    def refit(self, labelled: list[tuple[int, str]], open_rows: np.ndarray,
              rejected: dict[int, set[int]], round: int, serving: Any = None,
              head: np.ndarray | None = None, also: np.ndarray | None = None
              ) -> Refit | None:
        """Fit on ``labelled``, score the ``open_rows`` (or a bounded set of them, with the pool
        rows ``head`` among them where open) and rank them as round ``round``. The pool rows
        ``also`` (the stop set) are predicted in the same call, not ranked: ``Refit.also``.

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
            candidates, sampled = self.candidates(open_rows, head)
            extra = _missing(also, candidates)
            rows = np.concatenate([candidates, extra])
            if self.dask is not None and self.round_sample == 0:
                proba = self.dask.probabilities(model, len(self.labels), rows)
            else:
                proba = self.predict(model, rows)
            proba, extra_proba = proba[:len(candidates)], proba[len(candidates):]
            proba = exclude_labels(proba, candidates, rejected)
        score_done = time.perf_counter()
        ranking, utility = self._rank(proba, candidates, X_train, y_train, round, sampled)
        return Refit(model, ranking, candidates, proba, utility, y_train, sampled, fed=fed,
                     also=(extra, extra_proba), timings={
            "fit_ms": (fit_done - started) * 1000, "score_ms": (score_done - fit_done) * 1000,
            "rank_ms": (time.perf_counter() - score_done) * 1000})

    def candidates(self, open_rows: np.ndarray, head: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray | None]:
        """The rows a round scores, sorted and distinct, and which of them are its uniform
        sample (None: every open row, as in any pool of at most ``round_sample + round_head``
        open rows, which draws no random numbers for it).

        The sample is drawn from all open rows, the head's included, so the rows it holds are a
        uniform draw of the open pool whatever the head is: audits are drawn from them.
        """
        n_sample = self.round_sample
        n_open = int(np.count_nonzero(open_rows))
        if n_sample == 0 or n_open <= n_sample + self.settings.round_head:
            return np.flatnonzero(open_rows), None
        sample = uniform_sample(open_rows, n_open, n_sample, self.rng)
        if head is None or len(head) == 0:
            return sample, np.ones(len(sample), dtype=bool)
        head = np.asarray(head, dtype=np.int64)  # sorted: two sorted runs merge in O(n)
        candidates = _distinct(np.concatenate([sample, head[open_rows[head]]]), kind="stable")
        sampled = np.zeros(len(candidates), dtype=bool)
        sampled[np.searchsorted(candidates, sample)] = True
        return candidates, sampled

    def utility(self, proba: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The strategy's utility of rows with probabilities ``proba`` (``prefer`` applied)."""
        utility = self._scorer(proba, rng)
        if self.settings.prefer is not None:
            utility = prefer_label(utility, proba, self.label_index[self.settings.prefer])
        return utility

    def close(self) -> None:
        """Let go of the Dask cluster, if scoring used one (a LocalCluster it started stops)."""
        if self.dask is not None:
            self.dask.close()
            self.dask = None

    def adopt(self, refit: Refit) -> None:
        """The engine serves ``refit``'s model from now on: an incremental update goes on from
        what it saw."""
        self._fed |= refit.fed

    def _rank(self, proba: np.ndarray, candidates: np.ndarray, X_train: np.ndarray,
              y_train: np.ndarray, round: int, sampled: np.ndarray | None = None
              ) -> tuple[Ranking, np.ndarray]:
        s = self.settings
        utility = self.utility(proba, self.rng)
        # Drawn for every candidate, as a full sort would, so a seed gives the same order as
        # before; a bounded round has few candidates, whatever the pool.
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
        ranking = Ranking.partial(candidates, utility, proba, round, order, n_sorted, jitter, tags)
        if sampled is not None:
            ranking.uniform = np.flatnonzero(sampled)
        return ranking, utility

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

    def predict(self, model: Any, rows: np.ndarray) -> np.ndarray:
        """Probabilities for the pool rows ``rows`` (distinct pool indices).

        A large pool goes to ``predict_proba`` in slices of about ``PREDICT_SLICE`` rows (up to
        half as many again where that spares a call): no copy of the whole open part of X
        (80 MB at 1M x 20), and every intermediate stays in cache. LightGBM scores rows one by
        one, so its probabilities are the same bit for bit however the rows are sliced; a model
        that multiplies in float32 through BLAS (logistic regression on float32 X) can differ
        in the last place (about 1e-7) between slicings.
        """
        X, n_labels = self.pool.X, len(self.labels)
        # Nothing answered or out: X itself, not a copy.
        every_row = len(rows) == len(X) and bool((rows[1:] > rows[:-1]).all())
        n_parts = max(1, round(len(rows) / PREDICT_SLICE))
        if n_parts == 1:
            return label_probabilities(model, X if every_row else X[rows], n_labels)
        size = -(-len(rows) // n_parts)
        proba = np.empty((len(rows), n_labels), dtype=np.float64)
        for start in range(0, len(rows), size):
            stop = start + size
            part = X[start:stop] if every_row else X[rows[start:stop]]
            proba[start:stop] = label_probabilities(model, part, n_labels)
        return proba


def uniform_sample(mask: np.ndarray, n_true: int, k: int, rng: np.random.Generator
                   ) -> np.ndarray:
    """``k`` distinct positions where ``mask`` (a bool per pool row, ``n_true`` of them True)
    holds, sorted, each set of ``k`` as likely as any other; ``k <= n_true``.

    Uniform positions of the whole pool are drawn, already sorted (``sorted_uniform``), and
    those where ``mask`` holds kept, until there are ``k`` distinct ones: no pass over the pool
    (``np.flatnonzero`` and ``rng.choice(n, k, replace=False)`` each cost milliseconds at a
    million rows) and no sort. Distinct draws are exchangeable, and an excess is thinned
    uniformly, so every ``k``-set is equally likely.
    """
    n = len(mask)
    got = np.empty(0, dtype=np.int64)
    while len(got) < k:
        need = k - len(got)
        # Enough that one draw usually does: for the rows masked out, and for repeats.
        size = int(need * n / n_true * (1 + k / n_true) * 1.05) + 64
        drawn = sorted_uniform(n, size, rng)
        drawn = drawn[mask[drawn]]
        if len(got):
            drawn = np.concatenate([got, drawn])
        got = _distinct(drawn, kind="stable" if len(got) else "presorted")
    if len(got) > k:  # drop the excess, uniformly: what stays is still sorted
        got = np.delete(got, rng.choice(len(got), len(got) - k, replace=False))
    return got


def sorted_uniform(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` independent uniform integers in ``range(n)``, in ascending order, without a sort:
    the partial sums of exponential gaps, scaled, are sorted uniforms (Devroye, Non-Uniform
    Random Variate Generation, 1986, V.2)."""
    gaps = rng.standard_exponential(size + 1)
    sums = np.cumsum(gaps)
    positions = (sums[:-1] * (n / sums[-1])).astype(np.int64)
    return np.minimum(positions, n - 1)  # rounding can reach n


def _distinct(rows: np.ndarray, kind: str | None = None) -> np.ndarray:
    """The distinct values of ``rows``, sorted (np.unique, without its hash table); ``kind``
    ``"presorted"``: ``rows`` are sorted already."""
    if kind != "presorted":
        rows = np.sort(rows, kind=kind)
    if len(rows) > 1:
        rows = rows[np.concatenate([[True], rows[1:] != rows[:-1]])]
    return rows


def _missing(rows: np.ndarray | None, candidates: np.ndarray) -> np.ndarray:
    """The pool rows ``rows`` that are not among ``candidates`` (sorted), in their order."""
    if rows is None or not len(rows):
        return np.empty(0, dtype=np.int64)
    if not len(candidates):
        return np.asarray(rows, dtype=np.int64)
    pos = np.minimum(np.searchsorted(candidates, rows), len(candidates) - 1)
    return np.asarray(rows, dtype=np.int64)[candidates[pos] != rows]
