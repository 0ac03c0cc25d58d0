"""Simulated labelling runs: the serving engine driven by an oracle that knows the labels.

A run splits the data into a pool and a held-out test set (stratified, fixed per seed), answers
a random initial set, then asks the engine for batches exactly as the server does and answers
them from the known labels until the budget is spent. After every refit the engine's model is
scored on the test set. Nothing here is a copy of the engine's logic: the engine under test is
the one that serves annotators, audit draws, accuracy estimate and stop signal included, so a run
also measures whether the estimate's interval holds the true accuracy and what stopping costs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split

from .engine import Engine
from .models import label_probabilities, make_model
from .pool import Pool
from .settings import EngineSettings
from .store import AnnotationStore

CURVE_COLUMNS = ["strategy", "seed", "n_labels", "accuracy", "macro_f1", "refit_ms",
                 "estimated_accuracy", "estimate_low", "estimate_high", "n_audit", "kappa",
                 "stop_suggested"]
SUMMARY_COLUMNS = ["strategy", "aulc", "labels_to_95pct", "final_accuracy", "full_data_accuracy",
                   "labels_at_stop", "accuracy_at_stop", "stop_ratio", "stopped_runs",
                   "estimate_coverage"]
# Coverage counts rounds once the estimate rests on this many audit answers.
MIN_AUDIT_FOR_COVERAGE = 20


class SimulationError(ValueError):
    """Data or settings a simulation cannot run with."""


def known_labels(pool: Pool, label_column: str) -> tuple[list[str], list[int]]:
    """The sorted distinct labels of the label column, and each row's index into them; every
    row must have one."""
    if label_column not in pool.columns:
        columns = [c for c in pool.columns if not c.startswith("_")]
        raise SimulationError(f"{pool.path}: no label column {label_column!r}; columns are "
                              f"{columns}")
    values = []
    for k, task in enumerate(pool.tasks):
        value = task.get(label_column)
        if value is None or (isinstance(value, str) and not value.strip()):
            if pool.id_column is not None:
                row = f"row with id {task[pool.id_column]!r}"
            else:
                row = f"row {k + 1} (counting data rows from 1)"
            raise SimulationError(f"{pool.path}: {row} has no label in column "
                                  f"{label_column!r}; a simulation needs every row's true label")
        values.append(str(value))
    labels = sorted(set(values))
    if len(labels) < 2:
        raise SimulationError(f"{pool.path}: column {label_column!r} holds {len(labels)} "
                              f"distinct label{'s' if len(labels) != 1 else ''}; a simulation "
                              "needs at least two")
    index = {label: i for i, label in enumerate(labels)}
    return labels, [index[v] for v in values]


def split(y: np.ndarray, seed: int, test_size: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Pool and test positions: stratified, and the same for every strategy with this seed."""
    positions = np.arange(len(y))
    try:
        pool, test = train_test_split(positions, test_size=test_size, stratify=y, random_state=seed)
    except ValueError as e:
        raise SimulationError(f"cannot split the data for testing: {e}") from e
    return np.sort(pool), np.sort(test)


def initial_set(y_pool: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` random pool positions holding at least two classes, so a first model can exist."""
    if len(np.unique(y_pool)) < 2:
        raise SimulationError("the pool holds a single class; there is nothing to learn")
    n = min(max(n, 2), len(y_pool))
    rng = np.random.default_rng([seed, 1])
    for _ in range(1000):
        picked = rng.choice(len(y_pool), n, replace=False)
        if len(np.unique(y_pool[picked])) >= 2:
            return picked
    # Rare classes: take one row of the two commonest classes, then fill at random.
    classes = np.unique(y_pool)[:2]
    first = np.array([np.flatnonzero(y_pool == c)[0] for c in classes])
    rest = rng.permutation(np.setdiff1d(np.arange(len(y_pool)), first))[: n - 2]
    return np.concatenate([first, rest])


def evaluate(model: Any, X: np.ndarray, y: np.ndarray, n_labels: int) -> tuple[float, float]:
    predicted = label_probabilities(model, X, n_labels).argmax(axis=1)
    return (float(accuracy_score(y, predicted)),
            float(f1_score(y, predicted, average="macro", labels=np.arange(n_labels),
                           zero_division=0)))


def run(
    X: np.ndarray,
    y: np.ndarray,
    labels: Sequence[str],
    settings: EngineSettings | None = None,
    *,
    initial: int = 10,
    budget: int = 300,
    test_size: float = 0.3,
    on_round: Callable[[], None] | None = None,
    **changes: Any,
) -> list[dict[str, Any]]:
    """One labelling run; returns its learning curve, one row per refit.

    The engine runs with ``settings`` (default ``EngineSettings()``) and ``changes`` to any of
    its fields (``strategy="random"``, ``seed=3``, ``audit=0``, ...). The seed also picks the
    test split and the initial set.
    """
    settings = (settings or EngineSettings()).replace(**changes)
    strategy, seed = settings.strategy, settings.seed
    pool_pos, test_pos = split(y, seed, test_size)
    X_pool, y_pool = X[pool_pos], y[pool_pos]
    hashes = np.arange(1, len(pool_pos) + 1, dtype=np.int64)
    pool = Pool(Path("<simulation>"),
                [{"id": int(p), "_input_hash": int(h)} for p, h in zip(pool_pos, hashes)],
                np.ascontiguousarray(X_pool, dtype=np.float32),
                [f"x{j}" for j in range(X.shape[1])], "id", hashes)
    store = AnnotationStore(None)
    engine = Engine(pool, store, "simulation", list(labels), settings, background=False).start()
    curve: list[dict[str, Any]] = []

    def answer(indices: Sequence[int], meta: dict[str, Any] | None = None) -> None:
        answers = [{"_input_hash": int(pool.input_hashes[i]), "_task_hash": engine.task_hash(i),
                    "answer": "accept", "accept": [labels[y_pool[i]]], "meta": meta or {}}
                   for i in indices]
        engine.add_answers(answers, "oracle")
        n_labels = len(answers) + (curve[-1]["n_labels"] if curve else 0)
        if engine.model_ is None:
            accuracy = macro_f1 = float("nan")
        else:
            accuracy, macro_f1 = evaluate(engine.model_, X[test_pos], y[test_pos], len(labels))
        last = engine.history[-1] if engine.history else {}
        curve.append({"strategy": strategy, "seed": seed, "n_labels": n_labels,
                      "accuracy": accuracy, "macro_f1": macro_f1,
                      "refit_ms": engine.last_refit_ms,
                      "estimated_accuracy": _nan(last.get("accuracy")),
                      "estimate_low": _nan(last.get("low")),
                      "estimate_high": _nan(last.get("high")),
                      "n_audit": last.get("n_audit", 0), "kappa": _nan(last.get("kappa")),
                      "stop_suggested": bool(last.get("stop_suggested"))})
        if on_round is not None:
            on_round()

    try:
        answer(initial_set(y_pool, min(initial, budget), seed).tolist(), {"source": "initial"})
        while curve[-1]["n_labels"] < budget:
            tasks = engine.get_questions("oracle",
                                         min(settings.batch_size, budget - curve[-1]["n_labels"]))
            if not tasks:
                break
            answer([pool.index_of(t["_input_hash"]) for t in tasks])
    finally:
        engine.close()
        store.close()
    if engine.last_error:
        raise SimulationError(f"{settings.model_name} failed during the run: {engine.last_error}")
    return curve


def _nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def simulate(
    X: np.ndarray,
    y: np.ndarray,
    labels: Sequence[str],
    settings: EngineSettings | None = None,
    *,
    strategies: Sequence[str] = ("margin", "random"),
    seeds: Sequence[int] = range(5),
    on_round: Callable[[], None] | None = None,
    **run_options: Any,
) -> tuple[list[dict[str, Any]], dict[int, float]]:
    """Every strategy on every seed (``run_options``: initial, budget, test_size); returns the
    curves and each seed's full-data accuracy."""
    settings = settings or EngineSettings()
    curves: list[dict[str, Any]] = []
    for seed in seeds:
        for strategy in strategies:
            curves += run(X, y, labels, settings.replace(strategy=strategy, seed=seed),
                          on_round=on_round, **run_options)
    full = {seed: full_data_accuracy(X, y, len(labels), model=settings.model, seed=seed,
                                     test_size=run_options.get("test_size", 0.3))
            for seed in seeds}
    return curves, full


def write_outputs(out_dir: str | Path, curves: list[dict[str, Any]], full: dict[int, float],
                  title: str = "") -> list[dict[str, Any]]:
    """``curves.csv``, ``summary.csv`` and ``curves.png`` in ``out_dir``; returns the summary."""
    import csv

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(curves, full)
    for name, columns, rows in (("curves.csv", CURVE_COLUMNS, curves),
                                ("summary.csv", SUMMARY_COLUMNS, summary)):
        with (out / name).open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    plot(curves, full, out / "curves.png", title=title)
    return summary


def read_curves(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a ``curves.csv`` that ``write_outputs`` (or the peer runner) wrote, typed."""
    import csv

    def number(text: str) -> float:
        return float(text) if text not in ("", None) else float("nan")

    numbers = ("accuracy", "macro_f1", "refit_ms", "estimated_accuracy", "estimate_low",
               "estimate_high", "kappa")
    with Path(path).open(newline="", encoding="utf-8") as f:
        return [{**r, "seed": int(r["seed"]), "n_labels": int(r["n_labels"]),
                 **{k: number(r[k]) for k in numbers if k in r},
                 **({"n_audit": int(r["n_audit"])} if r.get("n_audit") else {}),
                 **({"stop_suggested": r["stop_suggested"] == "True"}
                    if "stop_suggested" in r else {})}
                for r in csv.DictReader(f)]


def full_data_accuracy(X: np.ndarray, y: np.ndarray, n_labels: int, *, model: str, seed: int,
                       test_size: float = 0.3) -> float:
    """Accuracy of a model fitted on the whole pool: the ceiling a labelling run aims at."""
    pool_pos, test_pos = split(y, seed, test_size)
    estimator = clone(make_model(model, seed=seed)).fit(X[pool_pos], y[pool_pos])
    return evaluate(estimator, X[test_pos], y[test_pos], n_labels)[0]


def rounds_per_run(n_rows: int, *, initial: int, budget: int, batch_size: int,
                   test_size: float = 0.3) -> int:
    """How many refits a run makes, for progress bars."""
    pool = n_rows - int(np.ceil(n_rows * test_size))
    budget = min(budget, pool)
    return 1 + int(np.ceil(max(budget - min(initial, budget), 0) / batch_size))


def summarize(curves: list[dict[str, Any]], full: dict[int, float]) -> list[dict[str, Any]]:
    """One row per strategy: area under the mean curve, labels to 95% of full data, and more.

    ``aulc`` is the mean accuracy over the label range (the area under the curve divided by the
    range), so 1.0 is perfect from the first label. ``labels_to_95pct`` is the first label count
    at which the mean curve over seeds reaches 95% of the full-data accuracy; empty if never.
    """
    target = 0.95 * float(np.mean(list(full.values())))
    out = []
    for strategy in dict.fromkeys(row["strategy"] for row in curves):
        rows = [r for r in curves if r["strategy"] == strategy]
        grid = sorted({r["n_labels"] for r in rows})
        mean = np.array([np.nanmean([r["accuracy"] for r in rows if r["n_labels"] == n])
                         for n in grid])
        if len(grid) > 1:
            aulc = float(np.trapezoid(mean, grid) / (grid[-1] - grid[0]))
        else:
            aulc = float(mean[0])
        reached = [n for n, a in zip(grid, mean) if a >= target]
        out.append({"strategy": strategy, "aulc": round(aulc, 4),
                    "labels_to_95pct": reached[0] if reached else None,
                    "final_accuracy": round(float(mean[-1]), 4),
                    "full_data_accuracy": round(float(np.mean(list(full.values()))), 4),
                    **stop_summary(rows), "estimate_coverage": estimate_coverage(rows)})
    return out


def stop_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Where the stop signal fired, over the seeds of one strategy.

    ``labels_at_stop`` is the median label count of the first suggestion among the seeds where
    it fired, ``accuracy_at_stop`` the mean test accuracy there, ``stop_ratio`` the mean of that
    accuracy over the same seed's accuracy at the end of the budget, and ``stopped_runs`` the
    share of seeds where it fired at all.
    """
    seeds = sorted({r["seed"] for r in rows})
    at_stop, ratios = [], []
    for seed in seeds:
        run = sorted((r for r in rows if r["seed"] == seed), key=lambda r: r["n_labels"])
        fired = [r for r in run if r.get("stop_suggested")]
        if fired:
            at_stop.append(fired[0])
            if run[-1]["accuracy"] > 0:
                ratios.append(fired[0]["accuracy"] / run[-1]["accuracy"])
    if not at_stop:
        return {"labels_at_stop": None, "accuracy_at_stop": None, "stop_ratio": None,
                "stopped_runs": 0.0}
    return {"labels_at_stop": int(np.median([r["n_labels"] for r in at_stop])),
            "accuracy_at_stop": round(float(np.mean([r["accuracy"] for r in at_stop])), 4),
            "stop_ratio": round(float(np.mean(ratios)), 4) if ratios else None,
            "stopped_runs": round(len(at_stop) / len(seeds), 4)}


def estimate_coverage(rows: list[dict[str, Any]],
                      min_audit: int = MIN_AUDIT_FOR_COVERAGE) -> float | None:
    """The share of rounds, once ``min_audit`` audit answers exist, whose estimate's interval
    holds the model's true accuracy on the held-out test set; None if no round had that many."""
    held = [r["estimate_low"] <= r["accuracy"] <= r["estimate_high"] for r in rows
            if r.get("n_audit", 0) >= min_audit and not np.isnan(r.get("estimate_low", np.nan))]
    return round(float(np.mean(held)), 4) if held else None


def plot(curves: list[dict[str, Any]], full: dict[int, float], path: str | Path,
         title: str = "") -> None:
    """Mean accuracy per strategy over seeds, with a band of one standard deviation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for strategy in dict.fromkeys(row["strategy"] for row in curves):
        rows = [r for r in curves if r["strategy"] == strategy]
        grid = sorted({r["n_labels"] for r in rows})
        values = [[r["accuracy"] for r in rows if r["n_labels"] == n] for n in grid]
        mean = np.array([np.nanmean(v) for v in values])
        spread = np.array([np.nanstd(v) for v in values])
        line, = ax.plot(grid, mean, label=strategy, linewidth=1.8)
        ax.fill_between(grid, mean - spread, mean + spread, alpha=0.15, color=line.get_color())
        _plot_estimate(ax, rows, grid, line.get_color(), strategy)
    ceiling = float(np.mean(list(full.values())))
    ax.axhline(ceiling, color="black", linewidth=1, linestyle=":", label="all pool labels")
    ax.axhline(0.95 * ceiling, color="grey", linewidth=1, linestyle="--", label="95% of that")
    ax.set_xlabel("labels")
    ax.set_ylabel("held-out accuracy")
    ax.set_title(title or "learning curves (mean ± sd over seeds), with the audit estimate")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_estimate(ax: Any, rows: list[dict[str, Any]], grid: list[int], colour: str,
                   strategy: str) -> None:
    """The audit estimate (mean over seeds, with its mean interval) dashed beside the true curve,
    and the median label count where the stop signal fired as a triangle on the curve."""
    def mean_of(key: str, n: int) -> float:
        values = [float(r.get(key, np.nan)) for r in rows if r["n_labels"] == n]
        values = [v for v in values if not np.isnan(v)]
        return float(np.mean(values)) if values else np.nan

    # From 10 audit answers on: the intervals of the first few would dwarf everything else.
    shown = [n for n in grid if mean_of("n_audit", n) >= 10]
    if shown and any("estimated_accuracy" in r for r in rows):
        ax.plot(shown, [mean_of("estimated_accuracy", n) for n in shown], linestyle="--",
                linewidth=1.2, color=colour,
                label=f"{strategy}: audit estimate, 95% interval (10+ audits)")
        ax.fill_between(shown, [mean_of("estimate_low", n) for n in shown],
                        [mean_of("estimate_high", n) for n in shown], color=colour, alpha=0.08,
                        linewidth=0)
    stop = stop_summary(rows)["labels_at_stop"]
    if stop is not None:
        ax.plot([stop], [mean_of("accuracy", stop)], marker="v", markersize=9, color=colour,
                linestyle="none", label=f"{strategy}: stop suggested ({stop} labels, median)")
