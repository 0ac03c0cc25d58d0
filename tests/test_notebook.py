"""The notebook API: Loop over a DataFrame, an array or a pool file, with real fits and SQLite."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from conftest import RGB, free_port, rgb_label, rgb_rows
from sklearn.datasets import load_iris, load_wine

from retrain_loop import Loop
from retrain_loop.answers import UnknownLabel
from retrain_loop.notebook import LoopError
from retrain_loop.pool import PoolError

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_example() -> str:
    """The README's Python example under "From Python"."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## From Python", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_the_readme_example_runs_and_learns(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(readme_example(), "README.md", "exec"), namespace)  # noqa: S102 - the README's own code
    loop, frame, truth = namespace["loop"], namespace["frame"], namespace["truth"]
    try:
        assert loop.stats()["n_annotations"] == 50
        assert (loop.model.predict(frame) == truth).mean() > 0.9
        assert (tmp_path / "flowers.db").exists()  # the answers are kept
    finally:
        loop.close()


def colour_frame(n=300):
    rows = rgb_rows(n)
    frame = pd.DataFrame(rows).set_index("id")
    return frame, frame.apply(lambda r: rgb_label(r), axis=1)


def test_a_frames_index_labels_are_the_task_ids_and_text_columns_come_along():
    frame, truth = colour_frame()
    with Loop(frame, labels=RGB, model="logreg") as loop:
        assert loop.features == ["r", "g", "b"]  # hex is text: shown, not learned from
        tasks = loop.next(10)
        assert len(tasks) == 10 and all(t["id"] in frame.index for t in tasks)
        assert all(t["hex"] == frame.loc[t["id"], "hex"] for t in tasks)
        assert loop.model is None
        assert loop.teach({t["id"]: truth[t["id"]] for t in tasks}) == 10
        assert loop.model is not None and loop.stats()["model_round"] == 1
        again = loop.next(10)
        assert not {t["id"] for t in again} & {t["id"] for t in tasks}  # answered: not again
        # Asking twice hands back what the first call gave: the same rows, in the same order.
        assert [t["id"] for t in loop.next(10)] == [t["id"] for t in again]


def test_the_model_predicts_labels_from_a_frames_feature_columns():
    frame, truth = colour_frame()
    with Loop(frame, labels=RGB, model="logreg") as loop:
        for _ in range(4):
            loop.teach({t["id"]: truth[t["id"]] for t in loop.next(10)})
        model = loop.model
        shuffled = frame[["hex", "b", "g", "r"]]  # other columns and another order
        predicted = model.predict(shuffled)
        assert set(predicted) <= set(RGB) and (predicted == truth.to_numpy()).mean() > 0.9
        proba = model.predict_proba(frame)
        assert proba.shape == (300, 3) and np.allclose(proba.sum(axis=1), 1)
        assert list(model.classes_) == RGB
        np.testing.assert_array_equal(model.predict(frame[["r", "g", "b"]].to_numpy()),
                                      predicted)
        with pytest.raises(LoopError, match="'g'"):
            model.predict(frame[["r", "b"]])


def test_an_array_numbers_its_rows():
    wine = load_wine()
    names = list(wine.target_names)
    with Loop(wine.data, labels=names, model="logreg", batch_size=5) as loop:
        assert loop.features == [f"x{j}" for j in range(13)]
        tasks = loop.next()
        assert len(tasks) == 5 and all(isinstance(t["id"], int) for t in tasks)
        ids = np.array([t["id"] for t in tasks])  # numpy ints are ids too
        loop.teach({i: names[wine.target[i]] for i in ids})
        assert loop.stats()["n_annotations"] == 5


def test_a_pool_file_and_a_skip(tmp_path):
    path = tmp_path / "flowers.csv"
    iris = load_iris(as_frame=True).frame.drop(columns="target")
    iris.index.name = "id"
    iris.to_csv(path)
    with Loop(path, labels=["setosa", "versicolor", "virginica"], model="logreg") as loop:
        tasks = loop.next(3)
        assert all(isinstance(t["id"], int) and 0 <= t["id"] < 150 for t in tasks)
        assert loop.teach({tasks[0]["id"]: None, tasks[1]["id"]: "setosa"}) == 2
        stats = loop.stats()
        assert stats["answers"] == {"accept": 1, "reject": 0, "ignore": 1}


def test_answers_in_a_database_come_back_with_the_next_loop(tmp_path):
    frame, truth = colour_frame()
    db = tmp_path / "answers.db"
    with Loop(frame, labels=RGB, db=db, model="logreg") as loop:
        for _ in range(2):
            loop.teach({t["id"]: truth[t["id"]] for t in loop.next(10)})
    with Loop(frame, labels=RGB, db=db, model="logreg") as again:
        assert again.stats()["n_annotations"] == 20
        assert again.model is not None  # refitted on the stored answers as it started
        seen = {t["id"] for t in again.next(280)}
        assert len(seen) == 280  # the answered rows are not asked again


@pytest.mark.parametrize("make, message", [
    (lambda f: f.reset_index(), "a column is called 'id'"),
    (lambda f: f.set_axis(["a"] * 300, axis=0), "index label 'a' repeats"),
    (lambda f: f.assign(r=f["r"].where(f.index != "c00007")), "row 'c00007': feature 'r'"),
    (lambda f: f[["hex"]], "no numeric columns"),
])
def test_data_that_cannot_be_a_pool_says_why(make, message):
    frame, _ = colour_frame()
    with pytest.raises(PoolError, match=message):
        Loop(make(frame), labels=RGB)


def test_unknown_ids_and_labels_are_refused_and_store_nothing():
    frame, _ = colour_frame()
    with Loop(frame, labels=RGB, model="logreg") as loop:
        task = loop.next(1)[0]
        with pytest.raises(LoopError, match="no row has id 'nope'"):
            loop.teach({task["id"]: "red", "nope": "red"})
        with pytest.raises(UnknownLabel, match="magenta"):
            loop.teach({task["id"]: "magenta"})
        assert loop.stats()["n_annotations"] == 0
        with pytest.raises(LoopError, match="DataFrame"):
            Loop({"r": [1]}, labels=RGB)


def test_serve_opens_the_page_on_the_same_state():
    frame, truth = colour_frame()
    port = free_port()
    with Loop(frame, labels=RGB, model="logreg", batch_size=5) as loop:
        loop.teach({t["id"]: truth[t["id"]] for t in loop.next(5)})
        url = loop.serve(port=port)
        assert url == f"http://127.0.0.1:{port}/"
        with httpx.Client(base_url=url, timeout=30) as web:
            assert "retrain-loop" in web.get("/").text
            tasks = web.post("/api/questions", json={"session": "web", "n": 5}).json()["tasks"]
            served = {t["id"] for t in tasks}
            assert not served & {t["id"] for t in loop.next(5)}  # no row to two people
            answers = [dict(t, answer="accept", accept=[truth[t["id"]]]) for t in tasks]
            assert web.post("/api/answers", json={"session": "web", "answers": answers}
                            ).json() == {"stored": 5}
        loop.teach({t["id"]: truth[t["id"]] for t in loop.next(5)})  # waits for every refit
        assert loop.stats()["n_annotations"] == 15
        assert loop.engine.history[-1]["n_train"] == 15
        loop.stop_serving()
        with pytest.raises(httpx.ConnectError):
            httpx.get(url, timeout=5)
