"""AnnotationStore on real SQLite files (and in memory): dedup, revisions, atomic batches, WAL."""

from __future__ import annotations

import io
import json
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing

import pytest

from retrain_loop.hashing import stable_hash, task_hash
from retrain_loop.importing import import_file
from retrain_loop.store import AnnotationStore, StoreError, open_store, session_id

LABELS = ["red", "green", "blue"]


def record(i: int, session: str = "ds-alice", answer: str = "accept", label: str = "red",
           ts: int = 1_700_000_000) -> dict:
    """A Prodigy-shaped answer to "which colour?" about row ``i``."""
    task = {"id": f"c{i:05d}", "r": i % 256, "g": 0, "b": 0}
    input_hash = stable_hash(task)
    return {**task, "options": [{"id": lb, "text": lb} for lb in LABELS],
            "accept": [label] if answer == "accept" else [], "answer": answer,
            "_input_hash": input_hash, "_task_hash": task_hash(input_hash, LABELS),
            "_session_id": session, "_timestamp": ts}


@pytest.fixture(params=["file", "memory", "postgres"])
def store(request, tmp_path):
    if request.param == "postgres":
        s = open_store(request.getfixturevalue("pg_url"))
    else:
        s = AnnotationStore(tmp_path / "answers.db" if request.param == "file" else None)
    yield s
    s.close()


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "answers.db"


def test_add_then_get_roundtrips_records(store):
    records = [record(i) for i in range(3)]
    assert store.add("ds", records) == 3
    assert store.get("ds") == records


def test_add_sets_missing_timestamp(store):
    eg = record(0)
    del eg["_timestamp"]
    store.add("ds", [eg])
    assert isinstance(store.get("ds")[0]["_timestamp"], int)


def test_same_answer_twice_is_stored_once(store):
    assert store.add("ds", [record(0, ts=100)]) == 1
    assert store.add("ds", [record(0, ts=200)]) == 0
    assert store.count("ds") == 1


def test_revised_answer_replaces_the_old_one(store):
    store.add("ds", [record(0, label="red")])
    assert store.add("ds", [record(0, label="blue", ts=1_700_000_100)]) == 1
    assert store.count("ds") == 1
    [stored] = store.get("ds")
    assert stored["accept"] == ["blue"]
    assert stored["_timestamp"] == 1_700_000_100


def test_two_sessions_answering_one_task_are_both_stored(store):
    assert store.add("ds", [record(0, session="ds-alice"), record(0, session="ds-bob")]) == 2
    assert {eg["_session_id"] for eg in store.get("ds")} == {"ds-alice", "ds-bob"}


def _drop(key):
    def edit(eg):
        del eg[key]
    return edit


def _set(key, value):
    def edit(eg):
        eg[key] = value
    return edit


@pytest.mark.parametrize("edit", [
    _drop("_task_hash"), _drop("_input_hash"), _drop("_session_id"), _drop("answer"),
    _set("answer", "maybe"), _set("_input_hash", "123"), _set("_task_hash", 1.5),
    _set("_input_hash", True), _set("_session_id", ""), _set("_input_hash", 2**64),
    _set("_timestamp", "yesterday"), _set("_timestamp", None),
], ids=["no-task-hash", "no-input-hash", "no-session", "no-answer", "bad-answer",
        "str-hash", "float-hash", "bool-hash", "empty-session", "huge-hash", "str-timestamp",
        "null-timestamp"])
def test_batch_with_one_bad_record_stores_nothing(store, edit):
    store.add("ds", [record(0)])
    bad = record(2)
    edit(bad)
    with pytest.raises(StoreError):
        store.add("ds", [record(1), bad, record(3)])
    assert store.count("ds") == 1


def test_datasets_are_separate(store):
    store.add("a", [record(0), record(1)])
    store.add("b", [record(0)])
    assert (store.count("a"), store.count("b")) == (2, 1)
    assert store.datasets() == ["a", "b"]
    assert store.get("missing") == []


def test_labelled_holds_only_accepted_single_labels(store):
    store.add("ds", [record(0, label="green"), record(1, answer="reject"),
                     record(2, answer="ignore")])
    assert store.labelled("ds") == [(record(0)["_input_hash"], "green")]


def test_session_id_is_dataset_dash_session():
    assert session_id("ds", "alice") == "ds-alice"


def test_file_is_in_wal_mode(db_path):
    AnnotationStore(db_path).close()
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_data_survives_reopening(db_path):
    s = AnnotationStore(db_path)
    s.add("ds", [record(0), record(1)])
    s.close()
    reopened = AnnotationStore(db_path)
    try:
        assert reopened.get("ds") == [record(0), record(1)]
    finally:
        reopened.close()


def test_committed_write_is_visible_to_another_connection(db_path):
    s = AnnotationStore(db_path)
    try:
        s.add("ds", [record(0)])
        reader = sqlite3.connect(db_path)
        try:
            (content,) = reader.execute("SELECT content FROM examples WHERE dataset='ds'").fetchone()
        finally:
            reader.close()
        assert json.loads(content) == record(0)
    finally:
        s.close()


def test_concurrent_adds_lose_nothing(store):
    barrier = threading.Barrier(4)

    def work(t: int) -> int:
        barrier.wait()
        return sum(store.add("ds", [record(i, session=f"ds-s{t}")]) for i in range(50))

    with ThreadPoolExecutor(4) as pool:
        added = [f.result() for f in [pool.submit(work, t) for t in range(4)]]
    assert added == [50] * 4
    assert store.count("ds") == 200


def test_export_then_import_roundtrips(store, tmp_path):
    records = [record(0), record(1, answer="reject"), record(1, session="ds-bob", label="blue")]
    store.add("src", records)
    out = io.StringIO()
    assert store.export_jsonl("src", out) == 3
    path = tmp_path / "export.jsonl"
    path.write_text(out.getvalue(), encoding="utf-8")
    # As Prodigy's db-out does, each line names the interface the answer was given in.
    assert all(json.loads(line)["_view_id"] == "choice" for line in out.getvalue().splitlines())
    assert import_file(store, "dst", path)[0] == 3
    assert [{k: v for k, v in r.items() if k != "_view_id"} for r in store.get("dst")] \
        == store.get("src")


def test_import_fills_missing_session(store, tmp_path):
    eg = record(0)
    del eg["_session_id"]
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps(eg) + "\n\n", encoding="utf-8")
    import_file(store, "ds", path)
    assert store.get("ds")[0]["_session_id"] == "ds-import"


@pytest.mark.parametrize("line3", ['{"broken": ', "[1, 2]", '{"_input_hash": "x", "answer": "accept"}'],
                         ids=["bad-json", "not-object", "bad-record"])
def test_import_bad_line_names_it_and_stores_nothing(store, tmp_path, line3):
    lines = [json.dumps(record(0)), json.dumps(record(1)), line3, json.dumps(record(3))]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(StoreError, match=r"in\.jsonl:3:"):
        import_file(store, "ds", path)
    assert store.count("ds") == 0


def test_a_database_from_before_audit_answers_gains_the_source_column(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE examples (id INTEGER PRIMARY KEY, dataset TEXT, session_id TEXT, "
                 "task_hash INTEGER, input_hash INTEGER, answer TEXT, label TEXT, "
                 "timestamp INTEGER, answer_key INTEGER, content TEXT)")
    old = {"_input_hash": 1, "_task_hash": 11, "_session_id": "ds-a", "answer": "accept",
           "accept": ["red"], "_timestamp": 5}
    conn.execute("INSERT INTO examples (dataset, session_id, task_hash, input_hash, answer, label, "
                 "timestamp, answer_key, content) VALUES ('ds', 'ds-a', 11, 1, 'accept', 'red', 5, "
                 "0, ?)", (json.dumps(old),))
    conn.commit()
    conn.close()
    with closing(AnnotationStore(path)) as store:
        assert store.get("ds") == [old] and store.labelled("ds") == [(1, "red")]
        assert store.audited("ds") == []
        new = dict(old, _input_hash=2, _task_hash=22, meta={"source": "audit", "predicted": "red"})
        assert store.add("ds", [new]) == 1
        assert [r["_input_hash"] for r in store.audited("ds")] == [2]


def test_summaries_say_what_the_records_say(store, tmp_path):
    from conftest import rgb_rows, write_jsonl

    from retrain_loop.answers import Answered
    from retrain_loop.pool import load_pool

    pool = load_pool(write_jsonl(tmp_path / "pool.jsonl", rgb_rows(10)), features=["r", "g", "b"])
    records = []
    for i, (answer, extra) in enumerate([
            ("accept", {"accept": ["red"]}), ("accept", {"accept": ["green", "blue"]}),
            ("reject", {"meta": {"rejected_label": "blue"}}), ("reject", {}),
            ("ignore", {"meta": {"source": "audit"}}), ("accept", {"accept": []})]):
        h = int(pool.input_hashes[i])
        records.append({"_input_hash": h, "_task_hash": task_hash(h, LABELS), "answer": answer,
                        "_session_id": f"ds-s{i % 2}", "accept": [], **extra})
    records.append({**record(99), "_session_id": "ds-s0"})  # no row of this pool
    store.add("ds", records)
    index = {label: i for i, label in enumerate(LABELS)}
    parsed = Answered.read(store.get("ds"), pool, index)
    summarised = Answered.summarised(store.summaries("ds"), pool, index)
    assert summarised.rows.tolist() == parsed.rows.tolist()
    assert summarised.latest == parsed.latest
    assert summarised.rejected == parsed.rejected == {2: {2}}
    assert summarised.unmatched == parsed.unmatched == 1
    assert sorted(parsed.latest.values()) == ["_accept", "_ignore", "_reject", "_reject",
                                               "green", "red", "red"]
