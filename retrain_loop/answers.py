"""The answer schema: the one check an answer passes before it is stored, and what it counts as.

Every host (the server's API, the Prodigy recipe, a simulation's oracle) hands answers to
``Engine.update``, which turns each into a stored record here. The shape of an answer is the
pydantic model ``Answer`` (the server's API declares the same model, so its schema is this one);
what only the project can tell (is it a row of the pool, asked with these labels) is checked
after. The record is rebuilt from the pool row, so whatever else came back is not trusted.

Each kind of error has its HTTP status: an answer that is not well formed, or names a label the
project lacks, is 422; one for a row that is not in the pool is 404; one whose task hash is not
this project's question about that row (labels changed since it was served) is 409.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from .estimate import AUDIT
from .pool import Pool

# What the server decides when it serves a task; an answer cannot set these itself.
SERVED = ("source", "round", "predicted", "p", "score")

SESSION_PATTERN = r"^[A-Za-z0-9_.@-]{1,64}$"


MAX_META = 64 * 1024  # bytes of an answer's meta, as stored


class AnswerError(ValueError):
    """An answer that is not well formed."""

    status = 422


class UnknownLabel(AnswerError):
    """An answer that accepts a label the project does not have."""


class UnknownTask(AnswerError):
    """An answer for a row that is not in the pool."""

    status = 404


class TaskMismatch(AnswerError):
    """An answer whose task hash is not this project's question about its row."""

    status = 409


class Answer(BaseModel):
    """An answer as it arrives: the task it answers, with the verdict. Fields other than these
    travel along and are ignored, since the stored record is rebuilt from the pool row."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    input_hash: StrictInt = Field(alias="_input_hash")
    task_hash: StrictInt = Field(alias="_task_hash")
    answer: Literal["accept", "reject", "ignore"]
    accept: list[StrictStr] = Field(default_factory=list, max_length=100)
    # Set on a binary question ("is this row LABEL?"): accept says yes, reject says no.
    label: StrictStr | None = None
    meta: dict[str, Any] | None = None

    @field_validator("meta")
    @classmethod
    def _storable(cls, meta: dict[str, Any] | None) -> dict[str, Any] | None:
        """Meta is stored as it came: it must be JSON (no NaN or Infinity), UTF-8 text (no lone
        surrogate) and small."""
        if meta is None:
            return meta
        try:
            size = len(json.dumps(meta, allow_nan=False, ensure_ascii=False).encode("utf-8"))
        except ValueError as e:  # NaN/Infinity, or a surrogate (UnicodeEncodeError)
            raise ValueError(f"meta must be plain JSON text: {e}") from None
        except RecursionError:  # nested just under what the body's parser took
            raise ValueError("meta is nested too deeply") from None
        if size > MAX_META:
            raise ValueError(f"meta is {size:,} bytes; at most {MAX_META:,} are stored")
        return meta

    @model_validator(mode="after")
    def _one_label_when_accepted(self) -> Answer:
        if self.label is not None:
            if self.accept not in ([], [self.label]):
                raise ValueError("a binary answer accepts its own label or nothing")
        elif self.answer == "accept" and len(self.accept) != 1:
            raise ValueError("an accepted answer must choose exactly one label")
        return self


def check_session(session: Any) -> None:
    if not isinstance(session, str) or not re.match(SESSION_PATTERN, session):
        raise AnswerError(
            "session must be 1-64 characters of letters, digits, '_', '.', '@' or '-'"
        )


def to_record(answer: Any, pool: Pool, labels: Sequence[str],
              task_hash: Callable[[int, str | None], int], sid: str, now: int
              ) -> tuple[int, dict[str, Any]]:
    """The pool index an answer is for, and the record to store; ``AnswerError`` if it is bad.

    ``task_hash(index, label)`` is this project's question about a row: which of the labels
    (``label`` None), or is it ``label`` (a binary question). A binary answer is stored as
    Prodigy's teach recipes store one, with its ``label``; accepted, it is that label; rejected,
    the row stays to be labelled and ``meta.rejected_label`` says which label it is not.
    """
    try:
        parsed = Answer.model_validate(answer)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ())) or "answer"
        raise AnswerError(f"{where}: {first.get('msg', 'invalid')}") from None
    input_hash, verdict, accept = parsed.input_hash, parsed.answer, list(parsed.accept)
    asked = parsed.label
    index = pool.index_of(input_hash)
    if index is None:
        raise UnknownTask(f"no row in the pool has _input_hash {input_hash}")
    unknown = [a for a in [*accept, *([asked] if asked is not None else [])] if a not in labels]
    if unknown:
        raise UnknownLabel(f"unknown label {unknown[0]!r}: the labels are {', '.join(labels)}")
    expected = task_hash(index, asked)
    if parsed.task_hash != expected:
        question = f"asked whether it is {asked!r}" if asked else "asked with this project's labels"
        raise TaskMismatch(f"_task_hash {parsed.task_hash!r} does not match row {input_hash} "
                           f"{question}")
    meta = dict(parsed.meta) if isinstance(parsed.meta, dict) else {}
    record = dict(pool.tasks[index])
    if asked is None:
        record["options"] = [{"id": label, "text": label} for label in labels]
    else:
        record["label"] = asked
        accept = [asked] if verdict == "accept" else []
        if verdict == "reject":
            meta["rejected_label"] = asked
    record.update(
        accept=accept,
        answer=verdict,
        meta=meta,
        _input_hash=input_hash,
        _task_hash=expected,
        _session_id=sid,
        _annotator_id=sid,
        _timestamp=now,
    )
    return index, record


def asked_labels(records: Iterable[dict[str, Any]]) -> list[str]:
    """The labels answers were asked with: the options stored with the first that has them, in
    their order, else the accepted labels, sorted."""
    accepted: set[str] = set()
    for record in records:
        ids = [o.get("id") for o in record.get("options") or [] if isinstance(o, dict)]
        if ids and all(isinstance(i, str) for i in ids):
            return ids
        accept = record.get("accept")
        if record.get("answer") == "accept" and isinstance(accept, list) and len(accept) == 1:
            accepted.add(str(accept[0]))
    return sorted(accepted)


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


@dataclass
class Answered:
    """What the stored answers say about a pool: the rows answered, each session's latest
    outcome per task, the labels rows were said not to have, and the answers for no pool row."""

    rows: np.ndarray  # bool per pool row
    latest: dict[tuple[str, int], str]
    rejected: dict[int, set[int]]  # row -> label indices (a rejected suggestion)
    unmatched: int

    @classmethod
    def read(cls, records: Iterable[dict[str, Any]], pool: Pool,
             label_index: Mapping[str, int]) -> Answered:
        return cls.summarised((summary(record) for record in records), pool, label_index)

    @classmethod
    def summarised(cls, summaries: Iterable[tuple], pool: Pool,
                   label_index: Mapping[str, int]) -> Answered:
        """From ``summary`` tuples, which a store can give without parsing every record."""
        summaries = list(summaries)
        rows = np.zeros(len(pool), dtype=bool)
        latest: dict[tuple[str, int], str] = {}
        rejected: dict[int, set[int]] = {}
        unmatched = 0
        for (input_hash, sid, task, answer, first, said_not), index in zip(
                summaries, _pool_rows(pool, [s[0] for s in summaries])):
            if index is None:
                unmatched += 1
            elif said_not in label_index and answer == "reject":
                # "Not this label" (a binary answer, imported): still a row to label.
                rejected.setdefault(index, set()).add(label_index[said_not])
            else:
                rows[index] = True
            latest[(sid, task)] = (str(first) if answer == "accept" and first is not None
                                   else f"_{answer}")
        return cls(rows, latest, rejected, unmatched)


def _pool_rows(pool: Pool, hashes: list[Any]) -> list[int | None]:
    """``pool.index_of`` of each hash: at once where every hash is an int64."""
    if hashes and all(type(h) is int and -(2**63) <= h < 2**63 for h in hashes):
        return [None if i < 0 else i for i in pool.indices_of(np.array(hashes)).tolist()]
    return [pool.index_of(h) for h in hashes]


def summary(record: dict[str, Any]) -> tuple:
    """What ``Answered`` needs of a record: ``(input_hash, session id, task hash, answer, first
    accepted label or None, rejected_label of its meta or None)``."""
    accept = record.get("accept")
    meta = record.get("meta")
    return (record.get("_input_hash"), record.get("_session_id", ""), record.get("_task_hash"),
            record.get("answer"), accept[0] if isinstance(accept, list) and accept else None,
            meta.get("rejected_label") if isinstance(meta, dict) else None)
