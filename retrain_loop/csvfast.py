"""The fast way to read a clean CSV pool: features by pandas straight into float32, ids hashed in
bulk, every line's fields counted with numpy, and no Python per cell.

``read`` returns the pool's parts, or None whenever the file is anything but plain: quoted
fields, carriage returns on their own, a row with the wrong number of fields, a cell that is not
a finite float32, an empty or repeated id, a very long line, no id column. The exact reader in
``pool.py`` then reads it row by row and says precisely what is wrong, and where. Both give the
same features, hashes and records for any file this one accepts (``tests/test_pool_fast.py``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .hashing import _JS_SAFE_BITS, stable_hash
from .lines import Lines

# A line this long may hold a field longer than a task may carry; the exact reader says which.
LONG_LINE = 100_000
# Ids that json.dumps spells as themselves between quotes (printable ASCII but " and \).
_PLAIN_ID = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e\n]*")  # \n: between ids
# An id that str.strip() leaves empty, among ids joined by line breaks (ASCII whitespace only;
# other ids are stripped one by one).
_BLANK_ID = re.compile(r"(?:^|\n)[ \t\r\x0b\x0c\x1c-\x1f]*(?:\n|$)")


def read(path: Path, lines: Lines, id_column: str | None, resolve) -> dict[str, Any] | None:
    """The parts of a pool (X, features, id column, hashes, spans, header), or None.

    ``resolve(where, header, first_row)`` picks the id column and features as the exact reader
    does, raising its errors.
    """
    if lines.lone_cr or lines.has_quote or lines.commas is None or len(lines) < 2:
        return None
    bounds, commas, text_end = lines.bounds, lines.commas, lines.text_ends
    length = np.diff(bounds)
    blank = text_end <= bounds[:-1]
    nonblank = np.flatnonzero(~blank)
    if len(nonblank) < 2 or (length > LONG_LINE).any():
        return None
    header_k = int(nonblank[0])
    header = _fields(path, bounds, header_k)
    if len(set(header)) != len(header):
        return None
    data = nonblank[1:]
    n_fields = commas[data + 1] - commas[data] + 1
    if (n_fields != len(header)).any():
        return None
    first = dict(zip(header, _fields(path, bounds, int(data[0]))))
    id_col, feats = resolve(header_k + 1, header, first)
    if id_col is None or id_col in feats:
        return None
    X, ids = _columns(path, feats, id_col, len(data))
    if X is None:
        return None
    hashes = _id_hashes(ids)
    if hashes is None:
        return None
    return {"X": X, "features": feats, "id_column": id_col, "hashes": hashes,
            "starts": bounds[data], "ends": text_end[data], "header": header}


def _fields(path: Path, bounds: np.ndarray, k: int) -> list[str]:
    with open(path, "rb") as f:
        f.seek(int(bounds[k]))
        text = f.read(int(bounds[k + 1] - bounds[k])).decode("utf-8")
    return next(csv.reader(io.StringIO(text.lstrip("\ufeff") if k == 0 else text,
                                       newline="")))


def _columns(path: Path, feats: list[str], id_col: str, n_rows: int
             ) -> tuple[np.ndarray | None, np.ndarray | None]:
    import pandas as pd

    dtype = {name: np.float32 for name in feats} | {id_col: object}
    try:
        with warnings.catch_warnings():  # a cell beyond float32 casts to inf, checked below
            warnings.simplefilter("ignore", RuntimeWarning)
            frame = pd.read_csv(path, usecols=[*feats, id_col], dtype=dtype, encoding="utf-8-sig",
                                engine="c", na_filter=False, skip_blank_lines=True)
    except (ValueError, OverflowError, pd.errors.ParserError):  # a cell that is no number
        return None, None
    if len(frame) != n_rows:
        return None, None
    X = np.ascontiguousarray(frame[feats].to_numpy(dtype=np.float32))
    if not np.isfinite(X).all():  # NaN, inf, or beyond float32
        return None, None
    return X, frame[id_col].to_numpy(dtype=object)


def _id_hashes(ids: np.ndarray) -> np.ndarray | None:
    """``hashing.stable_hash({"id": id})`` of each id, or None for an empty or repeated id."""
    joined = "\n".join(ids)  # no id holds a line break: the file has no quoted fields
    if _BLANK_ID.search(joined):
        return None
    if joined.isascii() and _PLAIN_ID.fullmatch(joined):  # json.dumps would add nothing
        blake = hashlib.blake2b
        digest = b"".join([blake(b'{"id":"%s"}' % s.encode(), digest_size=8).digest()
                           for s in ids])
        hashes = (np.frombuffer(digest, ">u8") >> np.uint64(64 - _JS_SAFE_BITS)).astype(np.int64)
    elif any(not s.strip() for s in ids):
        return None
    else:
        hashes = np.array([stable_hash({"id": s}) for s in ids], dtype=np.int64)
    ordered = np.sort(hashes)
    if (ordered[1:] == ordered[:-1]).any():  # a repeated id: the exact reader says where
        return None
    return hashes
