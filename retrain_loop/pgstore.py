"""The annotation store in PostgreSQL (psycopg 3): the same records and behaviour as the SQLite
store, for a team whose servers share one database.

``--db postgresql://user@host/db`` picks it. Records, idempotence per (dataset, session, task),
revisions, the round history and the stop set are as in ``store.py``; a write that returned is
committed. Connections come from a ``psycopg_pool.ConnectionPool``, so request threads and the
refit thread never wait on one another's connection.

Every write also moves a counter once it has committed (a sequence: one for answers, one for the
rounds a team publishes), so a process can tell cheaply whether another one stored something
since it last looked (``changed_elsewhere``), as SQLite's data_version does: a counter read
before a read of the answers vouches for every write it counts.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from .answers import summary
from .store import _ROUNDS, _STOP_SETS, _TABLE, SQLStore, StoreError, _to_row

URL_PREFIXES = ("postgresql://", "postgres://")

# One key for the schema's creation, so that two servers starting at once do not race on it.
_SCHEMA_LOCK = 0x72_6C_6F_6F_70  # "rloop"

_SCHEMA = [
    f"""CREATE TABLE IF NOT EXISTS {_TABLE} (
        id bigserial PRIMARY KEY, dataset text NOT NULL, session_id text NOT NULL,
        task_hash bigint NOT NULL, input_hash bigint NOT NULL, answer text NOT NULL,
        label text, timestamp bigint NOT NULL, answer_key bigint NOT NULL, content text NOT NULL,
        source text, first_accept text, rejected_label text,
        UNIQUE (dataset, session_id, task_hash))""",
    f"CREATE INDEX IF NOT EXISTS {_TABLE}_input ON {_TABLE} (dataset, input_hash)",
    (f"CREATE INDEX IF NOT EXISTS {_TABLE}_labelled ON {_TABLE} (dataset, id) "
    "INCLUDE (input_hash, label)"),
    f"CREATE INDEX IF NOT EXISTS {_TABLE}_source ON {_TABLE} (dataset, source)",
    f"""CREATE TABLE IF NOT EXISTS {_ROUNDS} (
        id bigserial PRIMARY KEY, dataset text NOT NULL, round integer NOT NULL,
        content text NOT NULL)""",
    f"CREATE INDEX IF NOT EXISTS {_ROUNDS}_dataset ON {_ROUNDS} (dataset, id)",
    f"""CREATE TABLE IF NOT EXISTS {_STOP_SETS} (
        dataset text PRIMARY KEY, hashes text NOT NULL, round integer, labels text,
        predictions text)""",
    # Moved after every write of answers, and of the rounds a team publishes: sequences, which
    # no transaction waits on (a counter row would make every writer of every process queue).
    "CREATE SEQUENCE IF NOT EXISTS answer_changes",
    "CREATE SEQUENCE IF NOT EXISTS round_changes",
]

# One statement for a whole batch (atomic by itself: no BEGIN and COMMIT to wait for).
_UPSERT = (
    f"INSERT INTO {_TABLE} (dataset, session_id, task_hash, input_hash, answer, label, "
    "timestamp, answer_key, content, source, first_accept, rejected_label) SELECT * FROM "
    "unnest(%s::text[], %s::text[], %s::bigint[], %s::bigint[], %s::text[], %s::text[], "
    "%s::bigint[], %s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[]) "
    "ON CONFLICT (dataset, session_id, task_hash) DO UPDATE SET "
    "input_hash = excluded.input_hash, answer = excluded.answer, label = excluded.label, "
    "timestamp = excluded.timestamp, answer_key = excluded.answer_key, "
    "content = excluded.content, source = excluded.source, "
    "first_accept = excluded.first_accept, rejected_label = excluded.rejected_label "
    f"WHERE {_TABLE}.answer_key IS DISTINCT FROM excluded.answer_key"
)


def _row(dataset: str, eg: dict[str, Any]) -> tuple:
    """``store._to_row``'s columns and what ``summaries`` gives of the record (so a team's
    refit, which reads them every round, has no JSON to parse)."""
    row = _to_row(dataset, eg)
    first, said_not = summary(eg)[4:]
    return (*row, None if first is None else str(first),
            said_not if isinstance(said_not, str) else None)


def is_url(target: Any) -> bool:
    return isinstance(target, str) and target.startswith(URL_PREFIXES)


def _psycopg():
    try:
        import psycopg
        import psycopg_pool
    except ImportError as e:
        raise StoreError(
            "a postgresql:// database needs psycopg 3: pip install 'retrain-loop[postgres]'"
        ) from e
    return psycopg, psycopg_pool


class PostgresStore(SQLStore):
    """Answers per dataset in a PostgreSQL database, at ``url`` (``postgresql://...``)."""

    P = "%s"

    def __init__(self, url: str, *, max_connections: int = 16):
        psycopg, psycopg_pool = _psycopg()
        self.url = url
        self.path = None  # not a file: hosts that name the file say the URL instead
        self._errors = psycopg.Error
        try:
            self.pool = psycopg_pool.ConnectionPool(
                url, min_size=1, max_size=max_connections, kwargs={"autocommit": True},
                open=False, name="retrain-loop")
            self.pool.open(wait=True, timeout=10)
        except (psycopg.Error, psycopg_pool.PoolTimeout) as e:
            raise StoreError(f"cannot connect to {_safe(url)}: {e}") from e
        with self._transaction() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            for statement in _SCHEMA:
                conn.execute(statement)
        self._seen_lock = threading.Lock()
        self.look_every = 0.25
        self._looked = -math.inf
        self._seen = self._counters()

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        """A connection inside one transaction: committed when the block ends, rolled back if
        it raises."""
        with self.pool.connection() as conn, conn.transaction():
            yield conn

    def _query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self.pool.connection() as conn:
            return conn.execute(sql, params).fetchall()

    def _bump(self, counter: str = "answer_changes") -> None:
        """Move a change counter after a write committed; a write of ours alone keeps us up
        to date."""
        column = ("answer_changes", "round_changes").index(counter)
        (now,) = self._query("SELECT nextval(%s)", (counter,))[0]
        with self._seen_lock:
            seen = list(self._seen)
            if now == seen[column] + 1:
                seen[column] = now
                self._seen = tuple(seen)

    def _counters(self) -> tuple[int, int]:
        return tuple(self._query("SELECT (SELECT last_value FROM answer_changes), "
                                 "(SELECT last_value FROM round_changes)")[0])

    def _version(self) -> int:
        """The answers' change counter."""
        return self._counters()[0]

    # -- writes -------------------------------------------------------------------------------

    def add(self, dataset: str, examples: Iterable[dict[str, Any]]) -> int:
        """Store answer records; returns how many were new or changed. All are checked before
        any is written, so a bad one stores nothing."""
        rows = [_row(dataset, eg) for eg in examples]
        if not rows:
            return 0
        # One row per task: a task answered twice in one batch keeps its last answer, as
        # storing them one after the other would.
        rows = list({row[:3]: row for row in rows}.values())
        with self.pool.connection() as conn:
            changed = conn.execute(_UPSERT, [list(column) for column in zip(*rows)]).rowcount
        if changed:
            self._bump()
        return changed

    def remove(self, dataset: str, session: str, task_hash: int) -> dict[str, Any] | None:
        """Delete a session's answer to a task (an undo); returns the record removed, if any."""
        rows = self._query(f"DELETE FROM {_TABLE} WHERE dataset = %s AND session_id = %s "
                           "AND task_hash = %s RETURNING content", (dataset, session, task_hash))
        row = rows[0] if rows else None
        if row is not None:
            self._bump()
        return json.loads(row[0]) if row is not None else None

    # -- reads --------------------------------------------------------------------------------

    def changed_elsewhere(self) -> bool:
        """Whether another process (or ``db-in``) stored something since the last call. Looks
        at most every ``look_every`` seconds (False in between): serving asks before every
        batch, and a team's claims, not this, keep rows from being served twice."""
        now = time.monotonic()
        if now - self._looked < self.look_every:
            return False
        self._looked = now
        counters = self._counters()
        with self._seen_lock:
            changed = counters != self._seen
            self._seen = counters
        return changed

    def summaries(self, dataset: str) -> list[tuple]:
        """``answers.summary`` of every record, in storage order, from their own columns."""
        return self._query(
            f"SELECT input_hash, session_id, task_hash, answer, first_accept, rejected_label "
            f"FROM {_TABLE} WHERE dataset = %s ORDER BY id", (dataset,))

    # -- the round history and the stop set ---------------------------------------------------

    def stop_set(self, dataset: str, hashes: list[int], replace: bool = False) -> list[int]:
        """The dataset's stop set: ``hashes`` if it has none yet (or ``replace``), else the one
        chosen first."""
        on_conflict = ("DO UPDATE SET hashes = excluded.hashes, round = NULL, labels = NULL, "
                       "predictions = NULL" if replace else "DO NOTHING")
        with self._transaction() as conn:
            conn.execute(f"INSERT INTO {_STOP_SETS} (dataset, hashes) VALUES (%s, %s) "
                         f"ON CONFLICT (dataset) {on_conflict}",
                         (dataset, json.dumps([int(h) for h in hashes])))
            (saved,) = conn.execute(f"SELECT hashes FROM {_STOP_SETS} WHERE dataset = %s",
                                    (dataset,)).fetchone()
        return json.loads(saved)

    def close(self) -> None:
        self.pool.close()


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    head, sep, tail = url.partition("@")
    if not sep or ":" not in head.split("//", 1)[-1]:
        return url
    scheme, _, user = head.partition("//")
    return f"{scheme}//{user.split(':', 1)[0]}:***@{tail}"
