"""The label-efficiency suite's verdict: the table, the targets and a plot, from saved curves.

    python scripts/learning_report.py [--results bench_results/learning] [--out BENCHMARKS.md]

Reads what ``scripts/bench_learning.py`` saved (``<dataset>-<model>/curves.csv`` and
``summary.csv``, and modAL's ``peers/<dataset>-<model>/curves.csv``), and rewrites the section
"Label efficiency: the default against its targets" of BENCHMARKS.md, with the plot
``docs/bench/suite-auto.png``. The targets (with default settings, so ``auto`` and margin):

- margin beats random's AULC on every dataset;
- the median over datasets of labels to 95% of full-data accuracy is at most 0.6x random's;
- ``auto`` is within 0.005 AULC of the best single learner (with margin) on every dataset;
- margin is never below modAL's margin with the same learner by more than 0.002 AULC.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

import numpy as np
from benchmarks_md import write_section
from learning_datasets import DATASETS

from retrain_loop import simulate
from retrain_loop.models import DEFAULT_MODEL, MODELS

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## Label efficiency: the default against its targets"
SINGLE = [m for m in MODELS if m != DEFAULT_MODEL]
WITHIN_BEST = 0.005
WITHIN_PEER = 0.002
LABEL_RATIO = 0.6


def load(results: Path) -> dict:
    """(dataset, model) -> {"curves", "full", "summary"}; and peers under ("peer", d, m)."""
    out: dict = {}
    for dataset in DATASETS:
        for model in MODELS:
            folder = results / f"{dataset}-{model}"
            if not (folder / "curves.csv").exists():
                continue
            with (folder / "summary.csv").open(newline="", encoding="utf-8") as f:
                full = float(next(csv.DictReader(f))["full_data_accuracy"])
            curves = simulate.read_curves(folder / "curves.csv")
            entry = {"curves": curves, "full": {0: full},
                     "summary": {s["strategy"]: s for s in simulate.summarize(curves, {0: full})}}
            out[(dataset, model)] = entry
            peer = results / "peers" / f"{dataset}-{model}" / "curves.csv"
            if peer.exists():
                out[("peer", dataset, model)] = {
                    s["strategy"]: s for s in simulate.summarize(simulate.read_curves(peer), {0: full})}
    return out


def _labels(summary: dict, budget: int) -> tuple[int, str]:
    """Labels to 95% as a number (a run that never got there counts as its budget) and text."""
    n = summary["labels_to_95pct"]
    return (budget, f"never (>{budget})") if n is None else (int(n), str(n))


def report(data: dict, image: Path, out: Path) -> str:
    datasets = [d for d in DATASETS if (d, DEFAULT_MODEL) in data]
    seeds = len({r["seed"] for r in data[(datasets[0], DEFAULT_MODEL)]["curves"]})
    rows, checks = [], {"beats": [], "best": [], "peer": []}
    ours_labels, random_labels = [], []
    for d in datasets:
        auto = data[(d, DEFAULT_MODEL)]["summary"]
        budget = max(r["n_labels"] for r in data[(d, DEFAULT_MODEL)]["curves"])
        margin, random = auto["margin"], auto["random"]
        lm, tm = _labels(margin, budget)
        lr, tr = _labels(random, budget)
        ours_labels.append(lm)
        random_labels.append(lr)
        singles = {m: data[(d, m)]["summary"]["margin"]["aulc"] for m in SINGLE if (d, m) in data}
        best = max(singles, key=singles.get) if singles else None
        peer = data.get(("peer", d, DEFAULT_MODEL), {}).get("modal_margin")
        copies = auto.get("margin_all_copies")
        checks["beats"].append((d, margin["aulc"] - random["aulc"]))
        if best:
            checks["best"].append((d, margin["aulc"] - singles[best], best))
        for m in MODELS:
            p = data.get(("peer", d, m), {}).get("modal_margin")
            if p and (d, m) in data:
                checks["peer"].append((d, m, data[(d, m)]["summary"]["margin"]["aulc"] - p["aulc"]))
        cells = [d, f"**{margin['aulc']:.3f}**", f"{random['aulc']:.3f}",
                 f"{margin['aulc'] - random['aulc']:+.3f}", tm, tr,
                 *(f"{singles[m]:.3f}" if m in singles else "" for m in SINGLE),
                 f"{peer['aulc']:.3f}" if peer else "", f"{copies['aulc']:.3f}" if copies else ""]
        rows.append("| " + " | ".join(cells) + " |")
    median_ours, median_random = float(np.median(ours_labels)), float(np.median(random_labels))
    ratio = median_ours / median_random if median_random else math.nan

    def mark(ok: bool) -> str:
        return "met" if ok else "**missed**"

    beats_missed = [f"{d} ({v:+.3f})" for d, v in checks["beats"] if v <= 0]
    best_missed = [f"{d} ({v:+.3f} against {m})" for d, v, m in checks["best"]
                   if v < -WITHIN_BEST]
    peer_missed = [f"{d}/{m} ({v:+.3f})" for d, m, v in checks["peer"] if v < -WITHIN_PEER]
    worst_best = min((v for _, v, _ in checks["best"]), default=math.nan)
    worst_peer = min((v for _, _, v in checks["peer"]), default=math.nan)
    lines = [
        SECTION, "",
        ("Default settings: the `auto` learner, margin sampling with the near-copy filter, batches "
         f"of 10 after 10 random labels, up to 300 labels, {seeds} seeds (each its own stratified 30% "
         "test split), on the ten datasets of `scripts/learning_datasets.py`. Single learners "
         "run the same margin loop; modAL's margin runs the same splits, initial labels and "
         "learner in `scripts/peers/`. `python scripts/bench_learning.py --jobs 2` then "
         "`python scripts/learning_report.py`."),
        "",
        "| dataset | auto margin | auto random | margin − random | labels to 95%: margin | "
        "random | " + " | ".join(f"{m} margin" for m in SINGLE)
        + " | modAL margin (auto) | auto margin, no copy filter |",
        "|---|" + "---:|" * (7 + len(SINGLE)),
        *rows,
        "",
        ("AULC: mean held-out accuracy over the label range. labels to 95%: the first label "
         "count at which the mean curve over seeds reaches 95% of the accuracy of the same "
         "learner fitted on the whole pool."),
        "",
        "Targets:",
        "",
        (f"- margin beats random's AULC on every dataset: {mark(not beats_missed)}"
         + (f"; not on {', '.join(beats_missed)}" if beats_missed else "")
         + f" ({sum(v > 0 for _, v in checks['beats'])} of {len(checks['beats'])})."),
        (f"- median labels to 95%, margin against random, at most {LABEL_RATIO}x: "
         f"{mark(ratio <= LABEL_RATIO)} ({median_ours:g} against {median_random:g}, "
         f"{ratio:.2f}x; a run that never reaches 95% counts as its budget)."),
        (f"- `auto` within {WITHIN_BEST} AULC of the best single learner on every dataset: "
         f"{mark(not best_missed)} (worst {worst_best:+.3f})"
         + (f"; missed on {', '.join(best_missed)}" if best_missed else "") + "."),
        (f"- never below modAL's margin with the same learner by more than {WITHIN_PEER}: "
         f"{mark(not peer_missed)} (worst {worst_peer:+.3f} over {len(checks['peer'])} "
         "dataset × learner pairs)"
         + (f"; missed on {', '.join(peer_missed)}" if peer_missed else "") + "."),
        "",
        f"![auto: margin against random on every dataset]({_rel(image, out)})",
    ]
    _plot(data, datasets, image, seeds)
    return "\n".join(lines)


def _rel(path: Path, out: Path) -> str:
    import os

    return os.path.relpath(path, out.parent)


def _plot(data: dict, datasets: list[str], path: Path, seeds: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 5
    fig, axes = plt.subplots(math.ceil(len(datasets) / cols), cols, figsize=(15, 6), dpi=90,
                             squeeze=False)
    for ax, d in zip(axes.flat, datasets):
        entry = data[(d, DEFAULT_MODEL)]
        for strategy, colour in (("margin", "tab:blue"), ("random", "tab:orange")):
            rows = [r for r in entry["curves"] if r["strategy"] == strategy]
            grid = sorted({r["n_labels"] for r in rows})
            mean = [np.nanmean([r["accuracy"] for r in rows if r["n_labels"] == n]) for n in grid]
            ax.plot(grid, mean, color=colour, label=strategy, linewidth=1.6)
        ax.axhline(0.95 * entry["full"][0], color="grey", linestyle="--", linewidth=0.8)
        ax.set_title(d, fontsize=10)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(datasets):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8, loc="lower right")
    fig.suptitle(f"auto: held-out accuracy against labels (mean of {seeds} seeds; dashed: 95% "
                 "of full-data accuracy)", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=ROOT / "bench_results" / "learning")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args(argv)
    data = load(args.results)
    if not any(k == (d, DEFAULT_MODEL) for k in data for d in DATASETS):
        print(f"no runs of {DEFAULT_MODEL} under {args.results}", file=sys.stderr)
        return 2
    image = args.out.parent / "docs" / "bench" / "suite-auto.png"
    write_section(args.out, SECTION, report(data, image, args.out))
    print(f"wrote {args.out} and {image}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
