"""Simulated labelling runs: real runs of the serving engine on iris, through the library and the CLI."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.datasets import load_iris

from retrain_loop import simulate
from retrain_loop.cli import main
from retrain_loop.engine import Engine

SMALL = ["--seeds", "2", "--batch-size", "10", "--initial", "10", "--budget", "40"]


def write_iris(path, *, with_id=True, label=lambda name, i: name):
    iris = load_iris()
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow((["id"] if with_id else []) + ["sl", "sw", "pl", "pw", "species"])
        for i, (x, t) in enumerate(zip(iris.data.tolist(), iris.target.tolist())):
            writer.writerow(([f"f{i:03d}"] if with_id else []) + x
                            + [label(iris.target_names[t], i)])
    return path


def read_csv(path) -> tuple[list[str], list[dict]]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames), list(reader)


@pytest.fixture(scope="module")
def iris_run(tmp_path_factory):
    """One CLI run shared by the tests that only read its outputs."""
    tmp = tmp_path_factory.mktemp("iris")
    pool = write_iris(tmp / "iris.csv")
    out = tmp / "out"
    result = CliRunner().invoke(main, ["simulate", str(pool), "--label-column", "species",
                                       "--strategy", "margin", "--strategy", "random",
                                       "--model", "logreg", *SMALL, "--out", str(out)])
    return result, out


def test_cli_writes_curves_summary_and_plot_with_the_exact_columns(iris_run):
    result, out = iris_run
    assert result.exit_code == 0, result.output
    columns, curves = read_csv(out / "curves.csv")
    assert columns == simulate.CURVE_COLUMNS and curves
    columns, summary = read_csv(out / "summary.csv")
    assert columns == simulate.SUMMARY_COLUMNS
    assert [row["strategy"] for row in summary] == ["margin", "random"]
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "margin" in result.output and "labels to 95%" in result.output


def test_curves_have_one_row_per_refit_growing_by_the_batch_size(iris_run):
    _, out = iris_run
    _, curves = read_csv(out / "curves.csv")
    rounds = simulate.rounds_per_run(150, initial=10, budget=40, batch_size=10)
    for strategy in ("margin", "random"):
        for seed in ("0", "1"):
            rows = [r for r in curves if r["strategy"] == strategy and r["seed"] == seed]
            assert [int(r["n_labels"]) for r in rows] == [10, 20, 30, 40]
            assert len(rows) == rounds
            # Measured on the 45 held-out rows (30% of 150), and well above chance by the end.
            hits = [float(r["accuracy"]) * 45 for r in rows]
            assert all(abs(h - round(h)) < 1e-6 for h in hits), hits
            assert float(rows[-1]["accuracy"]) > 0.8


def test_split_is_stratified_and_the_same_for_every_strategy_of_a_seed():
    y = load_iris().target
    pool, test = simulate.split(y, seed=3, test_size=0.3)
    again_pool, again_test = simulate.split(y, seed=3, test_size=0.3)
    assert np.array_equal(pool, again_pool) and np.array_equal(test, again_test)
    assert len(np.intersect1d(pool, test)) == 0 and len(pool) + len(test) == len(y)
    assert np.bincount(y[test]).tolist() == [15, 15, 15]  # 30% of 50 per class
    other_pool, _ = simulate.split(y, seed=4, test_size=0.3)
    assert not np.array_equal(pool, other_pool)


def test_summarize_gives_the_area_and_labels_to_95_percent_of_a_hand_made_curve():
    def rows(strategy, seed, accuracies):
        return [{"strategy": strategy, "seed": seed, "n_labels": n, "accuracy": a}
                for n, a in zip((10, 20, 30), accuracies)]

    curves = (rows("margin", 0, [0.6, 0.9, 1.0]) + rows("margin", 1, [0.4, 0.9, 1.0])
              + rows("random", 0, [0.5, 0.6, 0.8]) + rows("random", 1, [math.nan, 0.8, 0.8]))
    by_strategy = {s["strategy"]: s for s in simulate.summarize(curves, {0: 1.0, 1: 0.8})}
    margin, random = by_strategy["margin"], by_strategy["random"]
    # Mean curve 0.5, 0.9, 1.0 over 10..30: ((0.5 + 0.9) / 2 * 10 + (0.9 + 1.0) / 2 * 10) / 20.
    assert margin["aulc"] == pytest.approx(0.825)
    assert margin["labels_to_95pct"] == 20  # 95% of the mean full-data accuracy 0.9 is 0.855
    assert margin["final_accuracy"] == pytest.approx(1.0)
    assert margin["full_data_accuracy"] == pytest.approx(0.9)
    # NaN (no model yet) is left out of the mean: 0.5, 0.7, 0.8.
    assert random["aulc"] == pytest.approx(((0.5 + 0.7) / 2 + (0.7 + 0.8) / 2) / 2)
    assert random["labels_to_95pct"] is None


def test_run_drives_the_serving_engine(monkeypatch):
    served: list[int] = []
    get_questions = Engine.get_questions

    def recording(self, session, n=None):
        tasks = get_questions(self, session, n)
        served.extend(t["_input_hash"] for t in tasks)
        return tasks

    monkeypatch.setattr(Engine, "get_questions", recording)
    iris = load_iris()
    labels = list(iris.target_names)
    curves = {strategy: simulate.run(iris.data, iris.target, labels, strategy=strategy,
                                     model="logreg", seed=0, budget=60)
              for strategy in ("margin", "random")}
    # Every label after the initial 10 was a row the engine served, each row once.
    assert len(served) == 2 * 50 and len(set(served[:50])) == 50
    for curve in curves.values():
        assert [r["n_labels"] for r in curve] == [10, 20, 30, 40, 50, 60]
        assert all(r["refit_ms"] is not None and r["refit_ms"] > 0 for r in curve)
    # Same seed, same split, same initial set: only the strategy's choices differ.
    assert curves["margin"][0]["accuracy"] == curves["random"][0]["accuracy"]
    assert ([r["accuracy"] for r in curves["margin"]]
            != [r["accuracy"] for r in curves["random"]])


def test_incremental_updates_work_with_a_partial_fit_model(tmp_path):
    pool = write_iris(tmp_path / "iris.csv")
    accuracies = {}
    for update in ("incremental", "refit"):
        result = CliRunner().invoke(main, ["simulate", str(pool), "--label-column", "species",
                                           "--model", "nb", "--update", update, *SMALL,
                                           "--out", str(tmp_path / update)])
        assert result.exit_code == 0, result.output
        _, curves = read_csv(tmp_path / update / "curves.csv")
        assert len(curves) == 2 * 2 * 4
        accuracies[update] = [(r["n_labels"], float(r["accuracy"])) for r in curves]
    # Gaussian naive Bayes updated batch by batch is the model fitted on every answer at once,
    # so the curves agree only if each update saw each new answer exactly once.
    assert [a for _, a in accuracies["incremental"]] == pytest.approx(
        [a for _, a in accuracies["refit"]])
    assert all(a > 0.9 for n, a in accuracies["incremental"] if n == "40")


def test_label_column_is_not_used_as_a_feature(tmp_path):
    # Numeric labels would be picked up as a default feature and leak the answer.
    names = list(load_iris().target_names)
    pool = write_iris(tmp_path / "iris.csv", label=lambda name, i: str(names.index(name)))
    result = CliRunner().invoke(main, ["simulate", str(pool), "--label-column", "species",
                                       "--model", "nb", *SMALL, "--out", str(tmp_path / "out")],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "features sl, sw, pl, pw" in result.output


@pytest.mark.parametrize(
    "pool_args, args, message",
    [
        ({}, ["--label-column", "colour"], "no label column 'colour'"),
        ({"label": lambda name, i: "setosa"}, ["--label-column", "species"], "at least two"),
        ({"label": lambda name, i: "" if i == 7 else name}, ["--label-column", "species"],
         "id 'f007' has no label"),
        ({"with_id": False, "label": lambda name, i: "" if i == 7 else name},
         ["--label-column", "species"], "row 8"),
        ({}, ["--label-column", "species", "--features", "sl,species"], "cannot also be a feature"),
        ({}, ["--label-column", "species", "--update", "incremental"], "partial_fit"),
        ({}, ["--label-column", "species", "--model", "nosuch"], "unknown model"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(tmp_path, pool_args, args, message):
    pool = write_iris(tmp_path / "iris.csv", **pool_args)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["simulate", str(pool), *args, *SMALL, "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (out / "curves.csv").exists()
