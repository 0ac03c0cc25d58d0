"""Rows to write out (``score``, ``predict``): pool rows with the model's fields, from arrays.

``ScoredRows`` holds pool indices and the arrays of what the model said about them; each row's
dict is built only as it is written, a chunk of rows at a time, so writing a million scored rows
holds a chunk of dicts rather than a million.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from .pool import Pool
from .records import CHUNK_ROWS as CHUNK


class ScoredRows(Sequence):
    """Row ``k`` is pool row ``indices[k]`` with ``score`` (if given), ``label`` and ``probs``."""

    def __init__(self, pool: Pool, indices: np.ndarray, labels: list[str], proba: np.ndarray,
                 score: np.ndarray | None = None):
        if len(indices) != len(proba) or (score is not None and len(score) != len(indices)):
            raise ValueError("indices, proba and score must have one entry per row")
        self.pool, self.labels = pool, list(labels)
        self.indices = np.asarray(indices, dtype=np.int64)
        self.proba, self.score = proba, score

    @property
    def columns(self) -> list[str]:
        """The rows' fields, in order (``probs`` is one field: a dict of each label's)."""
        extra = (["score"] if self.score is not None else []) + ["label", "probs"]
        return [c for c in self.pool.columns if c not in extra] + ["_input_hash", *extra]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: Any) -> Any:
        if isinstance(k, slice):
            return [self[j] for j in range(*k.indices(len(self)))]
        return self._row(dict(self.pool.tasks[int(self.indices[k])]), k)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        chunk = getattr(self.pool.tasks, "chunk", None)
        for a in range(0, len(self), CHUNK):
            b = min(a + CHUNK, len(self))
            index = self.indices[a:b]
            if chunk is not None and b - a > 1 and (np.diff(index) == 1).all():
                tasks = chunk(int(index[0]), int(index[-1]) + 1)  # a run of the file: one read
            else:
                tasks = [self.pool.tasks[i] for i in index.tolist()]
            for k, task in enumerate(tasks, a):
                yield self._row(dict(task), k)

    def csv_lines(self, columns: list[str]) -> Iterator[str] | None:
        """The rows as CSV lines with ``columns`` (``_spread`` order), each the file's own text
        of the row and then the model's fields; None unless the pool is a CSV file whose
        columns are all the rows' fields before ``_input_hash``. Cells keep the file's spelling
        ("0.50" stays "0.50"), and nothing is parsed."""
        tasks = self.pool.tasks
        own = [c for c in columns if c in self.pool.columns]
        if (getattr(tasks, "header", None) is None or tasks.header != self.pool.columns
                or columns[:len(own)] != tasks.header or columns[len(own)] != "_input_hash"):
            return None
        import csv
        import io

        def quoted(text: str) -> str:  # as csv.writer would spell it
            buffer = io.StringIO()
            csv.writer(buffer).writerow([text])
            return buffer.getvalue().rstrip("\r\n")

        def lines() -> Iterator[str]:
            labels = [quoted(label) for label in self.labels]
            hashes = self.pool.input_hashes
            for a in range(0, len(self), CHUNK):
                index = self.indices[a:a + CHUNK]
                proba = self.proba[a:a + CHUNK]
                best = proba.argmax(axis=1).tolist()
                score = self.score[a:a + CHUNK].tolist() if self.score is not None else None
                for k, (text, h, p) in enumerate(zip(tasks.raw(index), hashes[index].tolist(),
                                                     proba.tolist())):
                    model = f"{score[k]!r},{labels[best[k]]}" if score else labels[best[k]]
                    yield f"{text},{h},{model},{','.join(map(repr, p))}\r\n"
        return lines()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # mutable-looking and compared by value, as a list is

    def _row(self, row: dict[str, Any], k: int) -> dict[str, Any]:
        p = self.proba[k]
        if self.score is not None:
            row["score"] = float(self.score[k])
        row["label"] = self.labels[int(p.argmax())]
        row["probs"] = dict(zip(self.labels, p.tolist()))
        return row
