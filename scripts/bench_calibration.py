"""How trustworthy each learner's confidence is: calibration on the label-efficiency datasets.

    python scripts/bench_calibration.py [--seeds 5] [--sizes 50,300] [--out BENCHMARKS.md]

The page shows the model's guess with its probability, and margin sampling ranks rows by the
gap between the top two probabilities, so both lean on probabilities that mean what they say.
For every dataset of ``scripts/learning_datasets.py``, seed and size, each learner is fitted on
that many random labels from the pool (the seed's stratified split, as in the suite) and scored
on the held-out rows:

- **ECE**: expected calibration error of the top label, 10 equal-width bins: the gap between
  the confidence shown and the accuracy it comes with, averaged over rows;
- **Brier**: mean squared error of the probability vector against the one-hot truth.

Lower is better for both. Medians over datasets and seeds go to the "Calibration" section of
BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from benchmarks_md import machine, write_section
from learning_datasets import DATASETS, load
from threadpoolctl import threadpool_limits

from retrain_loop.models import MODELS, label_probabilities, make_model
from retrain_loop.simulate import initial_set, split

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## Calibration"


def ece(proba: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(total)


def brier(proba: np.ndarray, y: np.ndarray) -> float:
    onehot = np.zeros_like(proba)
    onehot[np.arange(len(y)), y] = 1.0
    return float(((proba - onehot) ** 2).sum(axis=1).mean())


def measure(seeds: int, sizes: list[int]) -> list[dict]:
    rows = []
    for dataset in DATASETS:
        X, y, labels = load(dataset)
        for seed in range(seeds):
            pool, test = split(y, seed)
            for size in sizes:
                n = min(size, len(pool))
                picked = pool[initial_set(y[pool], n, seed)]
                for model in MODELS:
                    estimator = make_model(model, seed=seed).fit(X[picked], y[picked])
                    proba = label_probabilities(estimator, X[test], len(labels))
                    rows.append({"dataset": dataset, "seed": seed, "size": size, "model": model,
                                 "ece": ece(proba, y[test]), "brier": brier(proba, y[test]),
                                 "accuracy": float((proba.argmax(axis=1) == y[test]).mean())})
        print(f"{dataset}: done", file=sys.stderr)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--sizes", default="50,300")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    started = time.perf_counter()
    with threadpool_limits(limits=1):
        rows = measure(args.seeds, sizes)
    lines = [
        SECTION, "",
        ("Fitted on random labels from each dataset's pool (all of it where the pool is smaller) and scored on its held-out rows "
         f"(the ten datasets of the label-efficiency suite, {args.seeds} seeds). ECE: expected "
         "calibration error of the shown confidence (top label, 10 bins); Brier: squared error "
         "of the probability vector. Medians over datasets and seeds; lower is better. "
         "`python scripts/bench_calibration.py`."),
        "",
        machine("Timings play no part here."),
        "",
        "| learner | " + " | ".join(f"ECE @ {s} | Brier @ {s} | accuracy @ {s}" for s in sizes)
        + " |",
        "|---|" + "---:|" * (3 * len(sizes)),
    ]
    for model in MODELS:
        cells = []
        for size in sizes:
            mine = [r for r in rows if r["model"] == model and r["size"] == size]
            cells += [f"{np.median([r[k] for r in mine]):.3f}" for k in ("ece", "brier",
                                                                          "accuracy")]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    lines += ["", f"{len(rows)} fits in {time.perf_counter() - started:.0f} s."]
    write_section(args.out, SECTION, "\n".join(lines))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
