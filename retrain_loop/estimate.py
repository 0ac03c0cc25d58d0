"""How good the model is: its accuracy on audit answers, with a Wilson interval.

An audit task is a row drawn uniformly at random from the open pool, and the serving model's
prediction for it is recorded when it is served, before its answer can train anything. So the
share of audit answers that match the prediction served with them is an unbiased estimate of how
often the recent models label an open row right. Accuracy on actively chosen rows (and
cross-validation on them) is biased towards the rows the model found hardest, and is never used.

Everything here reads answer records as they are stored, so the same numbers come out of a live
engine and out of the database alone (``retrain-loop status``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from scipy.stats import binomtest

AUDIT = "audit"
# An estimate uses the latest quarter of the audit answers, at least 20 and at most the window.
# Each answer measured the model that served it, so older answers trail a model that is still
# learning: on the suite, all of 30 answers (300 labels) missed the true accuracy from below in
# a third of the rounds on digits and colours, the latest 20 in almost none. Once answers are
# many, the curve is flat and a quarter of them is plenty, with a narrower interval.
DEFAULT_WINDOW = 100
MIN_WINDOW = 20
WINDOW_SHARE = 0.25
CONFIDENCE = 0.95


def wilson(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """The Wilson score interval for ``k`` successes in ``n`` trials; None when ``n`` is 0.

    Unlike the normal approximation it stays inside [0, 1] and keeps its coverage near 0 and 1,
    where a good model's accuracy sits.
    """
    if n <= 0:
        return None
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def audit_pairs(records: Iterable[dict[str, Any]]) -> list[tuple[str, str]]:
    """``(predicted, answered)`` for each accepted audit answer that carries its prediction.

    Records come in storage order, so the last pairs are the latest. A skipped or rejected audit
    task says nothing about which label is right and is left out, as it is from training.
    """
    pairs = []
    for record in records:
        meta = record.get("meta")
        if not isinstance(meta, dict) or meta.get("source") != AUDIT:
            continue
        predicted, accept = meta.get("predicted"), record.get("accept")
        if (record.get("answer") == "accept" and isinstance(predicted, str)
                and isinstance(accept, list) and len(accept) == 1 and isinstance(accept[0], str)):
            pairs.append((predicted, accept[0]))
    return pairs


def estimate(records: Iterable[dict[str, Any]], labels: Sequence[str], *,
             window: int = DEFAULT_WINDOW, confidence: float = CONFIDENCE) -> dict[str, Any]:
    """Accuracy with its interval, per-label precision and recall, and the confusion table.

    All from the latest audit answers: a quarter of them, at least 20, at most ``window``.
    ``accuracy``, ``low`` and ``high`` are None until there is an audit answer: no number is
    better than an invented one.
    """
    every = audit_pairs(records)
    pairs = every[len(every) - used(len(every), window):]
    labels = list(labels)
    out: dict[str, Any] = {"accuracy": None, "low": None, "high": None, "n": len(pairs),
                           "n_audit": len(every), "window": window, "confidence": confidence}
    # Counted directly: this runs on every refit and every stats request, and sklearn's
    # confusion_matrix spends 2 ms validating its input to count a few dozen pairs.
    index = {label: i for i, label in enumerate(labels)}
    cells = [index[a] * len(labels) + index[p] for p, a in pairs if p in index and a in index]
    matrix = np.bincount(cells, minlength=len(labels) ** 2).reshape(len(labels), len(labels))
    out["confusion"] = {"labels": labels, "matrix": matrix.tolist(),
                        "rows": "annotator's label", "columns": "model's prediction"}
    right = np.diag(matrix).tolist()
    predicted, answered = matrix.sum(axis=0).tolist(), matrix.sum(axis=1).tolist()
    out["per_label"] = {
        label: {"precision": _ratio(right[i], predicted[i]),
                "recall": _ratio(right[i], answered[i]), "support": answered[i]}
        for i, label in enumerate(labels)
    }
    if pairs:
        k = sum(p == a for p, a in pairs)
        out["accuracy"] = round(k / len(pairs), 4)
        low, high = wilson(k, len(pairs), confidence)
        out["low"], out["high"] = round(low, 4), round(high, 4)
    return out


def used(n_audit: int, window: int = DEFAULT_WINDOW) -> int:
    """How many of the latest audit answers an estimate uses (see ``DEFAULT_WINDOW``)."""
    return max(0, min(n_audit, window, max(MIN_WINDOW, math.ceil(WINDOW_SHARE * n_audit))))


def _ratio(k: int, n: int) -> float | None:
    return round(float(k) / float(n), 4) if n else None
