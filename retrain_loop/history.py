"""The round history: what every refit changed, how good the model is, and whether to stop.

After each refit the engine hands over the new model's predictions for the stop set; this
module compares them with the previous round's (Cohen's kappa), recomputes the audit estimate,
applies the stop rule and appends one entry to the history. The entries, the stop set and the
latest stop-set predictions are kept in the store, so a restarted server goes on from where it
was: the same stop set, the same round numbers, and a kappa against the round before the restart.

A refit on the same answers as the last recorded round (a restart, a batch of skips) is not a
round of the history: its predictions are the same by construction, and three such "rounds" of
kappa 1.0 would suggest stopping without a single new label.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from .answers import asked_labels
from .estimate import DEFAULT_WINDOW, estimate
from .models import label_probabilities
from .pool import Pool
from .stopping import StopRule, choose_stop_set, kappa

# Fewer stop-set rows than this in common between two rounds give no kappa: a handful of rows
# agreeing says nothing (and none at all would read as perfect agreement).
MIN_COMPARED = 50


class RoundHistory:
    """``answers`` is the store of the dataset's answers (for the estimate); ``state`` keeps the
    rounds and the stop set (the same store, or a file of its own where the answers live in
    Prodigy's database, or an in-memory one for a one-off offline fit that must leave none)."""

    def __init__(self, answers: Any, state: Any, dataset: str, pool: Pool,
                 labels: Sequence[str], *, rule: StopRule | None = None,
                 window: int = DEFAULT_WINDOW, seed: int = 0):
        self.answers = answers
        self.state = state
        self.dataset = dataset
        self.pool = pool
        self.labels = list(labels)
        self.rule = rule or StopRule()
        self.window = window
        self.entries: list[dict[str, Any]] = state.rounds(dataset)
        chosen = pool.input_hashes[choose_stop_set(len(pool), np.random.default_rng([seed, 3]))]
        # The first stop set chosen for the dataset stays its stop set, whatever this run drew,
        # unless most of it has left the pool (another pool file for the same dataset).
        hashes = state.stop_set(dataset, chosen.tolist())
        if len(hashes) > 2 * sum(pool.index_of(h) is not None for h in hashes):
            hashes = state.stop_set(dataset, chosen.tolist(), replace=True)
        self.stop_hashes = [int(h) for h in hashes]
        rows = [pool.index_of(h) for h in self.stop_hashes]
        self._rows = np.array([-1 if r is None else r for r in rows], dtype=np.int64)
        self._previous = self._saved_predictions()
        self._per_label: dict[str, int] | None = None  # training labels per class, last refit

    def reload(self) -> None:
        """Read the rounds and the latest stop-set predictions again: another process of a
        team recorded rounds since."""
        self.entries = self.state.rounds(self.dataset)
        self._previous = self._saved_predictions()
        self._per_label = None

    @property
    def last_round(self) -> int:
        return int(self.entries[-1]["round"]) if self.entries else 0

    def _saved_predictions(self) -> np.ndarray | None:
        saved = self.state.stop_predictions(self.dataset)
        if saved is None:
            return None
        labels, predictions = saved
        if len(predictions) != len(self._rows):
            return None
        index = {label: i for i, label in enumerate(self.labels)}
        # Saved as indices into the labels of their day: a label since renamed counts as unknown.
        return np.array([index.get(labels[p], -1) if p >= 0 else -1 for p in predictions],
                        dtype=np.int64)

    @property
    def rows(self) -> np.ndarray:
        """The stop set's rows that are in the pool (pool indices), for a refit to predict."""
        return self._rows[self._rows >= 0]

    def predict(self, estimator: Any, candidates: np.ndarray, proba: np.ndarray,
                also: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """The model's label index for each stop-set row (-1 for rows not in the pool).

        Rows the refit just scored (``candidates``, sorted, with ``proba``) cost nothing more,
        nor do those it predicted beside them (``also``: the rows of ``self.rows`` that are not
        candidates, in that order, with their probabilities); any others (answered, or out with
        an annotator) are predicted here.
        """
        out = np.full(len(self._rows), -1, dtype=np.int64)
        present = self._rows >= 0
        rows = self._rows[present]
        pos = np.minimum(np.searchsorted(candidates, rows), max(len(candidates) - 1, 0))
        scored = (candidates[pos] == rows) if len(candidates) else np.zeros(len(rows), bool)
        labels = np.empty(len(rows), dtype=np.int64)
        labels[scored] = proba[pos[scored]].argmax(axis=1)
        if (~scored).any():
            rest_rows = rows[~scored]
            if also is not None and np.array_equal(also[0], rest_rows):
                rest = also[1]
            else:
                rest = label_probabilities(estimator, self.pool.X[rest_rows], len(self.labels))
            labels[~scored] = rest.argmax(axis=1)
        out[present] = labels
        return out

    def record(self, *, round: int, predicted: np.ndarray, n_annotations: int,
               labelled: list[tuple[int, str]], y_train: np.ndarray,
               refit_ms: float) -> dict[str, Any] | None:
        """Add the entry of a refit that gave ``predicted`` (from ``predict``) on the stop set,
        having trained on ``labelled``; None, and no entry, if those are the last round's."""
        data = hashlib.blake2b(repr(labelled).encode(), digest_size=8).hexdigest()
        if self.entries and self.entries[-1].get("data") == data:
            return None
        k = None
        if self._previous is not None:
            both = (self._previous >= 0) & (predicted >= 0)
            if both.sum() >= min(MIN_COMPARED, (predicted >= 0).sum(), len(self._rows)) > 0:
                k = round_or_none(kappa(self._previous[both], predicted[both]))
        per_label = dict(zip(self.labels, np.bincount(y_train, minlength=len(self.labels))
                             .tolist()))
        stop = self.rule.check([e.get("kappa") for e in self.entries] + [k], per_label)
        est = self.estimate()
        entry = {"round": round, "n_annotations": n_annotations, "n_train": len(y_train),
                 "refit_ms": round_or_none(refit_ms, 2), "kappa": k,
                 "mean_kappa": stop["mean_kappa"], "stop_suggested": stop["suggested"],
                 "accuracy": est["accuracy"], "low": est["low"], "high": est["high"],
                 "n_used": est["n"], "n_audit": est["n_audit"], "data": data,
                 "time": int(time.time())}
        self.state.add_round(self.dataset, entry, self.labels, predicted.tolist())
        self._previous = predicted
        self.entries.append(entry)
        self._per_label = per_label
        return entry

    def estimate(self) -> dict[str, Any]:
        """The audit estimate as of now: answers since the last refit count too."""
        return estimate(self.answers.audited(self.dataset), self.labels, window=self.window)

    def stop(self) -> dict[str, Any]:
        """The stop rule's verdict as of the latest round."""
        per_label = self._per_label or label_counts(self.answers, self.dataset, self.labels)
        return self.rule.check([e.get("kappa") for e in self.entries], per_label)


def label_counts(store: Any, dataset: str, labels: Sequence[str]) -> dict[str, int]:
    """Accepted answers per label, as a refit would train on them."""
    counts = dict.fromkeys(labels, 0)
    for _, label in store.labelled(dataset):
        if label in counts:
            counts[label] += 1
    return counts


def status(store: Any, dataset: str, *, state: Any = None, rule: StopRule | None = None,
           window: int = DEFAULT_WINDOW) -> dict[str, Any]:
    """How good the model is and whether to stop, from the database alone (and the rounds from
    ``state``, where they are kept apart from the answers)."""
    labels = asked_labels(store.get(dataset))
    entries = (state or store).rounds(dataset)
    per_label = label_counts(store, dataset, labels)
    rule = rule or StopRule()
    return {"dataset": dataset, "labels": labels, "n_labels": sum(per_label.values()),
            "per_label": per_label, "rounds": len(entries),
            "estimate": estimate(store.audited(dataset), labels, window=window),
            "stop": rule.check([e.get("kappa") for e in entries], per_label),
            "history": entries}


def round_or_none(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)
