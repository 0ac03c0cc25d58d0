"""``auto``, the default learner: where it is the default, what it fits on, and what it says."""

from __future__ import annotations

import inspect
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import RGB, build_engine, rgb_label, rgb_rows, write_jsonl
from prodigy_standin import Prodigy
from sklearn.datasets import load_wine

from retrain_loop import offline
from retrain_loop.auto import AutoClassifier
from retrain_loop.cli import main
from retrain_loop.models import DEFAULT_MODEL, describe, make_model
from retrain_loop.persist import load_model, save_model
from retrain_loop.settings import EngineSettings


def test_auto_is_the_default_everywhere():
    assert DEFAULT_MODEL == "auto"
    for command in ("serve", "score", "train", "simulate"):
        (option,) = [p for p in main.commands[command].params if p.name == "model"]
        assert option.default == "auto", command
    # The engine, a simulation and the recipe take their default from the settings object.
    assert EngineSettings().model == "auto"
    assert inspect.signature(offline.train).parameters["model"].default == "auto"
    assert "auto" in CliRunner().invoke(main, ["serve", "--help"]).output


def test_auto_is_the_default_of_the_prodigy_recipe():
    prodigy = Prodigy().install()
    try:
        sys.modules.pop("retrain_loop.recipes.retrain_loop", None)
        assert prodigy.parse(["retrain.loop", "ds", "pool.csv"])[1]["model"] == "auto"
    finally:
        prodigy.uninstall()
        sys.modules.pop("retrain_loop.recipes.retrain_loop", None)


def test_fits_on_two_labels_of_two_classes():
    X = np.array([[0.0, 1.0], [1.0, 0.0]])
    model = make_model("auto").fit(X, np.array([0, 1]))
    proba = model.predict_proba(np.array([[0.1, 0.9], [0.9, 0.1]]))
    assert proba.shape == (2, 2) and np.allclose(proba.sum(axis=1), 1)
    assert model.predict(X).tolist() == [0, 1]


def test_fits_with_a_class_of_one_example():
    X, y = load_wine(return_X_y=True)
    rows = np.r_[0:20, 70:90, 140]  # the third class has a single answer
    model = make_model("auto").fit(X[rows], y[rows])
    assert model.classes_.tolist() == [0, 1, 2]
    proba = model.predict_proba(X)
    assert proba.shape == (len(X), 3) and np.isfinite(proba).all()
    assert (model.predict(X) == y).mean() > 0.6


def test_fits_on_ten_thousand_rows_of_fifty_features():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(10_000, 50)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1).astype(int)
    model = make_model("auto").fit(X[:8000], y[:8000])
    assert (model.predict(X[8000:]) == y[8000:]).mean() > 0.85


def test_a_seed_makes_it_deterministic_and_another_seed_differs():
    X, y = load_wine(return_X_y=True)
    rows = np.r_[0:10, 70:80, 140:150]
    a = make_model("auto", seed=3).fit(X[rows], y[rows]).predict_proba(X)
    b = make_model("auto", seed=3).fit(X[rows], y[rows]).predict_proba(X)
    c = make_model("auto", seed=4).fit(X[rows], y[rows]).predict_proba(X)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_it_averages_its_members_with_their_weights():
    X, y = load_wine(return_X_y=True)
    model = AutoClassifier(weights=(1.0, 0.0, 3.0), random_state=1).fit(X, y)
    logreg, trees = model.estimators_
    expected = 0.25 * logreg.predict_proba(X) + 0.75 * trees.predict_proba(X)
    np.testing.assert_allclose(model.predict_proba(X), expected)
    assert model.describe() == "soft vote of logreg + extra-trees"
    with pytest.raises(ValueError, match="weights"):
        AutoClassifier(weights=(0.0, 0.0, 0.0)).fit(X, y)


def test_its_trees_run_on_one_thread_and_the_seed_reaches_them():
    model = make_model("auto", seed=5).fit(*load_wine(return_X_y=True))
    for tree in model.estimators_[1:]:
        assert tree.n_jobs == 1 and tree.random_state == 5


def test_the_stats_name_the_learner_in_use(tmp_path):
    from retrain_loop.pool import load_pool
    from retrain_loop.store import AnnotationStore

    path = write_jsonl(tmp_path / "pool.jsonl", rgb_rows(200, seed=1))
    pool = load_pool(path, features=["r", "g", "b"])
    engine = build_engine(pool, AnnotationStore(tmp_path / "a.db"), "ds", RGB, background=False)
    assert engine.stats()["model"] == "auto" and engine.stats()["learner"] is None
    tasks = engine.get_questions("s", 20)
    engine.add_answers([dict(t, answer="accept", accept=[rgb_label(t)]) for t in tasks], "s")
    stats = engine.stats()
    assert stats["learner"] == "soft vote of logreg + forest + extra-trees"
    logreg = build_engine(pool, AnnotationStore(tmp_path / "b.db"), "ds", RGB, model="logreg",
                          background=False)
    logreg.add_answers([dict(t, answer="accept", accept=[rgb_label(t)]) for t in tasks], "s")
    assert logreg.stats()["learner"] == "LogisticRegression"
    assert describe(None) is None


def test_a_saved_auto_model_loads_without_trust(tmp_path):
    X, y = load_wine(return_X_y=True)
    model = make_model("auto").fit(X, y)
    save_model(tmp_path / "m.skops", model, labels=["a", "b", "c"], features=[f"f{i}" for i in
               range(X.shape[1])], n_annotations=len(y), cv_accuracy=None, dataset="wine",
               model_spec="auto")
    loaded = load_model(tmp_path / "m.skops")
    np.testing.assert_allclose(loaded.estimator.predict_proba(X), model.predict_proba(X))
