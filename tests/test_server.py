"""The HTTP API's contract, in process (the ``client`` fixture: ``TestClient(create_app(...))``
over a real SQLite file), and a restart on a real server at 127.0.0.1 (the ``serve`` fixture)."""

from __future__ import annotations

import io
import json
import sqlite3

import httpx
import numpy as np
import pytest
from conftest import RGB, STORES, rgb_label, rgb_rows, store_target


@pytest.fixture(params=STORES)
def db_target(request, tmp_path):
    """Every test here runs on a SQLite file and on PostgreSQL."""
    return store_target(request, tmp_path)

N_BATCHES = 10


def label_batch(client, session="alice", n=None):
    body = {"session": session} | ({"n": n} if n else {})
    tasks = client.post("/api/questions", json=body).raise_for_status().json()["tasks"]
    return tasks, [dict(t, answer="accept", accept=[rgb_label(t)]) for t in tasks]


def post(client, answers, session="alice"):
    return client.post("/api/answers", json={"session": session, "answers": answers})


def test_project_health_and_security_headers(client):
    api = client(rgb_rows(50), RGB, view="colour", batch_size=7)
    assert api.get("/healthz").json() == {"ok": True, "model_round": 0}
    project = api.get("/api/project").json()
    assert project["dataset"] == "test" and project["labels"] == RGB
    assert project["view"] == "colour" and project["batch_size"] == 7
    assert project["n_pool"] == 50 and project["model"] == "logreg"
    page = api.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"


def test_scripted_annotator_trains_a_model_end_to_end(client, tmp_path):
    """Ten batches through the API with a LightGBM model, then a held-out check."""
    db = tmp_path / "e2e.db"
    api = client(rgb_rows(800, seed=1), RGB, features=["r", "g", "b"], batch_size=10,
                 model="lightgbm", db_path=db)
    engine = api.engine
    posted = set()
    for _ in range(N_BATCHES):
        tasks, answers = label_batch(api)
        assert len(tasks) == 10
        assert not {t["_task_hash"] for t in tasks} & posted
        assert post(api, answers).json() == {"stored": 10}
        # A client retrying after a timeout must not double-count.
        assert post(api, answers).json() == {"stored": 0}
        posted |= {t["_task_hash"] for t in tasks}
        assert engine.wait_idle(60)
    stats = api.get("/api/stats").json()
    assert stats["n_annotations"] == 10 * N_BATCHES
    assert sum(stats["per_label"].values()) == 10 * N_BATCHES
    assert stats["model_round"] >= 5 and stats["last_error"] is None
    assert stats["last_refit_ms"] > 0
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT task_hash, count(*) FROM examples GROUP BY task_hash").fetchall()
    assert len(rows) == 10 * N_BATCHES and all(n == 1 for _, n in rows)
    assert {h for h, _ in rows} == posted

    held_out = rgb_rows(1000, seed=99)
    X = np.array([[t["r"], t["g"], t["b"]] for t in held_out], dtype=np.float32)
    truth = np.array([RGB.index(rgb_label(t)) for t in held_out])
    accuracy = (engine.model_.predict(X) == truth).mean()
    majority = np.bincount(truth).max() / len(truth)
    assert accuracy > majority + 0.3, (accuracy, majority)


def test_restart_loses_nothing_serves_at_once_and_refits_in_the_background(serve, tmp_path):
    db = tmp_path / "restart.db"
    rows = rgb_rows(300, seed=2)
    url = serve(rows, RGB, features=["r", "g", "b"], db_path=db, batch_size=10)
    answered = set()
    with httpx.Client(base_url=url) as client:
        for _ in range(3):
            tasks, answers = label_batch(client)
            post(client, answers).raise_for_status()
            answered |= {t["_input_hash"] for t in tasks}
        out_before = client.post("/api/questions", json={"session": "alice"}).json()["tasks"]
        assert serve.last_engine.wait_idle(30)
        before = client.get("/api/stats").json()
    serve.last_server.stop()

    # A model that takes a while to fit: the port opens and serves before the refit ends.
    from test_loop import GatedModel

    GatedModel.gate.clear()
    # One session takes the whole rest of the pool below, past its usual lease cap.
    url = serve(rows, RGB, features=["r", "g", "b"], db_path=db, batch_size=10, max_out=10_000,
                model=GatedModel())
    with httpx.Client(base_url=url) as client:
        first = client.post("/api/questions", json={"session": "carol", "n": 5}).json()["tasks"]
        assert len(first) == 5 and serve.last_engine.round == before["model_round"]
        assert {t["meta"]["source"] for t in first} == {"initial"}  # the cold start meanwhile
        GatedModel.gate.set()
        assert serve.last_engine.wait_idle(30)
        client.post("/api/questions", json={"session": "carol", "fresh": True, "n": 1})
        after = client.get("/api/stats").json()
        assert after["n_annotations"] == before["n_annotations"] == 30
        assert after["per_label"] == before["per_label"]
        # Round numbers go on from where they were, and the history survives the restart. The
        # refit on restart saw no new answer, so it is not a round of the history (three such
        # would read as "predictions stable" without a label).
        assert after["model_round"] == before["model_round"] + 1
        assert after["history"] == before["history"]
        assert before["history"][-1]["n_train"] == 30
        served = set()
        while tasks := client.post("/api/questions", json={"session": "bob", "n": 50}).json()["tasks"]:
            served |= {t["_input_hash"] for t in tasks}
    served |= {t["_input_hash"] for t in first}
    assert not served & answered
    # Rows that were out with an annotator when the server stopped are served again.
    assert {t["_input_hash"] for t in out_before} <= served
    assert len(served) == len(rows) - 30


def test_leased_rows_go_to_one_session_only(client):
    api = client(rgb_rows(40), RGB, batch_size=10)
    batches = [api.post("/api/questions", json={"session": s}).json()["tasks"]
               for s in ["alice", "bob", "carol", "dave", "erin"]]
    hashes = [t["_input_hash"] for batch in batches for t in batch]
    assert len(hashes) == len(set(hashes)) == 40
    assert batches[-1] == []


def _valid_answer(client):
    task = client.post("/api/questions", json={"session": "alice", "n": 1}).json()["tasks"][0]
    return dict(task, answer="accept", accept=["red"])


@pytest.mark.parametrize(
    "mutate, status",
    [
        (lambda a: {"session": "alice", "answers": [dict(a, accept=["magenta"])]}, 422),
        (lambda a: {"session": "alice", "answers": [dict(a, answer="maybe")]}, 422),
        (lambda a: {"session": "alice", "answers": [dict(a, _input_hash="1")]}, 422),
        (lambda a: {"session": "alice", "answers": [dict(a, _input_hash=7)]}, 404),  # no row
        (lambda a: {"session": "alice", "answers": [dict(a, _task_hash=7)]}, 409),  # labels
        (lambda a: {"session": "alice", "answers": [{k: v for k, v in a.items() if k != "answer"}]}, 422),
        (lambda a: {"session": "a b", "answers": [a]}, 422),
        (lambda a: {"answers": [a]}, 422),
        (lambda a: {"session": "alice", "answers": a}, 422),
        (lambda a: {"session": "alice", "answers": [a, dict(a, accept=["red", "blue"])]}, 422),
    ],
)
def test_bad_bodies_get_4xx_and_store_nothing(client, mutate, status):
    api = client(rgb_rows(30), RGB)
    response = api.post("/api/answers", json=mutate(_valid_answer(api)))
    assert response.status_code == status, response.text
    assert response.json()["detail"]
    assert api.get("/api/stats").json()["n_annotations"] == 0
    assert api.engine.store.count("test") == 0


@pytest.mark.parametrize("body", [b"{not json", b"[]", b"null"])
def test_unparseable_bodies_get_422(client, body):
    api = client(rgb_rows(10), RGB)
    response = api.post("/api/answers", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422


def test_questions_validate_their_parameters(client):
    api = client(rgb_rows(10), RGB)
    for body in [{}, {"session": "<b>"}, {"session": "a", "n": 0}, {"session": "a", "x": 1}]:
        assert api.post("/api/questions", json=body).status_code == 422, body


def test_pool_fields_travel_as_data(client):
    rows = [{"id": "x1", "name": "<script>alert(1)</script>", "v": 1.0},
            {"id": "x2", "name": "<b>bold</b>", "v": 2.0}]
    api = client(rows, ["a", "b"], features=["v"])
    tasks = api.post("/api/questions", json={"session": "s"}).json()["tasks"]
    assert {t["name"] for t in tasks} == {"<script>alert(1)</script>", "<b>bold</b>"}


def test_image_route_serves_only_images_under_the_pool_folder(client, tmp_path):
    (tmp_path / "cat.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 16)
    (tmp_path / "secret.txt").write_text("no")
    api = client([{"id": "1", "image": "cat.png", "v": 1}], ["a", "b"], view="image",
                 features=["v"])
    assert api.get("/api/image", params={"path": "cat.png"}).status_code == 200
    for bad in ["secret.txt", "../cat.png", "/etc/passwd", "missing.png",
                str(tmp_path / ".." / "x.png")]:
        assert api.get("/api/image", params={"path": bad}).status_code == 404, bad


def test_export_of_stored_answers_matches_what_was_posted(client):
    api = client(rgb_rows(50), RGB, features=["r", "g", "b"])
    tasks, answers = label_batch(api)
    post(api, answers).raise_for_status()
    buffer = io.StringIO()
    api.engine.store.export_jsonl("test", buffer)
    records = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert {r["_task_hash"] for r in records} == {t["_task_hash"] for t in tasks}
    for r in records:
        assert r["answer"] == "accept" and r["accept"] == [rgb_label(r)]
        assert r["_session_id"] == "test-alice" and isinstance(r["_timestamp"], int)
        assert {"r", "g", "b", "id", "_input_hash", "options"} <= set(r)
