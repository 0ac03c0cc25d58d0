"""The tally: what the answers so far say, kept in memory beside the store.

Each session's latest outcome per task (what the stats count), the labels rows were said not
to have (a rejected binary suggestion: those rows stay to label, never as that label), and how
many stored answers match no row of the pool. It is filled from the store when an engine
starts (``answers.Answered``) and kept up to date as answers arrive; it is safe to use from
several threads.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from typing import Any

from .answers import Answered, outcome


class Tally:
    def __init__(self, label_index: Mapping[str, int]):
        self.label_index = label_index
        self._lock = threading.Lock()
        self._outcomes: dict[tuple[str, int], str] = {}  # (session id, task hash) -> outcome
        self._rejected: dict[int, set[int]] = {}  # row -> label indices it is not
        self.n_unmatched = 0

    def take(self, answered: Answered, replace: bool = False) -> None:
        """Take in what the stored answers say; ``replace``: they are all there is (an answer
        was deleted), not only what is new."""
        with self._lock:
            self._rejected = answered.rejected
            if replace:
                self._outcomes = dict(answered.latest)
            else:
                self._outcomes.update(answered.latest)
            self.n_unmatched = answered.unmatched

    def add(self, sid: str, checked: list[tuple[int, dict[str, Any]]]) -> dict[int, str]:
        """Count stored records of session ``sid`` (``(row, record)`` pairs); returns the rows
        whose suggested label was rejected, with that label."""
        said_not = {index: record["meta"]["rejected_label"] for index, record in checked
                    if record["answer"] == "reject" and "rejected_label" in record["meta"]}
        with self._lock:
            for _, record in checked:
                self._outcomes[(sid, record["_task_hash"])] = outcome(record)
            for index, label in said_not.items():
                if label in self.label_index:
                    self._rejected.setdefault(index, set()).add(self.label_index[label])
        return said_not

    def rejected(self) -> dict[int, set[int]]:
        """A copy of row -> label indices it was said not to be."""
        with self._lock:
            return {row: set(labels) for row, labels in self._rejected.items()}

    def outcomes(self) -> Counter:
        """How many tasks have each latest outcome: a label, ``_reject`` or ``_ignore``."""
        with self._lock:
            return Counter(self._outcomes.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._outcomes)
