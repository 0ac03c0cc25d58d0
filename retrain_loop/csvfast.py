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
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .hashing import _JS_SAFE_BITS, stable_hash
from .lines import Block, Lines, scan

# A line this long may hold a field longer than a task may carry; the exact reader says which.
LONG_LINE = 100_000
# Ids that json.dumps spells as themselves between quotes (printable ASCII but " and \).
_PLAIN_ID = re.compile(rb"[\x20\x21\x23-\x5b\x5d-\x7e\n]*")  # \n: between ids
# An id of spaces only (what str.strip() leaves empty, among plain ids), joined by line breaks.
_BLANK_ID = re.compile(rb"(?:^|\n) *(?:\n|$)")


def read(path: Path, id_column: str | None, resolve) -> tuple[dict[str, Any] | None, Lines]:
    """The parts of a pool (X, features, id column, hashes, spans, header), or None; and the
    file's lines, which the exact reader needs too.

    ``resolve(where, header, first_row)`` picks the id column and features as the exact reader
    does.
    """
    plan = _plan(path, resolve)
    hasher = IdHasher(plan[0].index(plan[2]), len(plan[0])) if plan else None
    X = _columns(path, plan[1]) if plan else None
    # One thread: pandas in a second one was no faster on 2 cores (GIL and cores contended).
    lines = scan(path, count_commas=True, visit=hasher if X is not None else None)
    if X is None or lines.lone_cr or lines.has_quote:
        return None, lines
    header, feats, id_col = plan
    bounds, commas, text_end = lines.bounds, lines.commas, lines.text_ends
    nonblank = np.flatnonzero(text_end > bounds[:-1])
    data = nonblank[1:]
    if (len(data) != len(X) or (np.diff(bounds) > LONG_LINE).any()
            or (commas[data] + 1 != len(header)).any()):
        return None, lines
    hashes = hasher.hashes()
    if hashes is None or len(hashes) != len(X):
        return None, lines
    return {"X": X, "features": feats, "id_column": id_col, "hashes": hashes,
            "starts": bounds[data], "ends": text_end[data], "header": header}, lines


def _plan(path: Path, resolve) -> tuple[list[str], list[str], str] | None:
    """The header, features and id column from the file's first two rows, when those are
    plain; None sends the file to the exact reader."""
    with open(path, "rb") as f:
        head = f.read(2 * LONG_LINE)
    if b'"' in head:
        return None
    rows = []
    for number, raw in enumerate(head.split(b"\n")[:-1], 1):  # whole lines only
        line = raw[:-1] if raw.endswith(b"\r") else raw
        if b"\r" in line:
            return None
        if line:
            rows.append((number, line.decode("utf-8")))
        if len(rows) == 2:
            break
    if len(rows) < 2:
        return None
    (header_line, text), (_, first) = rows
    header = next(csv.reader([text.removeprefix("\ufeff")]))
    fields = next(csv.reader([first]))
    if len(set(header)) != len(header) or len(fields) != len(header):
        return None
    try:
        id_col, feats = resolve(header_line, header, dict(zip(header, fields)))
    except ValueError:  # a PoolError: the exact reader raises it, with everything it knows
        return None
    if id_col is None or id_col in feats:
        return None
    return header, feats, id_col


def _columns(path: Path, feats: list[str]) -> np.ndarray | None:
    import pandas as pd

    dtype = {name: np.float32 for name in feats}  # the ids come from the lines' own bytes
    try:
        with warnings.catch_warnings():  # a cell beyond float32 casts to inf, checked below
            warnings.simplefilter("ignore", RuntimeWarning)
            frame = pd.read_csv(path, usecols=feats, dtype=dtype, encoding="utf-8-sig",
                                engine="c", na_filter=False, skip_blank_lines=True)
    except (ValueError, OverflowError, pd.errors.ParserError):  # a cell that is no number
        return None
    X = np.ascontiguousarray(frame[feats].to_numpy(dtype=np.float32))  # rows, as models read
    if not np.isfinite(X).all():  # NaN, inf, or beyond float32
        return None
    return X


class IdHasher:
    """Hashes each data row's id from the bytes of a block of lines (``lines.scan``'s visitor):
    ``stable_hash({"id": id})``, the hash an id has had in every pool before."""

    def __init__(self, column: int, n_columns: int):
        self.column, self.last = column, column == n_columns - 1
        self.parts: list[np.ndarray] = []
        self.header_seen = False
        self.failed = False  # an empty id, or one that is not UTF-8: the exact reader says which

    def __call__(self, block: Block) -> None:
        if self.failed:
            return
        keep = block.ends > block.starts  # not blank
        if not self.header_seen and keep.any():
            keep[np.flatnonzero(keep)[0]] = False
            self.header_seen = True
        first, comma, k = block.first[keep], block.comma, self.column
        top = max(len(comma) - 1, 0)
        if not len(comma):  # one column, or wrong rows the field count turns away
            begin, end = block.starts[keep], block.ends[keep]
        else:
            begin = block.starts[keep] if k == 0 else comma[np.minimum(first + k - 1, top)] + 1
            end = block.ends[keep] if self.last else comma[np.minimum(first + k, top)]
        data = block.data
        ids = [data[i:j] for i, j in zip(begin.tolist(), end.tolist())]
        joined = b"\n".join(ids)
        if joined.isascii() and _PLAIN_ID.fullmatch(joined) and not _BLANK_ID.search(joined):
            blake = hashlib.blake2b  # json.dumps would spell each id as itself: no Python per id
            digest = b"".join([blake(b'{"id":"%s"}' % i, digest_size=8).digest() for i in ids])
            hashes = (np.frombuffer(digest, ">u8") >> np.uint64(64 - _JS_SAFE_BITS))
            self.parts.append(hashes.astype(np.int64))
            return
        try:
            texts = [i.decode("utf-8") for i in ids]
        except UnicodeDecodeError:
            self.failed = True
            return
        if any(not t.strip() for t in texts):
            self.failed = True
            return
        self.parts.append(np.array([stable_hash({"id": t}) for t in texts], dtype=np.int64))

    def hashes(self) -> np.ndarray | None:
        """Every data row's hash, or None for an empty, undecodable or repeated id."""
        if self.failed:
            return None
        hashes = np.concatenate(self.parts) if self.parts else np.zeros(0, dtype=np.int64)
        ordered = np.sort(hashes)
        if (ordered[1:] == ordered[:-1]).any():  # a repeated id: the exact reader says where
            return None
        return hashes
