"""Scaling: load, serve and score pools of 10k to 10M rows x 20 features on this machine.

    python scripts/bench_scale.py [--sizes 10000,100000,1000000,10000000] [--score-max 1000000]
                                  [--work /tmp/retrain-loop-scale] [--out BENCHMARKS.md]

Pools are CSV files with an id column and 20 float columns (6 decimals) of Gaussian noise; each
smaller pool is the head of the larger, and the 10M pool is the 1M pool's rows ten times over
under new ids. 1,000 answers (5 labels, from a fixed linear rule on the features) on rows of the
first 10k are the same in every database. Each measurement runs in a process of its own:

- load: ``pandas.read_csv`` of the file (features as float32: what a user would write) and
  ``load_pool`` in one process, alternated, medians;
- serve: ``retrain-loop serve`` from start to the port answering, to the first batch, and to the
  first fit on the stored answers finishing; then one batch answered and the next round; peak
  RSS (``VmHWM``) of the server;
- score: ``retrain-loop score`` of the whole pool to CSV against a bare ``fit`` plus
  ``predict_proba`` on every row, in one process.

Writes the "Scaling" section of BENCHMARKS.md and docs/bench/scale.png.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from benchmarks_md import machine, write_section

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SECTION = "## Scaling"
N_FEATURES, N_ANSWERS, LABELS = 20, 1_000, ["a", "b", "c", "d", "e"]
BASE = 1_000_000  # rows generated; 10M repeats them under new ids


def _pools(work: Path, sizes: list[int]) -> dict[int, Path]:
    work.mkdir(parents=True, exist_ok=True)
    base = work / f"pool-{BASE}.csv"
    if not base.exists():
        import pandas as pd

        rng = np.random.default_rng(0)
        X = rng.standard_normal((BASE, N_FEATURES)).round(6)
        frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(N_FEATURES)])
        frame.insert(0, "id", [f"r{i}" for i in range(BASE)])
        frame.to_csv(base, index=False, float_format="%.6f")
    header, _, body = base.read_bytes().partition(b"\n")
    pools = {}
    for n in sizes:
        path = work / f"pool-{n}.csv"
        pools[n] = path
        if path.exists():
            continue
        if n <= BASE:
            lines = body.split(b"\n", n)[:n]
            path.write_bytes(header + b"\n" + b"\n".join(lines) + b"\n")
        else:
            with path.open("wb") as f:
                f.write(header + b"\n")
                for k in range(-(-n // BASE)):
                    block = body if k == 0 else (b"\n" + body).replace(b"\nr", b"\nb%dr" % k)[1:]
                    rows = min(BASE, n - k * BASE)
                    f.write(block if rows == BASE else b"\n".join(block.split(b"\n")[:rows]) + b"\n")
    return pools


def _answers(work: Path, pool: Path) -> Path:
    """1,000 answers on rows of the first 10k, labelled by a fixed linear rule."""
    out = work / "answers.jsonl"
    if out.exists():
        return out
    import pandas as pd

    from retrain_loop.hashing import stable_hash

    head = pd.read_csv(pool, nrows=10_000)
    X = head[[f"x{j}" for j in range(N_FEATURES)]].to_numpy()
    W = np.random.default_rng(1).standard_normal((N_FEATURES, len(LABELS)))
    y = (X @ W).argmax(axis=1)
    rows = np.random.default_rng(2).choice(len(head), N_ANSWERS, replace=False)
    with out.open("w") as f:
        for i in rows.tolist():
            row_id = head["id"][i]
            f.write(json.dumps({"id": row_id, "_input_hash": stable_hash({"id": row_id}),
                                "answer": "accept", "accept": [LABELS[y[i]]],
                                "options": [{"id": label} for label in LABELS]}) + "\n")
    return out


def _db(work: Path, answers: Path, n: int) -> Path:
    db = work / f"answers-{n}.db"
    for old in work.glob(f"answers-{n}.db*"):
        old.unlink()
    subprocess.run([BIN / "retrain-loop", "db-in", "ds", answers, "--db", db], check=True,
                   capture_output=True)
    return db


_LOAD = """
import sys, time, json, statistics, resource
import numpy as np, pandas as pd
from retrain_loop.pool import load_pool
path, repeats = sys.argv[1], int(sys.argv[2])
dtype = {f"x{j}": np.float32 for j in range(20)}
ours, theirs = [], []
for _ in range(repeats):
    t = time.perf_counter(); frame = pd.read_csv(path, dtype=dtype); theirs.append(time.perf_counter() - t)
    del frame
    t = time.perf_counter(); pool = load_pool(path); ours.append(time.perf_counter() - t)
    del pool
print(json.dumps({"pandas_s": statistics.median(theirs), "load_s": statistics.median(ours),
                  "ratios": [a / b for a, b in zip(ours, theirs)]}))
"""


def measure_load(pool: Path, repeats: int) -> dict:
    out = subprocess.run([sys.executable, "-c", _LOAD, str(pool), str(repeats)], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure_serve(pool: Path, db: Path) -> dict:
    import httpx

    port = _free_port()
    started = time.perf_counter()
    server = subprocess.Popen([BIN / "retrain-loop", "serve", "ds", pool, "--label",
                               ",".join(LABELS), "--db", db, "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600)
        while True:
            if server.poll() is not None:
                raise RuntimeError(server.stderr.read().decode())
            try:
                client.get("/healthz")
                break
            except httpx.TransportError:
                time.sleep(0.02)
        port_s = time.perf_counter() - started
        tasks = client.post("/api/questions", json={"session": "s", "n": 10}).json()["tasks"]
        batch_s = time.perf_counter() - started
        round_at_batch = client.get("/api/stats").json()["model_round"]
        while (stats := client.get("/api/stats").json())["model_round"] < 1:
            if stats["last_error"]:
                raise RuntimeError(stats["last_error"])
            time.sleep(0.05)
        fit_s = time.perf_counter() - started
        first = stats["last_timings"]
        tasks = client.post("/api/questions", json={"session": "s", "n": 10}).json()["tasks"]
        answers = [{"_input_hash": t["_input_hash"], "_task_hash": t["_task_hash"],
                    "answer": "accept", "accept": [LABELS[k % len(LABELS)]]}
                   for k, t in enumerate(tasks)]
        client.post("/api/answers", json={"session": "s", "answers": answers})
        while (stats := client.get("/api/stats").json())["model_round"] < 2:
            time.sleep(0.05)
        status = Path(f"/proc/{server.pid}/status").read_text()
        hwm_kb = int(next(line.split()[1] for line in status.splitlines()
                          if line.startswith("VmHWM")))
        return {"port_s": port_s, "batch_s": batch_s, "fit_s": fit_s,
                "batch_before_fit": round_at_batch == 0, "first_timings": first,
                "round_timings": stats["last_timings"], "n_scored": stats.get("n_scored"),
                "rss_mb": hwm_kb / 1024}
    finally:
        server.terminate()
        server.wait(timeout=60)


_BARE = """
import sys, time, json
import numpy as np
from sklearn.base import clone
from threadpoolctl import threadpool_limits
from retrain_loop.models import label_probabilities, make_model
from retrain_loop.pool import load_pool
from retrain_loop.store import AnnotationStore
pool = load_pool(sys.argv[1]); store = AnnotationStore(sys.argv[2])
labels = ["a", "b", "c", "d", "e"]
index = {l: i for i, l in enumerate(labels)}
pairs = store.labelled("ds")
rows = pool.indices_of(np.array([h for h, _ in pairs], dtype=np.int64))
y = np.array([index[l] for _, l in pairs])
with threadpool_limits(limits=1):
    t = time.perf_counter()
    model = clone(make_model("auto", seed=0)).fit(pool.X[rows], y)
    for a in range(0, len(pool), 32768):
        label_probabilities(model, pool.X[a:a + 32768], len(labels))
    print(json.dumps({"bare_s": time.perf_counter() - t}))
"""


def measure_score(pool: Path, db: Path, work: Path) -> dict:
    bare = json.loads(subprocess.run([sys.executable, "-c", _BARE, str(pool), str(db)],
                                     check=True, capture_output=True, text=True).stdout)
    out = work / "scored.csv"
    started = time.perf_counter()
    run = subprocess.run(["/usr/bin/time", "-f", "%M", BIN / "retrain-loop", "score", pool,
                          "--annotations", db, "--dataset", "ds", "--out", out],
                         check=True, capture_output=True, text=True)
    score_s = time.perf_counter() - started
    rss_kb = int(run.stderr.strip().splitlines()[-1])
    bare_load = json.loads(subprocess.run(
        [sys.executable, "-c", ("import sys,time,json\nfrom retrain_loop.pool import load_pool\n"
         "t=time.perf_counter(); load_pool(sys.argv[1]); "
         "print(json.dumps({'s': time.perf_counter()-t}))"), str(pool)],
        check=True, capture_output=True, text=True).stdout)["s"]
    out.unlink(missing_ok=True)
    return {"score_s": score_s, "bare_s": bare["bare_s"], "score_rss_mb": rss_kb / 1024,
            "load_s": bare_load}


def _fmt_n(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 else f"{n // 1000}k"


def report(results: dict[int, dict]) -> str:
    sizes = sorted(results)
    head = "| | " + " | ".join(_fmt_n(n) for n in sizes) + " |"
    rule = "|---|" + "---:|" * len(sizes)

    def row(name, fn):
        cells = []
        for n in sizes:
            try:
                cells.append(fn(results[n]))
            except (KeyError, TypeError):
                cells.append("")
        return f"| {name} | " + " | ".join(cells) + " |"

    lines = [
        SECTION, "",
        machine(), "",
        ("Pools of `N` rows x 20 float features with an id column (CSV), 1,000 stored answers "
        "on 5 labels, the default model (`auto`) and bound (`round_sample` 28,672 + "
        "`round_head` 4,096). `python scripts/bench_scale.py`; each measurement in a process "
        "of its own; load times are medians of alternated runs."), "",
        head, rule,
        row("file size", lambda r: f"{r['file_mb']:,.0f} MB"),
        row("`pandas.read_csv` (float32 features)", lambda r: f"{r['load']['pandas_s']:.2f} s"),
        row("`load_pool`", lambda r: f"{r['load']['load_s']:.2f} s"),
        row("`load_pool` / `read_csv`", lambda r: f"{r['load']['load_s'] / r['load']['pandas_s']:.2f}x"),
        row("`serve`: port open", lambda r: f"{r['serve']['port_s']:.1f} s"),
        row("`serve`: first batch", lambda r: f"{r['serve']['batch_s']:.1f} s"
            + (" (cold start)" if r["serve"]["batch_before_fit"] else "")),
        row("`serve`: first fit on the stored answers done", lambda r: f"{r['serve']['fit_s']:.1f} s"),
        row("round after one batch: fit / score / rank",
            lambda r: "{fit_ms:.0f} / {score_ms:.0f} / {rank_ms:.0f} ms".format(**r["serve"]["round_timings"])),
        row("rows that round scored", lambda r: f"{r['serve']['n_scored']:,}"),
        row("`serve` peak RSS", lambda r: f"{r['serve']['rss_mb']:,.0f} MB"),
        row("`score` of the whole pool", lambda r: f"{r['score']['score_s']:.1f} s"),
        row("bare fit + `predict_proba` of every row", lambda r: f"{r['score']['bare_s']:.1f} s"),
        row("`score` / (`load_pool` + bare)",
            lambda r: f"{r['score']['score_s'] / (r['score']['bare_s'] + r['score']['load_s']):.2f}x"),
        row("`score` / bare", lambda r: f"{r['score']['score_s'] / r['score']['bare_s']:.2f}x"),
        row("`score` peak RSS", lambda r: f"{r['score']['score_rss_mb']:,.0f} MB"),
        "",
        "![load, first batch and memory against pool size](docs/bench/scale.png)",
    ]
    return "\n".join(lines)


def plot(results: dict[int, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted(results)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for key, name in (("pandas_s", "pandas.read_csv"), ("load_s", "load_pool")):
        left.plot(sizes, [results[n]["load"][key] for n in sizes], "o-", label=name)
    left.plot(sizes, [results[n]["serve"]["batch_s"] for n in sizes], "o-",
              label="serve: first batch")
    left.plot(sizes, [results[n]["serve"]["fit_s"] for n in sizes], "o--",
              label="serve: first fit done")
    left.set(xscale="log", yscale="log", xlabel="rows", ylabel="seconds", title="Time")
    left.legend()
    right.plot(sizes, [results[n]["serve"]["rss_mb"] for n in sizes], "o-",
               label="serve peak RSS")
    right.plot(sizes, [results[n]["file_mb"] for n in sizes], "o:", label="CSV file size")
    right.set(xscale="log", yscale="log", xlabel="rows", ylabel="MB", title="Memory")
    right.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000,10000000")
    parser.add_argument("--score-max", type=int, default=1_000_000,
                        help="score pools up to this size (a 10M score writes a 2 GB file)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("/tmp/retrain-loop-scale"))
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    pools = _pools(args.work, sizes)
    answers = _answers(args.work, pools[min(sizes)])
    results: dict[int, dict] = {}
    for n in sizes:
        db = _db(args.work, answers, n)
        r = results[n] = {"file_mb": pools[n].stat().st_size / 2**20}
        r["load"] = measure_load(pools[n], args.repeats if n < 10_000_000 else 1)
        print(_fmt_n(n), "load", r["load"], file=sys.stderr, flush=True)
        r["serve"] = measure_serve(pools[n], db)
        print(_fmt_n(n), "serve", r["serve"], file=sys.stderr, flush=True)
        if n <= args.score_max:
            r["score"] = measure_score(pools[n], _db(args.work, answers, n), args.work)
            print(_fmt_n(n), "score", r["score"], file=sys.stderr, flush=True)
    (args.work / "results.json").write_text(json.dumps(results, indent=1))
    plot(results, ROOT / "docs" / "bench" / "scale.png")
    write_section(args.out, SECTION, report(results))
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
