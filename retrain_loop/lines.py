"""Where a file's lines start, found with numpy in one pass of large reads.

A pool keeps each row's byte span rather than its parsed fields (``records.py``); the spans come
from here. For CSV files the pass also counts the commas on each line, so the fields of every
line are counted without parsing them (``csvfast.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_READ = 1 << 25  # 32 MB at a time: the scan holds a few arrays of this many bytes' positions
_NL, _CR, _QUOTE, _COMMA = 10, 13, 34, 44


@dataclass
class Lines:
    """``bounds[k]:bounds[k + 1]`` is line ``k + 1``'s bytes, its line break included."""

    bounds: np.ndarray  # int64, one more than the number of lines
    text_ends: np.ndarray  # int64 per line: where its text ends, before "\n" or "\r\n"
    size: int
    lone_cr: bool  # a carriage return not followed by a newline: a line break to Python and csv
    has_quote: bool
    commas: np.ndarray | None  # commas on each line (when asked for)

    def __len__(self) -> int:
        return len(self.bounds) - 1


def scan(path: str | Path, count_commas: bool = False,
         visit: Callable[[Block], None] | None = None) -> Lines:
    """Find the lines of ``path``, reading it in blocks of whole lines; ``visit`` is called
    with each block (which needs ``count_commas``), for work that wants the bytes at hand."""
    starts, text_ends, counts = [], [], []
    offset = 0
    lone_cr = has_quote = False
    with open(path, "rb") as f:
        carry = b""
        while True:
            more = f.read(_READ)
            data = carry + more
            if not data:
                break
            cut = data.rfind(b"\n") + 1 if more else len(data)  # the rest waits for more
            if cut == 0:
                carry = data
                continue
            data, carry = data[:cut], data[cut:]
            b = np.frombuffer(data, dtype=np.uint8)
            nl = np.flatnonzero(b == _NL)
            local = np.concatenate([[0], nl + 1])[:len(nl) + (nl[-1] + 1 < len(b) if len(nl)
                                                             else 1)]
            local_ends = np.append(nl, len(b)) if len(local) > len(nl) else nl.copy()
            if data.find(b"\r") >= 0:  # bytes methods run at C speed; numpy only when needed
                crlf = local_ends > local
                crlf[crlf] = b[local_ends[crlf] - 1] == _CR
                crlf &= local_ends < len(b)  # a last line without a newline keeps its CR
                local_ends = local_ends - crlf
                lone_cr = lone_cr or data.count(b"\r") != int(crlf.sum())
            has_quote = has_quote or data.find(b'"') >= 0
            starts.append(local + offset)
            text_ends.append(local_ends + offset)
            if count_commas:
                comma = np.flatnonzero(b == _COMMA)
                first = np.searchsorted(comma, local)  # each line's first comma, by index
                counts.append(np.diff(first, append=len(comma)))
                if visit is not None:
                    visit(Block(data, offset, local, local_ends, comma, first))
            offset += len(data)
    bounds = np.concatenate([*starts, [offset]]) if starts else np.zeros(1, dtype=np.int64)
    ends = np.concatenate(text_ends) if text_ends else np.zeros(0, dtype=np.int64)
    commas = ((np.concatenate(counts) if counts else np.zeros(0, dtype=np.int64))
              if count_commas else None)
    return Lines(bounds.astype(np.int64), ends.astype(np.int64), offset, lone_cr, has_quote,
                 commas)


@dataclass
class Block:
    """Whole lines of a file: ``data`` from byte ``offset``; the lines' starts and text ends,
    the commas' positions and each line's first comma (an index into ``comma``), all local."""

    data: bytes
    offset: int
    starts: np.ndarray
    ends: np.ndarray
    comma: np.ndarray
    first: np.ndarray
