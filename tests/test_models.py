"""make_model: named models, module:callable and file.py:callable specs, real fits on iris."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_iris
from sklearn.exceptions import NotFittedError
from sklearn.naive_bayes import GaussianNB
from sklearn.utils.validation import check_is_fitted

from retrain_loop.models import MODELS, ModelError, make_model

X, Y = load_iris(return_X_y=True)
FEW = np.r_[0:4, 50:54, 100:104]  # 4 labels per class

MODEL_FILE = """
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB

def with_seed(seed):
    return LogisticRegression(max_iter=500, random_state=seed)

def no_args():
    return GaussianNB()

instance = GaussianNB()

def broken(seed=0):
    raise RuntimeError("no model today")

def not_a_classifier():
    return object()
"""


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "my_models.py"
    path.write_text(MODEL_FILE, encoding="utf-8")
    return path


@pytest.mark.parametrize("name", sorted(MODELS))
def test_named_model_predicts_probabilities_on_iris(name):
    proba = make_model(name).fit(X, Y).predict_proba(X)
    assert proba.shape == (150, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert (proba.argmax(axis=1) == Y).mean() > 0.9


def test_lightgbm_learns_from_twelve_labels():
    proba = make_model("lightgbm").fit(X[FEW], Y[FEW]).predict_proba(X)
    # LightGBM's defaults give every row the class prior (1/3 each) at this size.
    assert np.ptp(proba, axis=0).min() > 0.5
    assert (proba.argmax(axis=1) == Y).mean() > 0.7


@pytest.mark.parametrize("name", ["lightgbm", "forest"])
def test_tree_models_use_one_thread(name):
    assert make_model(name).get_params()["n_jobs"] == 1


@pytest.mark.parametrize("name", ["lightgbm", "forest"])
def test_seed_reaches_the_estimator(name):
    assert make_model(name, seed=7).get_params()["random_state"] == 7


def test_module_class_spec():
    model = make_model("sklearn.naive_bayes:GaussianNB")
    assert isinstance(model, GaussianNB)
    assert model.fit(X, Y).predict_proba(X).shape == (150, 3)


def test_file_factory_receives_seed(model_file):
    model = make_model(f"{model_file}:with_seed", seed=11)
    assert model.random_state == 11
    assert model.fit(X, Y).predict_proba(X).shape == (150, 3)


@pytest.mark.parametrize("attr", ["no_args", "instance"])
def test_file_factory_without_seed_or_instance(model_file, attr):
    model = make_model(f"{model_file}:{attr}")
    assert isinstance(model, GaussianNB)
    assert model.fit(X, Y).predict_proba(X).shape == (150, 3)


def test_estimator_without_predict_proba_is_refused():
    with pytest.raises(ModelError, match="predict_proba"):
        make_model("sklearn.svm:LinearSVC")


@pytest.mark.parametrize(("spec", "message"), [
    ("no_such_model", "unknown model .*lightgbm"),
    ("no_such_module_xyz:Model", "cannot import 'no_such_module_xyz'"),
    ("sklearn.naive_bayes:NoSuchModel", "has no attribute 'NoSuchModel'"),
    (":GaussianNB", "module:callable"),
    ("sklearn.naive_bayes:", "module:callable"),
])
def test_bad_spec_raises_model_error(spec, message):
    with pytest.raises(ModelError, match=message):
        make_model(spec)


def test_missing_file_raises_model_error(tmp_path):
    with pytest.raises(ModelError, match="model file not found"):
        make_model(f"{tmp_path / 'nope.py'}:make")


@pytest.mark.parametrize(("attr", "message"), [
    ("missing", "has no attribute 'missing'"),
    ("broken", "calling .* failed: RuntimeError: no model today"),
    ("not_a_classifier", "has no fit"),
])
def test_bad_file_attribute_raises_model_error(model_file, attr, message):
    with pytest.raises(ModelError, match=message):
        make_model(f"{model_file}:{attr}")


def test_file_that_fails_to_load_raises_model_error(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text("import no_such_module_xyz\n", encoding="utf-8")
    with pytest.raises(ModelError, match="error while loading .*ModuleNotFoundError"):
        make_model(f"{path}:make")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_clone_of_fitted_model_is_unfitted(name):
    model = make_model(name).fit(X, Y)
    copy = clone(model)
    check_is_fitted(model)
    with pytest.raises(NotFittedError):
        check_is_fitted(copy)
    assert copy.get_params().keys() == model.get_params().keys()


@pytest.mark.parametrize("name", ["lightgbm", "forest", "auto"])
def test_threads_reach_the_named_models_own_n_jobs(name, tmp_path):
    from retrain_loop.engine import Engine
    from retrain_loop.frame import pool_from_array
    from retrain_loop.models import make_model
    from retrain_loop.settings import EngineSettings
    from retrain_loop.store import AnnotationStore

    pool = pool_from_array(np.random.default_rng(0).random((40, 3)))
    store = AnnotationStore(tmp_path / "t.db")
    for threads, expected in ((1, 1), (2, 2)):
        engine = Engine(pool, store, "d", ["a", "b"],
                        EngineSettings(model=name, threads=threads))
        params = engine.prototype.get_params(deep=True)
        jobs = {v for k, v in params.items() if k == "n_jobs" or k.endswith("__n_jobs")}
        assert jobs == {expected}
    if name == "auto":  # auto's forests are made in fit: they take the threads too
        engine.prototype.fit(pool.X[:20], np.arange(20) % 2)
        assert {e.get_params().get("n_jobs") for e in engine.prototype.estimators_[1:]} == {2}
    assert make_model(name).get_params().get("n_jobs", 1) == 1
