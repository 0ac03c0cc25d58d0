"""Audit draws: a share of served tasks picked uniformly at random from the open pool.

Where a task came from is recorded with its answer (``meta["source"]``):

- ``initial``: before any model, rows chosen to cover the feature space;
- ``active``: chosen by the strategy (margin, ...);
- ``explore``: a random pick mixed in by ``--explore``;
- ``discovery``: a far-away row served while some label has no answers;
- ``audit``: a uniform random draw, served with the model's prediction recorded but not shown.

Audit answers train the model like any other; their served predictions also give the honest
accuracy estimate (``estimate.py``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

SOURCES = ("audit", "active", "explore", "discovery", "initial")
DEFAULT_SHARE = 0.1
_TRIES = 64  # random positions tried at once before listing every open row


class AuditError(ValueError):
    """An audit share outside [0, 1]."""


class AuditDraw:
    """Decides which served tasks are audits, and draws them. Not thread-safe: call it under
    the serving lock."""

    def __init__(self, share: float = DEFAULT_SHARE, seed: int = 0):
        if not 0.0 <= share <= 1.0:
            raise AuditError(f"the audit share must be between 0 and 1, got {share}")
        self.share = share
        self._rng = np.random.default_rng([seed, 2])  # apart from the refit's generator
        self._credit = 0.0

    def due(self) -> bool:
        """Whether the next served task is an audit. Exactly ``share`` of tasks over time, so even
        a short session gets its audits (a coin per task leaves a third of 10-task batches of a
        10% share without one)."""
        if self.share <= 0.0:
            return False
        self._credit += self.share
        if self._credit >= 1.0 - 1e-9:
            self._credit -= 1.0
            return True
        return False

    def pick(self, n: int, is_open: Callable[[np.ndarray], np.ndarray]) -> int | None:
        """A position in ``range(n)``, uniform among those ``is_open`` (positions -> bools)
        accepts; None when none is open. Tries random positions first (the open pool is usually
        most of it), so a draw does not cost a pass over a million rows."""
        if n <= 0:
            return None
        tries = self._rng.integers(0, n, size=min(_TRIES, n))
        hits = tries[is_open(tries)]
        if len(hits):
            return int(hits[0])  # the first open one among uniform tries is uniform among open
        open_positions = np.flatnonzero(is_open(np.arange(n)))
        return int(self._rng.choice(open_positions)) if len(open_positions) else None
