"""``db-in`` like Prodigy's: answers from a JSONL file made into records the engine can use.

What an imported record may lack, and what it gets:

- **No hashes.** ``_input_hash`` is computed as retrain-loop's pool computes it: from the row's id
  (``{"id": "<id>"}``) when the record has an ``id`` (or the pool's id column), else from the
  row's fields (everything but the answer's own keys and keys starting with ``_``; a record our
  recipe saved keeps them under ``fields``). ``_task_hash`` is computed from that and the ids of
  the record's ``options`` (or the project's labels, or the record's ``label``).
- **A pool to match.** With ``pool``, every record is matched to a row by its id or, failing
  that, by the values of the pool's columns, and takes that row's hashes, so answers saved by
  Prodigy (whose hashes are its own) count. The record's own hash stays in
  ``meta.imported_input_hash``. Records that match no row are imported all the same, and counted.
- **A binary answer** about a suggested ``label`` (what Prodigy's teach recipes save): an
  accepted one is that label (``accept: [label]``); a rejected one is kept as a reject naming the
  label in ``meta.rejected_label``. Its row is still to be labelled, and the engine never
  predicts or ranks it as that label (``strategies.exclude_labels``).
- ``accept`` must be a list of labels: ``"accept": "red"`` is refused with its line.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from .hashing import stable_hash, task_hash
from .pool import Pool
from .store import AnnotationStore, StoreError, check_record, session_id

# Keys of an answer that are not the row's own fields.
ANSWER_KEYS = frozenset({"answer", "accept", "reject", "options", "meta", "label", "html",
                         "config", "spans", "tokens", "fields", "flagged"})


class AnswerImportError(StoreError):
    """A record that cannot be imported; the message names the file and line."""


def import_file(store: AnnotationStore, dataset: str, path: str | Path, *,
                pool: Pool | None = None, labels: list[str] | None = None,
                session: str = "import") -> tuple[int, Counter]:
    """Import a JSONL file of answers; returns how many were new and what was done to them."""
    path = Path(path)
    report: Counter = Counter()
    rows = _rows(pool) if pool is not None else None
    records = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                eg = json.loads(line)
            except json.JSONDecodeError as e:
                raise AnswerImportError(f"{path}:{lineno}: invalid JSON: {e.msg}") from None
            if not isinstance(eg, dict):
                raise AnswerImportError(f"{path}:{lineno}: expected a JSON object")
            try:
                record = normalize(eg, dataset, pool, rows, labels, session, report)
                check_record(dataset, record)
                records.append(record)
            except StoreError as e:
                raise AnswerImportError(f"{path}:{lineno}: {e}") from None
    report["records"] = len(records)
    return store.add(dataset, records), report


def normalize(eg: dict[str, Any], dataset: str, pool: Pool | None,
              rows: tuple[dict, dict] | None, labels: list[str] | None, session: str,
              report: Counter) -> dict[str, Any]:
    eg = dict(eg)
    meta = dict(eg["meta"]) if isinstance(eg.get("meta"), dict) else {}
    for key in ("_input_hash", "_task_hash"):
        if key in eg and (not isinstance(eg[key], int) or isinstance(eg[key], bool)):
            raise StoreError(f"{key} must be an integer, got {eg[key]!r}")
    if "accept" in eg and not isinstance(eg["accept"], list):
        raise StoreError(f"accept must be a list of labels, got {eg['accept']!r}")
    label = eg.get("label")
    if not eg.get("accept") and isinstance(label, str) and eg.get("answer") in ("accept", "reject"):
        if eg["answer"] == "accept":
            eg["accept"] = [label]
            report["binary accepted"] += 1
        else:
            meta["rejected_label"] = label
            report["binary rejected"] += 1
    if not eg.get("_session_id"):  # older Prodigy exports carry "_session_id": null
        eg["_session_id"] = session_id(dataset, session)
    fields = eg["fields"] if isinstance(eg.get("fields"), dict) else {
        k: v for k, v in eg.items() if not k.startswith("_") and k not in ANSWER_KEYS}
    options = [o.get("id") for o in eg.get("options") or [] if isinstance(o, dict)]
    asked = [o for o in options if isinstance(o, str)] or labels or (
        [label] if isinstance(label, str) else [])
    index = _match(eg, fields, pool, rows, report) if pool is not None else None
    if index is not None:
        if "_input_hash" in eg and eg["_input_hash"] != int(pool.input_hashes[index]):
            meta["imported_input_hash"] = eg["_input_hash"]
        eg["_input_hash"] = int(pool.input_hashes[index])
        eg["_task_hash"] = task_hash(eg["_input_hash"], asked)
    elif "_input_hash" not in eg:
        row_id = fields.get(pool.id_column if pool and pool.id_column else "id")
        eg["_input_hash"] = (stable_hash({"id": str(row_id)}) if row_id is not None
                             else stable_hash(fields))
        report["hashes computed"] += 1
    if "_task_hash" not in eg:
        eg["_task_hash"] = task_hash(eg["_input_hash"], asked)
    if meta or "meta" in eg:
        eg["meta"] = meta
    return eg


def _rows(pool: Pool) -> tuple[dict, dict]:
    """The pool's rows by id and by the values of its columns."""
    by_id = ({str(t[pool.id_column]): i for i, t in enumerate(pool.tasks)}
             if pool.id_column else {})
    columns = _content_columns(pool)
    by_content = {stable_hash({c: t.get(c) for c in columns}): i
                  for i, t in enumerate(pool.tasks)}
    return by_id, by_content


def _content_columns(pool: Pool) -> list[str]:
    """The columns that say what a row is, when its id does not: all but the id."""
    return [c for c in pool.tasks[0] if c not in ("_input_hash", pool.id_column)]


def _match(eg: dict[str, Any], fields: dict[str, Any], pool: Pool, rows: tuple[dict, dict],
           report: Counter) -> int | None:
    by_id, by_content = rows
    index = pool.index_of(eg["_input_hash"]) if isinstance(eg.get("_input_hash"), int) else None
    if index is not None:
        report["matched by hash"] += 1
        return index
    if pool.id_column and fields.get(pool.id_column) is not None:
        index = by_id.get(str(fields[pool.id_column]))
        if index is not None:
            report["matched by id"] += 1
            return index
    columns = _content_columns(pool)
    index = by_content.get(stable_hash({c: fields.get(c) for c in columns}))
    report["matched by content" if index is not None else "matching no pool row"] += 1
    return index
