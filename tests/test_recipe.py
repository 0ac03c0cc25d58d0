"""The Prodigy recipe, driven the way Prodigy's controller drives it, with a stand-in Prodigy."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import RGB, rgb_label, rgb_rows, write_jsonl
from prodigy_standin import Prodigy, run_controller

RECIPE_FILE = Path(__file__).resolve().parent.parent / "recipes" / "retrain_loop.py"
MODULE = "retrain_loop.recipes.retrain_loop"


def load_recipe(prodigy: Prodigy):
    """Import the recipe module fresh, so its decorator registers with this stand-in."""
    sys.modules.pop(MODULE, None)
    importlib.import_module(MODULE)
    return prodigy.recipes["retrain.loop"][0]


@pytest.fixture
def prodigy():
    stand_in = Prodigy().install()
    yield stand_in
    stand_in.uninstall()
    sys.modules.pop(MODULE, None)


@pytest.fixture
def pool_file(tmp_path):
    return write_jsonl(tmp_path / "pool.jsonl", rgb_rows(400, seed=5))


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


def test_arguments_use_arg_in_new_prodigy(prodigy, pool_file):
    load_recipe(prodigy)
    args = prodigy.recipes["retrain.loop"][1]
    assert type(args["dataset"]).__name__ == "Arg" and args["dataset"].flags == ()
    assert args["label"].flags == ("--label", "-l")
    assert args["batch_size"].flags == ("--batch-size", "-b")
    assert {"prefer", "explore", "update", "view", "strategy", "model", "features"} <= set(args)


def test_older_prodigy_gets_plac_tuples_and_get_dataset(pool_file):
    old = Prodigy(with_arg=False, old_db=True).install()
    try:
        recipe = load_recipe(old)
        args = old.recipes["retrain.loop"][1]
        assert args["dataset"] == ("Dataset to save answers to", "positional", None, str)
        assert args["label"][1:3] == ("option", "l")
        c = recipe("old", str(pool_file), label="red,green,blue", features="r,g,b", batch_size=10)
        run_controller(c, old.db, rgb_label, n_batches=3)
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

    served = run_controller(c, prodigy.db, rgb_label, n_batches=12, on_update=after_update)
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
    run_controller(c, prodigy.db, rgb_label, n_batches=4)
    answered = prodigy.db.get_input_hashes("colours")
    again = recipe("colours", str(pool_file), label="red,green,blue", features="r,g,b",
                   batch_size=10)
    first = [next(again["stream"]) for _ in range(30)]
    assert not {t["_input_hash"] for t in first} & answered
    assert first[0]["meta"]["round"] == 1  # refit from the stored answers before serving
    assert again["update"]([])["n_train"] == 40


def test_answers_the_database_has_not_seen_yet_still_count(prodigy, pool_file):
    recipe = load_recipe(prodigy)
    c = recipe("colours", str(pool_file), label="red,green,blue", features="r,g,b", batch_size=5)
    batch = [next(c["stream"]) for _ in range(5)]
    answers = [dict(t, answer="accept", accept=[rgb_label(t)]) for t in batch]
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


def test_recipe_and_server_make_the_same_first_refit(prodigy, pool_file, serve):
    recipe = load_recipe(prodigy)
    c = recipe("colours", str(pool_file), label="red,green,blue", features="r,g,b",
               model="logreg", batch_size=10, seed=3)
    served = run_controller(c, prodigy.db, rgb_label, n_batches=1)
    recipe_next = [next(c["stream"]) for _ in range(10)]

    url = serve(rgb_rows(400, seed=5), RGB, features=["r", "g", "b"], batch_size=10, seed=3)
    with httpx.Client(base_url=url) as client:
        def get():
            return client.get("/api/questions", params={"session": "a"}).json()["tasks"]

        first, prefetched = get(), get()
        answers = [dict(t, answer="accept", accept=[rgb_label(t)]) for t in first]
        client.post("/api/answers", json={"session": "a", "answers": answers}).raise_for_status()
        assert serve.last_engine.wait_idle(30)
        server_next = get()
    assert [t["_input_hash"] for t in served] == [t["_input_hash"] for t in first + prefetched]
    assert [t["_input_hash"] for t in recipe_next] == [t["_input_hash"] for t in server_next]
    assert [t["meta"] for t in recipe_next] == [t["meta"] for t in server_next]


def test_recipe_file_loads_with_dash_f(prodigy):
    spec = importlib.util.spec_from_file_location("retrain_loop_recipe_file", RECIPE_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert prodigy.recipes["retrain.loop"][0] is module.retrain_loop


def test_recipe_is_registered_as_a_prodigy_entry_point(prodigy):
    points = importlib.metadata.entry_points(group="prodigy_recipes")
    (point,) = [p for p in points if p.name == "retrain.loop"]
    sys.modules.pop(MODULE, None)
    assert point.load() is prodigy.recipes["retrain.loop"][0]


def test_importing_the_package_never_imports_prodigy():
    code = ("import sys, retrain_loop, retrain_loop.cli, retrain_loop.loop, retrain_loop.server, "
            "retrain_loop.prodigy_db, retrain_loop.recipes; "
            "assert not [m for m in sys.modules if m.split('.')[0] == 'prodigy'], 'prodigy imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_incremental_update_in_the_recipe(prodigy, pool_file):
    c = load_recipe(prodigy)("ds", str(pool_file), label="red,green,blue", features="r,g,b",
                             model="nb", update="incremental", batch_size=10)
    updates = []
    run_controller(c, prodigy.db, rgb_label, n_batches=5, on_update=updates.append)
    assert [u["round"] for u in updates] == [1, 2, 3, 4, 5]


def _pool_hashes(pool_file):
    from retrain_loop.pool import load_pool

    return set(load_pool(pool_file).input_hashes.tolist())
