"""A team: several engines (as in several server processes) serving one dataset from one real
PostgreSQL database, and the `retrain-loop serve` processes themselves, killed mid-batch."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest
from click.testing import CliRunner
from conftest import RGB, FakeClock, build_engine, free_port, rgb_label, rgb_rows, write_jsonl
from sklearn.linear_model import LogisticRegression

from retrain_loop.cli import main
from retrain_loop.pool import load_pool
from retrain_loop.store import open_store


def answers_for(tasks):
    return [dict(t, answer="accept", accept=[rgb_label(t)]) for t in tasks]


@pytest.fixture
def team(tmp_path, pg_url):
    """team(n, **settings) -> n started engines over one pool file and one PostgreSQL dataset,
    each with a store (its connections) of its own, as n processes would have."""
    made = []

    def make(n, rows=None, **kwargs):
        pool_path = write_jsonl(tmp_path / "pool.jsonl", rows or rgb_rows(300))
        kwargs.setdefault("model", "logreg")
        kwargs.setdefault("max_out", 1000)  # a session may hold many rows here
        engines = []
        for _ in range(n):
            store = open_store(pg_url)
            engine = build_engine(load_pool(pool_path, features=["r", "g", "b"]), store, "team",
                                  RGB, **kwargs)
            made.append(engine)
            engines.append(engine)
        return engines

    yield make
    for engine in made:
        engine.close()
        engine.store.close()


def test_no_row_is_out_with_two_sessions_across_processes(team):
    a, b = team(2, background=False)
    out_a = [t["_input_hash"] for t in a.get_questions("ann", 40)]
    out_b = [t["_input_hash"] for t in b.get_questions("bob", 40)]
    assert len(out_a) == len(out_b) == 40
    assert not set(out_a) & set(out_b)
    # Both walk the same cold-start order: b was refused a's rows, and served the next ones.
    assert b.stats()["n_out"] == 80


def test_an_answer_in_one_process_is_never_served_by_another(team):
    a, b = team(2, background=False)
    tasks = a.get_questions("ann", 10)
    assert a.add_answers(answers_for(tasks), "ann") == 10
    answered = {t["_input_hash"] for t in tasks}
    served_b = set()
    for _ in range(29):  # every other row of the pool, ten at a time
        served_b |= {t["_input_hash"] for t in b.get_questions(f"s{len(served_b)}", 10)}
    assert len(served_b) == 290 and not served_b & answered


def test_a_killed_process_loses_no_answer_and_its_rows_come_back(team):
    clock = FakeClock()
    a, b = team(2, background=False, clock=clock, lease_seconds=60)
    tasks = a.get_questions("ann", 10)
    a.add_answers(answers_for(tasks[:4]), "ann")  # acknowledged, then the process dies
    a.store.close()
    clock.advance(30)
    others = {t["_input_hash"] for t in b.get_questions("bob", 300)}
    held = {t["_input_hash"] for t in tasks[4:]}
    assert len(others) == 300 - 4 - len(held) and not others & held
    clock.advance(30)  # a's leases end; bob's go on
    back = {t["_input_hash"] for t in b.get_questions("cat", 10)}
    assert back == held  # a dead process's leases run out
    stored = b.store.get("team")
    assert {r["_input_hash"] for r in stored} == {t["_input_hash"] for t in tasks[:4]}


def test_an_answer_served_by_one_process_keeps_its_meta_in_another(team):
    a, b = team(2, background=False, audit=1.0)  # every row of a model's round is an audit
    tasks = a.get_questions("ann", 10)
    a.add_answers(answers_for(tasks), "ann")  # a model now
    audits = a.get_questions("ann", 3)
    assert {t["meta"]["source"] for t in audits} == {"audit"}
    b.add_answers(answers_for(audits), "ann")  # the page's next post went to the other one
    stored = {r["_input_hash"]: r["meta"] for r in b.store.audited("team")}
    assert set(stored) == {t["_input_hash"] for t in audits}
    assert all(m["predicted"] == t["meta"]["predicted"] for t, m in
               zip(audits, (stored[t["_input_hash"]] for t in audits)))


def test_rounds_are_one_history_and_the_other_process_adopts_them(team):
    a, b = team(2, background=False)
    for _ in range(3):
        a.add_answers(answers_for(a.get_questions("ann", 10)), "ann")
    assert a.round >= 2
    b.refit()  # b's turn: a's round covers every answer stored, so b serves it
    assert b.round == a.round and b.model_ is not None
    assert b.stats()["n_annotations"] == 30  # and counts the answers a stored
    assert b.history == a.history
    b.add_answers(answers_for(b.get_questions("bob", 10)), "bob")
    assert b.round == a.round + 1  # numbered after a's
    a.get_questions("ann", 1)
    a.refit()
    assert a.round == b.round
    rounds = [e["round"] for e in a.store.rounds("team")]
    assert rounds == sorted(set(rounds))


class TimedFit(LogisticRegression):
    """A real logistic regression whose fits take a while and say when they ran."""

    intervals: list = []  # noqa: RUF012 - shared by the clones of every engine

    def fit(self, X, y):
        start = time.monotonic()
        time.sleep(0.15)
        super().fit(X, y)
        TimedFit.intervals.append((start, time.monotonic()))
        return self


def test_one_refit_at_a_time_across_processes(team):
    TimedFit.intervals = []
    engines = team(2, model=TimedFit(max_iter=200))  # each with its refit thread
    seed = engines[0].get_questions("seed", 10)
    engines[0].add_answers(answers_for(seed), "seed")
    posts = threading.Barrier(4)

    def annotate(engine, name):
        posts.wait()
        for _ in range(4):
            engine.add_answers(answers_for(engine.get_questions(name, 5)), name)

    threads = [threading.Thread(target=annotate, args=(engines[i % 2], f"n{i}")) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(engine.wait_idle(60) for engine in engines)
    for engine in engines:  # serving looks for a newer round, which the refit thread adopts
        engine.store.look_every = 0  # at once, not within the quarter second it may wait
        engine.get_questions("look", 1)
        assert engine.wait_idle(60)
    spans = sorted(TimedFit.intervals)
    assert len(spans) >= 2
    assert all(end <= next_start for (_, end), (next_start, _) in itertools.pairwise(spans))
    assert engines[0].round == engines[1].round  # both serve the latest round


# -- the command line on PostgreSQL ------------------------------------------------------------

def test_db_in_export_and_status_on_a_database_url(tmp_path, pg_url):
    pool = write_jsonl(tmp_path / "pool.jsonl", rgb_rows(60))
    answers = tmp_path / "answers.jsonl"
    write_jsonl(answers, [dict(r, answer="accept", accept=[rgb_label(r)], _session_id="x-ann")
                          for r in rgb_rows(60)[:20]])
    runner = CliRunner()
    result = runner.invoke(main, ["db-in", "x", str(answers), "--db", pg_url, "--pool", str(pool),
                                  "--label", ",".join(RGB)])
    assert result.exit_code == 0, result.output
    assert "Imported 20 new answers" in result.output
    result = runner.invoke(main, ["export", "x", "--db", pg_url])
    assert result.exit_code == 0
    exported = [json.loads(line) for line in result.output.splitlines()]
    assert len(exported) == 20 and {e["accept"][0] for e in exported} <= set(RGB)
    result = runner.invoke(main, ["status", "x", "--db", pg_url, "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["n_labels"] == 20
    result = runner.invoke(main, ["score", str(pool), "--annotations", pg_url, "--dataset", "x",
                                  "--features", "r,g,b", "--model", "logreg", "--top", "5",
                                  "--out", "-"])
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 5
    result = runner.invoke(main, ["export", "nope", "--db", pg_url])
    assert result.exit_code == 2 and "no dataset 'nope'" in result.output


def test_an_unreachable_database_is_a_clear_error(tmp_path):
    pool = write_jsonl(tmp_path / "pool.jsonl", rgb_rows(20))
    result = CliRunner().invoke(main, ["export", "x", "--db",
                                       f"postgresql://nobody@127.0.0.1:{free_port()}/none"])
    assert result.exit_code == 2 and "cannot connect to postgresql://" in result.output
    assert pool.exists()


# -- two `retrain-loop serve` processes ------------------------------------------------------------

def start_server(pool, pg_url, port, *extra):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "retrain_loop.cli", "serve", "team", str(pool), "--label",
         ",".join(RGB), "--features", "r,g,b", "--db", pg_url, "--port", str(port),
         "--model", "logreg", "--batch-size", "5", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/api/stats", timeout=2).raise_for_status()
            return proc
        except httpx.HTTPError:
            if proc.poll() is not None:
                raise RuntimeError(proc.stdout.read().decode()) from None
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start")


def test_two_serve_processes_share_the_work_and_survive_a_kill(tmp_path, pg_url):
    pool = write_jsonl(tmp_path / "pool.jsonl", rgb_rows(400))
    ports = [free_port(), free_port()]
    procs = [start_server(pool, pg_url, port, "--lease-seconds", "3") for port in ports]
    try:
        served, acked, errors = {}, {}, []

        def annotate(port, name, batches):
            served[name], acked[name] = [], set()
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                for _ in range(batches):
                    tasks = client.post("/api/questions", json={"session": name}).json()["tasks"]
                    served[name] += [t["_input_hash"] for t in tasks]
                    reply = client.post("/api/answers",
                                        json={"session": name, "answers": answers_for(tasks)})
                    if reply.status_code != 200:
                        errors.append(reply.status_code)
                        continue
                    acked[name] |= {t["_input_hash"] for t in tasks}

        threads = [threading.Thread(target=annotate, args=(ports[i % 2], f"a{i}", 6))
                   for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert errors == []
        every = [h for hashes in served.values() for h in hashes]
        assert len(every) == len(set(every)) == 4 * 6 * 5
        # The first process takes a batch and dies with it out.
        with httpx.Client(base_url=f"http://127.0.0.1:{ports[0]}", timeout=30) as client:
            held = {t["_input_hash"] for t in
                    client.post("/api/questions", json={"session": "z"}).json()["tasks"]}
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait(10)
        time.sleep(3.2)  # its leases run out
        with httpx.Client(base_url=f"http://127.0.0.1:{ports[1]}", timeout=30) as client:
            again, n = set(), 0
            while True:  # the survivor serves every open row, those the dead one held too
                n += 1
                tasks = client.post("/api/questions", json={"session": f"y{n // 3}"}).json()
                if not tasks["tasks"]:
                    break
                again |= {t["_input_hash"] for t in tasks["tasks"]}
            stats = client.get("/api/stats").json()
        assert held <= again and len(again) == 400 - 120
        store = open_store(pg_url)
        try:
            stored = store.get("team")
        finally:
            store.close()
        assert len(stored) == 120 == len({(r["_session_id"], r["_input_hash"]) for r in stored})
        assert {r["_input_hash"] for r in stored} == set().union(*acked.values())
        assert stats["n_annotations"] == 120 and stats["model_round"] >= 1
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(20)
