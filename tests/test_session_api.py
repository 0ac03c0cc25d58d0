"""The page's session calls: label keys, handing rows back, undoing a saved answer, and binary
questions; through an in-process client over a real SQLite file, and the engine itself."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from conftest import RGB, STORES, rgb_label, rgb_rows, store_target, write_jsonl
from fastapi.testclient import TestClient

from retrain_loop.cli import main
from retrain_loop.hashing import task_hash
from retrain_loop.keys import KeysError, label_keys
from retrain_loop.server import create_app


@pytest.fixture(params=STORES)
def db_target(request, tmp_path):
    """Every test here runs on a SQLite file and on PostgreSQL."""
    return store_target(request, tmp_path)

COLOURS = ["red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink", "brown", "grey",
           "black", "white"]


def client_for(engine, **app_options) -> TestClient:
    return TestClient(create_app(engine, **app_options), base_url="http://127.0.0.1")


def lease(client, session, n=10):
    response = client.post("/api/questions", json={"session": session, "n": n})
    assert response.status_code == 200, response.text
    return response.json()["tasks"]


def answered(tasks, rule=rgb_label):
    return [dict(t, answer="accept", accept=[rule(t)]) for t in tasks]


def test_every_label_of_twelve_has_a_key():
    assert label_keys(COLOURS) == [*"1234567890", "q", "w"]
    assert label_keys([str(d) for d in range(10)]) == [*"1234567890"]
    assert label_keys(COLOURS, "ABCDEFGHIJKL") == [*"abcdefghijkl"]
    assert label_keys(COLOURS, "abc") == [*"abc", *[None] * 9]  # the rest take the mouse
    assert label_keys([f"l{i}" for i in range(40)])[-4:] == [None] * 4


@pytest.mark.parametrize("keys, message", [("aA", "'a' twice"), ("a b", "without spaces"),
                                           ("", "printable")])
def test_keys_that_cannot_work_are_refused(keys, message):
    with pytest.raises(KeysError, match=message):
        label_keys(RGB, keys)


def test_the_project_names_each_labels_key_and_the_mode(make_engine):
    engine = make_engine(rgb_rows(50), COLOURS, features=["r", "g", "b"])
    with client_for(engine) as client:
        project = client.get("/api/project").json()
    assert project["keys"] == [*"1234567890", "q", "w"] and project["mode"] == "choice"
    with client_for(engine, keys="asdfghjklzxc") as client:
        assert client.get("/api/project").json()["keys"] == list("asdfghjklzxc")


def test_serve_refuses_keys_that_repeat_before_creating_anything(tmp_path):
    pool = write_jsonl(tmp_path / "pool.jsonl", rgb_rows(20))
    db = tmp_path / "a.db"
    result = CliRunner().invoke(main, ["serve", "ds", str(pool), "--label", "red,green,blue",
                                       "--keys", "rr1", "--db", str(db)])
    assert result.exit_code == 2 and "'r' twice" in result.output
    assert not db.exists()


def test_the_interactive_docs_are_off_and_the_schema_is_served(make_engine):
    engine = make_engine(rgb_rows(20), features=["r", "g", "b"])
    with client_for(engine) as client:
        assert client.get("/api/docs").status_code == 404
        schema = client.get("/openapi.json").json()
    assert {"/api/release", "/api/retract"} <= set(schema["paths"])


def test_a_closed_page_hands_its_rows_back_at_once(make_engine):
    engine = make_engine(rgb_rows(40), features=["r", "g", "b"], batch_size=10)
    with client_for(engine) as client:
        held = [t["_input_hash"] for t in lease(client, "alice")]
        stats = client.get("/api/stats").json()
        assert stats["n_out"] == 10 and 599 <= stats["next_release_s"] <= 600
        response = client.post("/api/release", json={"session": "alice"})
        assert response.json() == {"released": 10}
        assert client.get("/api/stats").json()["next_release_s"] is None
        assert [t["_input_hash"] for t in lease(client, "bob")] == held
        assert client.post("/api/release", json={"session": "a b"}).status_code == 422


def test_undo_of_a_saved_answer_deletes_it_and_gives_the_row_back(make_engine):
    engine = make_engine(rgb_rows(60), features=["r", "g", "b"], batch_size=5)
    with client_for(engine) as client:
        tasks = lease(client, "alice", 5)
        assert client.post("/api/answers", json={"session": "alice",
                                                 "answers": answered(tasks)}).json() == {"stored": 5}
        undone = tasks[-1]
        body = {"session": "alice", "_input_hash": undone["_input_hash"],
                "_task_hash": undone["_task_hash"]}
        assert client.post("/api/retract", json=body).json() == {"retracted": 1}
        stats = client.get("/api/stats").json()
        assert stats["n_annotations"] == 4 and sum(stats["per_label"].values()) == 4
        assert engine.store.count("test") == 4
        # The row is alice's again: nobody else is served it while her page shows it.
        others = [t["_input_hash"] for t in lease(client, "bob", 55)]
        assert undone["_input_hash"] not in others
        again = dict(undone, answer="accept", accept=["green"])
        assert client.post("/api/answers", json={"session": "alice", "answers": [again]}
                           ).json() == {"stored": 1}
        stored = engine.store.find("test", "test-alice", undone["_task_hash"])
        assert stored["accept"] == ["green"] and stored["meta"]["source"] == "initial"
        assert client.post("/api/retract", json=dict(body, session="bob")).json() == {
            "retracted": 0}  # bob never answered it
        missing = client.post("/api/retract", json=dict(body, _input_hash=12345))
        assert missing.status_code == 404


def test_undo_of_an_answer_another_session_also_gave_keeps_the_row_answered(make_engine):
    engine = make_engine(rgb_rows(30), features=["r", "g", "b"], batch_size=5)
    task = engine.get_questions("alice", 1)[0]
    engine.add_answers(answered([task]), "alice")
    engine.add_answers(answered([task]), "bob")
    assert engine.retract("alice", task["_input_hash"], task["_task_hash"]) == 1
    assert engine.stats()["n_annotations"] == 1
    assert engine.queue.is_answered(engine.pool.index_of(task["_input_hash"]))


def binary_engine(make_engine, **kwargs):
    """A binary-mode engine with a model: ten rows answered as multiple choice first."""
    engine = make_engine(rgb_rows(300), features=["r", "g", "b"], background=False,
                         mode="binary", batch_size=10, **kwargs)
    first = engine.get_questions("alice")
    assert all("label" not in t for t in first)  # no guess yet: asked as multiple choice
    engine.add_answers(answered(first), "alice")
    assert engine.round == 1
    return engine


def test_binary_questions_ask_about_the_models_guess(make_engine):
    engine = binary_engine(make_engine, audit=0.0)
    tasks = engine.get_questions("alice")
    assert tasks and all(t["label"] == t["meta"]["predicted"] and t["accept"] == []
                         for t in tasks)
    for t in tasks:
        assert t["_task_hash"] == task_hash(t["_input_hash"], [t["label"]])


def test_binary_answers_teach_the_model_and_a_rejected_label_is_never_asked_again(make_engine):
    engine = binary_engine(make_engine, audit=0.0)
    tasks = engine.get_questions("alice")
    yes = [dict(t, answer="accept") for t in tasks if t["label"] == rgb_label(t)]
    no = [dict(t, answer="reject") for t in tasks if t["label"] != rgb_label(t)]
    assert yes
    engine.add_answers(yes + no, "alice")
    stats = engine.stats()
    assert stats["answers"]["accept"] == 10 + len(yes) and stats["answers"]["reject"] == len(no)
    assert engine.history[-1]["n_train"] == 10 + len(yes)
    stored = {r["_input_hash"]: r for r in engine.store.get("test")}
    for t in yes:
        assert stored[t["_input_hash"]]["accept"] == [t["label"]]
    rejected = {t["_input_hash"]: t["label"] for t in no}
    for h, label in rejected.items():
        assert stored[h]["accept"] == [] and stored[h]["meta"]["rejected_label"] == label
    # A rejected row stays to label, and is asked about another label when it comes back.
    asked = {}
    while tasks := engine.get_questions("alice", 30):
        asked.update({t["_input_hash"]: t.get("label") for t in tasks
                      if t["_input_hash"] in rejected})
        engine.add_answers([dict(t, answer="ignore") for t in tasks], "alice")
    assert set(asked) == set(rejected)
    assert all(asked[h] != rejected[h] for h in rejected)


def test_audits_in_binary_mode_are_asked_as_multiple_choice(make_engine):
    engine = binary_engine(make_engine, audit=0.5)
    tasks = engine.get_questions("alice")
    audits = [t for t in tasks if t["meta"]["source"] == "audit"]
    assert len(audits) == 5
    assert all("label" not in t and t["accept"] == [] for t in audits)
    assert all("label" in t for t in tasks if t["meta"]["source"] != "audit")


@pytest.mark.parametrize("change, status", [
    ({"label": "magenta"}, 422),  # not a label of the project
    ({"accept": ["blue"]}, 422),  # accepts another label than the one asked about
    ({"_task_hash": 1}, 409),  # not the question asked about the row
])
def test_bad_binary_answers_are_refused_and_store_nothing(make_engine, change, status):
    engine = binary_engine(make_engine, audit=0.0)
    with client_for(engine) as client:
        task = lease(client, "bob", 1)[0]
        if change.get("accept") == ["blue"] and task["label"] == "blue":
            change = {"accept": ["red"]}
        bad = dict(task, answer="accept", **change)
        response = client.post("/api/answers", json={"session": "bob", "answers": [bad]})
    assert response.status_code == status, response.text
    assert engine.store.count("test") == 10
