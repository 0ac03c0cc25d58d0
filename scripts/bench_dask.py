"""Pool scoring on Dask: a Parquet pool scored by a local cluster of 2 workers x 1 thread, against
the same work in one process on one thread.

    python scripts/bench_dask.py [--rows 10000000] [--repeats 3] [--models lightgbm,logreg]
                                 [--work /tmp/retrain-loop-dask] [--out BENCHMARKS.md]

The pool: ``--rows`` rows of 8 float32 features (Gaussian noise from a seeded generator) and an
id, in row groups of ``partitions.PARTITION_ROWS`` rows, made once under ``--work`` and reused.
Each model is fitted on 3,000 rows labelled by a fixed linear rule (3 labels). Then, alternating,
median of ``--repeats``:

- one process: every partition's features read from the file and scored, in order, into one
  array (``partitions.score_part``, what a worker runs), with one thread;
- Dask: ``DaskPool.probabilities``, which scatters the model, has the workers read and score the
  partitions, and gathers the probabilities into one array here, checking each.

The two arrays are compared (equal, and the top 100 rows by margin). Once per model the Dask
run is taken apart: the model's scatter; the tasks run with their results left on the workers
(wall time, and each worker's busy time from the task stream); then gathering those results
and copying them into one array. The cluster's start-up is timed on its own and excluded.
Writes the "Pool scoring on Dask" section of BENCHMARKS.md and ``--work``/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from benchmarks_md import machine, write_section
from threadpoolctl import threadpool_limits

from retrain_loop import partitions
from retrain_loop.dask_scoring import DaskPool, connect
from retrain_loop.models import make_model
from retrain_loop.partitions import score_part
from retrain_loop.pool import load_pool
from retrain_loop.strategies import get_strategy

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## Pool scoring on Dask"
N_FEATURES, N_LABELS, N_TRAIN, TOP = 8, 3, 3_000, 100


def make_pool(work: Path, rows: int) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = work / f"pool-{rows}.parquet"
    if path.exists():
        return path
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    group = partitions.PARTITION_ROWS
    names = [f"x{j}" for j in range(N_FEATURES)]
    part = path.with_suffix(".partial")
    with pq.ParquetWriter(part, pa.schema([("id", pa.string())]
                                          + [(n, pa.float32()) for n in names])) as writer:
        for a in range(0, rows, group):
            b = min(a + group, rows)
            X = rng.standard_normal((b - a, N_FEATURES), dtype=np.float32)
            columns = [pa.array([f"r{i}" for i in range(a, b)])] + [pa.array(c) for c in X.T]
            writer.write_table(pa.table(columns, names=["id", *names]), row_group_size=group)
    part.rename(path)
    return path


def labels_of(X: np.ndarray) -> np.ndarray:
    """A fixed linear rule with a little noise: 3 labels, none rare."""
    rng = np.random.default_rng(1)
    W = rng.standard_normal((N_FEATURES, N_LABELS))
    return (X @ W + 0.3 * rng.standard_normal((len(X), N_LABELS))).argmax(axis=1)


def one_process(cluster: DaskPool, model) -> np.ndarray:
    out = np.empty((len(cluster.pool), N_LABELS), dtype=np.float64)
    with threadpool_limits(limits=1):
        for part in cluster.parts:
            out[part.start:part.stop] = score_part(cluster.source, part, model, N_LABELS)[0]
    return out


def top_rows(proba: np.ndarray) -> np.ndarray:
    utility = get_strategy("margin")(proba, np.random.default_rng(0))
    return np.argsort(-utility, kind="stable")[:TOP]


def taken_apart(cluster: DaskPool, model) -> dict[str, float]:
    """The Dask run in phases: scatter, the tasks with results left on the workers, gathering."""
    import distributed

    client = cluster.client
    started = time.perf_counter()
    scattered = client.scatter(model, broadcast=True, hash=False)
    scatter_s = time.perf_counter() - started
    with distributed.get_task_stream(client=client) as stream, client.as_current():
        started = time.perf_counter()
        futures = [client.submit(score_part, cluster.source, part, scattered, N_LABELS, None,
                                 pure=False) for part in cluster.parts]
        distributed.wait(futures)
        tasks_s = time.perf_counter() - started
    busy: dict[str, float] = {}
    for task in stream.data:
        for span in task["startstops"]:
            if span["action"] == "compute":
                busy[task["worker"]] = busy.get(task["worker"], 0.0) + span["stop"] - span["start"]
    started = time.perf_counter()
    results = client.gather(futures)
    gather_s = time.perf_counter() - started
    started = time.perf_counter()
    out = np.empty((len(cluster.pool), N_LABELS), dtype=np.float64)
    for part, (proba, _) in zip(cluster.parts, results):
        out[part.start:part.stop] = proba
    copy_s = time.perf_counter() - started
    del results, futures, scattered
    return {"scatter_s": scatter_s, "tasks_s": tasks_s, "busy_max_s": max(busy.values()),
            "busy_sum_s": sum(busy.values()), "gather_s": gather_s, "copy_s": copy_s,
            "n_tasks": len(cluster.parts)}


def measure(path: Path, models: list[str], repeats: int) -> dict:
    started = time.perf_counter()
    pool = load_pool(path)
    load_s = time.perf_counter() - started
    print(f"loaded {len(pool):,} rows in {load_s:.1f} s", file=sys.stderr, flush=True)
    y = labels_of(pool.X[:N_TRAIN])
    started = time.perf_counter()
    client = connect("local")
    start_s = time.perf_counter() - started
    results = {"rows": len(pool), "load_s": load_s, "start_s": start_s, "models": {}}
    try:
        cluster = DaskPool(client, pool)
        results["n_partitions"] = len(cluster.parts)
        for name in models:
            model = make_model(name).fit(pool.X[:N_TRAIN], y)
            started = time.perf_counter()
            stream = cluster.stream(model, N_LABELS, [0])  # the workers import what they need
            while stream.next(timeout=60) is None and not stream.done:
                pass
            warm_s = time.perf_counter() - started
            here_s, there_s = [], []
            for _ in range(repeats):
                started = time.perf_counter()
                here = one_process(cluster, model)
                here_s.append(time.perf_counter() - started)
                started = time.perf_counter()
                there = cluster.probabilities(model, N_LABELS)
                there_s.append(time.perf_counter() - started)
                print(name, f"one process {here_s[-1]:.2f} s, dask {there_s[-1]:.2f} s",
                      file=sys.stderr, flush=True)
            r = results["models"][name] = {
                "warm_s": warm_s, "one_s": here_s, "dask_s": there_s,
                "equal": bool(np.array_equal(here, there)),
                "max_diff": float(np.abs(here - there).max()),
                "top_same": bool(np.array_equal(top_rows(here), top_rows(there))),
            }
            del here, there
            r["phases"] = taken_apart(cluster, model)
            print(name, r, file=sys.stderr, flush=True)
    finally:
        client.close()
    return results


def report(results: dict) -> str:
    lines = [
        SECTION, "",
        machine(), "",
        (f"A Parquet pool of {results['rows']:,} rows x {N_FEATURES} float32 features and an id, "
         f"{results['n_partitions']} row groups of up to {partitions.PARTITION_ROWS:,} rows (one "
         f"partition each); each model fitted on {N_TRAIN:,} rows with {N_LABELS} labels. *One "
         "process*: every partition read and scored in order on one thread (what a worker "
         "runs). *Dask*: `DaskPool.probabilities` on a LocalCluster of 2 worker processes x 1 "
         "thread, which scatters the model, has the workers read and score the partitions, and "
         "gathers the probabilities here, checking each. Alternating, medians of "
         + ", ".join(f"{len(r['one_s'])} ({name})" for name, r in results["models"].items())
         + "; `python scripts/bench_dask.py`."), "",
        ("| model | one process (s) | Dask (s) | Dask / one process | probabilities equal | "
        f"top {TOP} by margin |"),
        "|---|---:|---:|---:|---|---|",
    ]
    for name, r in results["models"].items():
        one, dask = statistics.median(r["one_s"]), statistics.median(r["dask_s"])
        equal = "yes" if r["equal"] else f"no (max diff {r['max_diff']:.1e})"
        lines.append(f"| {name} | {one:.2f} | {dask:.2f} | {dask / one:.2f}x | {equal} | "
                     f"{'identical' if r['top_same'] else 'different'} |")
    ratios = {name: statistics.median(r["dask_s"]) / statistics.median(r["one_s"])
              for name, r in results["models"].items()}
    lines += ["", "Target: Dask at most 1.2x one process. " + "; ".join(
        f"{name} {ratio:.2f}x, {'met' if ratio <= 1.2 else 'missed'}"
        for name, ratio in ratios.items()) + "."]
    lines += ["", (f"Start-up, excluded above: the cluster {results['start_s']:.1f} s; the first "
                   "partition, which makes the workers import retrain-loop and the model's "
                   "library, " + ", ".join(f"{r['warm_s']:.1f} s ({n})"
                                          for n, r in results["models"].items())
                   + f"; `load_pool` of the file here (which `score` and `predict` do anyway, and "
                   f"whose features the checks compare with), {results['load_s']:.0f} s."), "",
              ("The Dask run taken apart, once per model: the model's scatter to both workers; "
              "the tasks with their results left on the workers (wall time, and the busier "
              "worker's time in its tasks, from the task stream); gathering the results here "
              "and copying them into one array."), "",
              ("| model | scatter | tasks (wall) | busier worker | tasks less busier worker | "
              "both workers' task time / one process | gather | copy |"),
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in results["models"].items():
        p, one = r["phases"], statistics.median(r["one_s"])
        lines.append(
            f"| {name} | {p['scatter_s'] * 1000:.0f} ms | {p['tasks_s']:.2f} s | "
            f"{p['busy_max_s']:.2f} s | {(p['tasks_s'] - p['busy_max_s']) * 1000:.0f} ms | "
            f"{p['busy_sum_s'] / one:.2f}x | {p['gather_s']:.2f} s | {p['copy_s']:.2f} s |")
    lines += ["", (
        "What Dask adds to the workers' own time: the model's scatter (once per model); the "
        "scheduling and the last, uneven tasks (the tasks' wall time less the busier worker's); "
        "the probabilities' way here, 8 bytes x labels a row over TCP from the workers, and "
        "their copy into one array (mostly the first touch of a new array's pages, which the "
        "one process pays for its array too). In the timed run most of the gathering overlaps "
        "the tasks still running, as each result is fetched when it is ready. The rest is the "
        "workers' own work, which the two share: together they spend a little more than one "
        "process alone (the two cores share caches and memory), so two workers take well under "
        "one process's time. On a cluster of machines the workers' time divides by their "
        "number; what Dask adds stays."), "", (
        "Dask starts its workers with `MALLOC_TRIM_THRESHOLD_` set, which turns off glibc's "
        "adaptive mmap threshold: every array over 128 kB is then mapped and faulted in afresh. "
        "With it, each partition took logistic regression twice as long on a worker as in one "
        "process (LightGBM, whose arrays are few, was not slowed), and Dask took 0.99-1.52x "
        "one process over four runs here; `--dask local` starts its workers without "
        "it. A cluster started otherwise keeps Dask's setting unless its workers' environment "
        "unsets it.")]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", default="lightgbm,logreg")
    parser.add_argument("--work", type=Path, default=Path("/tmp/retrain-loop-dask"))
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--report", action="store_true",
                        help="only rewrite the section from the saved results of --rows")
    args = parser.parse_args()
    saved = args.work / f"results-{args.rows}.json"
    if args.report:
        results = json.loads(saved.read_text())
    else:
        path = make_pool(args.work, args.rows)
        results = measure(path, args.models.split(","), args.repeats)
        results["load_average"] = os.getloadavg()
        if saved.exists():  # models not measured this time keep their last results
            results["models"] = json.loads(saved.read_text())["models"] | results["models"]
        saved.write_text(json.dumps(results, indent=1))
    text = report(results)
    write_section(args.out, SECTION, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
