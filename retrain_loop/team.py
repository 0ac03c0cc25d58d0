"""A team: several server processes serving one dataset from one PostgreSQL database.

Each process keeps its own pool, ranking and lease queue in memory, and the database decides
what they must agree on:

- **Claims** (table ``leases``): a row is out with at most one session across every process.
  A process picks rows from its own ranking, then claims them in one statement; a row another
  session holds (and whose lease has not run out), or that is answered, is refused, and the
  process serves its next best row instead. A killed process's claims run out with their
  leases, by the database's clock.
- **One refit at a time** (``turn``): a PostgreSQL advisory lock per dataset, held on a
  connection of its own for the refit; a process that dies mid-refit drops it with its
  connection.
- **The published round** (table ``published``): the refit's model and ranking, with the store's
  change counter as it was when the refit read the answers. A process whose turn comes adopts a
  newer published round, and refits only if answers arrived since that round read them, so the
  rounds of all processes make one history with one numbering.

The model travels pickled, as Dask ships models to its workers: the database is the team's own,
and whoever can write to it can already change every answer.
"""

from __future__ import annotations

import json
import math
import pickle
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from .pgstore import _SCHEMA_LOCK, PostgresStore
from .ranking import Ranking
from .refit import Refit

_TABLES = [
    """CREATE TABLE IF NOT EXISTS leases (
        dataset text NOT NULL, input_hash bigint NOT NULL, session text NOT NULL,
        expires timestamptz NOT NULL, answered boolean NOT NULL DEFAULT false, meta text,
        PRIMARY KEY (dataset, input_hash))""",
    "CREATE INDEX IF NOT EXISTS leases_session ON leases (dataset, session)",
    """CREATE TABLE IF NOT EXISTS published (
        dataset text PRIMARY KEY, round integer NOT NULL, version bigint NOT NULL,
        payload bytea NOT NULL, made timestamptz NOT NULL DEFAULT now())""",
    # Stored as it is: arrays of floats hardly compress, and compressing them every round
    # was PostgreSQL's own work.
    "ALTER TABLE published ALTER COLUMN payload SET STORAGE EXTERNAL",
]

# A lease's end; 'infinity' for hosts that keep rows until answered.
_NOW = "to_timestamp(%(now)s::float8)"
_UNTIL = ("CASE WHEN %(secs)s::float8 = 'Infinity' THEN 'infinity'::timestamptz "
          "ELSE to_timestamp(%(now)s::float8 + %(secs)s::float8) END")

_CLAIM = f"""
INSERT INTO leases AS l (dataset, input_hash, session, expires, meta)
SELECT %(dataset)s, c.h, %(session)s, {_UNTIL}, c.m
FROM unnest(%(hashes)s::bigint[], %(metas)s::text[]) AS c(h, m)
WHERE NOT EXISTS (SELECT 1 FROM examples e WHERE e.dataset = %(dataset)s
                  AND e.input_hash = c.h AND e.answer <> 'reject')
ON CONFLICT (dataset, input_hash) DO UPDATE
SET session = excluded.session, expires = excluded.expires, meta = excluded.meta
WHERE NOT l.answered AND (l.expires <= {_NOW} OR l.session = excluded.session)
RETURNING input_hash"""


class Claims:
    """The rows out with a session, in the database, for every process of one dataset.

    Leases run by ``clock`` (seconds since the epoch: the processes' clocks, which NTP keeps
    within a fraction of a second of one another, against leases of minutes), so a test can
    move time.
    """

    def __init__(self, store: PostgresStore, dataset: str, input_hashes: np.ndarray, *,
                 clock: Callable[[], float] = time.time):
        self.store = store
        self.dataset = dataset
        self.input_hashes = input_hashes
        self.clock = clock

    def _hashes(self, rows: Sequence[int]) -> list[int]:
        return self.input_hashes[np.asarray(rows, dtype=np.int64)].tolist()

    def claim(self, session: str, rows: Sequence[int], seconds: float,
              metas: Sequence[dict[str, Any]]) -> dict[int, float]:
        """Claim pool rows ``rows`` for ``session``; returns those refused, each with the
        seconds until its holder's lease runs out (inf: answered, or held until answered)."""
        hashes = self._hashes(rows)
        now = self.clock()
        claimed = {h for (h,) in self.store._query(_CLAIM, {
            "dataset": self.dataset, "session": session, "hashes": hashes, "secs": seconds,
            "metas": [json.dumps(m, sort_keys=True) for m in metas], "now": now})}
        refused = {h: row for row, h in zip(rows, hashes) if h not in claimed}
        if not refused:
            return {}
        left = dict.fromkeys(refused.values(), math.inf)  # no lease: an answer holds it
        for h, answered, until in self.store._query(
                "SELECT input_hash, answered, extract(epoch FROM expires)::float8 FROM leases "
                "WHERE dataset = %s AND input_hash = ANY(%s)", (self.dataset, list(refused))):
            if not answered:
                left[refused[h]] = max(until - now, 0.0)
        return left

    def release(self, session: str) -> None:
        """A session's rows are free now (a page reload, a closed tab)."""
        self.store._query(f"UPDATE leases SET expires = {_NOW} WHERE dataset = %(dataset)s "
                          "AND session = %(session)s AND NOT answered RETURNING 1",
                          {"dataset": self.dataset, "session": session, "now": self.clock()})

    def settle(self, rows: Sequence[int], session: str) -> None:
        """Rows answered: never claimed again, whoever holds them."""
        if len(rows):
            self.store._query(
                "INSERT INTO leases (dataset, input_hash, session, expires, answered) "
                "SELECT %s, h, %s, 'infinity', true FROM unnest(%s::bigint[]) AS h "
                "ON CONFLICT (dataset, input_hash) DO UPDATE SET answered = true RETURNING 1",
                (self.dataset, session, self._hashes(rows)))

    def reopen(self, rows: Sequence[int]) -> None:
        """Rows open again (a rejected suggestion, an answer taken back): claimable by anyone."""
        if len(rows):
            self.store._query(f"UPDATE leases SET expires = {_NOW}, answered = false "
                              "WHERE dataset = %(dataset)s AND input_hash = ANY(%(hashes)s) "
                              "RETURNING 1", {"dataset": self.dataset, "now": self.clock(),
                                              "hashes": self._hashes(rows)})

    def hold(self, row: int, session: str, seconds: float, meta: dict[str, Any]) -> None:
        """Row ``row`` is out with ``session`` whoever held it (a retracted answer's row)."""
        self.store._query(
            f"INSERT INTO leases (dataset, input_hash, session, expires, meta) "
            f"VALUES (%(dataset)s, %(h)s, %(session)s, {_UNTIL}, %(meta)s) "
            "ON CONFLICT (dataset, input_hash) DO UPDATE SET session = excluded.session, "
            "expires = excluded.expires, meta = excluded.meta, answered = false RETURNING 1",
            {"dataset": self.dataset, "h": int(self.input_hashes[row]), "session": session,
             "secs": seconds, "meta": json.dumps(meta, sort_keys=True), "now": self.clock()})

    def meta(self, rows: Sequence[int], session: str) -> list[dict[str, Any] | None]:
        """What each row was served with, where ``session`` holds it (served by any process)."""
        hashes = self._hashes(rows)
        found = dict(self.store._query(
            "SELECT input_hash, meta FROM leases WHERE dataset = %s AND session = %s "
            "AND input_hash = ANY(%s) AND meta IS NOT NULL", (self.dataset, session, hashes)))
        return [json.loads(found[h]) if h in found else None for h in hashes]


@dataclass
class Published:
    """A round as published: its number, and the store's change counter when it read the
    answers."""

    round: int
    version: int


class Team:
    """The database's part in serving ``dataset`` from several processes."""

    def __init__(self, store: PostgresStore, dataset: str, input_hashes: np.ndarray, *,
                 clock: Callable[[], float] = time.time):
        self.store = store
        self.dataset = dataset
        with store._transaction() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            for statement in _TABLES:
                conn.execute(statement)
        self.claims = Claims(store, dataset, input_hashes, clock=clock)

    @contextmanager
    def turn(self) -> Iterator[None]:
        """Hold the dataset's refit lock (blocking): one refit at a time across processes. The
        key is the dataset within this database and schema."""
        with self.store.pool.connection() as conn:
            (key,) = conn.execute("SELECT hashtextextended(current_database() || '/' || "
                                  "current_schema() || '/' || %s, 0)", (self.dataset,)).fetchone()
            conn.execute("SELECT pg_advisory_lock(%s)", (key,))
            try:
                yield
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (key,))

    def version(self) -> int:
        """The store's change counter: it moves with every answer stored by any process."""
        return self.store._version()

    def published(self) -> Published | None:
        """The published round's number and the change counter it read the answers at; its
        payload is fetched only by ``payload``, for a process that serves it."""
        rows = self.store._query("SELECT round, version FROM published WHERE dataset = %s",
                                 (self.dataset,))
        return Published(*rows[0]) if rows else None

    def payload(self, round: int) -> dict[str, Any] | None:
        """The model and ranking of published round ``round`` (None if a later one replaced
        it meanwhile)."""
        rows = self.store._query("SELECT payload FROM published WHERE dataset = %s "
                                 "AND round = %s", (self.dataset, round))
        return pickle.loads(rows[0][0]) if rows else None

    def publish(self, round: int, version: int, payload: dict[str, Any]) -> None:
        """Make round ``round`` (which read the answers as of ``version``) the one to serve."""
        blob = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
        with self.store._transaction() as conn:
            conn.execute(
                "INSERT INTO published (dataset, round, version, payload) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (dataset) DO UPDATE SET "
                "round = excluded.round, version = excluded.version, payload = excluded.payload, "
                "made = now() WHERE published.round < excluded.round",
                (self.dataset, round, version, blob))
        self.store._bump("round_changes")  # the others adopt it when they next look


def team_for(store: Any, dataset: str, pool: Any, **options: Any) -> Team | None:
    """The team of the processes serving ``dataset`` from ``store``: None for a SQLite store,
    which one process has to itself. ``options``: ``Team``'s (its ``clock``)."""
    if not isinstance(store, PostgresStore):
        return None
    return Team(store, dataset, pool.input_hashes, **options)


def payload_of(refit: Refit, input_hashes: np.ndarray, refit_ms: float,
               timings: dict[str, float]) -> dict[str, Any]:
    """What another process needs to serve ``refit``: rows by input hash, not by position,
    and the ranking's whole serving order."""
    ranking = refit.ranking
    return {"model": refit.model, "hashes": input_hashes[refit.candidates],
            "proba": refit.proba, "utility": refit.utility, "order": ranking.positions(),
            "uniform": ranking.uniform, "sampled": refit.sampled,
            "tags": {name: input_hashes[rows] for name, rows in ranking.tags.items()},
            "y_train": refit.y_train, "refit_ms": refit_ms, "timings": timings}


def refit_of(payload: dict[str, Any], pool: Any, round: int) -> Refit:
    """A published round as this process's ``Refit``, over its own pool's rows (rows of the
    round that this pool lacks are dropped)."""
    rows = pool.indices_of(np.asarray(payload["hashes"], dtype=np.int64))
    kept = np.flatnonzero(rows >= 0)
    kept = kept[np.argsort(rows[kept], kind="stable")]  # candidates are sorted pool rows
    new_position = np.full(len(rows), -1, dtype=np.int64)
    new_position[kept] = np.arange(len(kept))
    order = new_position[payload["order"]]
    order = order[order >= 0]
    candidates = rows[kept]
    proba, utility = payload["proba"][kept], payload["utility"][kept]
    tags = {}
    for name, hashes in payload["tags"].items():
        tagged = pool.indices_of(np.asarray(hashes, dtype=np.int64))
        tags[name] = tagged[tagged >= 0]
    ranking = Ranking.partial(candidates, utility, proba, round, order, len(order),
                              np.zeros(len(candidates)), tags)
    if payload["uniform"] is not None:
        uniform = new_position[payload["uniform"]]
        ranking.uniform = np.sort(uniform[uniform >= 0])
    sampled = payload["sampled"][kept] if payload["sampled"] is not None else None
    return Refit(payload["model"], ranking, candidates, proba, utility, payload["y_train"],
                 sampled, timings=dict(payload["timings"]))
