"""Time one refit round on the colour demo against the bare model on the same data.

    python scripts/bench_refit.py [--repeats 7] [--out BENCHMARKS.md]
    python scripts/bench_refit.py --versus [--repeats 5]    # auto's round against forest's
    python scripts/bench_refit.py --threads [--repeats 5]   # prediction on 1 thread against 2

A round is what the server does after each batch: read every answer from SQLite, fit a fresh
clone of the model, rescore the open rows, rank them and swap the queue. The floor is
``clone(model).fit`` plus ``predict_proba`` on the same arrays, timed in the same process, in
alternation with the round so that machine noise hits both alike. Medians and their ratio go to
stdout and into the "Refit round" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from benchmarks_md import machine, write_section
from sklearn.base import clone
from threadpoolctl import ThreadpoolController

from retrain_loop.engine import Engine
from retrain_loop.pool import load_pool
from retrain_loop.settings import EngineSettings
from retrain_loop.store import AnnotationStore

ROOT = Path(__file__).resolve().parent.parent
LABELS = ["red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink", "brown", "grey",
          "black", "white"]
# A rough namer for timing only: the nearest of twelve prototype colours. Its labels make the fit
# do the same work as real ones would; they are not meant to be right.
PROTOTYPES = np.array([
    [220, 30, 30], [245, 140, 20], [240, 220, 40], [40, 170, 60], [40, 210, 220], [40, 70, 210],
    [130, 50, 170], [240, 140, 190], [120, 70, 30], [128, 128, 128], [15, 15, 15], [245, 245, 245],
], dtype=np.float32)
SECTION = "## Refit round"
VERSUS = "## auto against forest: refit round"
# (labels, pool rows): the sizes the default learner's cost is held to.
VERSUS_SIZES = ((300, 10_000), (1_000, 100_000))
# Built once, as the engine does: building a controller inspects every loaded library.
THREADS = ThreadpoolController()


def _make_colours(n: int, seed: int) -> list[dict]:
    spec = importlib.util.spec_from_file_location("make_colour_pool", ROOT / "scripts" / "make_colour_pool.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_colours(n, seed)


def _name(X: np.ndarray) -> np.ndarray:
    return ((X[:, None, :] - PROTOTYPES[None]) ** 2).sum(axis=2).argmin(axis=1)


def bench(n_labels: int, repeats: int, model: str, workdir: Path) -> dict:
    import json

    pool_path = workdir / "colours.jsonl"
    if not pool_path.exists():
        pool_path.write_text("".join(json.dumps(r) + "\n" for r in _make_colours(2000, 0)))
    pool = load_pool(pool_path, features=["r", "g", "b"])
    store = AnnotationStore(workdir / f"{model}-{n_labels}.db")
    engine = Engine(pool, store, "colours", LABELS, EngineSettings(model=model, batch_size=10),
                    background=False).start()
    truth = _name(pool.X)
    labelled = 0
    while labelled < n_labels:
        tasks = engine.get_questions("bench", min(50, n_labels - labelled))
        answers = [dict(t, answer="accept", accept=[LABELS[truth[pool.index_of(t["_input_hash"])]]])
                   for t in tasks]
        labelled += engine.add_answers(answers, "bench")
    X_train, y_train = engine.training_data(store.labelled("colours"))
    open_rows = np.flatnonzero(engine.queue.open_rows())
    rounds, floors = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        engine.refit()
        rounds.append(time.perf_counter() - start)
        start = time.perf_counter()
        with THREADS.limit(limits=1):
            clone(engine.prototype).fit(X_train, y_train).predict_proba(pool.X[open_rows])
        floors.append(time.perf_counter() - start)
    engine.close()
    store.close()
    round_ms = statistics.median(rounds) * 1000
    floor_ms = statistics.median(floors) * 1000
    return {"model": model, "labels": len(y_train), "pool": len(pool), "open": len(open_rows),
            "round_ms": round_ms, "floor_ms": floor_ms, "ratio": round_ms / floor_ms,
            "error": engine.last_error}


def _blobs(n_rows: int, n_features: int = 20, n_labels: int = 5, seed: int = 0):
    """A pool of Gaussian clusters that overlap: a learnable, not trivial, labelling job."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=1.5, size=(n_labels, n_features))
    y = rng.integers(0, n_labels, n_rows)
    return (centres[y] + rng.normal(size=(n_rows, n_features))).astype(np.float32), y


def versus(n_labels: int, n_rows: int, repeats: int, workdir: Path) -> dict:
    """The same answers and pool under auto and under forest, rounds timed in alternation."""
    import json

    X, y = _blobs(n_rows)
    labels = [f"c{i}" for i in range(y.max() + 1)]
    path = workdir / f"blobs-{n_rows}.jsonl"
    with path.open("w") as f:
        for i, row in enumerate(X.tolist()):
            f.write(json.dumps({"id": i, **{f"x{j}": v for j, v in enumerate(row)}}) + "\n")
    pool = load_pool(path)
    store = AnnotationStore(workdir / f"versus-{n_rows}.db")
    engines = {m: Engine(pool, store, "blobs", labels, EngineSettings(model=m),
                         background=False).start() for m in ("auto", "forest")}
    picked = np.random.default_rng(1).choice(n_rows, n_labels, replace=False)
    answers = [{"_input_hash": int(pool.input_hashes[i]),
                "_task_hash": engines["auto"].task_hash(int(i)),
                "answer": "accept", "accept": [labels[y[i]]]} for i in picked]
    # Both engines are told of the answers (the store keeps them once), so both rescore the
    # same open rows.
    for engine in engines.values():
        engine.add_answers(answers, "b")
    times: dict[str, list[float]] = {m: [] for m in engines}
    for _ in range(repeats):
        for model, engine in engines.items():
            start = time.perf_counter()
            engine.refit()
            times[model].append(time.perf_counter() - start)
    for engine in engines.values():
        engine.close()
    store.close()
    ms = {m: statistics.median(t) * 1000 for m, t in times.items()}
    return {"labels": n_labels, "rows": n_rows, "auto_ms": ms["auto"], "forest_ms": ms["forest"],
            "ratio": ms["auto"] / ms["forest"],
            "timings": {m: e.last_timings for m, e in engines.items()}}


def _set_threads(model, n: int) -> None:
    """LightGBM predicts on its ``n_jobs`` (not capped by threadpoolctl); others on BLAS/OpenMP."""
    estimator = model.steps[-1][1] if hasattr(model, "steps") else model
    if hasattr(estimator, "n_jobs"):
        estimator.set_params(n_jobs=n)


def predict_threads(model_name: str, n_rows: int, repeats: int, n_labels: int = 1_000) -> dict:
    """``predict_proba`` over ``n_rows`` x 20 in slices of ``PREDICT_SLICE`` rows, as a round and
    the sweep score, on 1 thread and on 2, fitted on ``n_labels`` rows; timed in alternation."""
    from retrain_loop.models import make_model
    from retrain_loop.refit import PREDICT_SLICE

    X, y = _blobs(n_rows)
    with THREADS.limit(limits=1):
        model = make_model(model_name, seed=0).fit(X[:n_labels], y[:n_labels])
    times: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(repeats):
        for threads in (1, 2):
            _set_threads(model, threads)
            with THREADS.limit(limits=threads):
                start = time.perf_counter()
                for i in range(0, n_rows, PREDICT_SLICE):
                    model.predict_proba(X[i:i + PREDICT_SLICE])
                times[threads].append(time.perf_counter() - start)
    one, two = (statistics.median(times[t]) * 1000 for t in (1, 2))
    return {"model": model_name, "rows": n_rows, "one_ms": one, "two_ms": two,
            "speedup": one / two}


# A bounded round's candidates (round_sample + round_head), 100k and 1M rows.
THREAD_SIZES = (36_864, 100_000, 1_000_000)


def main_threads(repeats: int) -> int:
    """Prints, and saves for the "Bounded round" section (scripts/bench_bounded.py)."""
    import json

    results = []
    for model in ("lightgbm", "logreg"):
        for n_rows in THREAD_SIZES:
            r = predict_threads(model, n_rows, repeats)
            results.append(r)
            print(f"{model:9s} rows={n_rows:>9,}  1 thread {r['one_ms']:8.0f} ms  2 threads "
                  f"{r['two_ms']:8.0f} ms  speed-up {r['speedup']:.2f}x", file=sys.stderr)
    out = ROOT / "bench_results" / "bounded" / "threads.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"repeats": repeats, "results": results}, indent=1))
    print(f"wrote {out}; python scripts/bench_bounded.py --part report puts it in BENCHMARKS.md",
          file=sys.stderr)
    return 0


def main_versus(repeats: int, out: Path) -> int:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n_labels, n_rows in VERSUS_SIZES:
            r = versus(n_labels, n_rows, repeats, Path(tmp))
            results.append(r)
            print(f"labels={n_labels} rows={n_rows}: auto {r['auto_ms']:.0f} ms, forest "
                  f"{r['forest_ms']:.0f} ms, ratio {r['ratio']:.2f}; {r['timings']}",
                  file=sys.stderr)
    lines = [
        VERSUS, "",
        ("A refit round of the default learner `auto` (standardised logistic regression, a "
         "random forest and extra-trees of 100 trees each, soft vote) against one of `forest` "
         "(200 trees) on the same answers and pool: Gaussian clusters, 20 features, 5 labels. "
         "Rounds alternate between the two engines; median of "
         f"{repeats}. `python scripts/bench_refit.py --versus`. Target: at most 1.5x."),
        "",
        machine(),
        "",
        "| labels | pool rows | auto round (ms) | forest round (ms) | auto / forest |",
        "|---:|---:|---:|---:|---:|",
        *(f"| {r['labels']} | {r['rows']:,} | {r['auto_ms']:.0f} | {r['forest_ms']:.0f} | "
          f"{r['ratio']:.2f} |" for r in results),
    ]
    write_section(out, VERSUS, "\n".join(lines))
    print(f"wrote {out}", file=sys.stderr)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--versus", action="store_true",
                        help="time auto's round against forest's at 300 x 10k and 1k x 100k")
    parser.add_argument("--threads", action="store_true",
                        help="time prediction on 1 thread against 2 at 100k and 1M rows")
    parser.add_argument("--labels", default="50,100,200,500,1000")
    parser.add_argument("--models", default="auto,lightgbm,logreg")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()
    if args.versus:
        return main_versus(args.repeats, args.out)
    if args.threads:
        return main_threads(args.repeats)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            for n in (int(v) for v in args.labels.split(",")):
                r = bench(n, args.repeats, model, Path(tmp))
                results.append(r)
                print(f"{model:9s} labels={r['labels']:5d} pool={r['pool']} open={r['open']}  "
                      f"round {r['round_ms']:7.1f} ms  floor {r['floor_ms']:7.1f} ms  "
                      f"ratio {r['ratio']:.2f}", file=sys.stderr)
    lines = [
        SECTION, "",
        ("One refit round on the colour demo (2,000 rows, 3 features, 12 labels): read every "
        "answer from SQLite, fit a fresh clone, rescore the open rows, rank, swap. The floor is "
        "`clone(model).fit` + `predict_proba` on the same arrays in the same process, "
        f"alternating with the round. Median of {args.repeats}; `python scripts/bench_refit.py`."),
        "",
        machine(),
        "",
        "| model | labels | open rows | round (ms) | floor (ms) | round / floor |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(f"| {r['model']} | {r['labels']} | {r['open']} | {r['round_ms']:.1f} | "
                     f"{r['floor_ms']:.1f} | {r['ratio']:.2f} |")
    write_section(args.out, SECTION, "\n".join(lines))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
