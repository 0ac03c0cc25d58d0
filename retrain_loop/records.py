"""A pool's display records, built from the file only for the rows that are served or written.

A pool keeps its features as a float32 matrix and each row's place in its file as two byte
offsets. The record a row is shown as (its fields, with numbers spelt as JSON would) is parsed
again from those bytes when it is needed, so a million-row pool holds 16 bytes per row for it
instead of a dict. ``display`` is the one function that turns a parsed row into its record, at
load (for the hash of a row without an id) and here alike.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import threading
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

# The server writes these itself; a stale copy in the file would shadow the real value.
RESERVED = frozenset({"_input_hash", "_task_hash"})
# JSON's own number grammar: a CSV cell is shown as a number only when JSON would have spelt it
# that way, so "007", "+5", " 5" and "nan" keep their spelling and CSV and JSONL display alike.
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_BOM = "\ufeff"
CHUNK_ROWS = 4096  # rows read from the file at once when iterating


def csv_cell(text: str) -> Any:
    """A CSV cell as it is shown: a number when JSON would spell it so, else the text."""
    match = _JSON_NUMBER.fullmatch(text)
    if match is None:
        return text
    try:
        x = float(text) if match.lastindex else int(text)  # a fraction or exponent group matched
    except ValueError:  # digit strings beyond Python's int-conversion limit stay text
        return text
    return x if x - x == 0 else text  # "1e999" is inf; x - x also copes with ints too big for float


def display(cells: dict[str, Any], is_csv: bool) -> dict[str, Any]:
    """The record a parsed row is shown as, without the server's own keys."""
    if is_csv:
        return {k: csv_cell(v) for k, v in cells.items() if k not in RESERVED}
    return {k: v for k, v in cells.items() if k not in RESERVED}


class Records(Sequence):
    """Display records built a chunk at a time: a subclass gives ``__len__`` and
    ``chunk(a, b)`` (rows ``a`` to ``b``, exclusive); indexing and iteration come from those."""

    def chunk(self, a: int, b: int) -> list[dict[str, Any]]:
        raise NotImplementedError

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        n = len(self)
        if not -n <= i < n:
            raise IndexError(i)
        return self.chunk(i % n, i % n + 1)[0]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for a in range(0, len(self), CHUNK_ROWS):
            yield from self.chunk(a, min(a + CHUNK_ROWS, len(self)))


class FileRecords(Records):
    """The display records of a pool file's rows, read back from their byte spans on demand.

    ``starts[i]:ends[i]`` are the bytes of row ``i``; ``header`` is a CSV file's column names
    (None for JSONL). The file stays open from the load, so a file replaced by an editor (a new
    file under the old name) still reads as it was; one changed in place is an error, never
    another row's fields.
    """

    def __init__(self, path: Path, starts: np.ndarray, ends: np.ndarray,
                 header: list[str] | None, hashes: np.ndarray):
        self.path = path
        self.starts, self.ends = starts, ends
        self.header = header
        self.hashes = hashes
        self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        self._stat = _identity(os.fstat(self._fd))
        self._lock = threading.Lock()  # pread is thread-safe; the check and read go together
        weakref.finalize(self, os.close, self._fd)

    def __len__(self) -> int:
        return len(self.starts)

    def chunk(self, a: int, b: int) -> list[dict[str, Any]]:
        """Rows ``a`` to ``b`` (exclusive), read with one system call."""
        if a >= b:
            return []
        base = int(self.starts[a])
        data = self._read(base, int(self.ends[b - 1]))
        return [self._parse(data[int(s) - base:int(e) - base], a + k)
                for k, (s, e) in enumerate(zip(self.starts[a:b], self.ends[a:b]))]

    def raw(self, rows: list[int]) -> list[str]:
        """The rows' text as the file spells it, without line breaks."""
        with self._lock:
            self._check()
            texts = [os.pread(self._fd, e - s, s).decode("utf-8")
                     for s, e in zip(self.starts[rows].tolist(), self.ends[rows].tolist())]
        return [t[1:] if t.startswith(_BOM) else t for t in texts]

    def _read(self, start: int, end: int) -> bytes:
        with self._lock:
            self._check()
            return os.pread(self._fd, end - start, start)

    def _check(self) -> None:
        if _identity(os.fstat(self._fd)) != self._stat:
            from .pool import PoolError
            raise PoolError(self.path, None, "the file changed after it was loaded; restart "
                            "to load it again")

    def _parse(self, data: bytes, i: int) -> dict[str, Any]:
        text = data.decode("utf-8")
        if text.startswith(_BOM):
            text = text[1:]
        if self.header is None:
            record = display(json.loads(text), is_csv=False)
        else:
            fields = next(csv.reader(io.StringIO(text, newline="")))
            record = display(dict(zip(self.header, fields)), is_csv=True)
        record["_input_hash"] = int(self.hashes[i])
        return record

    def __getstate__(self) -> dict[str, Any]:  # a pickled pool reads the file again by name
        return {k: v for k, v in self.__dict__.items() if k not in ("_fd", "_lock")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        self._lock = threading.Lock()
        weakref.finalize(self, os.close, self._fd)


def _identity(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_size, st.st_mtime_ns, st.st_ino
