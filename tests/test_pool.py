from __future__ import annotations

import csv
import importlib.util
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from retrain_loop.hashing import stable_hash
from retrain_loop.pool import PoolError, load_pool

ROWS = [
    {"id": "a", "name": "first", "x": 1.5, "y": 2},
    {"id": "b", "name": "second", "x": -3.0, "y": 0},
    {"id": "c", "name": "third", "x": 0.25, "y": 7},
]
FORMATS = ["jsonl", "csv"]


def write_rows(tmp_path: Path, rows: list[dict], fmt: str, name: str = "pool") -> Path:
    path = tmp_path / f"{name}.{fmt}"
    if fmt == "csv":
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_text(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8", newline="")
    return path


@pytest.mark.parametrize("fmt", FORMATS)
def test_loads_rows_features_and_tasks(tmp_path, fmt):
    pool = load_pool(write_rows(tmp_path, ROWS, fmt))
    assert len(pool) == 3
    assert pool.id_column == "id"
    assert pool.X.dtype == np.float32 and pool.X.shape == (3, 2) and pool.X.flags.c_contiguous
    np.testing.assert_array_equal(pool.X, [[1.5, 2], [-3, 0], [0.25, 7]])
    assert pool.input_hashes.dtype == np.int64
    assert [t["_input_hash"] for t in pool.tasks] == pool.input_hashes.tolist()
    assert {k: v for k, v in pool.tasks[0].items() if k != "_input_hash"} == ROWS[0]


@pytest.mark.parametrize("fmt", FORMATS)
def test_default_features_skip_id_text_and_underscore_columns(tmp_path, fmt):
    rows = [{"id": 1, "label": "cat", "_weight": 2, "g": 3, "f": 4}]
    assert load_pool(write_rows(tmp_path, rows, fmt)).features == ["g", "f"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_explicit_features_keep_the_given_order(tmp_path, fmt):
    pool = load_pool(write_rows(tmp_path, ROWS, fmt), features=["y", "x"])
    assert pool.features == ["y", "x"]
    np.testing.assert_array_equal(pool.X[:, 0], [2, 0, 7])


@pytest.mark.parametrize("fmt", FORMATS)
def test_index_of_finds_each_row_and_nothing_else(tmp_path, fmt):
    pool = load_pool(write_rows(tmp_path, ROWS, fmt))
    assert [pool.index_of(h) for h in pool.input_hashes] == [0, 1, 2]
    assert pool.index_of(12345) is None
    assert pool.index_of("nonsense") is None


@pytest.mark.parametrize("fmt", FORMATS)
def test_hashes_are_stable_across_loads(tmp_path, fmt):
    path = write_rows(tmp_path, ROWS, fmt)
    assert load_pool(path).input_hashes.tolist() == load_pool(path).input_hashes.tolist()


@pytest.mark.parametrize("fmt", FORMATS)
def test_reordering_the_file_keeps_each_rows_hash_when_ids_exist(tmp_path, fmt):
    forward = load_pool(write_rows(tmp_path, ROWS, fmt, "forward"))
    backward = load_pool(write_rows(tmp_path, ROWS[::-1], fmt, "backward"))
    by_id = {t["id"]: t["_input_hash"] for t in backward.tasks}
    assert {t["id"]: t["_input_hash"] for t in forward.tasks} == by_id


def test_id_hash_is_the_same_for_csv_and_jsonl(tmp_path):
    rows = [{"id": 7, "x": 1}, {"id": "b7", "x": 2}]
    from_csv = load_pool(write_rows(tmp_path, rows, "csv")).input_hashes.tolist()
    assert from_csv == load_pool(write_rows(tmp_path, rows, "jsonl")).input_hashes.tolist()
    assert from_csv == [stable_hash({"id": "7"}), stable_hash({"id": "b7"})]


@pytest.mark.parametrize("fmt", FORMATS)
def test_duplicate_rows_without_id_get_distinct_stable_hashes(tmp_path, fmt):
    rows = [
        {"sepal": 5.1, "petal": 1.4},
        {"sepal": 4.9, "petal": 1.4},
        {"sepal": 5.1, "petal": 1.4},
    ]
    path = write_rows(tmp_path, rows + rows[:1], fmt)
    pool = load_pool(path)
    assert pool.id_column is None
    assert len(set(pool.input_hashes.tolist())) == 4
    assert pool.input_hashes[0] == stable_hash(rows[0])
    assert load_pool(path).input_hashes.tolist() == pool.input_hashes.tolist()


@pytest.mark.parametrize("fmt", FORMATS)
def test_reserved_hash_fields_in_the_file_are_replaced(tmp_path, fmt):
    rows = [{"id": "a", "x": 1, "_input_hash": 1, "_task_hash": 2, "_note": "kept"}]
    task = load_pool(write_rows(tmp_path, rows, fmt)).tasks[0]
    assert task == {"id": "a", "x": 1, "_note": "kept", "_input_hash": stable_hash({"id": "a"})}


def test_csv_cells_become_numbers_only_when_spelt_as_json_numbers(tmp_path):
    path = write_text(tmp_path, "p.csv", "\ufeffid,x,zip,note,sci\n1,2.50,007,,1e3\n")
    pool = load_pool(path, features=["x", "zip", "sci"])
    assert pool.tasks[0] == {
        "id": 1, "x": 2.5, "zip": "007", "note": "", "sci": 1000.0,
        "_input_hash": stable_hash({"id": "1"}),
    }  # fmt: skip
    np.testing.assert_array_equal(pool.X, [[2.5, 7, 1000]])


def test_csv_lines_count_physical_lines_across_quoted_newlines(tmp_path):
    path = write_text(tmp_path, "p.csv", 'id,note,x\na,"two\nlines",1\n\nb,ok,oops\n')
    with pytest.raises(PoolError, match="'x' is not a number: 'oops'") as info:
        load_pool(path)
    assert info.value.line == 5


def write_file(tmp_path: Path, name: str, text: str | None) -> Path:
    return tmp_path / name if text is None else write_text(tmp_path, name, text)


# fmt: off
BAD_INPUTS = [
    # (test id, file name, contents or None for no file, load_pool kwargs, line, message regex)
    ("jsonl-missing-feature", "p.jsonl", '{"x": 1, "g": 2}\n\n{"x": 3}\n', {"features": ["x", "g"]},
     3, "missing feature column 'g'"),
    ("csv-missing-feature", "p.csv", "x,y\n1,2\n", {"features": ["x", "g"]},
     1, "missing feature column 'g'"),
    ("csv-not-a-number", "p.csv", "id,x\na,1\nb,abc\n", {}, 3, r"feature 'x' is not a number: 'abc'"),
    ("csv-empty-value", "p.csv", "id,x\na,1\nb,\n", {}, 3, r"feature 'x' is not a number: ''"),
    ("jsonl-string", "p.jsonl", '{"x": 1}\n{"x": "2"}\n', {}, 2, "feature 'x' is not a number"),
    ("jsonl-bool", "p.jsonl", '{"x": 1}\n{"x": true}\n', {}, 2, "feature 'x' is not a number: True"),
    ("csv-nan", "p.csv", "x\n1\nnan\n", {}, 3, "feature 'x' is NaN or infinite"),
    ("csv-inf", "p.csv", "x\n1\n2\n-inf\n", {}, 4, "feature 'x' is NaN or infinite"),
    ("jsonl-nan", "p.jsonl", '{"x": 1}\n{"x": NaN}\n', {}, 2, "feature 'x' is NaN or infinite"),
    ("jsonl-inf", "p.jsonl", '{"x": Infinity}\n', {}, 1, "feature 'x' is NaN or infinite"),
    ("float32-overflow", "p.jsonl", '{"x": 1e300}\n', {}, 1, "too large for float32"),
    ("jsonl-empty", "p.jsonl", "", {}, None, "no rows"),
    ("jsonl-blank-lines", "p.jsonl", "\n  \n", {}, None, "no rows"),
    ("csv-empty", "p.csv", "", {}, None, "no rows"),
    ("csv-header-only", "p.csv", "id,x\n", {}, None, "no rows"),
    ("csv-duplicate-id", "p.csv", "id,x\na,1\nb,2\na,3\n", {},
     4, r"duplicate id 'a' \(first seen on line 2\)"),
    ("jsonl-duplicate-id", "p.jsonl", '{"id": 5, "x": 1}\n\n{"id": "5", "x": 1}\n', {},
     3, r"duplicate id '5' \(first seen on line 1\)"),
    ("csv-empty-id", "p.csv", "id,x\na,1\n,2\n", {}, 3, "empty id"),
    ("jsonl-null-id", "p.jsonl", '{"id": "a", "x": 1}\n{"id": null, "x": 2}\n', {}, 2, "empty id"),
    ("jsonl-float-id", "p.jsonl", '{"id": 1.0, "x": 1}\n', {}, 1, "id must be a string or"),
    ("broken-json", "p.jsonl", '{"x": 1}\n{"x": 2,\n', {}, 2, "invalid JSON: Expecting"),
    ("json-array", "p.jsonl", '{"x": 1}\n[1, 2]\n', {}, 2, "expected a JSON object, got a JSON array"),
    ("csv-short-row", "p.csv", "id,x,y\na,1,2\nb,3\n", {}, 3, "row has 2 fields, header has 3"),
    ("csv-duplicate-header", "p.csv", "id,x,x\na,1,2\n", {}, 1, "column 'x' appears twice"),
    ("explicit-id-missing", "p.csv", "key,x\na,1\n", {"id_column": "name"},
     1, "id column 'name' not found"),
    ("no-numeric-columns", "p.jsonl", '{"id": "a", "name": "b"}\n', {}, None, "pass --features"),
    ("unsupported-suffix", "p.txt", "x\n1\n", {}, None, r"\.jsonl, \.ndjson, \.csv or \.parquet"),
    ("missing-file", "absent.jsonl", None, {}, None, "file not found"),
]
# fmt: on


@pytest.mark.parametrize(
    ("name", "text", "kwargs", "line", "message"),
    [case[1:] for case in BAD_INPUTS],
    ids=[case[0] for case in BAD_INPUTS],
)
def test_bad_input_raises_pool_error_with_line(tmp_path, name, text, kwargs, line, message):
    path = write_file(tmp_path, name, text)
    with pytest.raises(PoolError, match=message) as info:
        load_pool(path, **kwargs)
    assert info.value.line == line
    assert info.value.path == path
    assert str(info.value).startswith(f"{path}:")


def test_pool_error_formats_and_pickles():
    with_line, without = PoolError("p.csv", 4, "bad"), PoolError("p.csv", None, "bad")
    assert (str(with_line), str(without)) == ("p.csv:4: bad", "p.csv: bad")
    copy = pickle.loads(pickle.dumps(with_line))
    assert (copy.path, copy.line, copy.message) == ("p.csv", 4, "bad")


def test_default_id_column_may_be_absent(tmp_path):
    pool = load_pool(write_text(tmp_path, "p.csv", "key,x\na,1\n"))
    assert pool.id_column is None and pool.features == ["x"]


def load_colour_script():
    path = Path(__file__).resolve().parents[1] / "scripts" / "make_colour_pool.py"
    spec = importlib.util.spec_from_file_location("make_colour_pool", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_colour_pool_is_distinct_deterministic_and_loadable(tmp_path):
    script = load_colour_script()
    colours = script.make_colours(500, seed=3)
    assert colours == script.make_colours(500, seed=3) != script.make_colours(500, seed=4)
    assert len({(c["r"], c["g"], c["b"]) for c in colours}) == 500
    assert colours[0]["hex"] == "#{:02x}{:02x}{:02x}".format(*(colours[0][k] for k in "rgb"))
    out = tmp_path / "nested" / "colours.jsonl"
    assert script.main(["--n", "500", "--seed", "3", "--out", str(out)]) == 0
    pool = load_pool(out, features=["r", "g", "b"])
    # The file holds the same colours, in order, as the library call with that seed.
    assert [{k: t[k] for k in c} for t, c in zip(pool.tasks, colours)] == colours
    assert len(pool) == 500
    np.testing.assert_array_equal(pool.X, [[c["r"], c["g"], c["b"]] for c in colours])


def test_colour_pool_covers_dark_light_grey_and_saturated():
    colours = load_colour_script().make_colours(2000, seed=0)
    rgb = np.array([[c["r"], c["g"], c["b"]] for c in colours])
    spread = rgb.max(axis=1) - rgb.min(axis=1)
    assert (rgb.max(axis=1) < 40).sum() > 20  # dark
    assert (rgb.min(axis=1) > 215).sum() > 5  # light
    assert (spread < 8).sum() > 50  # grey
    assert ((rgb.max(axis=1) > 220) & (rgb.min(axis=1) < 35)).sum() > 20  # saturated
