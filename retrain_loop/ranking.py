"""A model's view of the pool: the open rows in serving order, with their scores."""

from __future__ import annotations

import threading

import numpy as np

from .strategies import sort_by


class Ranking:
    """One model's view of the pool: rows in serving order with their scores.

    ``Ranking(rows, utility, proba, round)`` takes them in serving order, best first. A refit
    builds one with ``Ranking.partial`` instead: the arrays stay in pool order and only the head
    of the serving order is sorted, since a round serves a few batches before the next refit
    replaces it, and sorting (and reordering) a million rows to serve ten was most of a round.
    Whatever reads past the head sorts the rest first, with the same keys, so every reader sees
    exactly the order a full sort gives.
    """

    def __init__(self, rows: np.ndarray, utility: np.ndarray | None, proba: np.ndarray | None,
                 round: int):
        self._rows = rows  # pool indices
        self._utility = utility  # None before a model exists
        self._proba = proba  # (len(rows), n_labels)
        self.round = round
        self._order: np.ndarray | None = None  # serving position -> array position; None: same
        self._n_sorted = len(rows)
        self._jitter: np.ndarray | None = None
        self._tags: dict[str, np.ndarray] = {}
        # Array positions of the rows drawn uniformly from the open pool, which audits draw
        # from; None: every row (a round that scored every open row, or the cold start).
        self.uniform: np.ndarray | None = None
        self._lock = threading.Lock()

    @classmethod
    def partial(cls, rows: np.ndarray, utility: np.ndarray, proba: np.ndarray, round: int,
                order: np.ndarray, n_sorted: int, jitter: np.ndarray,
                tags: dict[str, np.ndarray] | None = None) -> Ranking:
        """Arrays aligned in any order, served in ``order``, of which ``n_sorted`` are final.

        The rest are sorted by ``strategies.sort_by(utility, jitter)`` when first needed.
        ``tags`` names the pool indices that were put in the order for another reason than
        their score (``{"explore": rows, "discovery": rows}``).
        """
        ranking = cls(rows, utility, proba, round)
        ranking._order, ranking._n_sorted, ranking._jitter = order, n_sorted, jitter
        ranking._tags = {name: np.sort(np.asarray(tagged)) for name, tagged in (tags or {}).items()}
        return ranking

    def source(self, index: int) -> str:
        """Why pool row ``index`` is in the order: a tag, ``active``, or ``initial``."""
        if not self.scored:
            return "initial"
        for name, tagged in self._tags.items():
            pos = np.searchsorted(tagged, index)
            if pos < len(tagged) and tagged[pos] == index:
                return name
        return "active"

    @property
    def tags(self) -> dict[str, np.ndarray]:
        """Pool indices put in the order for another reason than their score, by reason."""
        return self._tags

    @property
    def candidates(self) -> np.ndarray:
        """Pool indices in the arrays' own order (pool order after a refit), not serving order."""
        return self._rows

    def at(self, p: int) -> tuple[float, np.ndarray] | None:
        """Utility and probabilities at array position ``p``; None before a model exists."""
        if not self.scored:
            return None
        return float(self._utility[p]), self._proba[p]

    @property
    def scored(self) -> bool:
        """Whether a model scored these rows (False for the cold-start order)."""
        return self._utility is not None and self._proba is not None

    def __len__(self) -> int:
        return len(self._rows)

    def position(self, j: int) -> int:
        """Where the ``j``-th row to serve sits in the arrays."""
        if self._order is None:
            return j
        if j >= self._n_sorted:
            self._sort_rest()
        return int(self._order[j])

    def row(self, j: int) -> int:
        """The pool index of the ``j``-th row to serve."""
        return int(self._rows[self.position(j)])

    def positions(self) -> np.ndarray:
        """Every array position in serving order (the rest sorted first if need be)."""
        if self._order is None:
            return np.arange(len(self._rows))
        if self._n_sorted < len(self._order):
            self._sort_rest()
        return self._order

    def arrays(self) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """The pool indices, utilities and probabilities, aligned, in array order."""
        return self._rows, self._utility, self._proba

    def scores(self, j: int) -> tuple[float, np.ndarray] | None:
        """Utility and probabilities of the ``j``-th row to serve; None before a model exists."""
        return self.at(self.position(j))

    def _sort_rest(self) -> None:
        with self._lock:
            k = self._n_sorted
            if k >= len(self._order):
                return
            rest = self._order[k:]
            rest = rest[sort_by(self._utility[rest], self._jitter[rest])[0]]
            # A new array, then the count: a reader without the lock sees a sorted head either way.
            self._order = np.concatenate([self._order[:k], rest])
            self._n_sorted = len(self._order)
