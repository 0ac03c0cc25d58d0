"""db-in like Prodigy's: records without hashes, Prodigy's own hashes matched to the pool by id or
content, binary answers on a suggested label, and refusals with the file and line."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing

import pytest
from click.testing import CliRunner
from conftest import RGB, build_engine, rgb_label, rgb_rows, write_jsonl

from retrain_loop import offline
from retrain_loop.cli import main
from retrain_loop.hashing import stable_hash, task_hash
from retrain_loop.pool import load_pool
from retrain_loop.store import AnnotationStore


def jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def prodigy_record(row, answer="accept", label=None, **extra):
    """An answer as Prodigy's choice recipes save it, with Prodigy's own (foreign) hashes."""
    return {**row, "_input_hash": -(hash(row["id"]) % 10**9) - 1, "_task_hash": -7,
            "options": [{"id": c, "text": c} for c in RGB], "_view_id": "choice",
            "answer": answer, "accept": [label or rgb_label(row)], "_session_id": None, **extra}


def run(args):
    return CliRunner().invoke(main, args)


def test_records_without_hashes_get_the_pools_hashes(tmp_path):
    rows = rgb_rows(30)
    pool = write_jsonl(tmp_path / "pool.jsonl", rows)
    bare = [{"id": r["id"], "r": r["r"], "g": r["g"], "b": r["b"], "answer": "accept",
             "accept": [rgb_label(r)], "options": [{"id": c, "text": c} for c in RGB]}
            for r in rows[:10]]
    result = run(["db-in", "ds", str(jsonl(tmp_path / "a.jsonl", bare)), "--db",
                  str(tmp_path / "a.db")])
    assert result.exit_code == 0, result.output
    assert "hashes computed: 10" in result.output
    loaded = load_pool(pool, features=["r", "g", "b"])
    store = AnnotationStore(tmp_path / "a.db")
    engine = build_engine(loaded, store, "ds", RGB, model="logreg", background=False)
    try:
        assert engine.history[-1]["n_train"] == 10  # every answer is a pool row's
        assert {r["_task_hash"] for r in store.get("ds")} == {
            task_hash(stable_hash({"id": r["id"]}), RGB) for r in rows[:10]}
    finally:
        engine.close()
        store.close()


def test_prodigy_hashes_are_matched_to_the_pool_by_id_or_content(tmp_path):
    rows = rgb_rows(40)
    pool = write_jsonl(tmp_path / "pool.jsonl", rows)
    by_id = [prodigy_record(r) for r in rows[:6]]
    by_content = [prodigy_record({k: v for k, v in r.items() if k != "id"} | {"id": "zz" + r["id"]})
                  for r in rows[6:9]]  # an id the pool does not know; the colour it does
    stranger = [prodigy_record({"id": "nope", "r": 1, "g": 2, "b": 3, "hex": "#010203"})]
    path = jsonl(tmp_path / "prodigy.jsonl", by_id + by_content + stranger)
    result = run(["db-in", "ds", str(path), "--db", str(tmp_path / "a.db"), "--pool", str(pool),
                  "--features", "r,g,b"])
    assert result.exit_code == 0, result.output
    assert "9 of 10 match a row" in result.output
    assert "(by hash 0, by id 6, by content 3); 1 match none" in result.output
    with closing(AnnotationStore(tmp_path / "a.db")) as store:
        loaded = load_pool(pool, features=["r", "g", "b"])
        matched = [r for r in store.get("ds") if loaded.index_of(r["_input_hash"]) is not None]
        assert len(matched) == 9
        assert all(r["meta"]["imported_input_hash"] < 0 for r in matched)  # Prodigy's, kept


def test_binary_answers_on_a_suggested_label_are_imported_and_used(tmp_path):
    rows = rgb_rows(30)
    pool = write_jsonl(tmp_path / "pool.jsonl", rows)
    teach = ([{**r, "label": rgb_label(r), "answer": "accept"} for r in rows[:8]]
             + [{**r, "label": "blue" if rgb_label(r) != "blue" else "red", "answer": "reject"}
                for r in rows[8:12]])
    result = run(["db-in", "ds", str(jsonl(tmp_path / "t.jsonl", teach)), "--db",
                  str(tmp_path / "a.db"), "--label", "red,green,blue"])
    assert result.exit_code == 0, result.output
    assert "binary accepted: 8" in result.output
    assert "binary rejected: 4 (kept: the row is never that label)" in result.output
    with closing(AnnotationStore(tmp_path / "a.db")) as store:
        assert sorted(label for _, label in store.labelled("ds")) == sorted(
            rgb_label(r) for r in rows[:8])
        rejected = [r for r in store.get("ds") if r["answer"] == "reject"]
        assert len(rejected) == 4 and all("rejected_label" in r["meta"] for r in rejected)
        engine = build_engine(load_pool(pool, features=["r", "g", "b"]), store, "ds", RGB,
                              model="logreg", background=False)
        try:
            assert engine.history[-1]["n_train"] == 8
            # A rejected suggestion leaves its row to label, and never as the rejected label.
            assert engine.stats()["n_remaining"] == 30 - 8
            said_not = {engine.pool.index_of(r["_input_hash"]): r["meta"]["rejected_label"]
                        for r in rejected}
            ranked = {t["_input_hash"]: t for t in offline.ranked(engine)}
            for index, label in said_not.items():
                probs = ranked[int(engine.pool.input_hashes[index])]["probs"]
                assert probs[label] == 0.0 and abs(sum(probs.values()) - 1.0) < 1e-9
                assert ranked[int(engine.pool.input_hashes[index])]["label"] != label
        finally:
            engine.close()


@pytest.mark.parametrize("record, message", [
    ({"id": "a", "answer": "accept", "accept": "red"}, "accept must be a list of labels"),
    ({"id": "a", "answer": "maybe", "accept": []}, "answer must be one of"),
])
def test_bad_records_are_refused_with_their_line_and_nothing_is_stored(tmp_path, record, message):
    good = {"id": "b", "answer": "accept", "accept": ["red"]}
    path = jsonl(tmp_path / "bad.jsonl", [good, record])
    result = run(["db-in", "ds", str(path), "--db", str(tmp_path / "a.db")])
    assert result.exit_code == 2
    assert "bad.jsonl:2:" in result.output and message in result.output
    assert not (tmp_path / "a.db").exists()


def test_export_never_changes_a_database_that_is_not_its_own(tmp_path):
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (x TEXT)")
    before = other.read_bytes()
    result = run(["export", "ds", "--db", str(other)])
    assert result.exit_code == 2 and "not a retrain-loop database" in result.output
    assert other.read_bytes() == before
    with sqlite3.connect(other) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert tables == {"notes"}
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal"


def test_a_running_server_notices_answers_imported_into_its_database(client, tmp_path):
    db = tmp_path / "live.db"
    rows = rgb_rows(60)
    api = client(rows, RGB, features=["r", "g", "b"], db_path=db, batch_size=10)
    engine = api.engine
    imported = [{"id": r["id"], "r": r["r"], "g": r["g"], "b": r["b"], "hex": r["hex"],
                 "answer": "accept", "accept": [rgb_label(r)],
                 "options": [{"id": c, "text": c} for c in RGB]} for r in rows[:40]]
    # db-in writes through a connection of its own, as another process would.
    result = run(["db-in", "test", str(jsonl(tmp_path / "in.jsonl", imported)), "--db", str(db)])
    assert result.exit_code == 0, result.output
    served = []
    while tasks := api.post("/api/questions", json={"session": "a", "n": 10}).json()["tasks"]:
        served += [t["id"] for t in tasks]
        api.post("/api/answers", json={"session": "a", "answers": [
            dict(t, answer="ignore", accept=[]) for t in tasks]}).raise_for_status()
    assert sorted(served) == sorted(r["id"] for r in rows[40:])  # none of the imported rows
    assert engine.wait_idle(30) and engine.history[-1]["n_train"] == 40
