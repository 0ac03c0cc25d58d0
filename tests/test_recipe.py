"""The Prodigy recipe, driven the way Prodigy's controller drives it, with a stand-in Prodigy."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import RGB, rgb_label, rgb_rows, write_jsonl
from prodigy_standin import Controller, Database, Prodigy, check_task, run_controller

from retrain_loop.audit import SOURCES
from retrain_loop.estimate import wilson

RECIPE_FILE = Path(__file__).resolve().parent.parent / "recipes" / "retrain_loop.py"
MODULE = "retrain_loop.recipes.retrain_loop"
HIDDEN = "_retrain_loop_audit"  # where the recipe keeps an audit's prediction off the card


def load_recipe(prodigy: Prodigy):
    """Import the recipe module fresh, so its decorator registers with this stand-in."""
    sys.modules.pop(MODULE, None)
    importlib.import_module(MODULE)
    return prodigy.recipes["retrain.loop"]


@pytest.fixture
def prodigy():
    stand_in = Prodigy().install()
    yield stand_in
    stand_in.uninstall()
    sys.modules.pop(MODULE, None)


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path, monkeypatch):
    """The recipe keeps its round history in DATASET.history.db in the working directory."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def pool_file(tmp_path):
    return write_jsonl(tmp_path / "pool.jsonl", rgb_rows(400, seed=5))


def truth(task):
    """The known label of a task the recipe served: the row's own columns are under fields."""
    return rgb_label(task["fields"])


def held_out_accuracy(model, n=600):
    rows = rgb_rows(n, seed=77)
    X = np.array([[r["r"], r["g"], r["b"]] for r in rows], dtype=np.float32)
    truth = np.array([RGB.index(rgb_label(r)) for r in rows])
    return float((model.predict(X) == truth).mean())


def test_components_match_prodigys_contract(prodigy, pool_file):
    recipe = load_recipe(prodigy)
    c = recipe("colours", str(pool_file), label="red,green,blue", features="r,g,b", view="colour",
               batch_size=7)
    assert c["dataset"] == "colours" and c["view_id"] == "blocks"
    assert [b["view_id"] for b in c["config"]["blocks"]] == ["html", "choice"]
    assert c["config"]["batch_size"] == 7
    assert c["config"]["choice_style"] == "single" and c["config"]["exclude_by"] == "input"
    assert all(callable(c[k]) for k in ("update", "progress", "on_exit", "validate_answer"))
    task = next(c["stream"])
    assert [o["id"] for o in task["options"]] == RGB
    assert "background:#" in task["html"] and isinstance(task["_input_hash"], int)
    assert c["progress"](None, None) == 0.0


def test_older_prodigy_reads_with_get_dataset(pool_file):
    old = Prodigy(with_arg=False, old_db=True).install()
    try:
        recipe = load_recipe(old)
        c = recipe("old", str(pool_file), label="red,green,blue", features="r,g,b", batch_size=10)
        run_controller(c, old.db, truth, n_batches=3)
        assert old.db.reads > 0  # read through get_dataset, the only reader it has
        assert c["update"]([])["n_train"] == 30
    finally:
        old.uninstall()
        sys.modules.pop(MODULE, None)


def test_controller_run_serves_each_row_once_and_refits_on_the_whole_dataset(prodigy, pool_file,
                                                                            tmp_path):
    from retrain_loop.persist import load_model

    recipe = load_recipe(prodigy)
    model_path = tmp_path / "model.skops"
    c = recipe("colours", str(pool_file), label="red,green,blue", features="r,g,b",
               model="logreg", batch_size=10, model_out=str(model_path))
    updates, models = [], []

    def after_update(result):
        updates.append(result)
        if len(updates) == 1:
            c["on_exit"](None)
            models.append(load_model(model_path))

    served = run_controller(c, prodigy.db, truth, n_batches=12, on_update=after_update)
    hashes = [t["_input_hash"] for t in served]
    assert len(hashes) == len(set(hashes)) == 130  # 12 answered + 1 prefetched, none twice
    assert set(hashes) <= _pool_hashes(pool_file)
    # Every update refits on everything in the dataset so far, not on the last batch.
    assert [u["n_train"] for u in updates] == [10 * (i + 1) for i in range(12)]
    assert [u["round"] for u in updates] == list(range(1, 13))
    assert all(u["error"] is None for u in updates)
    assert c["progress"](None, None) == pytest.approx(120 / 400)

    c["on_exit"](None)
    final = load_model(model_path)
    assert final.meta["n_annotations"] == 120 and final.labels == RGB
    assert held_out_accuracy(final.estimator) > held_out_accuracy(models[0].estimator)
    assert held_out_accuracy(final.estimator) > 0.9


def test_a_restarted_recipe_skips_answered_rows_and_learns_from_them(prodigy, pool_file):
    recipe = load_recipe(prodigy)
    c = recipe("colours", str(pool_file), label="red,green,blue", features="r,g,b", batch_size=10)
    run_controller(c, prodigy.db, truth, n_batches=4)
    answered = prodigy.db.get_input_hashes("colours")
    again = recipe("colours", str(pool_file), label="red,green,blue", features="r,g,b",
                   batch_size=10)
    first = [next(again["stream"]) for _ in range(30)]
    assert not {t["_input_hash"] for t in first} & answered
    # Refit from the stored answers before serving; round numbers go on from the four before.
    assert first[0]["meta"]["round"] == 5
    assert again["update"]([])["n_train"] == 40


def test_answers_the_database_has_not_seen_yet_still_count(prodigy, pool_file):
    recipe = load_recipe(prodigy)
    c = recipe("colours", str(pool_file), label="red,green,blue", features="r,g,b", batch_size=5)
    batch = [next(c["stream"]) for _ in range(5)]
    answers = [dict(t, answer="accept", accept=[truth(t)]) for t in batch]
    # Whether Prodigy saves before or after update is not documented: update must not care.
    result = c["update"](answers)
    assert result["n_annotations"] == 5
    prodigy.db.add_examples(answers, datasets=["colours"])
    assert c["update"](answers)["n_annotations"] == 5  # deduplicated by _task_hash


def test_validate_answer_refuses_an_accept_without_one_label(prodigy, pool_file):
    c = load_recipe(prodigy)("ds", str(pool_file), label="red,green,blue", features="r,g,b")
    task = next(c["stream"])
    c["validate_answer"](dict(task, answer="accept", accept=["red"]))
    c["validate_answer"](dict(task, answer="ignore", accept=[]))
    for accept in ([], ["red", "blue"]):
        with pytest.raises(ValueError, match="one label"):
            c["validate_answer"](dict(task, answer="accept", accept=accept))


def test_record_view_escapes_pool_fields(prodigy, tmp_path):
    pool = write_jsonl(tmp_path / "p.jsonl", [{"id": "1", "name": "<script>x</script>", "v": 1},
                                              {"id": "2", "name": "<b>b</b>", "v": 2}])
    c = load_recipe(prodigy)("ds", str(pool), label="a,b", features="v")
    htmls = [next(c["stream"])["html"] for _ in range(2)]
    assert any("&lt;script&gt;x&lt;/script&gt;" in h for h in htmls)
    assert not any("<script>" in h or "<b>" in h for h in htmls)


def test_recipe_and_server_make_the_same_first_refit(prodigy, pool_file, client):
    recipe = load_recipe(prodigy)
    c = recipe("colours", str(pool_file), label="red,green,blue", features="r,g,b",
               model="logreg", batch_size=10, seed=3)
    served = run_controller(c, prodigy.db, truth, n_batches=1)
    recipe_next = [next(c["stream"]) for _ in range(10)]

    api = client(rgb_rows(400, seed=5), RGB, features=["r", "g", "b"], batch_size=10, seed=3)

    def get():
        return api.post("/api/questions", json={"session": "a"}).json()["tasks"]

    first, prefetched = get(), get()
    answers = [dict(t, answer="accept", accept=[rgb_label(t)]) for t in first]
    api.post("/api/answers", json={"session": "a", "answers": answers}).raise_for_status()
    assert api.engine.wait_idle(30)
    server_next = get()
    assert [t["_input_hash"] for t in served] == [t["_input_hash"] for t in first + prefetched]
    assert [t["_input_hash"] for t in recipe_next] == [t["_input_hash"] for t in server_next]
    # The recipe hides an audit's prediction from Prodigy's card; it is the server's all the same.
    assert [{**t["meta"], **t.get(HIDDEN, {})} for t in recipe_next] == [t["meta"] for t in server_next]


def test_recipe_file_loads_with_dash_f(prodigy):
    spec = importlib.util.spec_from_file_location("retrain_loop_recipe_file", RECIPE_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert prodigy.recipes["retrain.loop"] is module.retrain_loop


def test_recipe_is_registered_as_a_prodigy_entry_point(prodigy):
    points = importlib.metadata.entry_points(group="prodigy_recipes")
    (point,) = [p for p in points if p.name == "retrain.loop"]
    sys.modules.pop(MODULE, None)
    assert point.load() is prodigy.recipes["retrain.loop"]


def test_importing_the_package_never_imports_prodigy():
    code = ("import sys, retrain_loop, retrain_loop.cli, retrain_loop.engine, retrain_loop.server, "
            "retrain_loop.prodigy_db, retrain_loop.recipes; "
            "assert not [m for m in sys.modules if m.split('.')[0] == 'prodigy'], 'prodigy imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


FED_ONLY = """
from sklearn.naive_bayes import GaussianNB

FED = []  # the number of answers each partial_fit call was given


class FedOnly(GaussianNB):
    def fit(self, X, y, sample_weight=None):
        raise AssertionError("an incremental update fitted from scratch")

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        FED.append(len(y))
        return super().partial_fit(X, y, classes=classes, sample_weight=sample_weight)
"""


def test_incremental_update_in_the_recipe(prodigy, pool_file, tmp_path):
    source = tmp_path / "fed_only.py"
    source.write_text(FED_ONLY, encoding="utf-8")
    c = load_recipe(prodigy)("ds", str(pool_file), label="red,green,blue", features="r,g,b",
                             model=f"{source}:FedOnly", update="incremental", batch_size=10)
    updates = []
    run_controller(c, prodigy.db, truth, n_batches=5, on_update=updates.append)
    assert [u["round"] for u in updates] == [1, 2, 3, 4, 5]
    assert all(u["error"] is None for u in updates)
    # Each update learned from that batch's answers only, and never refitted from scratch.
    assert sys.modules[type(c["stream"].engine.model_).__module__].FED == [10] * 5


def _pool_hashes(pool_file):
    from retrain_loop.pool import load_pool

    return set(load_pool(pool_file).input_hashes.tolist())


# -- answers of every kind, batches ahead, several sessions ------------------------------------

def every_kind(task):
    """Accept the true label, reject with and without a choice, skip, or accept nothing."""
    kind = task["_input_hash"] % 5
    if kind == 0:
        return {"answer": "reject", "accept": [truth(task)]}
    if kind == 1:
        return {"answer": "reject", "accept": []}
    if kind == 2:
        return {"answer": "ignore", "accept": []}
    if kind == 3:
        return {"answer": "accept", "accept": []}  # validate_answer refuses it; the user skips
    return truth(task)


def test_answers_of_every_kind(prodigy, pool_file):
    c = load_recipe(prodigy)("ds", str(pool_file), label="red,green,blue", features="r,g,b",
                             model="logreg", batch_size=10)
    controller = Controller(c, prodigy.db)
    served = controller.session(every_kind, n_batches=10)
    saved = prodigy.db.datasets["ds"]
    assert len(saved) == 100 and len({eg["_input_hash"] for eg in saved}) == 100
    kinds = [eg["_input_hash"] % 5 for eg in saved]
    # The empty accepts were refused by validate_answer and saved as skips instead.
    assert len(controller.refused) == kinds.count(3) > 0
    assert all("one label" in message for _, message in controller.refused)
    assert {eg["answer"] for eg in saved} == {"accept", "reject", "ignore"}
    # Only accepted answers teach the model, and each refit learned from all of them so far.
    accepted = [sum(k == 4 for k in kinds[: 10 * (i + 1)]) for i in range(10)]
    assert [u["n_train"] for u in controller.updates][-5:] == accepted[-5:]
    assert served and len(served) == 110
    assert controller.updates[-1]["n_train"] == kinds.count(4)
    assert controller.updates[-1]["n_annotations"] == 100
    assert all(u["error"] is None for u in controller.updates)


def test_batches_pulled_two_ahead(prodigy, pool_file):
    c = load_recipe(prodigy)("ds", str(pool_file), label="red,green,blue", features="r,g,b",
                             model="logreg", batch_size=8)
    controller = Controller(c, prodigy.db)
    served = controller.session(truth, n_batches=6, ahead=2)
    hashes = [t["_input_hash"] for t in served]
    assert len(hashes) == len(set(hashes)) == 8 * (6 + 2)  # answered plus two batches in flight
    assert [u["n_train"] for u in controller.updates] == [8 * (i + 1) for i in range(6)]
    # A batch pulled after a refit was ranked by that refit's model.
    rounds = [t["meta"]["round"] for t in served]
    assert rounds == sorted(rounds) and rounds[-1] >= 4


def test_two_sessions_at_once_never_get_the_same_row(prodigy, tmp_path):
    pool = write_jsonl(tmp_path / "pool.jsonl", rgb_rows(2000, seed=9))
    c = load_recipe(prodigy)("ds", str(pool), label="red,green,blue", features="r,g,b",
                             model="logreg", batch_size=5)
    controller = Controller(c, prodigy.db)
    served = controller.sessions(truth, n_batches=12, names=("alice", "bob", "carol"))
    every = [t["_input_hash"] for tasks in served.values() for t in tasks]
    assert len(every) == len(set(every)) == 3 * 5 * 13
    saved = prodigy.db.datasets["ds"]
    assert len(saved) == 3 * 5 * 12
    assert {eg["_session_id"] for eg in saved} == {"ds-alice", "ds-bob", "ds-carol"}
    assert c["update"]([])["n_train"] == 3 * 5 * 12
    assert all(u["error"] is None for u in controller.updates)


def test_the_stream_serves_each_row_once_when_pulled_from_many_threads(prodigy, tmp_path):
    import threading

    pool = write_jsonl(tmp_path / "pool.jsonl", rgb_rows(1200, seed=4))
    c = load_recipe(prodigy)("ds", str(pool), label="red,green,blue", features="r,g,b")
    stream, start, pulled, errors = c["stream"], threading.Barrier(4), [], []

    def pull():
        start.wait()
        try:
            for task in stream:
                pulled.append(task["_input_hash"])
        except Exception as e:  # noqa: BLE001 - e.g. "generator already executing"
            errors.append(e)

    threads = [threading.Thread(target=pull) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(pulled) == len(set(pulled)) == 1200
    assert next(stream, None) is None  # an ended stream stays ended


# -- what a task holds -------------------------------------------------------------------------

def test_pool_columns_named_like_prodigy_fields_stay_under_fields(prodigy, tmp_path):
    rows = [{"id": f"r{i}", "x": float(i), "y": float(i % 7), "text": f"row {i}", "label": i % 3,
             "spans": "none", "width": "wide", "html": "<b>raw</b>", "meta": "m", "options": 1}
            for i in range(60)]
    pool = write_jsonl(tmp_path / "pool.jsonl", rows)
    c = load_recipe(prodigy)("ds", str(pool), label="low,high", features="x,y", batch_size=10)
    controller = Controller(c, prodigy.db)  # checks every task against the interfaces
    served = controller.session(lambda t: "low" if t["fields"]["x"] < 30 else "high", 3)
    for task in served:
        audit = {HIDDEN} if task["meta"]["source"] == "audit" else set()
        assert set(task) == {"_input_hash", "_task_hash", "options", "accept", "meta", "html",
                             "fields"} | audit
        row = rows[int(task["fields"]["id"][1:])]
        assert task["fields"] == row
        assert "&lt;b&gt;raw&lt;/b&gt;" in task["html"] and "wide" in task["html"]
    assert controller.updates[-1]["n_train"] == 30


@pytest.mark.parametrize("field, value", [("label", 3), ("spans", "none"), ("width", "wide"),
                                          ("text", ["a"]), ("meta", "m")])
def test_the_interface_check_refuses_a_field_prodigy_reads_differently(field, value):
    task = {"html": "<p>x</p>", "options": [{"id": "a", "text": "a"}], "accept": []}
    check_task(task, "blocks", {"blocks": [{"view_id": "html"}, {"view_id": "choice"}]})
    with pytest.raises(ValueError, match=field):
        check_task(dict(task, **{field: value}), "blocks",
                   {"blocks": [{"view_id": "html"}, {"view_id": "choice"}]})


def test_the_interface_check_wants_what_each_interface_shows():
    config = {"blocks": [{"view_id": "image"}, {"view_id": "choice"}]}
    with pytest.raises(ValueError, match="image"):
        check_task({"options": [{"id": "a", "text": "a"}], "accept": []}, "blocks", config)
    with pytest.raises(ValueError, match="names no option"):
        check_task({"image": "a.png", "options": [{"id": "a", "text": "a"}], "accept": ["b"]},
                   "blocks", config)
    with pytest.raises(ValueError, match="label"):
        check_task({"text": "t"}, "classification", {})


def test_image_view_saves_the_path_not_the_picture(prodigy, tmp_path):
    (tmp_path / "img").mkdir()
    rows = []
    for i in range(30):
        (tmp_path / "img" / f"{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes([i]) * 64)
        rows.append({"id": str(i), "image": f"img/{i}.png", "brightness": float(i)})
    pool = write_jsonl(tmp_path / "pool.jsonl", rows)
    c = load_recipe(prodigy)("ds", str(pool), label="dark,light", features="brightness",
                             view="image", batch_size=5)
    assert [b["view_id"] for b in c["config"]["blocks"]] == ["image", "choice"]
    controller = Controller(c, prodigy.db)
    served = controller.session(
        lambda t: "dark" if t["fields"]["brightness"] < 15 else "light", n_batches=3)
    assert all(t["image"].startswith("data:image/png;base64,") for t in served)
    saved = prodigy.db.datasets["ds"]
    assert len(saved) == 15
    assert all(eg["image"] == f"img/{eg['fields']['id']}.png" for eg in saved)
    # The hashes Prodigy saved are the ones served: swapping the image back changed neither.
    by_hash = {t["_input_hash"]: t["_task_hash"] for t in served}
    assert all(by_hash[eg["_input_hash"]] == eg["_task_hash"] for eg in saved)
    assert controller.updates[-1]["n_train"] == 15


# -- the database --------------------------------------------------------------------------------

class DoesNotExist(Exception):
    """What an ORM raises for a row that is not there."""


@pytest.mark.parametrize("missing", [None, KeyError, ValueError, LookupError, DoesNotExist])
def test_the_first_run_on_a_new_dataset_works_whatever_the_database_raises(pool_file, missing):
    stand_in = Prodigy(missing=missing).install()
    try:
        c = load_recipe(stand_in)("new", str(pool_file), label="red,green,blue",
                                  features="r,g,b", batch_size=10)
        controller = Controller(c, stand_in.db)  # Prodigy adds the dataset once c is returned
        controller.session(truth, n_batches=2)
        assert [u["n_train"] for u in controller.updates] == [10, 20]
    finally:
        stand_in.uninstall()
        sys.modules.pop(MODULE, None)


def test_an_error_reading_an_existing_dataset_is_not_hidden(prodigy, pool_file):
    class Broken(Database):
        def get_dataset_examples(self, name):
            raise RuntimeError("database is locked")

    prodigy.db.__class__ = Broken
    prodigy.db.add_dataset("ds")
    with pytest.raises(RuntimeError, match="locked"):
        load_recipe(prodigy)("ds", str(pool_file), label="red,green,blue", features="r,g,b")


def test_an_audit_prediction_is_hidden_from_the_card_and_saved_with_the_answer(prodigy, pool_file):
    c = load_recipe(prodigy)("colours", str(pool_file), label="red,green,blue", features="r,g,b",
                             model="logreg", batch_size=10, audit=0.2)
    controller = Controller(c, prodigy.db)
    served = controller.session(truth, 8)
    audits = [t for t in served if t["meta"]["source"] == "audit"]
    assert len(audits) >= 10  # 0.2 of the 70 tasks served once a model exists
    for task in audits:
        assert task["accept"] == []  # nothing preselected
        assert "predicted" not in task["meta"] and "p" not in task["meta"]
        assert task[HIDDEN]["predicted"] in RGB
    saved = {eg["_input_hash"]: eg for eg in prodigy.db.get_dataset_examples("colours")}
    answered = [t for t in audits if t["_input_hash"] in saved]  # not the batch pulled ahead
    assert len(answered) >= 8
    for task in answered:
        eg = saved[task["_input_hash"]]
        assert HIDDEN not in eg
        assert eg["meta"]["predicted"] == task[HIDDEN]["predicted"]
        assert eg["meta"]["round"] == task["meta"]["round"]
    sources = {eg["meta"]["source"] for eg in saved.values()}
    assert {"initial", "audit", "active"} <= sources <= set(SOURCES)
    accuracy = controller.updates[-1]["accuracy"]
    n = sum(1 for eg in saved.values() if eg["meta"]["source"] == "audit")
    assert accuracy["n"] == n
    right = sum(eg["meta"]["predicted"] == eg["accept"][0] for eg in saved.values()
                if eg["meta"]["source"] == "audit")
    assert accuracy["accuracy"] == round(right / n, 4)
    assert (accuracy["low"], accuracy["high"]) == pytest.approx(wilson(right, n), abs=1e-4)
    assert controller.updates[-1]["stop"] == c["stream"].engine.stats()["stop"]["message"]


def test_status_reads_a_prodigy_dataset_with_the_recipes_history(prodigy, pool_file, tmp_path):
    import json

    from click.testing import CliRunner

    from retrain_loop.cli import main

    c = load_recipe(prodigy)("colours", str(pool_file), label="red,green,blue", features="r,g,b",
                             model="logreg", batch_size=10, audit=0.3)
    controller = Controller(c, prodigy.db)
    controller.session(truth, 8)
    last = controller.updates[-1]
    # What `prodigy db-out colours` writes, loaded with `retrain-loop db-in`.
    out = tmp_path / "colours.jsonl"
    out.write_text("".join(json.dumps(eg) + "\n" for eg in
                           prodigy.db.get_dataset_examples("colours")), encoding="utf-8")
    db = str(tmp_path / "copy.db")
    assert CliRunner().invoke(main, ["db-in", "colours", str(out), "--db", db]).exit_code == 0
    result = CliRunner().invoke(main, ["status", "colours", "--db", db, "--history",
                                       "colours.history.db", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["rounds"] == last["round"] == len(report["history"])
    assert report["stop"]["message"] == last["stop"]
    assert {k: report["estimate"][k] for k in last["accuracy"]} == last["accuracy"]


def test_the_terminal_hears_when_stopping_is_suggested(prodigy, pool_file, capsys):
    c = load_recipe(prodigy)("colours", str(pool_file), label="red,green,blue", features="r,g,b",
                             model="logreg", batch_size=10)
    controller = Controller(c, prodigy.db)
    controller.session(truth, 20)
    fired = [u["round"] for u in controller.updates if u["stop_suggested"]]
    assert fired, "a consistent annotator on three clear colours should settle within 200 labels"
    err = capsys.readouterr().err
    assert err.count("retrain.loop: The model has stopped changing") == 1
