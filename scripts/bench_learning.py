"""The label-efficiency suite: every learner, margin against random, on ten real datasets.

    python scripts/bench_learning.py [--short] [--no-peers] [--jobs 2] [--datasets iris,digits]
                                     [--models auto,logreg] [--seeds 10] [--out BENCHMARKS.md]

Every run is ``retrain_loop.simulate.run``: the engine that serves annotators, answered by an
oracle that knows the labels, refitting after every batch. The datasets are in
``scripts/learning_datasets.py``: real tabular data shipped inside installed packages
(scikit-learn, matplotlib's xkcd colours, palmerpenguins, vega_datasets, statsmodels), binary and
multiclass, 150 to 6,366 rows. Models: ``auto`` and every named single learner; strategies margin
and random (``margin_all_copies`` is margin without the near-copy filter, to measure it); batch
10, 10 random initial labels, a budget of 300 labels (or the pool), 30% of each dataset held
out, stratified, per seed.

Each (dataset, model) writes ``bench_results/learning/<dataset>-<model>/`` (curves.csv,
summary.csv, curves.png). When the peer environment builds (``scripts/peers/setup.sh``),
modAL's margin sampling runs the same protocol with the same learner on the same splits, into
``bench_results/learning/peers/``.

The full run rewrites the "Learning curves" and "Peers side by side" sections of BENCHMARKS.md,
with one plot per dataset in ``docs/bench/``. ``--short`` (2 seeds, budget 100, auto and logreg)
is a smoke run: it writes ``bench_results/learning/short/BENCHMARKS.md`` so that it never
replaces the committed numbers, unless ``--out`` says otherwise.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from benchmarks_md import machine, write_section
from learning_datasets import DATASETS as LOADERS
from learning_datasets import load as load_dataset

from retrain_loop import simulate
from retrain_loop.models import MODELS as LEARNERS

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench_results" / "learning"
PEERS_DIR = ROOT / "scripts" / "peers"
PEERS_PYTHON = PEERS_DIR / ".venv" / "bin" / "python"
DATASETS = tuple(LOADERS)
MODELS = tuple(LEARNERS)
STRATEGIES = ("margin", "random")
ALL_STRATEGIES = ("margin", "least_confident", "entropy", "random", "margin_all_copies")
SHORT_MODELS = ("auto", "logreg")
LEARNING = "## Learning curves"
# AULC differences below this are called a match: seed-to-seed spread is of that order.
TIE = 0.005
PEERS = "## Peers side by side"


@dataclass(frozen=True)
class Settings:
    seeds: int
    budget: int
    strategies: tuple[str, ...] = STRATEGIES
    copies_check: tuple[str, ...] = ("auto",)  # models also run without the near-copy filter
    batch_size: int = 10
    initial: int = 10
    test_size: float = 0.3

    def run_kwargs(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size, "initial": self.initial, "budget": self.budget,
                "test_size": self.test_size}


FULL = Settings(seeds=10, budget=300)
SHORT = Settings(seeds=2, budget=100)


def plan(datasets: list[str], models: list[str], short: bool) -> list[tuple[str, str]]:
    return [(d, m) for m in models for d in datasets if not short or m in SHORT_MODELS]


# -- our runs ------------------------------------------------------------------------------------


def run_ours(dataset: str, model: str, settings: Settings, out_dir: Path,
             image: Path | None) -> dict[str, Any]:
    X, y, labels = load_dataset(dataset)
    started = time.perf_counter()
    curves: list[dict[str, Any]] = []
    strategies = settings.strategies
    if model in settings.copies_check and "margin" in strategies:
        strategies = (*strategies, "margin_all_copies")
    for seed in range(settings.seeds):
        for strategy in strategies:
            # margin_all_copies: margin with the near-copy filter off, to measure the filter.
            off = {"distinct": 0.0} if strategy.endswith("_all_copies") else {}
            run = simulate.run(X, y, labels, strategy=strategy.removesuffix("_all_copies"),
                               model=model, seed=seed, **off, **settings.run_kwargs())
            curves += [dict(r, strategy=strategy) for r in run]
    full = {seed: simulate.full_data_accuracy(X, y, len(labels), model=model, seed=seed,
                                              test_size=settings.test_size)
            for seed in range(settings.seeds)}
    wall = time.perf_counter() - started
    title = f"{dataset}, {model}: mean ± sd over {settings.seeds} seeds"
    summary = simulate.write_outputs(out_dir, curves, full, title=title)
    if image is not None:
        _small_plot(curves, full, image, title)
    pool = len(y) - int(np.ceil(len(y) * settings.test_size))
    return {"dataset": dataset, "model": model, "curves": curves, "full": full,
            "summary": summary, "wall_s": wall, "rows": len(y), "features": X.shape[1],
            "labels": len(labels), "pool": pool, "budget": min(settings.budget, pool),
            "rounds": len(curves)}


def _small_plot(curves, full, path: Path, title: str) -> None:
    """The plot for committing: 100 dpi (``simulate.plot`` saves at its figure's 110) and a
    64-colour palette, which takes it from about 65 kB to 15 kB with no visible change."""
    import matplotlib
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    with matplotlib.rc_context({"savefig.dpi": 100}):
        simulate.plot(curves, full, path, title=title)
    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)


def per_seed_aulc(curves: list[dict], full: dict[int, float], strategy: str) -> dict[int, float]:
    out = {}
    for seed in full:
        rows = [r for r in curves if r["strategy"] == strategy and r["seed"] == seed]
        if rows:
            out[seed] = simulate.summarize(rows, {seed: full[seed]})[0]["aulc"]
    return out


def mean_round_s(curves: list[dict], strategy: str) -> float:
    values = [float(r["refit_ms"]) for r in curves
              if r["strategy"] == strategy and r["refit_ms"] not in (None, "")]
    return float(np.mean(values)) / 1000 if values else float("nan")


# -- peers ---------------------------------------------------------------------------------------


def setup_peers() -> str | None:
    """Build the peer venv; returns why peers cannot run, or None when they can."""
    if not (PEERS_DIR / "run_peers.py").exists():
        return "scripts/peers/run_peers.py does not exist"
    started = time.perf_counter()
    done = subprocess.run(["bash", str(PEERS_DIR / "setup.sh")], cwd=ROOT, capture_output=True,
                          text=True, check=False)
    print(f"peers: setup.sh took {time.perf_counter() - started:.1f} s", file=sys.stderr)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return f"scripts/peers/setup.sh failed (exit {done.returncode}): {' / '.join(tail)}"
    return None


def run_peer(dataset: str, model: str, settings: Settings, out_dir: Path,
             timeout: float) -> dict[str, Any]:
    command = [str(PEERS_PYTHON), str(PEERS_DIR / "run_peers.py"), "--dataset", dataset,
               "--strategies", "modal_margin",
               "--model", model, "--seeds", str(settings.seeds),
               "--batch-size", str(settings.batch_size), "--initial", str(settings.initial),
               "--budget", str(settings.budget), "--test-size", str(settings.test_size),
               "--out", str(out_dir)]
    started = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    wall = time.perf_counter() - started
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
        return {"error": f"exit {done.returncode}: {tail[0]}"}
    curves = simulate.read_curves(out_dir / "curves.csv")
    return {"curves": curves, "wall_s": wall}


# -- report --------------------------------------------------------------------------------------


def _labels_to(value) -> str:
    return "never" if value is None else str(value)


def verdict(result: dict[str, Any]) -> str:
    """Did margin beat random on this dataset, by AULC (paired over seeds) and labels to 95%?"""
    by = {s["strategy"]: s for s in result["summary"]}
    if "margin" not in by or "random" not in by:
        return ""
    m, r = by["margin"], by["random"]
    margin_seeds = per_seed_aulc(result["curves"], result["full"], "margin")
    random_seeds = per_seed_aulc(result["curves"], result["full"], "random")
    diffs = [margin_seeds[s] - random_seeds[s] for s in margin_seeds if s in random_seeds]
    better, worse = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
    delta = m["aulc"] - r["aulc"]
    aulc = ("matched" if abs(delta) < TIE else "beat" if delta > 0 else "lost to")
    lm, lr = m["labels_to_95pct"], r["labels_to_95pct"]
    if lm == lr:
        labels = f"both reached 95% at {lm} labels" if lm else "neither reached 95%"
    elif lr is None:
        labels = f"margin reached 95% at {lm} labels, random never did"
    elif lm is None:
        labels = f"random reached 95% at {lr} labels, margin never did"
    elif lm < lr:
        labels = f"margin reached 95% sooner ({lm} labels against {lr})"
    else:
        labels = f"random reached 95% sooner ({lr} labels against {lm})"
    return (f"- **{result['dataset']}**: margin {aulc} random on AULC ({m['aulc']:.3f} vs "
            f"{r['aulc']:.3f}, {delta:+.3f}; better on {better} and worse on {worse} of "
            f"{len(diffs)} seeds); {labels}.")


def _colour_note() -> str:
    from collections import Counter

    import colour_oracle as oracle
    from matplotlib.colors import XKCD_COLORS

    _, y, labels = oracle.colour_pool(2000, 0)
    counts = ", ".join(f"{labels[i]} {n}" for i, n in Counter(y.tolist()).most_common())
    return (
        "**Colours** are the demo's 2,000 HSV-uniform colours (features r, g, b) named by "
        "`scripts/colour_oracle.py`: the colours of the xkcd colour survey in "
        "`matplotlib.colors.XKCD_COLORS`, each reduced to one of the twelve basic terms by its "
        "head word (the last word: \"light blue\" → blue, \"bluish green\" → green) through a "
        "documented synonym table (gray → grey; violet, lavender, lilac, magenta, mauve → "
        "purple; teal, turquoise, aqua → cyan; tan, beige, khaki → brown; maroon, crimson → "
        "red; rose, salmon, fuchsia → pink; lime, olive → green; ...; the full table is in the "
        "script's `SYNONYMS`). Names whose head word maps to none (\"green/blue\", \"coral\", "
        f"\"periwinkle\", \"puce\", ...) are dropped, keeping {len(oracle.reference()[0])} of "
        f"{len(XKCD_COLORS)}. A colour is named by its nearest kept xkcd colour in CIELAB. On "
        f"the pool that gives {counts}: unbalanced, as HSV-uniform colours are (many dark and "
        "greyish ones, few bright yellows and oranges)."
    )


def learning_section(results: list[dict], settings: Settings, short: bool, image_dir: Path,
                     out: Path) -> str:
    command = "python scripts/bench_learning.py" + (" --short" if short else "")
    lines = [
        LEARNING, "",
        ("The serving engine (`retrain_loop.simulate.run`) answered by an oracle that knows the "
         f"labels. {settings.seeds} seeds, each with its own stratified split holding out "
         f"{settings.test_size:.0%} of the rows for testing; {settings.initial} random initial "
         f"labels, then batches of {settings.batch_size} picked by the strategy, a refit after "
         f"each, up to {settings.budget} labels or the whole pool. `{command}`; raw curves in "
         "`bench_results/learning/`."),
        "",
        ("- **AULC**: mean held-out accuracy over the label range (area under the mean curve "
         "divided by its width; 1.0 is perfect from the first label)."),
        ("- **labels to 95%**: first label count at which the mean curve reaches 95% of the "
         "full-data accuracy; *never* if it does not within the budget."),
        (f"- **margin against random**: \"matched\" when the AULCs differ by less than {TIE}; "
         "the seed counts compare the two strategies seed by seed, on the same split."),
        ("- **full-data**: accuracy of the same model fitted on the whole pool, the ceiling. "
         "**s/round**: mean engine refit per round (read the answers, fit, rescore and rank "
         "the open rows), single-threaded."),
        "",
        machine("Shared and noisy: compare timings within a table, not across runs."), "",
        *([_colour_note(), ""] if any(r["dataset"] == "colours" for r in results) else []),
        "| dataset | rows | features | labels | pool | budget | rounds per run |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    seen = set()
    for r in results:
        if r["dataset"] not in seen:
            seen.add(r["dataset"])
            rounds = simulate.rounds_per_run(r["rows"], initial=settings.initial,
                                             budget=settings.budget,
                                             batch_size=settings.batch_size,
                                             test_size=settings.test_size)
            lines.append(f"| {r['dataset']} | {r['rows']} | {r['features']} | {r['labels']} | "
                         f"{r['pool']} | {r['budget']} | {rounds} |")
    for model in dict.fromkeys(r["model"] for r in results):
        mine = [r for r in results if r["model"] == model]
        lines += ["", f"### {model}", "",
                  ("| dataset | strategy | AULC | labels to 95% | final accuracy | full-data "
                   "accuracy | s/round |"),
                  "|---|---|---:|---:|---:|---:|---:|"]
        for r in mine:
            for s in r["summary"]:
                lines.append(
                    f"| {r['dataset']} | {s['strategy']} | {s['aulc']:.3f} | "
                    f"{_labels_to(s['labels_to_95pct'])} | {s['final_accuracy']:.3f} | "
                    f"{s['full_data_accuracy']:.3f} | "
                    f"{mean_round_s(r['curves'], s['strategy']):.3f} |")
        lines += ["", f"Margin against random with {model}:", ""]
        lines += [verdict(r) for r in mine if verdict(r)]
        lines.append("")
        for r in mine:
            name = f"{r['dataset']}-{model}.png"
            link = os.path.relpath(image_dir / name, out.parent)
            lines.append(f"![{r['dataset']}, {model}: learning curves]({link})")
    lines += ["", ("Wall time of each (dataset, model): every strategy and seed, plus the "
                   "full-data fits."), "",
              "| dataset | model | runs | rounds | wall (s) | s per round, all in |",
              "|---|---|---:|---:|---:|---:|"]
    for r in results:
        runs = len({(c["strategy"], c["seed"]) for c in r["curves"]})
        lines.append(f"| {r['dataset']} | {r['model']} | {runs} | {r['rounds']} | "
                     f"{r['wall_s']:.1f} | {r['wall_s'] / r['rounds']:.3f} |")
    total = sum(r["wall_s"] for r in results)
    lines += ["", f"Total: {total / 60:.1f} min for our runs."]
    return "\n".join(lines)


def peers_section(results: list[dict], peers: dict[tuple[str, str], dict], settings: Settings,
                  note: str | None) -> str:
    lines = [
        PEERS, "",
        ("Our margin sampling against [modAL](https://github.com/modAL-python/modAL) 0.4.2.1 and "
         "[scikit-activeml](https://github.com/scikit-activeml/scikit-activeml) 1.0.1 on the same "
         "runs: `scripts/peers/run_peers.py` imports our `split`, `initial_set`, `make_model` and "
         "`evaluate`, so every strategy sees the same split, initial labels, estimator (a fresh "
         "clone fitted on all labels each round) and test rows, with the settings above. The "
         "peers run in their own venv with scikit-learn 1.7 (modAL breaks on ≥ 1.8); see "
         "`scripts/peers/README.md`. labels to 95% uses our full-data accuracy as the target "
         "for every row. **s/round** is each tool's `refit_ms`: fitting on all labels plus the "
         "query for the next batch (our engine: read answers, fit, rescore, rank)."),
        "",
    ]
    if note:
        return "\n".join(lines + [f"Peers did not run: {note}."])
    for model in dict.fromkeys(r["model"] for r in results):
        mine = [r for r in results if r["model"] == model and (r["dataset"], model) in peers]
        if not mine:
            continue
        lines += [f"### {model}", "",
                  "| dataset | strategy | AULC | labels to 95% | final accuracy | s/round |",
                  "|---|---|---:|---:|---:|---:|"]
        for r in mine:
            ours = {s["strategy"]: s for s in r["summary"]}.get("margin")
            if ours:
                lines.append(f"| {r['dataset']} | **ours: margin** | {ours['aulc']:.3f} | "
                             f"{_labels_to(ours['labels_to_95pct'])} | "
                             f"{ours['final_accuracy']:.3f} | "
                             f"{mean_round_s(r['curves'], 'margin'):.3f} |")
            peer = peers[(r["dataset"], model)]
            if "error" in peer:
                lines.append(f"| {r['dataset']} | peers failed: {peer['error']} | | | | |")
                continue
            for s in simulate.summarize(peer["curves"], r["full"]):
                lines.append(f"| {r['dataset']} | {s['strategy']} | {s['aulc']:.3f} | "
                             f"{_labels_to(s['labels_to_95pct'])} | "
                             f"{s['final_accuracy']:.3f} | "
                             f"{mean_round_s(peer['curves'], s['strategy']):.3f} |")
        lines.append("")
    walls = [p["wall_s"] for p in peers.values() if "wall_s" in p]
    lines.append(f"Total: {sum(walls) / 60:.1f} min for the peer runs (each a separate process).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true",
                        help="2 seeds, budget 100, lightgbm only on iris and colours")
    parser.add_argument("--no-peers", action="store_true", help="skip modAL / scikit-activeml")
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--seeds", type=int, help=f"default {FULL.seeds} ({SHORT.seeds} short)")
    parser.add_argument("--budget", type=int, help=f"default {FULL.budget} ({SHORT.budget} short)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="runs at once, each in its own process (AULC is unaffected; the "
                             "s/round column is then measured with the cores shared)")
    parser.add_argument("--out", type=Path, help="Markdown file for the sections (default "
                        "BENCHMARKS.md; bench_results/learning/short/BENCHMARKS.md with --short)")
    args = parser.parse_args(argv)
    datasets = [d for d in args.datasets.split(",") if d]
    models = [m for m in args.models.split(",") if m]
    strategies = tuple(s for s in args.strategies.split(",") if s)
    for name, given, known in (("dataset", datasets, DATASETS), ("model", models, MODELS),
                               ("strategy", strategies, ALL_STRATEGIES)):
        unknown = [g for g in given if g not in known]
        if unknown or not given:
            parser.error(f"unknown {name} {unknown}: use some of {', '.join(known)}")
    base = SHORT if args.short else FULL
    settings = Settings(seeds=args.seeds or base.seeds, budget=args.budget or base.budget,
                        strategies=strategies)
    out = args.out or (RESULTS / "short" / "BENCHMARKS.md" if args.short
                       else ROOT / "BENCHMARKS.md")
    image_dir = out.parent / "docs" / "bench"
    results_dir = RESULTS / "short" if args.short else RESULTS
    started = time.perf_counter()

    results = []
    jobs = [(dataset, model, settings, results_dir / f"{dataset}-{model}",
             image_dir / f"{dataset}-{model}.png")
            for dataset, model in plan(datasets, models, args.short)]
    with ProcessPoolExecutor(max_workers=max(args.jobs, 1)) as pool:
        runs = pool.map(run_ours, *zip(*jobs)) if args.jobs > 1 else map(run_ours, *zip(*jobs))
        for r in runs:
            results.append(r)
            line = "  ".join(f"{s['strategy']} {s['aulc']:.3f}/"
                             f"{_labels_to(s['labels_to_95pct'])}" for s in r["summary"])
            print(f"{r['dataset']}-{r['model']}: {r['wall_s']:.1f} s  AULC/labels to 95%: "
                  f"{line}", file=sys.stderr)
    ours_s = time.perf_counter() - started
    write_section(out, LEARNING, learning_section(results, settings, args.short, image_dir, out))
    print(f"ours: {ours_s:.0f} s; wrote {out}", file=sys.stderr)

    peers: dict[tuple[str, str], dict] = {}
    note = "--no-peers" if args.no_peers else setup_peers()
    if note is None:
        # A peer run that hangs must not stall the suite: far above the measured times.
        timeout = 600 if args.short else 3600
        keys = [(r["dataset"], r["model"]) for r in results]
        with ProcessPoolExecutor(max_workers=max(args.jobs, 1)) as pool:
            done = pool.map(run_peer, *zip(*[(*key, settings, results_dir / "peers" /
                                               f"{key[0]}-{key[1]}", timeout) for key in keys]))
            for key, peer in zip(keys, done):
                peers[key] = peer
                status = peer.get("error") or f"{peer['wall_s']:.1f} s"
                print(f"peers {key[0]}-{key[1]}: {status}", file=sys.stderr)
    else:
        print(f"peers skipped: {note}", file=sys.stderr)
    write_section(out, PEERS, peers_section(results, peers, settings, note))
    print(f"total: {time.perf_counter() - started:.0f} s; wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
