"""The accuracy estimate and the stop signal, measured on the label-efficiency suite.

    python scripts/bench_trust.py [--seeds 10] [--budget 300] [--jobs 2] [--datasets iris,digits]
                                  [--out BENCHMARKS.md]

For every dataset of ``scripts/learning_datasets.py`` and every seed, the default engine
(``auto``, margin, a 10% audit share) labels a pool with an oracle through
``retrain_loop.simulate.run``, and so does the same engine with the audit turned off. Per
dataset it reports:

- whether the audit estimate's 95% interval holds the model's true held-out accuracy, over the
  rounds where at least 20 audit answers exist (the target: 90% of them);
- where the stop signal fires (kappa between rounds' stop-set predictions), and the held-out
  accuracy there against the accuracy at the end of the budget (the target: at least 0.97x);
- what the audit costs in label efficiency: AULC with and without it.

Writes ``bench_results/trust/<dataset>/`` (curves.csv, summary.csv, curves.png), the section
"Accuracy estimate and stopping" of BENCHMARKS.md, and ``docs/bench/trust.png``.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from benchmarks_md import machine, write_section
from learning_datasets import DATASETS
from learning_datasets import load as load_dataset

from retrain_loop import simulate
from retrain_loop.simulate import MIN_AUDIT_FOR_COVERAGE

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench_results" / "trust"
SECTION = "## Accuracy estimate and stopping"
CONFIGS = {"margin": {}, "margin_no_audit": {"audit": 0.0}}
COVERAGE_TARGET = 0.90
STOP_RATIO_TARGET = 0.97


def run_dataset(dataset: str, seeds: int, budget: int, out_dir: Path) -> dict[str, Any]:
    X, y, labels = load_dataset(dataset)
    started = time.perf_counter()
    curves: list[dict[str, Any]] = []
    for seed in range(seeds):
        for name, settings in CONFIGS.items():
            run = simulate.run(X, y, labels, strategy="margin", seed=seed, budget=budget,
                               **settings)
            curves += [dict(r, strategy=name) for r in run]
    full = {seed: simulate.full_data_accuracy(X, y, len(labels), model="auto", seed=seed)
            for seed in range(seeds)}
    summary = simulate.write_outputs(out_dir, curves, full, title=f"{dataset}: auto, margin")
    return collect(dataset, len(y), budget, curves, summary, time.perf_counter() - started)


def collect(dataset: str, rows: int, budget: int, curves: list[dict[str, Any]],
            summary: list[dict[str, Any]], wall_s: float) -> dict[str, Any]:
    """One dataset's line of the table, from its curves and summary."""
    audited = [r for r in curves if r["strategy"] == "margin"]
    counted = [r for r in audited if r["n_audit"] >= MIN_AUDIT_FOR_COVERAGE]
    widths = [r["estimate_high"] - r["estimate_low"] for r in counted]
    # Where the interval misses, is the estimate above or below the truth?
    above = sum(r["estimate_low"] > r["accuracy"] for r in counted)
    below = sum(r["estimate_high"] < r["accuracy"] for r in counted)
    bias = [r["estimated_accuracy"] - r["accuracy"] for r in counted]
    pool = rows - int(np.ceil(rows * 0.3))
    return {"dataset": dataset, "rows": rows, "pool": pool, "budget": min(budget, pool),
            "summary": {s["strategy"]: s for s in summary}, "curves": curves,
            "counted": len(counted), "above": above, "below": below,
            "width": float(np.median(widths)) if widths else None,
            "bias": float(np.mean(bias)) if bias else None, "wall_s": wall_s}


def from_results(dataset: str, budget: int) -> dict[str, Any]:
    """A dataset's line rebuilt from ``bench_results/trust``, to redraw without rerunning."""
    import csv

    def value(text: str) -> Any:
        if text in ("", "None"):
            return None
        return float(text) if any(c in text for c in ".en") else int(text)

    curves = simulate.read_curves(RESULTS / dataset / "curves.csv")
    with (RESULTS / dataset / "summary.csv").open(newline="", encoding="utf-8") as f:
        summary = [{k: v if k == "strategy" else value(v) for k, v in r.items()}
                   for r in csv.DictReader(f)]
    return collect(dataset, len(load_dataset(dataset)[1]), budget, curves, summary, 0.0)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def section(results: list[dict[str, Any]], seeds: int, budget: int, image: Path,
            out: Path) -> str:
    lines = [
        SECTION, "",
        (f"`scripts/bench_trust.py`: the default engine (`auto`, margin, audit share 0.1, batch 10, "
        f"10 random initial labels, budget {budget} or the pool) on the ten suite datasets, "
        f"{seeds} seeds each, 30% held out per seed; the same runs with `--audit 0` for the cost. "
        "Coverage counts the rounds where the estimate rests on at least "
        f"{MIN_AUDIT_FOR_COVERAGE} audit answers (the latest quarter of them, at least 20) and asks whether its "
        "95% Wilson interval holds the just-refitted model's held-out accuracy. The stop is the "
        "first round where the mean kappa of the last 3 rounds' stop-set predictions is at "
        "least 0.99, with 50 labels and 3 per label."), "",
        machine("Label counts and accuracies do not depend on the machine's speed."), "",
        ("| dataset | rows | pool/budget | rounds counted | coverage | misses above/below | "
         "mean estimate − true | median width | runs stopped | labels at stop | "
         "acc. at stop / at budget | AULC audit | AULC no audit | cost |"),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    covered = fired = fired_ok = 0
    costs, all_counted, all_held = [], 0, 0
    for r in results:
        s, n = r["summary"]["margin"], r["summary"]["margin_no_audit"]
        cost = n["aulc"] - s["aulc"]
        costs.append(cost)
        cov = s["estimate_coverage"]
        if cov is not None:
            all_counted += r["counted"]
            all_held += round(cov * r["counted"])
            covered += cov >= COVERAGE_TARGET
        if s["stopped_runs"] >= 0.5:
            fired += 1
            fired_ok += (s["stop_ratio"] or 0) >= STOP_RATIO_TARGET
        lines.append(
            f"| {r['dataset']} | {r['rows']} | {r['pool']}/{r['budget']} | {r['counted']} | "
            f"{_fmt(cov)} | {r['above']}/{r['below']} | "
            f"{'–' if r['bias'] is None else format(r['bias'], '+.3f')} | {_fmt(r['width'])} | "
            f"{_fmt(s['stopped_runs'], 1)} | {_fmt(s['labels_at_stop'])} | "
            f"{_fmt(s['accuracy_at_stop'])} / {_fmt(s['final_accuracy'])} "
            f"(×{_fmt(s['stop_ratio'])}) | {s['aulc']:.4f} | {n['aulc']:.4f} | {cost:+.4f} |")
    with_rounds = sum(r["counted"] > 0 for r in results)
    pooled = all_held / all_counted if all_counted else None
    lines += [
        "",
        "Targets:",
        (f"- interval coverage ≥ {COVERAGE_TARGET:.0%} of counted rounds: met on {covered} of the "
        f"{with_rounds} datasets that reach {MIN_AUDIT_FOR_COVERAGE} audit answers "
        f"(pooled over them: {_fmt(pooled)} of {all_counted} rounds). Datasets whose pool runs "
        "out first (iris, wine) never reach that many."),
        (f"- the stop fires within the budget on {fired} of {len(results)} datasets (in at least "
        f"half of the seeds); where it fires, accuracy at the stop is ≥ {STOP_RATIO_TARGET}× "
        f"the accuracy at the end of the budget on {fired_ok} of those {fired}."),
        (f"- the audit's cost: AULC lower by {np.mean(costs):+.4f} on average with the default "
        f"10% share (largest {max(costs):+.4f}, smallest {min(costs):+.4f}; a negative cost "
        "means the audit runs did better, which is seed noise)."),
        "",
        f"![estimate and stop]({image.relative_to(out.parent).as_posix()})",
        "",
        ("Reading the plot: the solid line is the true held-out accuracy (mean over seeds), the "
        "dashed line and band the audit estimate and its 95% interval (mean over seeds, from 10 "
        "audit answers on), the triangle the median label count where stopping was suggested."),
    ]
    return "\n".join(lines)


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 5
    rows = int(np.ceil(len(results) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), dpi=100,
                             squeeze=False)
    for ax, r in zip(axes.ravel(), results):
        curve = [c for c in r["curves"] if c["strategy"] == "margin"]
        grid = sorted({c["n_labels"] for c in curve})

        def mean(key: str, n: int, curve=curve) -> float:
            values = [float(c[key]) for c in curve if c["n_labels"] == n]
            values = [v for v in values if not np.isnan(v)]
            return float(np.mean(values)) if values else np.nan

        ax.plot(grid, [mean("accuracy", n) for n in grid], color="C0", linewidth=1.6,
                label="true accuracy")
        shown = [n for n in grid if mean("n_audit", n) >= 10]
        if shown:
            ax.plot(shown, [mean("estimated_accuracy", n) for n in shown], color="C1",
                    linestyle="--", linewidth=1.2, label="audit estimate")
            ax.fill_between(shown, [mean("estimate_low", n) for n in shown],
                            [mean("estimate_high", n) for n in shown], color="C1", alpha=0.2,
                            linewidth=0, label="95% interval")
        stop = r["summary"]["margin"]["labels_at_stop"]
        if stop is not None:
            ax.plot([stop], [mean("accuracy", stop)], marker="v", color="C3", markersize=8,
                    linestyle="none", label="stop suggested")
        ax.set_title(r["dataset"], fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(results):]:
        ax.axis("off")
    legend: dict[str, Any] = {}  # every kind of line, from whichever panel has it
    for ax in axes.ravel():
        for handle, name in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(name, handle)
    fig.legend(legend.values(), legend.keys(), loc="lower center", ncol=4, fontsize=8,
               frameon=False)
    fig.supxlabel("labels", fontsize=8, y=0.06)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--budget", type=int, default=300)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--from-results", action="store_true",
                        help="rewrite the section and plot from bench_results/trust, no runs")
    args = parser.parse_args(argv)
    datasets = [d for d in args.datasets.split(",") if d]
    unknown = [d for d in datasets if d not in DATASETS]
    if unknown or not datasets:
        parser.error(f"unknown dataset {unknown}: use some of {', '.join(DATASETS)}")
    image = args.out.parent / "docs" / "bench" / "trust.png"
    jobs = [(d, args.seeds, args.budget, RESULTS / d) for d in datasets]
    results = []
    if args.from_results:
        results, jobs = [from_results(d, args.budget) for d in datasets], []
    with ProcessPoolExecutor(max_workers=max(args.jobs, 1)) as pool:
        runs = (pool.map(run_dataset, *zip(*jobs)) if args.jobs > 1 and jobs
                else map(run_dataset, *zip(*jobs)) if jobs else [])
        for r in runs:
            results.append(r)
            s = r["summary"]["margin"]
            print(f"{r['dataset']}: {r['wall_s']:.0f} s, coverage {_fmt(s['estimate_coverage'])} "
                  f"over {r['counted']} rounds, stop at {_fmt(s['labels_at_stop'])} "
                  f"(×{_fmt(s['stop_ratio'])}), AULC {s['aulc']:.4f} vs "
                  f"{r['summary']['margin_no_audit']['aulc']:.4f} without audit", file=sys.stderr)
    plot(results, image)
    write_section(args.out, SECTION, section(results, args.seeds, args.budget, image, args.out))
    print(f"wrote {args.out} and {image}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
