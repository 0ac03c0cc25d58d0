"""When to stop: stabilizing predictions on a fixed stop set (Bloodgood & Vijay-Shanker, 2009).

A stop set is a fixed random sample of the pool, chosen once per dataset. After every refit the
model predicts it, and Cohen's kappa measures how far this round's predictions agree with the
previous round's beyond chance. When the mean kappa over the last few rounds reaches the
threshold, the model has stopped changing: by their bound, kappa >= T limits the change in
F-measure between the rounds to 4(1 - T) / T (0.04 at T = 0.99). Stopping is only suggested once
there are enough labels of every kind for the signal to mean something.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sklearn.metrics import cohen_kappa_score

STOP_SET_SIZE = 2000
STOPPED = "The model has stopped changing; more labels are unlikely to help much."


class StopRuleError(ValueError):
    """Stop-rule settings that cannot work."""


def choose_stop_set(n_rows: int, rng: np.random.Generator, size: int = STOP_SET_SIZE) -> np.ndarray:
    """Sorted positions of ``min(n_rows, size)`` rows drawn uniformly without replacement."""
    return np.sort(rng.choice(n_rows, min(n_rows, size), replace=False))


def kappa(before: np.ndarray, after: np.ndarray) -> float:
    """Cohen's kappa between two rounds' predicted labels on the same rows.

    Identical predictions agree perfectly, even when both rounds predict one label for every row
    (where the textbook formula divides zero by zero).
    """
    before, after = np.asarray(before), np.asarray(after)
    if before.shape != after.shape:
        raise ValueError(f"predictions differ in shape: {before.shape} and {after.shape}")
    if len(before) == 0 or np.array_equal(before, after):
        return 1.0
    return float(cohen_kappa_score(before, after))


@dataclass(frozen=True)
class StopRule:
    threshold: float = 0.99  # mean kappa that counts as "stopped changing"
    window: int = 3  # rounds the mean is taken over
    min_labels: int = 50
    min_per_label: int = 3

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise StopRuleError(f"the stop threshold must be in (0, 1], got {self.threshold}")
        if self.window < 1:
            raise StopRuleError(f"the stop window must be at least 1 round, got {self.window}")

    @property
    def f_change_bound(self) -> float:
        """The most F-measure can change between rounds once kappa reaches the threshold."""
        return 4 * (1 - self.threshold) / self.threshold

    def check(self, kappas: Sequence[float | None], per_label: Mapping[str, int]) -> dict[str, Any]:
        """Whether to suggest stopping, given every round's kappa (None where there was no
        previous round to compare with) and the labels per class so far. ``message`` says why."""
        recent = list(kappas[-self.window:])
        complete = len(recent) == self.window and all(k is not None for k in recent)
        mean = round(float(np.mean(recent)), 4) if complete else None
        n_labels = int(sum(per_label.values()))
        short = [label for label, n in per_label.items() if n < self.min_per_label]
        if n_labels < self.min_labels:
            message = f"Too early to tell: {n_labels} of at least {self.min_labels} labels."
        elif short:
            message = (f"Too early to tell: every label needs {self.min_per_label} examples "
                       f"({', '.join(short[:4])}{', ...' if len(short) > 4 else ''} short).")
        elif mean is None:
            message = f"Waiting for {self.window} rounds to compare."
        elif mean < self.threshold:
            message = (f"Still learning: predictions agree {mean:.3f} (kappa) with the round "
                       f"before, stopping is suggested at {self.threshold:g}.")
        else:
            message = STOPPED
        last = recent[-1] if recent else None
        return {"suggested": message == STOPPED, "kappa": last, "mean_kappa": mean,
                "n_labels": n_labels, "message": message, **asdict(self),
                "f_change_bound": round(self.f_change_bound, 4)}
