"""Where a file's lines start, found with numpy in one pass of large reads.

A pool keeps each row's byte span rather than its parsed fields (``records.py``); the spans come
from here. For CSV files the pass also counts the commas before each line, so the fields of every
line are counted without parsing them (``csvfast.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

_READ = 1 << 26  # 64 MB at a time: the scan holds a few arrays of this many bytes' positions
_NL, _CR, _QUOTE, _COMMA = 10, 13, 34, 44


@dataclass
class Lines:
    """``bounds[k]:bounds[k + 1]`` is line ``k + 1``'s bytes, its line break included."""

    bounds: np.ndarray  # int64, one more than the number of lines
    text_ends: np.ndarray  # int64 per line: where its text ends, before "\n" or "\r\n"
    size: int
    lone_cr: bool  # a carriage return not followed by a newline: a line break to Python and csv
    has_quote: bool
    commas: np.ndarray | None  # commas before each bound (when asked for)

    def __len__(self) -> int:
        return len(self.bounds) - 1


def scan(path: str | Path, count_commas: bool = False) -> Lines:
    starts, commas_at = [np.zeros(1, dtype=np.int64)], [np.zeros(1, dtype=np.int64)]
    text_ends = []
    offset = n_commas = 0
    lone_cr = has_quote = False
    last = -1  # the byte before this read
    with open(path, "rb") as f:
        while True:
            data = f.read(_READ)
            if not data:
                break
            b = np.frombuffer(data, dtype=np.uint8)
            nl = np.flatnonzero(b == _NL)
            ends = nl.astype(np.int64) + (offset + 1)
            starts.append(ends)
            before = np.empty(len(nl), dtype=np.uint8)  # the byte before each newline
            before[nl > 0] = b[nl[nl > 0] - 1]
            before[nl == 0] = last if last >= 0 else 0
            text_ends.append(ends - 1 - (before == _CR))
            if not lone_cr:
                cr = np.flatnonzero(b == _CR)
                if len(cr):
                    after = cr + 1
                    inside = after < len(b)
                    followed = np.zeros(len(cr), dtype=bool)
                    followed[inside] = b[after[inside]] == _NL
                    followed[~inside] = True  # decided by the next read
                    lone_cr = not followed.all()
                if last == _CR and b[0] != _NL:
                    lone_cr = True
            has_quote = has_quote or bool((b == _QUOTE).any())
            if count_commas:
                comma = np.flatnonzero(b == _COMMA)
                commas_at.append(np.searchsorted(comma, nl + 1) + n_commas)
                n_commas += len(comma)
            last = int(b[-1])
            offset += len(b)
    if last == _CR:
        lone_cr = True
    bounds = np.concatenate(starts)
    if offset and last != _NL:  # a last line without a line break
        bounds = np.append(bounds, offset)
        text_ends.append(np.array([offset], dtype=np.int64))
        commas_at.append(np.array([n_commas], dtype=np.int64))
    ends = np.concatenate(text_ends) if text_ends else np.zeros(0, dtype=np.int64)
    return Lines(bounds, ends, offset, lone_cr, has_quote,
                 np.concatenate(commas_at) if count_commas else None)
