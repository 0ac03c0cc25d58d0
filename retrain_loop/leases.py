"""The lease queue: which rows are open, which are out with which session until when, and the
order the open ones are served in.

Serving walks the current ranking with a cursor, skipping rows that are answered or out; rows
whose lease ran out (or that a page handed back) are served first. A refit publishes a new
ranking in one step, which resets the cursor. Every change happens under the queue's lock, and
time comes from the clock it was given, so a test can move time instead of sleeping.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .audit import AuditDraw
from .ranking import Ranking

ELSEWHERE = "\0elsewhere"  # the session of a row that another process has out


@dataclass
class Lease:
    """A row out with a session: until when, and what the server recorded when it served it."""

    session: str
    expires: float
    meta: dict[str, Any] = field(default_factory=dict)
    guess: str | None = None  # the label offered as preselected; None for audits and cold start


def describe(ranking: Ranking, p: int, index: int, labels: Sequence[str],
             source: str | None = None) -> Lease:
    """What a task records about how it was served: where it came from, the round of the model
    that served it, and that model's prediction (``p``: the row's position in the arrays)."""
    meta: dict[str, Any] = {"source": source or ranking.source(index), "round": ranking.round}
    predicted = None
    scores = ranking.at(p)
    if scores is not None:
        utility, proba = scores
        best = int(proba.argmax())
        predicted = labels[best]
        meta.update(score=round(utility, 4), p=round(float(proba[best]), 4), predicted=predicted)
    return Lease(session="", expires=0.0, meta=meta, guess=predicted)


class LeaseQueue:
    """Leases, the answered rows, the returned rows and the cursor into the current ranking."""

    def __init__(self, n_rows: int, labels: Sequence[str], audit: AuditDraw, *,
                 lease_seconds: float, session_cap: float,
                 clock: Callable[[], float] = time.monotonic, claims: Any = None):
        self.labels = list(labels)
        self.audit = audit
        self.lease_seconds = lease_seconds
        self.session_cap = session_cap
        self.clock = clock
        self.claims = claims
        self._lock = threading.Lock()
        self._answered = np.zeros(n_rows, dtype=bool)
        self._leases: dict[int, Lease] = {}
        self._returned: deque[tuple[int, Lease]] = deque()
        self._ranking = Ranking(np.empty(0, dtype=np.int64), None, None, 0)
        self._cursor = 0

    @property
    def ranking(self) -> Ranking:
        return self._ranking

    # -- serving ------------------------------------------------------------------------------

    def lease(self, session: str, n: int) -> list[tuple[int, Lease]]:
        """Up to ``n`` rows for ``session``, returned rows first, then the ranking's best open
        rows with audit draws in their share of the slots; never more than the session's cap.
        With ``claims``, only rows the database gave this session."""
        out = self._pick(session, n)
        if self.claims is None:
            return out
        given: list[tuple[int, Lease]] = []
        for _ in range(8):  # each refusal keeps a row out here, so few rounds are ever needed
            if not out:
                break
            refused = self.claims.claim(session, [i for i, _ in out], self.lease_seconds,
                                        [lease.meta for _, lease in out])
            given += [(i, lease) for i, lease in out if i not in refused]
            if not refused:
                break
            with self._lock:  # out here until the holder's lease ends, then tried again
                now = self.clock()
                for index, lease in out:
                    if index in refused and self._leases.get(index) is lease:
                        lease.session, lease.expires = ELSEWHERE, now + refused[index]
            out = self._pick(session, n - len(given))
        else:
            self.release_rows(session, [i for i, _ in out])
        return given

    def release_rows(self, session: str, rows: Iterable[int]) -> None:
        """Rows picked for ``session`` that it will not be shown: open again."""
        with self._lock:
            for index in rows:
                lease = self._leases.get(index)
                if lease is not None and lease.session == session:
                    del self._leases[index]

    def _pick(self, session: str, n: int) -> list[tuple[int, Lease]]:
        """Rows for ``session`` from this process's queue alone."""
        out: list[tuple[int, Lease]] = []
        with self._lock:
            now = self.clock()
            self._expire(now)
            held = sum(lease.session == session for lease in self._leases.values())
            n = min(n, max(self.session_cap - held, 0))
            while self._returned and len(out) < n:
                index, lease = self._returned.popleft()
                if not self._answered[index] and index not in self._leases:
                    out.append((index, lease))
                    self._leases[index] = lease
            ranking = self._ranking
            while len(out) < n:
                picked = self._audit_draw(ranking) if ranking.scored and self.audit.due() else None
                while picked is None and self._cursor < len(ranking):
                    j = self._cursor
                    self._cursor += 1
                    index = ranking.row(j)
                    if not (self._answered[index] or index in self._leases):
                        picked = index, describe(ranking, ranking.position(j), index, self.labels)
                if picked is None:
                    break
                out.append(picked)
                self._leases[picked[0]] = picked[1]
            for _, lease in out:
                lease.session = session
                lease.expires = now + self.lease_seconds
        return out

    def _audit_draw(self, ranking: Ranking) -> tuple[int, Lease] | None:
        """A row drawn uniformly from the open rows the ranking scored (of a bounded round, from
        its uniform sample), served as an audit: its prediction is recorded, and not offered as
        the guess, so it cannot sway the answer."""
        rows = ranking.candidates

        def is_open(positions: np.ndarray) -> np.ndarray:
            picked = rows[positions]
            leased = np.fromiter(self._leases, dtype=np.int64, count=len(self._leases))
            return ~self._answered[picked] & ~np.isin(picked, leased)

        uniform = ranking.uniform  # a bounded round: only its uniform sample, not its head
        if uniform is None:
            p = self.audit.pick(len(rows), is_open)
        else:
            q = self.audit.pick(len(uniform), lambda qs: is_open(uniform[qs]))
            p = None if q is None else int(uniform[q])
        if p is None:
            return None
        lease = describe(ranking, p, int(rows[p]), self.labels, source="audit")
        lease.guess = None
        return int(rows[p]), lease

    def _expire(self, now: float) -> None:
        for index in [i for i, lease in self._leases.items() if lease.expires <= now]:
            self._returned.append((index, self._leases.pop(index)))

    def release(self, session: str) -> int:
        """Put a session's outstanding rows back at the head of the queue (a page reload)."""
        with self._lock:
            mine = [i for i, lease in self._leases.items() if lease.session == session]
            for index in reversed(mine):
                self._returned.appendleft((index, self._leases.pop(index)))
        if self.claims is not None:
            self.claims.release(session)
        return len(mine)

    def served(self, indices: Iterable[int], session: str | None = None
               ) -> list[dict[str, Any] | None]:
        """The meta each row was served with, where it is out now; None where it is not. With
        ``claims``, rows ``session`` was served by another process are found there."""
        indices = list(indices)
        with self._lock:
            leases = [self._leases.get(index) for index in indices]
        metas = [lease.meta if lease is not None and lease.session != ELSEWHERE else None
                 for lease in leases]
        missing = [i for i, meta in zip(indices, metas) if meta is None]
        if self.claims is not None and session is not None and missing:
            found = dict(zip(missing, self.claims.meta(missing, session)))
            metas = [found.get(i) if meta is None else meta for i, meta in zip(indices, metas)]
        return metas

    # -- answers and refits -------------------------------------------------------------------

    def mark_answered(self, rows: Iterable[int] | np.ndarray, exactly: bool = False,
                      session: str | None = None) -> None:
        """Rows answered (pool indices, or a bool per row): never served again, their leases
        end. ``exactly`` (a bool per row): these and no others are answered. ``session``: rows
        it has just answered, which ``claims`` settles for every process."""
        if self.claims is not None and session is not None:
            rows = list(rows)
            self.claims.settle(rows, session)
        with self._lock:
            if isinstance(rows, np.ndarray) and rows.dtype == bool:
                if exactly:
                    self._answered[:] = rows
                else:
                    self._answered |= rows
                rows = [index for index in self._leases if rows[index]]
            for index in rows:
                self._answered[index] = True
                self._leases.pop(index, None)

    def end_leases(self, rows: Iterable[int]) -> None:
        """Rows answered without being settled (a rejected suggestion): their leases end, and they
        are open again, for the next ranking to place."""
        rows = list(rows)
        if self.claims is not None:
            self.claims.reopen(rows)
        with self._lock:
            for index in rows:
                self._leases.pop(index, None)

    def hold(self, index: int, session: str, meta: dict[str, Any]) -> None:
        """Lease row ``index`` to ``session`` with ``meta`` (a retracted answer's row, which
        that session's page shows again)."""
        if self.claims is not None:
            self.claims.hold(index, session, self.lease_seconds, dict(meta))
        with self._lock:
            self._leases[index] = Lease(session, self.clock() + self.lease_seconds, dict(meta))

    def open_rows(self) -> np.ndarray:
        """A bool per row: neither answered nor out with a session (a copy). A row whose lease
        ran out is open."""
        with self._lock:
            self._expire(self.clock())
            open_rows = ~self._answered
            for index in self._leases:
                open_rows[index] = False
        return open_rows

    def unanswered(self) -> np.ndarray:
        """A bool per row: not answered (a copy)."""
        with self._lock:
            return ~self._answered

    def is_answered(self, index: int) -> bool:
        return bool(self._answered[index])

    def answered_mask(self) -> np.ndarray:
        """A bool per pool row: answered (a read-only view)."""
        view = self._answered.view()
        view.flags.writeable = False
        return view

    def publish(self, ranking: Ranking, open_rows: np.ndarray | None = None) -> None:
        """Serve from ``ranking`` from now on. Rows handed back before it was made, and open then
        (``open_rows``, what the refit scored), are ranked in it: they wait no longer at the head
        of the queue."""
        with self._lock:
            self._ranking = ranking
            self._cursor = 0
            if open_rows is not None:
                self._returned = deque(
                    (index, lease) for index, lease in self._returned if not open_rows[index])

    # -- reporting ----------------------------------------------------------------------------

    def counts(self) -> dict[str, Any]:
        """Rows open and out, and in how many seconds the first row out frees up (None when
        none is out, or none ever frees up by itself)."""
        with self._lock:
            now = self.clock()
            self._expire(now)
            first = min((lease.expires for lease in self._leases.values()), default=None)
            return {"open": int((~self._answered).sum()), "out": len(self._leases),
                    "next_release_s": (round(first - now, 1)
                                       if first is not None and math.isfinite(first) else None)}

    def answered_share(self) -> float:
        return float(self._answered.mean()) if len(self._answered) else 0.0
