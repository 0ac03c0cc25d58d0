"""The round history: what every refit changed, how good the model is, and whether to stop.

After each refit the engine hands over the new model's predictions for the stop set; this
module compares them with the previous round's (Cohen's kappa), recomputes the audit estimate,
applies the stop rule and appends one entry to the history. The entries, the stop set and the
latest stop-set predictions are kept in the store, so a restarted server goes on from where it
was: the same stop set, the same round numbers, and a kappa against the round before the restart.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from .estimate import DEFAULT_WINDOW, estimate
from .models import label_probabilities
from .pool import Pool
from .stopping import StopRule, choose_stop_set, kappa


class RoundHistory:
    def __init__(self, store: Any, dataset: str, pool: Pool, labels: Sequence[str], *,
                 rule: StopRule | None = None, window: int = DEFAULT_WINDOW, seed: int = 0):
        self.store = store
        self.dataset = dataset
        self.pool = pool
        self.labels = list(labels)
        self.rule = rule or StopRule()
        self.window = window
        self.entries: list[dict[str, Any]] = store.rounds(dataset)
        chosen = pool.input_hashes[choose_stop_set(len(pool), np.random.default_rng([seed, 3]))]
        # The first stop set chosen for the dataset stays its stop set, whatever this run drew.
        self.stop_hashes = [int(h) for h in store.stop_set(dataset, chosen.tolist())]
        rows = [pool.index_of(h) for h in self.stop_hashes]
        self._rows = np.array([-1 if r is None else r for r in rows], dtype=np.int64)
        self._previous = self._saved_predictions()
        self._per_label: dict[str, int] | None = None  # training labels per class, last refit

    @property
    def last_round(self) -> int:
        return int(self.entries[-1]["round"]) if self.entries else 0

    @property
    def stop_rows(self) -> np.ndarray:
        """Pool indices of the stop set's rows that are in this pool."""
        return self._rows[self._rows >= 0]

    def _saved_predictions(self) -> np.ndarray | None:
        saved = self.store.stop_predictions(self.dataset)
        if saved is None:
            return None
        _, labels, predictions = saved
        if len(predictions) != len(self._rows):
            return None
        index = {label: i for i, label in enumerate(self.labels)}
        # Saved as indices into the labels of their day: a label since renamed counts as unknown.
        return np.array([index.get(labels[p], -1) if p >= 0 else -1 for p in predictions],
                        dtype=np.int64)

    def predict(self, estimator: Any, candidates: np.ndarray, proba: np.ndarray) -> np.ndarray:
        """The model's label index for each stop-set row (-1 for rows not in the pool).

        Rows the refit just scored (``candidates``, sorted, with ``proba``) cost nothing more;
        the others (answered, or out with an annotator) are predicted here.
        """
        out = np.full(len(self._rows), -1, dtype=np.int64)
        present = self._rows >= 0
        rows = self._rows[present]
        pos = np.minimum(np.searchsorted(candidates, rows), max(len(candidates) - 1, 0))
        scored = (candidates[pos] == rows) if len(candidates) else np.zeros(len(rows), bool)
        labels = np.empty(len(rows), dtype=np.int64)
        labels[scored] = proba[pos[scored]].argmax(axis=1)
        if (~scored).any():
            rest = label_probabilities(estimator, self.pool.X[rows[~scored]], len(self.labels))
            labels[~scored] = rest.argmax(axis=1)
        out[present] = labels
        return out

    def record(self, *, round: int, predicted: np.ndarray, n_annotations: int,
               y_train: np.ndarray, refit_ms: float) -> dict[str, Any]:
        """Add the entry of a refit that gave ``predicted`` (from ``predict``) on the stop set."""
        k = None
        if self._previous is not None:
            both = (self._previous >= 0) & (predicted >= 0)
            k = round_or_none(kappa(self._previous[both], predicted[both]))
        per_label = dict(zip(self.labels, np.bincount(y_train, minlength=len(self.labels))
                             .tolist()))
        stop = self.rule.check([e.get("kappa") for e in self.entries] + [k], per_label)
        est = self.estimate()
        entry = {"round": round, "n_annotations": n_annotations, "n_train": len(y_train),
                 "refit_ms": round_or_none(refit_ms, 2), "kappa": k,
                 "mean_kappa": stop["mean_kappa"], "stop_suggested": stop["suggested"],
                 "accuracy": est["accuracy"], "low": est["low"], "high": est["high"],
                 "n_audit": est["n"], "time": int(time.time())}
        self.store.add_round(self.dataset, entry, self.labels, predicted.tolist())
        self._previous = predicted
        self.entries.append(entry)
        self._per_label = per_label
        return entry

    def estimate(self) -> dict[str, Any]:
        """The audit estimate as of now: answers since the last refit count too."""
        return estimate(self.store.audited(self.dataset), self.labels, window=self.window)

    def stop(self) -> dict[str, Any]:
        """The stop rule's verdict as of the latest round."""
        per_label = self._per_label or label_counts(self.store, self.dataset, self.labels)
        return self.rule.check([e.get("kappa") for e in self.entries], per_label)


def label_counts(store: Any, dataset: str, labels: Sequence[str]) -> dict[str, int]:
    """Accepted answers per label, as a refit would train on them."""
    counts = dict.fromkeys(labels, 0)
    for _, label in store.labelled(dataset):
        if label in counts:
            counts[label] += 1
    return counts


def stored_labels(store: Any, dataset: str) -> list[str]:
    """The labels a dataset was annotated with, from the options stored with its answers."""
    labels: dict[str, None] = {}
    for record in store.get(dataset):
        for option in record.get("options") or []:
            if isinstance(option, dict) and isinstance(option.get("id"), str):
                labels.setdefault(option["id"])
        for label in record.get("accept") or []:
            if isinstance(label, str):
                labels.setdefault(label)
    return list(labels)


def status(store: Any, dataset: str, *, rule: StopRule | None = None,
           window: int = DEFAULT_WINDOW) -> dict[str, Any]:
    """How good the model is and whether to stop, from the database alone."""
    labels = stored_labels(store, dataset)
    entries = store.rounds(dataset)
    per_label = label_counts(store, dataset, labels)
    rule = rule or StopRule()
    return {"dataset": dataset, "labels": labels, "n_labels": sum(per_label.values()),
            "per_label": per_label, "rounds": len(entries),
            "estimate": estimate(store.audited(dataset), labels, window=window),
            "stop": rule.check([e.get("kappa") for e in entries], per_label),
            "history": entries}


def round_or_none(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)
