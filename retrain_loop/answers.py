"""The answer schema: the one check an answer passes before it is stored, and what it counts as.

Every host (the server's API, the Prodigy recipe, a simulation's oracle) hands answers to
``Engine.update``, which turns each into a stored record here. The record is rebuilt from the
pool row, so whatever else came back with the task is not trusted.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from .estimate import AUDIT
from .pool import Pool
from .store import ANSWERS

# What the server decides when it serves a task; an answer cannot set these itself.
SERVED = ("source", "round", "predicted", "p", "score")

SESSION_PATTERN = r"^[A-Za-z0-9_.@-]{1,64}$"


class AnswerError(ValueError):
    """An answer that does not fit the task it claims to answer."""


class UnknownLabel(AnswerError):
    """An answer that accepts a label the project does not have."""


class UnknownTask(AnswerError):
    """An answer for a row that is not in the pool."""


def check_session(session: Any) -> None:
    if not isinstance(session, str) or not re.match(SESSION_PATTERN, session):
        raise AnswerError(
            "session must be 1-64 characters of letters, digits, '_', '.', '@' or '-'"
        )


def to_record(answer: Any, pool: Pool, labels: Sequence[str], task_hash: Callable[[int], int],
              sid: str, now: int) -> tuple[int, dict[str, Any]]:
    """The pool index an answer is for, and the record to store; ``AnswerError`` if it is bad."""
    if not isinstance(answer, dict):
        raise AnswerError("each answer must be an object")
    input_hash = answer.get("_input_hash")
    if not isinstance(input_hash, int) or isinstance(input_hash, bool):
        raise AnswerError(f"_input_hash must be an integer, got {input_hash!r}")
    index = pool.index_of(input_hash)
    if index is None:
        raise UnknownTask(f"no row in the pool has _input_hash {input_hash}")
    expected = task_hash(index)
    if answer.get("_task_hash") != expected:
        raise AnswerError(
            f"_task_hash {answer.get('_task_hash')!r} does not match row {input_hash} "
            "asked with this project's labels"
        )
    verdict = answer.get("answer")
    if verdict not in ANSWERS:
        raise AnswerError(f"answer must be one of {', '.join(ANSWERS)}, got {verdict!r}")
    accept = answer.get("accept", [])
    if not isinstance(accept, list) or not all(isinstance(a, str) for a in accept):
        raise AnswerError("accept must be a list of label ids")
    unknown = [a for a in accept if a not in labels]
    if unknown:
        raise UnknownLabel(f"unknown label {unknown[0]!r}: the labels are {', '.join(labels)}")
    if verdict == "accept" and len(accept) != 1:
        raise AnswerError("an accepted answer must choose exactly one label")
    meta = answer.get("meta")
    record = dict(pool.tasks[index])
    record.update(
        options=[{"id": label, "text": label} for label in labels],
        accept=accept,
        answer=verdict,
        meta=meta if isinstance(meta, dict) else {},
        _input_hash=input_hash,
        _task_hash=expected,
        _session_id=sid,
        _annotator_id=sid,
        _timestamp=now,
    )
    return index, record


def outcome(record: dict[str, Any]) -> str:
    """What an answer counts as in the stats: its label, or ``_reject`` / ``_ignore``."""
    if record.get("answer") == "accept" and record.get("accept"):
        return str(record["accept"][0])
    return f"_{record.get('answer')}"


def served_meta(record: dict[str, Any], served: dict[str, Any] | None, store: Any,
                dataset: str) -> dict[str, Any]:
    """The meta to store with an answer: what the client sent, with the server's own keys
    (``SERVED``) from the lease it was served under, or else from this session's stored answer
    to the same task (a resent or revised answer keeps them), or else without them.

    The audit estimate rests on ``source`` and ``predicted``; a client cannot claim them. A
    client may name another source for rows it was never served (a simulation's initial set).
    """
    meta = {k: v for k, v in record["meta"].items() if k not in SERVED}
    if served is None:
        before = store.find(dataset, record["_session_id"], record["_task_hash"])
        served = before.get("meta") if before else None
    if isinstance(served, dict):
        return {**meta, **{k: served[k] for k in SERVED if k in served}}
    claimed = record["meta"].get("source")
    if isinstance(claimed, str) and claimed != AUDIT:
        meta["source"] = claimed
    return meta
