"""Nothing acknowledged is lost: many annotators at once while refits run, and kill -9 mid-answer.
Real servers (in a thread, and as the `retrain-loop serve` process), real HTTP, real SQLite."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import httpx
from conftest import RGB, free_port, rgb_label, rgb_rows, write_jsonl

from retrain_loop.store import AnnotationStore, session_id


def answers_for(tasks):
    return [dict(t, answer="accept", accept=[rgb_label(t)]) for t in tasks]


def test_eight_annotators_at_once_while_refits_run(serve):
    url = serve(rgb_rows(600), RGB, features=["r", "g", "b"], batch_size=5)
    engine = serve.last_engine
    served: dict[str, list[int]] = {}
    acknowledged: dict[str, set[int]] = {}
    errors: list[str] = []
    start = threading.Barrier(8)

    def annotate(name: str) -> None:
        served[name], acknowledged[name] = [], set()
        with httpx.Client(base_url=url, timeout=30) as client:
            start.wait()
            for _ in range(8):
                tasks = client.post("/api/questions", json={"session": name}).json()["tasks"]
                served[name] += [t["_input_hash"] for t in tasks]
                reply = client.post("/api/answers", json={"session": name,
                                                          "answers": answers_for(tasks)})
                if reply.status_code != 200:
                    errors.append(f"{name}: {reply.status_code} {reply.text}")
                    continue
                acknowledged[name] |= {t["_input_hash"] for t in tasks}

    threads = [threading.Thread(target=annotate, args=(f"a{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    every = [h for hashes in served.values() for h in hashes]
    assert len(every) == len(set(every)) == 8 * 8 * 5  # no row went to two sessions
    assert engine.wait_idle(60) and engine.round >= 2  # refits ran while they answered
    stored = engine.store.get("test")
    assert len(stored) == 320  # each acknowledged answer once
    by_session = {}
    for record in stored:
        by_session.setdefault(record["_session_id"], set()).add(record["_input_hash"])
    assert by_session == {session_id("test", name): hashes
                          for name, hashes in acknowledged.items()}


def _start(pool, db, port):
    command = [sys.executable, "-m", "retrain_loop.cli", "serve", "ds", str(pool), "--label",
               ",".join(RGB), "--features", "r,g,b", "--model", "logreg", "--db", str(db),
               "--port", str(port), "--batch-size", "5"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return server
        except httpx.TransportError:
            time.sleep(0.05)
    server.kill()
    raise RuntimeError("server did not start")


def test_kill_9_while_answering_loses_no_acknowledged_answer(tmp_path):
    pool = write_jsonl(tmp_path / "pool.jsonl", rgb_rows(400))
    db = tmp_path / "answers.db"
    acknowledged: set[tuple[str, int]] = set()
    for cycle in range(3):
        port = free_port()
        server = _start(pool, db, port)
        stop = threading.Event()

        def annotate(cycle=cycle, port=port, stop=stop):
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                for k in range(1000):
                    if stop.is_set():
                        return
                    name = f"c{cycle}s{k % 3}"
                    try:
                        tasks = client.post("/api/questions", json={"session": name}).json()["tasks"]
                        reply = client.post("/api/answers", json={"session": name,
                                                                  "answers": answers_for(tasks)})
                    except httpx.TransportError:
                        return  # killed mid-request: that answer was never acknowledged
                    if reply.status_code == 200:
                        acknowledged.update((session_id("ds", name), t["_task_hash"]) for t in tasks)

        worker = threading.Thread(target=annotate)
        worker.start()
        time.sleep(0.8 + 0.3 * cycle)  # kill at a different point of the work each time
        os.kill(server.pid, signal.SIGKILL)
        server.wait(10)
        stop.set()
        worker.join(30)
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        store = AnnotationStore(db)
        try:
            kept = {(r["_session_id"], r["_task_hash"]) for r in store.get("ds")}
        finally:
            store.close()
        assert acknowledged <= kept, f"cycle {cycle}: lost {len(acknowledged - kept)}"
    assert len(acknowledged) >= 30  # the kills came while answers were flowing
    # And the database still serves: a last start answers and counts everything.
    port = free_port()
    server = _start(pool, db, port)
    try:
        stats = httpx.get(f"http://127.0.0.1:{port}/api/stats").json()
    finally:
        server.terminate()
        server.wait(10)
    assert stats["n_annotations"] >= len(acknowledged)
