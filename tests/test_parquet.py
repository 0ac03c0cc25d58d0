"""Parquet pools in and scored rows out (pyarrow, the ``parquet`` extra)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from retrain_loop.cli import main
from retrain_loop.pool import PoolError, load_pool

COLUMNS = {"id": ["a", "b", "c", "d"], "name": ["teal", "red", None, "x"],
           "r": [0, 255, 10, 3], "g": [128.5, 0.0, 10.0, 1.0], "when": [1, 2, 3, 4]}


def _write(path, columns=COLUMNS):
    pq.write_table(pa.table(columns), path)
    return path


def test_a_parquet_pool_matches_the_same_rows_as_csv(tmp_path):
    pool = load_pool(_write(tmp_path / "p.parquet"))
    csv_path = tmp_path / "p.csv"
    csv_path.write_text("id,name,r,g,when\na,teal,0,128.5,1\nb,red,255,0.0,2\n"
                        "c,,10,10.0,3\nd,x,3,1.0,4\n")
    same = load_pool(csv_path)
    assert pool.features == same.features == ["r", "g", "when"]
    assert np.array_equal(pool.X, same.X) and pool.X.dtype == np.float32
    assert np.array_equal(pool.input_hashes, same.input_hashes)  # answers carry over
    assert pool.tasks[1] == {"id": "b", "name": "red", "r": 255, "g": 0.0, "when": 2,
                             "_input_hash": int(same.input_hashes[1])}
    assert pool.tasks[2]["name"] is None
    assert [t["id"] for t in pool.tasks] == ["a", "b", "c", "d"]


def test_rows_without_ids_are_known_by_content_and_repeats_are_numbered(tmp_path):
    pool = load_pool(_write(tmp_path / "p.parquet", {"x": [1.0, 1.0, 2.0]}))
    assert len(set(pool.input_hashes.tolist())) == 3


@pytest.mark.parametrize(("columns", "message"), [
    ({"id": ["a", "b"], "x": [1.0, None]}, "row 2: feature 'x' is missing"),
    ({"id": ["a", "b"], "x": [1.0, float("nan")]}, "row 2: feature 'x' is nan"),
    ({"id": ["a", "b"], "x": [1.0, 1e39]}, "row 2: feature 'x' is 1e\\+39"),
    ({"id": ["a", "a"], "x": [1.0, 2.0]}, "row 2: duplicate id 'a' \\(first seen in row 1\\)"),
    ({"id": ["a", " "], "x": [1.0, 2.0]}, "row 2: empty id"),
    ({"id": [1.5, 2.5], "x": [1.0, 2.0]}, "must hold strings or integers"),
    ({"id": ["a"], "name": ["b"]}, "no numeric columns"),
])
def test_bad_parquet_values_are_named_by_row(tmp_path, columns, message):
    with pytest.raises(PoolError, match=message):
        load_pool(_write(tmp_path / "p.parquet", columns))


def test_a_file_that_is_not_parquet_is_a_pool_error(tmp_path):
    path = tmp_path / "p.parquet"
    path.write_text("id,x\n")
    with pytest.raises(PoolError, match="cannot read Parquet"):
        load_pool(path)


def test_score_reads_and_writes_parquet(tmp_path):
    rng = np.random.default_rng(0)
    n = 60
    X = rng.random((n, 3))
    _write(tmp_path / "pool.parquet", {"id": [f"r{i}" for i in range(n)],
                                        "r": X[:, 0], "g": X[:, 1], "b": X[:, 2]})
    answers = tmp_path / "answers.jsonl"
    pool = load_pool(tmp_path / "pool.parquet")
    answers.write_text("".join(json.dumps({
        "id": f"r{i}", "_input_hash": int(pool.input_hashes[i]), "answer": "accept",
        "accept": ["dark" if X[i, 0] < 0.5 else "light"], "options": [
            {"id": "dark"}, {"id": "light"}]}) + "\n" for i in range(20)))
    out = tmp_path / "scored.parquet"
    result = CliRunner().invoke(main, ["score", str(tmp_path / "pool.parquet"), "--annotations",
                                      str(answers), "--dataset", "d", "--out", str(out),
                                      "--model", "logreg"])
    assert result.exit_code == 0, result.output
    table = pq.read_table(out)
    assert table.num_rows == n - 20
    assert {"id", "r", "score", "label", "prob_dark", "prob_light"} <= set(table.column_names)
    probs = np.column_stack([table.column("prob_dark").to_numpy(),
                             table.column("prob_light").to_numpy()])
    assert np.allclose(probs.sum(axis=1), 1.0)
    scores = table.column("score").to_numpy()
    assert (np.diff(scores) <= 1e-12).all()  # most useful first
