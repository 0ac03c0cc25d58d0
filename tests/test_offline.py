"""Offline use: score, train, predict and db-in, through the library and the command line.

The answers are made the way an annotator makes them: an engine serves batches and a known rule
(the strongest colour channel) answers them.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections import Counter
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import RGB, build_engine, rgb_label, rgb_rows, write_jsonl

from retrain_loop import offline
from retrain_loop.cli import main
from retrain_loop.persist import load_model
from retrain_loop.pool import load_pool
from retrain_loop.store import AnnotationStore

DATASET = "colours"
N_ROWS = 300
N_ANSWERS = 80
OUT = {"score": "out.jsonl", "train": "out.skops"}  # score's --out names its format


@dataclass
class Annotated:
    pool: Path
    db: Path
    rows: list[dict]
    answered: set[int]  # input hashes


def annotate(folder: Path, rows: list[dict], n_answers: int, rule=rgb_label,
             dataset: str = DATASET) -> Annotated:
    pool_path = folder / "pool.jsonl"
    if not pool_path.exists():
        write_jsonl(pool_path, rows)
    db = folder / "answers.db"
    store = AnnotationStore(db)
    engine = build_engine(load_pool(pool_path), store, dataset, RGB, model="logreg", batch_size=10,
                          background=False)
    answered: set[int] = set()
    try:
        while len(answered) < n_answers:
            tasks = engine.get_questions("alice")
            engine.add_answers([dict(t, answer="accept", accept=[rule(t)]) for t in tasks], "alice")
            answered |= {t["_input_hash"] for t in tasks}
    finally:
        engine.close()
        store.close()
    return Annotated(pool_path, db, rows, answered)


@pytest.fixture
def annotated(tmp_path) -> Annotated:
    return annotate(tmp_path, rgb_rows(N_ROWS), N_ANSWERS)


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def export(annotated: Annotated, out: Path) -> Path:
    result = run("export", DATASET, "--db", annotated.db, "--out", out)
    assert result.exit_code == 0, result.output
    return out


# -- score --------------------------------------------------------------------------------------


def test_score_writes_the_open_rows_most_useful_first(annotated, tmp_path):
    out = tmp_path / "ranked.jsonl"
    result = run("score", annotated.pool, "--annotations", annotated.db, "--dataset", DATASET,
                 "--out", out)
    assert result.exit_code == 0, result.output
    assert f"Wrote {N_ROWS - N_ANSWERS} rows" in result.output
    assert "red, green, blue" in result.output and f"{N_ANSWERS} answers" in result.output

    ranked = read_jsonl(out)
    assert len(ranked) == N_ROWS - N_ANSWERS
    assert not {row["_input_hash"] for row in ranked} & annotated.answered
    scores = [row["score"] for row in ranked]
    assert scores == sorted(scores, reverse=True)
    for row in ranked:
        assert row["label"] in RGB and set(row["probs"]) == set(RGB)
        assert row["label"] == max(row["probs"], key=row["probs"].get)
        assert abs(sum(row["probs"].values()) - 1) < 1e-6
        assert {"id", "r", "g", "b"} <= set(row)


def test_score_top_n_is_the_head_of_the_full_ranking(annotated, tmp_path):
    full, top = tmp_path / "full.jsonl", tmp_path / "top.jsonl"
    for out, extra in ((full, []), (top, ["--top", "7"])):
        result = run("score", annotated.pool, "--annotations", annotated.db, "--dataset",
                     DATASET, "--out", out, *extra)
        assert result.exit_code == 0, result.output
    assert [r["id"] for r in read_jsonl(top)] == [r["id"] for r in read_jsonl(full)][:7]


def test_score_from_an_exported_jsonl_matches_the_database(annotated, tmp_path):
    answers = export(annotated, tmp_path / "answers.jsonl")
    outs = []
    for source in (annotated.db, answers):
        out = tmp_path / f"ranked-{source.suffix[1:]}.jsonl"
        result = run("score", annotated.pool, "--annotations", source, "--dataset", DATASET,
                     "--out", out, "--model", "logreg", "--strategy", "entropy")
        assert result.exit_code == 0, result.output
        outs.append(read_jsonl(out))
    assert outs[0] == outs[1]
    assert len(outs[0]) == N_ROWS - N_ANSWERS


def test_score_prefer_puts_likely_members_of_the_label_first(annotated, tmp_path):
    out = tmp_path / "ranked.jsonl"
    result = run("score", annotated.pool, "--annotations", annotated.db, "--dataset", DATASET,
                 "--out", out, "--prefer", "blue", "--top", "20")
    assert result.exit_code == 0, result.output
    assert Counter(row["label"] for row in read_jsonl(out)).most_common(1)[0][0] == "blue"


# -- train and predict ---------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["lightgbm", "logreg"])
def test_train_then_predict_labels_the_pool_well(annotated, tmp_path, model):
    model_path = tmp_path / "model.skops"
    result = run("train", annotated.pool, "--annotations", annotated.db, "--dataset", DATASET,
                 "--out", model_path, "--model", model)
    assert result.exit_code == 0, result.output
    saved = load_model(model_path)
    meta = saved.meta
    assert f"Cross-validated accuracy: {meta['cv_accuracy']:.3f} (5-fold" in result.output
    assert meta["labels"] == RGB and meta["features"] == ["r", "g", "b"]
    assert meta["n_annotations"] == N_ANSWERS and meta["dataset"] == DATASET
    assert meta["model"] == model and meta["cv_folds"] == 5
    # Held out, so above chance (a third) and below the fit's accuracy on its own answers.
    with closing(AnnotationStore(annotated.db)) as store:
        records = store.get(DATASET)
    X = np.array([[r["r"], r["g"], r["b"]] for r in records], dtype=np.float32)
    y = np.array([RGB.index(r["accept"][0]) for r in records])
    assert 0.5 < meta["cv_accuracy"] < (saved.estimator.predict(X) == y).mean()
    assert sum(meta["per_label"].values()) == N_ANSWERS
    assert meta["versions"]["scikit-learn"] and meta["versions"]["lightgbm"]

    out = tmp_path / "predictions.jsonl"
    result = run("predict", model_path, annotated.pool, "--out", out)
    assert result.exit_code == 0, result.output
    predictions = read_jsonl(out)
    assert [p["id"] for p in predictions] == [r["id"] for r in annotated.rows]
    truth = [rgb_label(r) for r in annotated.rows]
    accuracy = sum(p["label"] == t for p, t in zip(predictions, truth)) / len(truth)
    majority = Counter(truth).most_common(1)[0][1] / len(truth)
    assert accuracy > max(0.8, majority + 0.3), (accuracy, majority)
    assert all(set(p["probs"]) == set(RGB) for p in predictions)


def test_cross_validation_needs_two_answers_of_each_label(tmp_path):
    rows = rgb_rows(60)
    store = AnnotationStore(tmp_path / "a.db")
    pool = load_pool(write_jsonl(tmp_path / "pool.jsonl", rows))
    engine = build_engine(pool, store, DATASET, RGB, model="logreg", background=False)
    # One blue answer: a model can be fitted, but no fold split keeps blue on both sides.
    red = next(i for i, r in enumerate(rows) if rgb_label(r) == "red")
    blue = next(i for i, r in enumerate(rows) if rgb_label(r) == "blue")
    greens = [i for i, r in enumerate(rows) if rgb_label(r) == "green"][:3]
    answers = [dict(pool.tasks[i], _task_hash=engine.task_hash(i), answer="accept",
                    accept=[rgb_label(rows[i])]) for i in [red, blue, *greens]]
    engine.add_answers(answers, "alice")
    engine.close()
    meta = offline.train(pool, store, DATASET, RGB, tmp_path / "m.skops", model="logreg")
    store.close()
    assert meta["cv_accuracy"] is None and meta["n_annotations"] == 5
    assert load_model(tmp_path / "m.skops").meta["cv_accuracy"] is None


def test_predict_with_a_users_own_model_class_needs_trust(annotated, tmp_path):
    source = tmp_path / "nearest.py"
    source.write_text(
        "from sklearn.neighbors import KNeighborsClassifier\n\n\n"
        "class Nearest(KNeighborsClassifier):\n"
        "    def __init__(self, n_neighbors=3):\n"
        "        super().__init__(n_neighbors=n_neighbors)\n"
    )
    model_path, out = tmp_path / "model.skops", tmp_path / "predictions.jsonl"
    result = run("train", annotated.pool, "--annotations", annotated.db, "--dataset", DATASET,
                 "--out", model_path, "--model", f"{source}:Nearest")
    assert result.exit_code == 0, result.output

    refused = run("predict", model_path, annotated.pool, "--out", out)
    assert refused.exit_code == 2
    assert "Nearest" in refused.output and "--trust" in refused.output
    assert not out.exists()

    trusted = run("predict", model_path, annotated.pool, "--out", out, "--trust")
    assert trusted.exit_code == 0, trusted.output
    assert len(read_jsonl(out)) == N_ROWS

    # A new process has not imported the model's file: --trust runs it again from where it was.
    elsewhere = tmp_path / "elsewhere.jsonl"
    command = [sys.executable, "-m", "retrain_loop.cli", "predict", str(model_path),
               str(annotated.pool), "--out", str(elsewhere), "--trust"]
    done = subprocess.run(command, check=False, capture_output=True, text=True,
                          cwd=tmp_path.parent)
    assert done.returncode == 0, done.stderr
    assert read_jsonl(elsewhere) == read_jsonl(out)


def test_predict_picks_the_models_columns_from_a_wider_pool(annotated, tmp_path):
    model_path = tmp_path / "model.skops"
    assert run("train", annotated.pool, "--annotations", annotated.db, "--dataset", DATASET,
               "--out", model_path, "--model", "nb").exit_code == 0
    wider = write_jsonl(tmp_path / "wider.jsonl",
                        [dict(r, brightness=r["r"] + r["g"] + r["b"]) for r in annotated.rows])
    out = tmp_path / "p.jsonl"
    result = run("predict", model_path, wider, "--out", out)
    assert result.exit_code == 0, result.output
    assert len(read_jsonl(out)) == N_ROWS


# -- db-in --------------------------------------------------------------------------------------


def test_db_in_then_export_round_trips(annotated, tmp_path):
    answers = export(annotated, tmp_path / "answers.jsonl")
    db = tmp_path / "copy.db"

    first = run("db-in", DATASET, answers, "--db", db)
    assert first.exit_code == 0, first.output
    assert f"Imported {N_ANSWERS} new answers" in first.output
    again = run("db-in", DATASET, answers, "--db", db)
    assert again.exit_code == 0 and "Imported 0 new answers" in again.output

    back = tmp_path / "back.jsonl"
    result = run("export", DATASET, "--db", db, "--out", back)
    assert result.exit_code == 0, result.output
    assert back.read_text() == answers.read_text()


def test_db_in_of_a_bad_file_exits_2_and_leaves_no_database(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"_input_hash": 1, "_task_hash": 2, "answer": "accept"}\n{"oops"\n')
    db = tmp_path / "new.db"
    result = run("db-in", DATASET, bad, "--db", db)
    assert result.exit_code == 2
    assert f"{bad}:2:" in result.output
    assert not db.exists()


# -- library: where the answers and labels come from ------------------------------------------


def test_labels_come_from_the_options_the_answers_were_asked_with(annotated):
    store = offline.open_annotations(annotated.db, DATASET)
    try:
        assert offline.labels_from(store, DATASET) == RGB  # in the asked order, not sorted
        assert offline.labels_from(store, DATASET, ["x", "y"]) == ["x", "y"]
    finally:
        store.close()


def test_labels_without_options_are_the_accepted_ones_sorted():
    store = AnnotationStore(None)
    store.add("d", [{"_input_hash": i, "_task_hash": i, "_session_id": "d-a", "answer": "accept",
                     "accept": [label]} for i, label in enumerate(["red", "blue", "red"])])
    assert offline.labels_from(store, "d") == ["blue", "red"]
    store.add("one", [{"_input_hash": 1, "_task_hash": 1, "_session_id": "d-a",
                       "answer": "accept", "accept": ["red"]}])
    with pytest.raises(offline.OfflineError, match="fewer than two labels"):
        offline.labels_from(store, "one")
    store.close()


def test_a_foreign_sqlite_file_is_refused_and_left_unchanged(tmp_path):
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE things (x)")
    conn.close()
    before = other.read_bytes()
    with pytest.raises(offline.OfflineError, match="not a retrain-loop database"):
        offline.open_annotations(other, DATASET)
    assert other.read_bytes() == before


def test_score_through_the_library_is_the_engines_ranking(annotated):
    pool = load_pool(annotated.pool)
    store = offline.open_annotations(annotated.db, DATASET)
    try:
        rows = offline.score(pool, store, DATASET, RGB, top=5, model="logreg")
        engine = build_engine(pool, store, DATASET, RGB, model="logreg", background=False)
        assert rows == offline.ranked(engine, 5)
        engine.close()
    finally:
        store.close()


# -- errors: exit code 2, a message, and no output file ----------------------------------------


def test_a_pool_with_a_bad_row_exits_2_and_writes_nothing(annotated, tmp_path):
    bad = tmp_path / "bad.jsonl"
    lines = annotated.pool.read_text().splitlines()
    lines[2] = '{"id": "x", "r": "red", "g": 1, "b": 2}'
    bad.write_text("\n".join(lines) + "\n")
    for command in ("score", "train"):
        out = tmp_path / OUT[command]
        result = run(command, bad, "--annotations", annotated.db, "--dataset", DATASET,
                     "--out", out)
        assert result.exit_code == 2, result.output
        assert f"{bad}:3:" in result.output and "not a number" in result.output
        assert not out.exists()


@pytest.mark.parametrize("command", ["score", "train"])
def test_an_unknown_dataset_exits_2_and_lists_the_datasets(annotated, tmp_path, command):
    out = tmp_path / OUT[command]
    result = run(command, annotated.pool, "--annotations", annotated.db, "--dataset", "nosuch",
                 "--out", out)
    assert result.exit_code == 2
    assert "no dataset 'nosuch'" in result.output and DATASET in result.output
    assert not out.exists()


def test_missing_annotations_exit_2(annotated, tmp_path):
    result = run("score", annotated.pool, "--annotations", tmp_path / "nosuch.db", "--dataset",
                 DATASET, "--out", tmp_path / "out.jsonl")
    assert result.exit_code == 2 and "annotations not found" in result.output
    assert not (tmp_path / "nosuch.db").exists()


@pytest.mark.parametrize("command", ["score", "train"])
def test_answers_with_one_label_only_exit_2(tmp_path, command):
    one = annotate(tmp_path, rgb_rows(60), 20, rule=lambda task: "red")
    out = tmp_path / OUT[command]
    result = run(command, one.pool, "--annotations", one.db, "--dataset", DATASET, "--out", out)
    assert result.exit_code == 2, result.output
    assert "at least two labels" in result.output and "red 20, green 0, blue 0" in result.output
    assert not out.exists()


def test_a_failed_score_leaves_an_existing_output_untouched(annotated, tmp_path):
    out = tmp_path / "ranked.jsonl"
    out.write_text("old\n")
    result = run("score", annotated.pool, "--annotations", annotated.db, "--dataset", DATASET,
                 "--out", out, "--prefer", "purple")
    assert result.exit_code == 2 and "--prefer" in result.output
    assert out.read_text() == "old\n"

    # A failure while writing (score writes through write_jsonl), after some rows went out:
    # still the old file, and no other.
    rows = [{"id": "a", "score": 0.5}, {"id": "b", "score": 0.4}, {"id": "c", "score": object()}]
    with pytest.raises(TypeError, match="not JSON serializable"):
        offline.write_jsonl(out, rows)
    assert out.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


@pytest.fixture
def trained(annotated, tmp_path) -> Path:
    model_path = tmp_path / "model.skops"
    result = run("train", annotated.pool, "--annotations", annotated.db, "--dataset", DATASET,
                 "--out", model_path, "--model", "logreg")
    assert result.exit_code == 0, result.output
    return model_path


def test_a_pool_without_the_models_features_exits_2_and_names_both(trained, tmp_path):
    pool = write_jsonl(tmp_path / "xy.jsonl", [{"id": i, "x": i, "y": -i} for i in range(5)])
    out = tmp_path / "p.jsonl"
    result = run("predict", trained, pool, "--out", out)
    assert result.exit_code == 2
    assert "model was trained on features r, g, b; the pool has x, y" in result.output
    assert "--features" in result.output
    assert not out.exists()


def test_other_features_chosen_by_hand_exit_2(trained, annotated, tmp_path):
    out = tmp_path / "p.jsonl"
    result = run("predict", trained, annotated.pool, "--out", out, "--features", "b,g,r")
    assert result.exit_code == 2
    assert "trained on features r, g, b; the pool has b, g, r" in result.output
    assert not out.exists()


def test_a_damaged_model_file_exits_2(annotated, tmp_path):
    model_path = tmp_path / "model.skops"
    model_path.write_bytes(b"PK\x03\x04 not really a zip")
    out = tmp_path / "p.jsonl"
    result = run("predict", model_path, annotated.pool, "--out", out)
    assert result.exit_code == 2 and "damaged model file" in result.output
    assert not out.exists()


def test_serve_refuses_incremental_updates_for_a_model_without_partial_fit(tmp_path):
    pool = write_jsonl(tmp_path / "pool.jsonl", rgb_rows(20))
    db = tmp_path / "x.db"
    result = run("serve", "ds", pool, "--label", "a,b", "--db", db, "--update", "incremental",
                 "--model", "lightgbm")
    assert result.exit_code == 2
    assert "partial_fit" in result.output
    assert not db.exists()
