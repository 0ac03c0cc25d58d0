"""The recipe's binary mode: yes/no questions in Prodigy's classification view, with the
stand-in Prodigy; answers saved in the shape the engine reads back after a restart."""

from __future__ import annotations

import importlib
import sys

import pytest
from conftest import RGB, rgb_label, rgb_rows, write_jsonl
from prodigy_standin import Prodigy, run_controller

from retrain_loop.hashing import task_hash

MODULE = "retrain_loop.recipes.retrain_loop"


@pytest.fixture
def prodigy(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the recipe keeps DATASET.history.db in the working directory
    stand_in = Prodigy().install()
    sys.modules.pop(MODULE, None)
    importlib.import_module(MODULE)
    yield stand_in
    stand_in.uninstall()
    sys.modules.pop(MODULE, None)


def yes_or_no(task):
    """An annotator who knows the colour: yes when the suggested label is right."""
    return {"answer": "accept" if task["label"] == rgb_label(task["fields"]) else "reject"}


def test_binary_mode_asks_yes_or_no_and_learns_from_both(prodigy, tmp_path, capsys):
    pool = write_jsonl(tmp_path / "pool.jsonl", rgb_rows(300, seed=5))
    recipe = prodigy.recipes["retrain.loop"]
    c = recipe("colours", str(pool), label="red,green,blue", features="r,g,b", view="colour",
               model="logreg", batch_size=10, mode="binary")
    assert c["view_id"] == "classification" and "blocks" not in c["config"]
    assert "no random checks" in capsys.readouterr().err  # the default --audit is not used
    served = run_controller(c, prodigy.db, yes_or_no, n_batches=8)  # tasks checked as shown
    assert all(t["label"] in RGB and "options" not in t for t in served)
    assert all(t["_task_hash"] == task_hash(t["_input_hash"], [t["label"]]) for t in served)
    assert all(t["meta"]["source"] != "audit" for t in served)
    saved = prodigy.db.get_dataset_examples("colours")
    accepted = [eg for eg in saved if eg["answer"] == "accept"]
    rejected = [eg for eg in saved if eg["answer"] == "reject"]
    assert accepted and rejected
    assert all(eg["accept"] == [eg["label"]] for eg in accepted)
    assert all(eg["meta"]["rejected_label"] == eg["label"] and eg["accept"] == []
               for eg in rejected)
    result = c["update"]([])
    assert result["n_train"] == len(accepted) and result["round"] >= 2
    # A rejected row may come back, but never with the label it was said not to be.
    said_not = {eg["_input_hash"]: eg["label"] for eg in rejected}
    questions = [(t["_input_hash"], t["label"]) for t in served]
    assert len(questions) == len(set(questions))

    # A restart reads Prodigy's database alone and trains on the same accepted answers.
    sys.modules.pop(MODULE, None)
    importlib.import_module(MODULE)
    again = prodigy.recipes["retrain.loop"](
        "colours", str(pool), label="red,green,blue", features="r,g,b", view="colour",
        model="logreg", batch_size=10, mode="binary")
    assert again["update"]([])["n_train"] == len(accepted)
    next_task = next(again["stream"])
    assert next_task["_input_hash"] not in {eg["_input_hash"] for eg in accepted}
    if next_task["_input_hash"] in said_not:
        assert next_task["label"] != said_not[next_task["_input_hash"]]
