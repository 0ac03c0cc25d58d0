"""Pools from data in memory: a pandas DataFrame (duck-typed, so pandas is not a dependency) or
a numpy array.

A frame's index labels are the rows' ids, hashed as a pool file's ``id`` column is, so a frame
and a CSV with the same ids share their answers. Features are the numeric columns (or those
named); every other column travels with the row for display. An array's rows are numbered from
0, and its columns are ``x0``, ``x1``, ... unless named.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .hashing import stable_hash
from .pool import Pool, PoolError
from .records import Records

FRAME = Path("<DataFrame>")
ARRAY = Path("<array>")
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def is_frame(data: Any) -> bool:
    return hasattr(data, "columns") and hasattr(data, "index") and hasattr(data, "to_numpy")


def plain(value: Any) -> Any:
    """A JSON-ready Python value for display: numpy scalars unwrapped, NaN as None, other
    objects (dates, categories) as their text."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def pool_from_frame(frame: Any, features: Sequence[str] | None = None) -> Pool:
    columns = [str(c) for c in frame.columns]
    if len(set(columns)) != len(columns):
        twice = next(c for i, c in enumerate(columns) if c in columns[:i])
        raise PoolError(FRAME, None, f"column {twice!r} appears twice")
    if "id" in columns:
        raise PoolError(FRAME, None, "a column is called 'id', but a frame's rows are known by "
                        "their index: make it the index (frame.set_index('id')) or rename it")
    if not frame.index.is_unique:
        twice = frame.index[frame.index.duplicated()][0]
        raise PoolError(FRAME, None, f"index label {plain(twice)!r} repeats; each row needs "
                        "its own (frame.reset_index(drop=True) numbers them)")
    frame = frame.set_axis(columns, axis=1)
    if features is None:
        features = [c for c, kind in zip(columns, (dt.kind for dt in frame.dtypes))
                    if kind in "iuf" and not c.startswith("_")]
        if not features:
            raise PoolError(FRAME, None, "no numeric columns to use as features; name them "
                            "with features=[...]")
    missing = [f for f in features if f not in columns]
    if missing:
        raise PoolError(FRAME, None, f"no feature column {missing[0]!r}; columns are {columns}")
    try:
        X = frame[list(features)].to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise PoolError(FRAME, None, f"features must be numbers: {e}") from None
    ids = [plain(label) for label in frame.index]
    _check_finite(FRAME, X, features, ids)
    shown = [c for c in columns if c != "_input_hash"]
    return _pool(FRAME, FrameRecords(frame[shown], ids), X, list(features), ["id", *shown])


def pool_from_array(X: Any, features: Sequence[str] | None = None) -> Pool:
    X = np.asarray(X)
    if X.ndim != 2:
        raise PoolError(ARRAY, None, f"an array of rows must have two dimensions, not {X.ndim}")
    if not (np.issubdtype(X.dtype, np.number) and not np.issubdtype(X.dtype, np.complexfloating)):
        raise PoolError(ARRAY, None, f"features must be numbers, not {X.dtype}")
    features = list(features) if features is not None else [f"x{j}" for j in range(X.shape[1])]
    if len(features) != X.shape[1]:
        raise PoolError(ARRAY, None, f"{len(features)} feature names for {X.shape[1]} columns")
    X = X.astype(np.float64)
    _check_finite(ARRAY, X, features, list(range(len(X))))
    return _pool(ARRAY, ArrayRecords(X, features), X, features, ["id", *features])


def _check_finite(where: Path, X: np.ndarray, features: Sequence[str], ids: list) -> None:
    bad = ~np.isfinite(X) | (np.abs(X) > _FLOAT32_MAX)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise PoolError(where, None, f"row {ids[i]!r}: feature {features[j]!r} is "
                        f"{X[i, j]!r}; every feature must be a finite float32")


def _pool(where: Path, records: Any, X: np.ndarray, features: list[str],
          columns: list[str]) -> Pool:
    if len(records) == 0:
        raise PoolError(where, None, "no rows")
    hashes = np.array([stable_hash({"id": str(i)}) for i in records.ids], dtype=np.int64)
    records.hashes = hashes
    return Pool(where, records, np.ascontiguousarray(X, dtype=np.float32), features, "id", hashes,
                columns)


class _Records(Records):
    """Rows of data in memory, each made a display record only when asked for."""

    ids: Sequence
    hashes: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


class FrameRecords(_Records):
    def __init__(self, frame: Any, ids: list):
        self.frame, self.ids = frame, ids

    def chunk(self, a: int, b: int) -> list[dict[str, Any]]:
        rows = self.frame.iloc[a:b].to_dict("records")
        return [{"id": self.ids[k], **{c: plain(v) for c, v in row.items()},
                 "_input_hash": int(self.hashes[k])} for k, row in enumerate(rows, a)]


class ArrayRecords(_Records):
    def __init__(self, X: np.ndarray, features: list[str]):
        self.X, self.features, self.ids = X, features, range(len(X))

    def chunk(self, a: int, b: int) -> list[dict[str, Any]]:
        return [{"id": k, **dict(zip(self.features, row)), "_input_hash": int(self.hashes[k])}
                for k, row in enumerate(self.X[a:b].tolist(), a)]
