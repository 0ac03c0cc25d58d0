"""Parquet pools in and scored rows out, with pyarrow (the ``parquet`` extra).

A Parquet file is columns already: features come straight out of its numeric columns as float32,
ids are hashed as a CSV's are (so the same rows share their answers whichever file they come
from), and the table stays in Arrow memory, from which a row's record is built when asked for.
Parquet has no lines, so a bad value is named by its row (1 for the first).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from .frame import _FLOAT32_MAX, plain
from .hashing import stable_hash
from .pool import Pool, PoolError
from .records import RESERVED, Records

NEEDS = "reading and writing Parquet needs pyarrow: pip install 'retrain-loop[parquet]'"
WRITE_CHUNK = 65_536


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return None, None
    return pa, pq


class ArrowRecords(Records):
    """The display records of an Arrow table's rows, built from the table when asked for."""

    def __init__(self, table: Any, hashes: np.ndarray):
        self.table, self.hashes = table, hashes

    def __len__(self) -> int:
        return self.table.num_rows

    def chunk(self, a: int, b: int) -> list[dict[str, Any]]:
        rows = self.table.slice(a, b - a).to_pylist()
        return [_display(row) | {"_input_hash": int(h)}
                for row, h in zip(rows, self.hashes[a:b].tolist())]


def _display(row: dict[str, Any]) -> dict[str, Any]:
    return {k: plain(v) for k, v in row.items() if k not in RESERVED}


def load_parquet(path: Path, features: list[str] | None, id_column: str | None,
                 exclude: tuple[str, ...] = ()) -> Pool:
    pa, pq = _pyarrow()
    if pa is None:
        raise PoolError(path, None, NEEDS)
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        raise PoolError(path, None, f"cannot read Parquet: {e}") from None
    names = table.column_names
    if len(set(names)) != len(names):
        twice = next(c for i, c in enumerate(names) if c in names[:i])
        raise PoolError(path, None, f"column {twice!r} appears twice")
    if table.num_rows == 0:
        raise PoolError(path, None, "no rows")
    id_col = _id_column(path, names, id_column)
    feats = _features(path, table, features, id_col, exclude)
    X = _matrix(path, table, feats)
    hashes = (_id_hashes(path, table, id_col) if id_col is not None
              else _content_hashes(table))
    return Pool(path, ArrowRecords(table, hashes), X, feats, id_col, hashes,
                [c for c in names if c not in RESERVED])


def _id_column(path: Path, names: list[str], id_column: str | None) -> str | None:
    if id_column is not None and id_column in names:
        return id_column
    if id_column is not None and id_column != "id":
        raise PoolError(path, None, f"id column {id_column!r} not found; columns are {names}")
    return None


def _is_number(pa: Any, kind: Any) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind)


def _features(path, table, features, id_col, exclude) -> list[str]:
    pa, _ = _pyarrow()
    names = table.column_names
    if features is not None:
        if isinstance(features, str) or not features or len(set(features)) != len(features):
            raise PoolError(path, None, f"features must be distinct column names, got {features!r}")
        for name in features:
            if name not in names:
                raise PoolError(path, None, f"missing feature column {name!r}")
            if not _is_number(pa, table.schema.field(name).type):
                raise PoolError(path, None, f"feature {name!r} is not a number column "
                                f"({table.schema.field(name).type})")
        return list(features)
    feats = [c for c in names if c and c != id_col and c not in exclude and not c.startswith("_")
             and _is_number(pa, table.schema.field(c).type)]
    if not feats:
        raise PoolError(path, None, "no numeric columns to use as features; pass --features to "
                        "name them")
    return feats


def _matrix(path: Path, table: Any, feats: list[str]) -> np.ndarray:
    X = np.empty((table.num_rows, len(feats)), dtype=np.float32)
    for j, name in enumerate(feats):
        column = table.column(name)
        if column.null_count:
            row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0]) + 1
            raise PoolError(path, None, f"row {row}: feature {name!r} is missing")
        values = column.to_numpy().astype(np.float64, copy=False)
        bad = ~np.isfinite(values) | (np.abs(values) > _FLOAT32_MAX)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise PoolError(path, None, f"row {row + 1}: feature {name!r} is {float(values[row])!r}; "
                            "every feature must be a finite float32")
        X[:, j] = values
    return X


def _id_hashes(path: Path, table: Any, id_col: str) -> np.ndarray:
    pa, _ = _pyarrow()
    column = table.column(id_col)
    kind = column.type
    if not (pa.types.is_integer(kind) or pa.types.is_string(kind)
            or pa.types.is_large_string(kind)):
        raise PoolError(path, None, f"id column {id_col!r} must hold strings or integers, "
                        f"not {kind}")
    ids = column.to_pylist()
    seen: dict[str, int] = {}
    hashes = np.empty(len(ids), dtype=np.int64)
    for k, value in enumerate(ids):
        if value is None or (isinstance(value, str) and not value.strip()):
            raise PoolError(path, None, f"row {k + 1}: {'missing' if value is None else 'empty'} "
                            f"id in column {id_col!r}")
        text = str(value)
        if text in seen:
            raise PoolError(path, None, f"row {k + 1}: duplicate id {text!r} (first seen in row "
                            f"{seen[text] + 1})")
        seen[text] = k
        hashes[k] = stable_hash({"id": text})
    return hashes


def _content_hashes(table: Any) -> np.ndarray:
    """A row without an id is known by its record, as a CSV's is; repeats are numbered."""
    hashes = np.empty(table.num_rows, dtype=np.int64)
    repeats: dict[int, int] = {}
    for k, row in enumerate(ArrowRecords(table, np.zeros(table.num_rows, np.int64))):
        row.pop("_input_hash")
        h = stable_hash(row)
        n = repeats[h] = repeats.get(h, 0) + 1
        hashes[k] = h if n < 2 else stable_hash({"row": row, "repeat": n})
    return hashes


def write_parquet(path: Path, rows: Iterable[dict[str, Any]], *, on_row=None) -> int:
    """Write rows (dicts with the same fields) to a Parquet file, a chunk at a time."""
    pa, pq = _pyarrow()
    if pa is None:
        raise OSError(NEEDS)
    writer = None
    n = 0
    chunk: list[dict[str, Any]] = []

    def flush() -> None:
        nonlocal writer
        table = pa.Table.from_pylist(chunk, schema=writer.schema if writer else None)
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
        chunk.clear()

    try:
        for row in rows:
            chunk.append(row)
            n += 1
            if on_row is not None:
                on_row()
            if len(chunk) >= WRITE_CHUNK:
                flush()
        if chunk or writer is None:
            flush()
    finally:
        if writer is not None:
            writer.close()
    return n
