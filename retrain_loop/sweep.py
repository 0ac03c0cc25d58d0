"""The sweep: between rounds, the serving model scores the open rows its round did not.

A bounded round (``Refitter.candidates``) scores a uniform sample of the open rows and the best
rows found so far. After it is published, the engine's worker thread runs ``step`` while no
refit is asked for: each step scores one slice of the pool (``slice_rows`` pool rows, of which
the open ones the round did not score) with the serving model, and keeps the ``size`` rows of
highest utility among the round's own candidates and every row swept since. The next round
scores those again (``head``), so a row that is among the best anywhere in the pool is served
within a round or two of the sweep reaching it, at a round's cost that does not grow with the
pool.

The worker checks for a refit request between steps, so a sweep yields at once; a new round
starts a new sweep (``begin``), and what the old one found is dropped with its model. A sweep
starts where the last one stopped and goes round the pool, so where rounds come faster than a
sweep can finish (LightGBM on a million rows), successive sweeps still cover all of it. Without a
worker thread (``background=False``: offline scoring, simulations, the Prodigy recipe) nothing
calls ``step``: the head is the last round's own. Thread-safe: ``begin`` and ``head`` may run on
another thread than ``step``, and never wait for a slice to be scored.

With a Dask cluster (``settings.dask``: the refitter's ``dask``), a sweep's slices are the pool's
partitions (``dask_scoring.py``): the first step sends the model and the partitions that hold
rows to sweep, a few per worker at a time, and each step takes the next partition's
probabilities if they come within ``DASK_WAIT`` seconds, so a refit request waits that long at
most. The workers read the pool file themselves.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from threadpoolctl import ThreadpoolController

from .refit import PREDICT_SLICE, Refit, Refitter
from .strategies import exclude_labels

_THREADS = ThreadpoolController()
DASK_WAIT = 0.2  # seconds a step waits for a partition from the cluster


class Sweep:
    """The serving model's best ``size`` rows of those it has scored, and the rescoring of the
    rest of the open rows slice by slice."""

    def __init__(self, refitter: Refitter, size: int, *, seed: int = 0,
                 slice_rows: int = PREDICT_SLICE):
        self.refitter = refitter
        self.size = size
        self.slice_rows = slice_rows
        self._rng = np.random.default_rng([seed, 5])  # the random strategy's; apart from the refit's
        self._lock = threading.Lock()
        self._generation = 0  # which round's sweep; a step of an older one is dropped
        self._model: Any = None
        self._rejected: dict[int, set[int]] = {}
        self._todo: np.ndarray | None = None  # a bool per pool row: open, not scored yet
        self._cursor = 0  # the pool position the next step starts at
        self._left = 0  # pool positions this sweep has still to pass
        self._best_rows = np.empty(0, dtype=np.int64)
        self._best_utility = np.empty(0, dtype=np.float64)
        self.n_scored: int | None = None  # rows the serving model scored; None before one
        self.n_unscored = 0  # rows open at its round that it has not scored yet
        self._stream: Any = None  # this sweep's partitions on the Dask cluster, if any
        self._stream_generation = 0

    def begin(self, refit: Refit, open_rows: np.ndarray, rejected: dict[int, set[int]]) -> None:
        """``refit``'s model serves now, having scored its candidates of ``open_rows``: sweep
        the open rows it did not score. ``open_rows`` is the sweep's from now on (no copy)."""
        best_rows, best_utility = _top(refit.candidates, refit.utility, self.size)
        todo = None
        if refit.sampled is not None:  # a bounded round: the rest of the open rows to sweep
            todo = open_rows
            todo[refit.candidates] = False
        with self._lock:
            self._generation += 1
            self._model = refit.model
            self._rejected = rejected
            self._todo = todo
            self._left = len(todo) if todo is not None else 0  # from the cursor, round the pool
            self._best_rows, self._best_utility = best_rows, best_utility
            self.n_scored = len(refit.candidates)
            self.n_unscored = int(np.count_nonzero(todo)) if todo is not None else 0

    def head(self) -> np.ndarray:
        """The best rows the serving model has found (pool indices, sorted), for the next round
        to score again."""
        with self._lock:
            return np.sort(self._best_rows)

    @property
    def pending(self) -> bool:
        """Whether rows are left to sweep."""
        with self._lock:
            return self._left > 0

    def step(self) -> bool:
        """Score the next slice of the pool; False when nothing is left to sweep."""
        if self.refitter.dask is not None:
            return self._dask_step()
        with self._lock:
            todo, model, generation = self._todo, self._model, self._generation
            rejected = self._rejected
            rows = np.empty(0, dtype=np.int64)
            while self._left > 0 and not len(rows):
                start = self._cursor % len(todo)
                stop = min(start + self.slice_rows, len(todo), start + self._left)
                self._cursor, self._left = stop % len(todo), self._left - (stop - start)
                rows = start + np.flatnonzero(todo[start:stop])
            if not len(rows):
                return False
        refitter = self.refitter
        with _THREADS.limit(limits=refitter.settings.threads):
            proba = exclude_labels(refitter.predict(model, rows), rows, rejected)
        utility = refitter.utility(proba, self._rng)
        with self._lock:
            if generation != self._generation:  # a new round began meanwhile: its sweep now
                return True
            self._keep(rows, utility)
            return self._left > 0

    def _keep(self, rows: np.ndarray, utility: np.ndarray) -> None:  # under the lock
        self._best_rows, self._best_utility = _top(
            np.concatenate([self._best_rows, rows]),
            np.concatenate([self._best_utility, utility]), self.size)
        self.n_scored += len(rows)
        self.n_unscored -= len(rows)

    def _dask_step(self) -> bool:
        """Take the next partition scored on the cluster, if it comes within ``DASK_WAIT``."""
        dask = self.refitter.dask
        with self._lock:
            todo, model, generation = self._todo, self._model, self._generation
            rejected = self._rejected
            stream = self._stream
            if stream is None or self._stream_generation != generation:
                if stream is not None:  # the last round's: this round's sweep scores its rows
                    stream.cancel()
                    self._stream = stream = None
                if self._left <= 0:
                    return False
                order = dask.plan(todo, self._cursor)
                self._left = sum(len(dask.parts[i]) for i in order)
                if not order:
                    return False
        if stream is None:  # sent outside the lock: begin and head never wait for it
            stream = dask.stream(model, len(self.refitter.labels), order)
            with self._lock:
                if generation != self._generation:
                    stream.cancel()
                    return True
                self._stream, self._stream_generation = stream, generation
        try:
            taken = stream.next(timeout=DASK_WAIT)
        except Exception:
            with self._lock:  # the cluster failed: this sweep stops; the next round's tries again
                stream.cancel()
                self._left = 0
            raise
        if taken is None:
            return not stream.done
        part, proba = taken
        rows = part.start + np.flatnonzero(todo[part.start:part.stop])
        proba = exclude_labels(proba[rows - part.start], rows, rejected)
        utility = self.refitter.utility(proba, self._rng)
        with self._lock:
            if generation != self._generation:
                return True
            self._keep(rows, utility)
            self._cursor = part.stop % len(todo)
            self._left = stream.rows_left
            return self._left > 0


def _top(rows: np.ndarray, utility: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows of highest utility (NaN lowest), in no particular order."""
    if len(rows) <= k:
        return rows, np.asarray(utility, dtype=np.float64)
    if k <= 0:
        return rows[:0], np.empty(0, dtype=np.float64)
    keep = np.argpartition(-np.asarray(utility, dtype=np.float64), k - 1)[:k]
    return rows[keep], np.asarray(utility, dtype=np.float64)[keep]
