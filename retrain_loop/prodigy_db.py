"""The engine's store interface over Prodigy's database.

Inside Prodigy, Prodigy saves every answer itself, so this store never writes to its database.
It reads the dataset with ``get_dataset_examples`` (``get_dataset`` on older versions) and adds
the answers handed to ``update``, which may not be in the database yet when ``update`` runs.
The two are merged by ``_task_hash``, the later record winning. Nothing here imports Prodigy:
``db`` is whatever ``prodigy.components.db.connect()`` returned.
"""

from __future__ import annotations

import threading
from typing import Any

from .estimate import AUDIT
from .store import ANSWERS, StoreError


class ProdigyStore:
    def __init__(self, db: Any):
        self.db = db
        self._pending: dict[str, dict[int, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def _read(self, dataset: str) -> list[dict[str, Any]]:
        # On a first run the recipe reads before Prodigy has made the dataset, and what a read
        # of a missing dataset does (an empty list, None, or which error) differs between
        # versions and databases. ``name in db`` is the documented test; an error reading a
        # dataset that exists is a real failure and is raised.
        if dataset not in self.db:
            return []
        reader = getattr(self.db, "get_dataset_examples", None) or self.db.get_dataset
        return list(reader(dataset) or [])

    def add(self, dataset: str, examples: list[dict[str, Any]]) -> int:
        """Remember answers handed to ``update``; returns how many this store had not been given.

        Prodigy may already have saved them, so "new" means new to the engine, which must then
        refit, not new to the database.
        """
        for eg in examples:
            if not isinstance(eg.get("_task_hash"), int) or eg.get("answer") not in ANSWERS:
                raise StoreError("an answer needs an integer _task_hash and a valid answer")
        new = 0
        with self._lock:
            pending = self._pending.setdefault(dataset, {})
            for eg in examples:
                before = pending.get(eg["_task_hash"])
                if before is None or _verdict(before) != _verdict(eg):
                    new += 1
                pending[eg["_task_hash"]] = eg
        return new

    def get(self, dataset: str) -> list[dict[str, Any]]:
        merged = {eg.get("_task_hash"): eg for eg in self._read(dataset)}
        with self._lock:
            pending = dict(self._pending.get(dataset, {}))
        merged.update(pending)
        return list(merged.values())

    def labelled(self, dataset: str) -> list[tuple[int, str]]:
        out = []
        for eg in self.get(dataset):
            accept = eg.get("accept") or []
            if eg.get("answer") == "accept" and len(accept) == 1 and isinstance(accept[0], str):
                out.append((eg.get("_input_hash"), accept[0]))
        return out

    def audited(self, dataset: str) -> list[dict[str, Any]]:
        return [eg for eg in self.get(dataset)
                if isinstance(eg.get("meta"), dict) and eg["meta"].get("source") == AUDIT]

    def find(self, dataset: str, session: str, task_hash: int) -> dict[str, Any] | None:
        # Prodigy keeps one answer per task in a dataset here, whatever the session.
        return next((eg for eg in self.get(dataset) if eg.get("_task_hash") == task_hash), None)


def _verdict(eg: dict[str, Any]) -> tuple:
    return eg.get("answer"), tuple(eg.get("accept") or ())
