"""Model files: every named model round-trips, metadata survives, and loading trusts an allowlist."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from conftest import RGB, rgb_label, rgb_rows, write_jsonl

from retrain_loop.models import MODELS, make_model
from retrain_loop.persist import (
    ModelFileError,
    SavedModel,
    check_features,
    load_model,
    save_model,
    version_differences,
)
from retrain_loop.pool import load_pool

FEATURES = ["r", "g", "b"]

CENTROIDS = '''
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin


class Centroids(ClassifierMixin, BaseEstimator):
    """Nearest centroid with softmax probabilities: a class only this file defines."""

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        self.centres_ = np.stack([X[y == c].mean(axis=0) for c in self.classes_])
        return self

    def predict_proba(self, X):
        d = -((X[:, None, :] - self.centres_[None]) ** 2).sum(axis=2) / 1000.0
        e = np.exp(d - d.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
'''


def rgb_data(n=150, seed=0):
    rows = rgb_rows(n, seed=seed)
    X = np.array([[r["r"], r["g"], r["b"]] for r in rows], dtype=np.float32)
    y = np.array([RGB.index(rgb_label(r)) for r in rows])
    return X, y


def save(path, estimator, spec="logreg", **overrides):
    settings = {"labels": RGB, "features": FEATURES, "n_annotations": 150, "cv_accuracy": 0.9,
                "dataset": "colours", "model_spec": spec, **overrides}
    return save_model(path, estimator, **settings)


@pytest.mark.parametrize("spec", sorted(MODELS))
def test_every_named_model_round_trips_with_identical_predictions(tmp_path, spec):
    X, y = rgb_data()
    model = make_model(spec, seed=0).fit(X, y)
    path = tmp_path / "model.skops"
    save(path, model, spec)

    saved = load_model(path)  # no trust needed: every named model is on the allowlist

    assert type(saved.estimator) is type(model)
    np.testing.assert_array_equal(saved.estimator.predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(saved.estimator.classes_, model.classes_)


def test_a_pipeline_around_lightgbm_needs_no_trust(tmp_path):
    import lightgbm
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = rgb_data()
    model = make_pipeline(StandardScaler(), lightgbm.LGBMClassifier(
        n_estimators=20, min_child_samples=2, n_jobs=1, verbose=-1)).fit(X, y)
    save(tmp_path / "m.skops", model, "pipeline")
    saved = load_model(tmp_path / "m.skops")
    np.testing.assert_array_equal(saved.estimator.predict_proba(X), model.predict_proba(X))


def test_metadata_is_saved_and_read_back(tmp_path):
    X, y = rgb_data()
    path = tmp_path / "model.skops"
    written = save(path, make_model("nb").fit(X, y), "nb", n_annotations=42, cv_accuracy=0.875,
                   extra={"cv_folds": 5})

    saved = load_model(path)

    assert saved.labels == RGB and saved.features == FEATURES
    assert saved.meta == written
    meta = saved.meta
    assert (meta["dataset"], meta["model"], meta["n_annotations"]) == ("colours", "nb", 42)
    assert meta["cv_accuracy"] == 0.875 and meta["cv_folds"] == 5
    assert {"retrain-loop", "scikit-learn", "lightgbm", "numpy", "python"} <= set(meta["versions"])
    assert meta["versions"]["numpy"] == np.__version__
    assert meta["created"].endswith("+00:00")
    # The metadata is plain JSON inside the zip, readable without rebuilding any object.
    with zipfile.ZipFile(path) as archive:
        assert json.loads(archive.read("retrain_loop.json"))["labels"] == RGB


def test_a_missing_accuracy_is_saved_as_none(tmp_path):
    X, y = rgb_data()
    save(tmp_path / "m.skops", make_model("nb").fit(X, y), cv_accuracy=None)
    assert load_model(tmp_path / "m.skops").meta["cv_accuracy"] is None


def test_a_class_off_the_allowlist_is_refused_unless_trusted(tmp_path):
    source = tmp_path / "mymodel.py"
    source.write_text(CENTROIDS)
    X, y = rgb_data()
    model = make_model(f"{source}:Centroids").fit(X, y)
    path = tmp_path / "model.skops"
    save(path, model, f"{source}:Centroids")

    with pytest.raises(ModelFileError) as refused:
        load_model(path)
    message = str(refused.value)
    assert ".Centroids" in message and "trusted=True" in message and "--trust" in message

    saved = load_model(path, trusted=True)
    np.testing.assert_array_equal(saved.estimator.predict_proba(X), model.predict_proba(X))


@pytest.mark.parametrize(
    "module, name",
    [
        ("subprocess", "Popen"),
        ("numpy", "memmap"),  # a numpy class, but one that opens files
        ("retrain_loop.models", "Path"),  # importable under that name, defined elsewhere
    ],
)
def test_a_file_naming_an_unsafe_class_is_refused(tmp_path, module, name):
    X, y = rgb_data()
    path = tmp_path / "model.skops"
    save(path, make_model("sgd").fit(X, y), "sgd")
    rewrite_entry(path, "schema.json", lambda text: text.replace(
        '"__class__": "StandardisedSGD",\n  "__module__": "retrain_loop.models"',
        f'"__class__": "{name}",\n  "__module__": "{module}"'))

    with pytest.raises(ModelFileError, match=f"not on the allowlist: {module}.{name}"):
        load_model(path)


def rewrite_entry(path, entry, change):
    with zipfile.ZipFile(path) as archive:
        entries = {info.filename: archive.read(info) for info in archive.infolist()}
    before = entries[entry].decode()
    entries[entry] = change(before).encode()
    assert entries[entry].decode() != before, "the rewrite did not match"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for filename, data in entries.items():
            archive.writestr(filename, data)
    path.write_bytes(buffer.getvalue())


def test_features_that_do_not_match_the_pool_are_named(tmp_path):
    saved = SavedModel(estimator=None, labels=RGB, features=FEATURES)
    pool = load_pool(write_jsonl(tmp_path / "p.jsonl", [{"id": 1, "x": 1.0, "y": 2.0}]))
    with pytest.raises(ModelFileError) as e:
        check_features(saved, pool)
    assert str(e.value) == ("model was trained on features r, g, b; the pool has x, y "
                            "(use --features to pick the same columns)")


def test_features_in_another_order_do_not_match(tmp_path):
    saved = SavedModel(estimator=None, labels=RGB, features=FEATURES)
    pool = load_pool(write_jsonl(tmp_path / "p.jsonl", rgb_rows(3)), features=["b", "g", "r"])
    with pytest.raises(ModelFileError, match="the pool has b, g, r"):
        check_features(saved, pool)


def damaged_files(tmp_path):
    X, y = rgb_data()
    good = tmp_path / "good.skops"
    save(good, make_model("logreg").fit(X, y))
    data = good.read_bytes()
    import skops.io

    plain_skops = skops.io.dumps(make_model("nb").fit(X, y))
    return {
        "garbage": (b"this is not a model", "not a zip archive"),
        "truncated": (data[: len(data) // 2], "damaged model file"),
        "empty": (b"", "not a zip archive"),
        "plain skops file": (plain_skops, "not a retrain-loop model file"),
    }


@pytest.mark.parametrize("kind", ["garbage", "truncated", "empty", "plain skops file"])
def test_a_damaged_file_is_a_model_file_error(tmp_path, kind):
    content, message = damaged_files(tmp_path)[kind]
    path = tmp_path / "bad.skops"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match=message):
        load_model(path)


def test_a_damaged_schema_is_a_model_file_error(tmp_path):
    X, y = rgb_data()
    path = tmp_path / "model.skops"
    save(path, make_model("logreg").fit(X, y))
    rewrite_entry(path, "schema.json", lambda text: text[: len(text) // 2])
    with pytest.raises(ModelFileError, match="damaged model file"):
        load_model(path)


def test_a_missing_file_is_a_model_file_error(tmp_path):
    with pytest.raises(ModelFileError, match="model file not found"):
        load_model(tmp_path / "nosuch.skops")


def test_saving_into_a_missing_folder_fails_cleanly(tmp_path):
    X, y = rgb_data()
    with pytest.raises(ModelFileError, match="cannot write"):
        save(tmp_path / "no" / "such" / "m.skops", make_model("nb").fit(X, y))


def test_saving_over_a_file_replaces_it_whole(tmp_path):
    X, y = rgb_data()
    path = tmp_path / "m.skops"
    save(path, make_model("nb").fit(X, y), "nb")
    save(path, make_model("logreg").fit(X, y), "logreg")
    assert load_model(path).meta["model"] == "logreg"
    assert [p.name for p in tmp_path.iterdir()] == ["m.skops"]  # no temporary file left over


def test_version_differences_name_the_libraries_that_changed():
    saved = SavedModel(None, RGB, FEATURES, meta={"versions": {"scikit-learn": "0.0.1",
                                                               "numpy": np.__version__}})
    differences = version_differences(saved)
    assert len(differences) == 1 and "scikit-learn" in differences[0] and "0.0.1" in differences[0]
