"""Time refit rounds against the bare model across pool and label sizes, and serving during a refit.

    python scripts/bench_latency.py [--short] [--repeats N] [--out BENCHMARKS.md]

Part 1, for each model, pool size and label count: the engine's full round, ``engine.refit()``
(read every answer from a real SQLite file, fit a fresh clone, rescore the open rows, rank,
swap), against the floor: ``clone(model).fit(X_train, y_train)`` plus ``predict_proba(X_open)`` on
the same arrays with the same thread cap, alternating with the round repeat by repeat so that
machine noise hits both alike. The pool is synthetic float32 features (3 columns at 10k rows, 8 at
100k, 20 at 1M) labelled by a fixed random linear rule over 4 classes; the answers go in through
``engine.add_answers``, so they are stored exactly as the server stores them.

Part 2: ``POST /api/questions`` (n=10) against the real FastAPI app under uvicorn on 127.0.0.1,
idle and while a background refit runs (100k pool, 8 columns, 1,000 labels, LightGBM).

A table goes to stderr and the "Refit latency" section of BENCHMARKS.md is rewritten.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
from benchmarks_md import machine, write_section
from sklearn.base import clone
from threadpoolctl import ThreadpoolController

from retrain_loop.engine import Engine
from retrain_loop.hashing import stable_hash
from retrain_loop.pool import Pool
from retrain_loop.settings import EngineSettings
from retrain_loop.store import AnnotationStore

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## Refit latency"
LABELS = ["a", "b", "c", "d"]
COLUMNS = {10_000: 3, 100_000: 8, 1_000_000: 20}  # feature columns per pool size
# Built once, as the engine does: building a controller inspects every loaded library.
THREADS = ThreadpoolController()


def make_pool(n: int, seed: int = 0) -> tuple[Pool, np.ndarray]:
    """A pool of n rows and their true label indices under a fixed random linear rule."""
    d = COLUMNS.get(n, 8)
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d), dtype=np.float32)
    W = np.random.default_rng(1234).standard_normal((d, len(LABELS))).astype(np.float32)
    y = (X @ W).argmax(axis=1)
    # Distinct, JS-safe input hashes without hashing a million rows.
    base = stable_hash({"bench": n}) % 2**40
    hashes = base + np.arange(n, dtype=np.int64) * 7
    tasks = [{"id": i, "_input_hash": h} for i, h in enumerate(hashes.tolist())]
    pool = Pool(Path(f"/tmp/synthetic-{n}.jsonl"), tasks, X, [f"x{j}" for j in range(d)], "id",
                hashes)
    return pool, y


def answer(engine: Engine, truth: np.ndarray, n_labels: int, seed: int = 1) -> None:
    """Store n_labels accepted answers for random rows, through the engine (one update)."""
    if engine.store.count(engine.dataset):
        return
    rows = np.random.default_rng(seed).choice(len(engine.pool), n_labels, replace=False)
    answers = [
        {"_input_hash": int(engine.pool.input_hashes[i]), "_task_hash": engine.task_hash(int(i)),
         "answer": "accept", "accept": [LABELS[truth[i]]]}
        for i in rows.tolist()
    ]
    engine.add_answers(answers, "bench")


def floor_once(engine: Engine, X_train, y_train, X_open) -> None:
    with THREADS.limit(limits=engine.threads):
        clone(engine.prototype).fit(X_train, y_train).predict_proba(X_open)


def peak_mb(fn) -> float:
    """tracemalloc's peak of Python and NumPy allocations during fn(), in MB."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 2**20


def bench_round(model: str, pool: Pool, truth: np.ndarray, n_labels: int, repeats: int,
                db: Path, engine_class=Engine) -> dict:
    store = AnnotationStore(db)
    engine = engine_class(pool, store, "bench", LABELS, EngineSettings(model=model, batch_size=10),
                          background=False).start()
    answer(engine, truth, n_labels)  # the update's refit is the round's warm-up
    if engine.model_ is None:  # a second engine on the same file: its constructor refitted
        engine.refit()
    X_train, y_train = engine.training_data(store.labelled("bench"))
    open_rows = np.flatnonzero(~engine._answered)
    X_open = pool.X[open_rows]
    floor_once(engine, X_train, y_train, X_open)  # warm-up
    rounds, floors, parts = [], [], []
    for _ in range(repeats):
        start = time.perf_counter()
        engine.refit()
        rounds.append(time.perf_counter() - start)
        parts.append(dict(engine.last_timings))
        start = time.perf_counter()
        floor_once(engine, X_train, y_train, X_open)
        floors.append(time.perf_counter() - start)
    mem_round = peak_mb(engine.refit)
    mem_floor = peak_mb(lambda: floor_once(engine, X_train, y_train, X_open))
    error = engine.last_error
    engine.close()
    store.close()
    round_ms = statistics.median(rounds) * 1000
    floor_ms = statistics.median(floors) * 1000
    return {
        "model": model, "pool": len(pool), "cols": pool.X.shape[1], "labels": len(y_train),
        "open": len(open_rows), "round_ms": round_ms, "floor_ms": floor_ms,
        "ratio": round_ms / floor_ms, "extra_ms": round_ms - floor_ms,
        "mem_round": mem_round, "mem_floor": mem_floor, "error": error,
        "parts": {k: statistics.median(p[k] for p in parts) for k in parts[0]} if parts else {},
    }


# -- serving over HTTP -------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# A separate process, as a browser would be: a client thread in the server's process would
# compete with the refit for the GIL and charge that to the server. It reads "session count"
# lines and answers each with the count request times, in seconds, as one JSON line.
CLIENT = """
import json, sys, time
import httpx
url = sys.argv[1]
with httpx.Client(timeout=120) as client:
    for line in sys.stdin:
        session, count = line.split()
        times = []
        for _ in range(int(count)):
            start = time.perf_counter()
            client.post(url, json={"session": session, "n": 10}).raise_for_status()
            times.append(time.perf_counter() - start)
        print(json.dumps(times), flush=True)
"""


def bench_http(pool: Pool, truth: np.ndarray, n_labels: int, n: int, db: Path) -> dict:
    import json
    import subprocess

    import uvicorn

    from retrain_loop.server import create_app

    store = AnnotationStore(db)
    settings = EngineSettings(model="lightgbm", batch_size=10,
                              max_out=float("inf"))  # the timing sessions lease without answering
    engine = Engine(pool, store, "bench", LABELS, settings).start()
    answer(engine, truth, n_labels)
    engine.wait_idle(600)
    port = _free_port()
    config = uvicorn.Config(create_app(engine), host="127.0.0.1", port=port, log_level="warning",
                            lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    client = subprocess.Popen(
        [sys.executable, "-c", CLIENT, f"http://127.0.0.1:{port}/api/questions"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def get(session: str, count: int) -> list[float]:
        client.stdin.write(f"{session} {count}\n")
        client.stdin.flush()
        return json.loads(client.stdout.readline())

    def refitting() -> bool:
        with engine._cond:
            return engine._pending or engine._running

    idle, busy, refit_ms = [], [], []
    try:
        get("warm", 5)  # connection, routing, first leases
        # Blocks of idle and busy requests alternate, so drift hits both alike.
        while len(idle) < n or len(busy) < n:
            idle += get("idle", min(5, max(n - len(idle), 1)))
            engine.wait_idle(600)
            round_before = engine.round
            engine.schedule_refit()
            time.sleep(0.05)  # let the worker get going
            taken = 0
            while taken < 5 and len(busy) < n and refitting():
                (elapsed,) = get("busy", 1)
                # Only requests that both began and ended inside this refit count.
                if engine.round == round_before and refitting():
                    busy.append(elapsed)
                    taken += 1
                time.sleep(0.01)
            engine.wait_idle(600)
            refit_ms.append(engine.last_refit_ms)
    finally:
        client.stdin.close()
        client.wait(timeout=30)
        server.should_exit = True
        thread.join(timeout=20)
        engine.close()
        store.close()
    idle_ms = statistics.median(idle) * 1000
    busy_ms = statistics.median(busy) * 1000
    return {"pool": len(pool), "cols": pool.X.shape[1], "labels": n_labels, "n_idle": len(idle),
            "n_busy": len(busy), "idle_ms": idle_ms, "busy_ms": busy_ms,
            "ratio": busy_ms / idle_ms, "refit_ms": statistics.median(refit_ms),
            "idle_p90": float(np.percentile(idle, 90)) * 1000,
            "busy_p90": float(np.percentile(busy, 90)) * 1000}


# -- report ------------------------------------------------------------------------------------


def _row(r: dict) -> str:
    parts = r["parts"]
    split = "/".join(f"{parts.get(k, 0):.0f}" for k in ("read_ms", "fit_ms", "score_ms", "rank_ms"))
    return (f"| {r['model']} | {r['pool']:,} × {r['cols']} | {r['labels']:,} | "
            f"{r['round_ms']:.1f} | {r['floor_ms']:.1f} | {r['ratio']:.2f} | {r['extra_ms']:+.1f} | "
            f"{split} | {r['mem_round']:.0f} | {r['mem_floor']:.0f} |")


def report(results: list[dict], http: dict | None, args, elapsed: float) -> str:
    lines = [
        SECTION, "",
        ("Refit rounds on synthetic pools (float32 features: 3 columns at 10k rows, 8 at 100k, 20 "
         "at 1M; 4 classes from a fixed random linear rule; answers stored in SQLite through "
         "`engine.add_answers`). A round is `engine.refit()`: read every answer, fit a fresh clone, "
         "rescore the open rows, rank, swap. The floor is `clone(model).fit(X_train, y_train)` + "
         "`predict_proba(X_open)` on the same, prebuilt arrays under the same thread cap "
         f"(`threadpoolctl`, 1 thread), alternating with the round. Median of {args.repeats}. "
         "Memory is tracemalloc's peak during one extra round (and one extra floor): every "
         "Python and NumPy allocation, none of LightGBM's native ones, which are the same in "
         "both. It is the engine's own cost, per round, that the process-wide RSS high-water "
         "mark cannot show once an earlier, bigger combination has set it."),
        "",
        (machine() + " "
         f"`python scripts/bench_latency.py{' --short' if args.short else ''}` took "
         f"{elapsed / 60:.1f} min."),
        "",
        ("| model | pool × cols | labels | round (ms) | floor (ms) | round / floor | round − floor "
         "(ms) | read/fit/score/rank (ms) | round peak (MB) | floor peak (MB) |"),
        "|---|---|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    lines += [_row(r) for r in results]
    if http is not None:
        lines += [
            "",
            (f"Serving `POST /api/questions` (n=10) over HTTP (uvicorn in a thread on 127.0.0.1, an "
             f"httpx client in its own process, "
             f"{http['pool']:,} × {http['cols']} pool, {http['labels']:,} labels, LightGBM, "
             f"background refits of median {http['refit_ms']:.0f} ms):"),
            "",
            "| state | requests | median (ms) | p90 (ms) |",
            "|---|---:|---:|---:|",
            f"| idle | {http['n_idle']} | {http['idle_ms']:.1f} | {http['idle_p90']:.1f} |",
            f"| during a refit | {http['n_busy']} | {http['busy_ms']:.1f} | {http['busy_p90']:.1f} |",
            "",
            f"During a refit / idle: {http['ratio']:.2f}×.",
        ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true",
                        help="pools up to 100k and labels up to 1,000 (about a minute)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--models", default="lightgbm,logreg")
    parser.add_argument("--pools", default=None, help="comma-separated pool sizes")
    parser.add_argument("--labels", default=None, help="comma-separated label counts")
    parser.add_argument("--requests", type=int, default=None, help="HTTP requests per state")
    parser.add_argument("--no-http", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()
    if args.repeats is None:
        args.repeats = 5
    pools = [int(v) for v in args.pools.split(",")] if args.pools else (
        [10_000, 100_000] if args.short else [10_000, 100_000, 1_000_000])
    label_counts = [int(v) for v in args.labels.split(",")] if args.labels else (
        [100, 1_000] if args.short else [100, 1_000, 10_000])
    requests = args.requests or (30 if args.short else 50)

    began = time.perf_counter()
    results: list[dict] = []
    http = None
    with tempfile.TemporaryDirectory() as tmp:
        for n_pool in pools:
            pool, truth = make_pool(n_pool)
            for n_labels in label_counts:
                if n_labels >= n_pool:  # nothing left to rescore
                    continue
                for model in args.models.split(","):
                    db = Path(tmp) / f"{n_pool}-{n_labels}.db"
                    r = bench_round(model, pool, truth, n_labels, args.repeats, db)
                    results.append(r)
                    print(_row(r) + (f"  error: {r['error']}" if r["error"] else ""),
                          file=sys.stderr, flush=True)
            del pool, truth
        if not args.no_http:
            pool, truth = make_pool(100_000)
            http = bench_http(pool, truth, 1_000, requests, Path(tmp) / "http.db")
            print(f"HTTP idle {http['idle_ms']:.1f} ms (n={http['n_idle']}), during refit "
                  f"{http['busy_ms']:.1f} ms (n={http['n_busy']}), ratio {http['ratio']:.2f}, "
                  f"refit {http['refit_ms']:.0f} ms", file=sys.stderr)
    elapsed = time.perf_counter() - began
    text = report(results, http, args, elapsed)
    print("\n" + text + "\n", file=sys.stderr)
    write_section(args.out, SECTION, text)
    print(f"wrote {args.out} in {elapsed:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
