"""The columnar pool: the fast CSV reader agrees with the exact one, records are read back from
the file, and rows are found by hash without a dict."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from retrain_loop import csvfast
from retrain_loop.hashing import stable_hash
from retrain_loop.lines import scan
from retrain_loop.pool import PoolError, load_pool, read_exact
from retrain_loop.records import FileRecords

HEADER = "id,name,r,g,b,score\n"


def _rows(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        r, g, b = rng.integers(0, 256, 3)
        score = rng.standard_normal() * 10.0 ** int(rng.integers(-8, 8))
        name = ["teal", "dark red", "007", "1e3", "-0", "x\\y", "naïve", ""][i % 8]
        out.append(f"row-{i:05d},{name},{r},{g},{b},{score!r}\n")
    return out


def _write(tmp_path: Path, text: str, name: str = "pool.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def _same(a, b) -> None:
    assert a.features == b.features and a.id_column == b.id_column
    assert a.columns == b.columns
    assert a.X.dtype == b.X.dtype == np.float32 and a.X.flags.c_contiguous
    assert np.array_equal(a.X, b.X)
    assert np.array_equal(a.input_hashes, b.input_hashes)
    assert list(a.tasks) == list(b.tasks)


def _exact(path: Path, **kwargs):
    return read_exact(path, scan(path, count_commas=True), kwargs.get("features"),
                      kwargs.get("id_column", "id"), ())


CLEAN = {
    "plain": HEADER + "".join(_rows(300)),
    "crlf": (HEADER + "".join(_rows(50))).replace("\n", "\r\n"),
    "bom": "\ufeff" + HEADER + "".join(_rows(20)),
    "blank-lines": "\n" + HEADER + "\n".join(_rows(20)) + "\n\n",
    "no-final-newline": (HEADER + "".join(_rows(20))).rstrip("\n"),
    "unicode-ids": "id,x\n" + "".join(f"ïd-{i}-é,{i}\n" for i in range(30)),
    "numeric-ids": "id,x,y\n" + "".join(f"{i:03d},{i * 0.5},{-i}\n" for i in range(30)),
    "exponents": "id,x\n" + "a,1e5\nb,-2.5E-3\nc,.5\nd,5.\ne,+7\nf, 8 \n",
}


@pytest.mark.parametrize("case", sorted(CLEAN))
def test_the_fast_reader_takes_clean_files_and_agrees_with_the_exact_one(tmp_path, case):
    path = _write(tmp_path, CLEAN[case])
    assert csvfast.read(path, "id", lambda *a: _resolve(path, *a))[0] is not None
    _same(load_pool(path), _exact(path))
    assert isinstance(load_pool(path).tasks, FileRecords)


def _resolve(path, where, header, first):
    from retrain_loop.pool import _resolve_columns
    return _resolve_columns(path, where, header, first, None, "id", True)


DECLINED = {
    "quoted": 'id,name,x\na,"b, c",1\nb,d,2\n',
    "multi-line-quoted": 'id,name,x\na,"two\nlines",1\nb,d,2\n',
    "no-id-column": "x,y\n1,2\n3,4\n",
    "underscore-number": "id,x\na,1_000\nb,2\n",
    "lone-cr": "id,x\ra,1\rb,2\r",
    "mid-file-lone-cr": "id,x\na,1\rb,2\n",
}


@pytest.mark.parametrize("case", sorted(DECLINED))
def test_files_the_fast_reader_declines_read_as_before(tmp_path, case):
    path = _write(tmp_path, DECLINED[case])
    assert csvfast.read(path, "id", lambda *a: _resolve(path, *a))[0] is None
    _same(load_pool(path), _exact(path))


@pytest.mark.parametrize(("text", "line", "message"), [
    ("id,x\na,1\nb\n", 3, "row has 1 fields, header has 2"),
    ("id,x,y\na,1,2\nb,3\n", 3, "row has 2 fields"),
    ("id,x\na,1\nb,\n", 3, "feature 'x' is not a number: ''"),
    ("id,x\na,1\nb,nan\n", 3, "NaN or infinite"),
    ("id,x\na,1\nb,inf\n", 3, "NaN or infinite"),
    ("id,x\na,1\nb,1e39\n", 3, "too large for float32"),
    ("id,x\na,1\n ,2\n", 3, "empty id"),
    ("id,x\na,1\na,2\n", 3, "duplicate id 'a' \\(first seen on line 2\\)"),
])
def test_bad_rows_of_otherwise_plain_files_are_named_by_line(tmp_path, text, line, message):
    path = _write(tmp_path, text)
    with pytest.raises(PoolError, match=message) as info:
        load_pool(path)
    assert info.value.line == line


def test_a_row_is_hashed_by_its_id_as_before(tmp_path):
    path = _write(tmp_path, 'id,x\nplain,1\nback\\slash,2\nünï,3\ntab\there,4\n')
    pool = load_pool(path)
    ids = ["plain", "back\\slash", "ünï", "tab\there"]
    assert pool.input_hashes.tolist() == [stable_hash({"id": i}) for i in ids]


def test_records_are_read_back_from_the_file(tmp_path):
    path = _write(tmp_path, HEADER + "".join(_rows(10)))
    pool = load_pool(path)
    task = pool.tasks[2]
    assert task["id"] == "row-00002" and task["name"] == "007"  # a CSV's "007" stays text
    assert pool.tasks[3]["name"] == 1000.0  # and its "1e3" is a number, as JSON would spell it
    assert task["_input_hash"] == stable_hash({"id": "row-00002"})
    assert pool.tasks[-1]["id"] == "row-00009"
    assert [t["id"] for t in pool.tasks[2:4]] == ["row-00002", "row-00003"]
    with pytest.raises(IndexError):
        pool.tasks[10]


def test_a_file_replaced_after_loading_still_reads_as_it_was(tmp_path):
    path = _write(tmp_path, HEADER + "".join(_rows(10)))
    pool = load_pool(path)
    new = _write(tmp_path, "id,x\nz,1\n", "new.csv")
    os.replace(new, path)  # what an editor's save does
    assert pool.tasks[0]["id"] == "row-00000"


def test_a_file_changed_in_place_after_loading_is_an_error_not_another_row(tmp_path):
    path = _write(tmp_path, HEADER + "".join(_rows(10)))
    pool = load_pool(path)
    with path.open("r+b") as f:
        f.write(b"id,na")  # the same size, new bytes
        f.truncate(100)
    with pytest.raises(PoolError, match="changed after it was loaded"):
        pool.tasks[0]


def test_jsonl_records_are_read_back_too(tmp_path):
    path = _write(tmp_path, '{"id": "a", "x": 1, "tags": [1, 2]}\n\n{"id": "b", "x": 2.5}\r\n',
                  "pool.jsonl")
    pool = load_pool(path)
    assert isinstance(pool.tasks, FileRecords)
    assert pool.tasks[1] == {"id": "b", "x": 2.5, "_input_hash": stable_hash({"id": "b"})}
    assert pool.tasks[0]["tags"] == [1, 2]
    assert pool.columns == ["id", "x", "tags"]


def test_rows_are_found_by_hash(tmp_path):
    path = _write(tmp_path, HEADER + "".join(_rows(200)))
    pool = load_pool(path)
    order = np.random.default_rng(1).permutation(len(pool))
    found = pool.indices_of(np.append(pool.input_hashes[order], [12345, -1]))
    assert found.tolist() == [*order.tolist(), -1, -1]
    assert all(pool.index_of(int(pool.input_hashes[i])) == i for i in order[:20])
    assert pool.index_of(12345) is None and pool.index_of(2**70) is None
    assert pool.index_of("12") is None


@pytest.mark.parametrize("text", [
    CLEAN["crlf"], CLEAN["blank-lines"], CLEAN["no-final-newline"], "id,x\r\na,1\rb,2\r\n",
    'a,"b\nc",d\r\n\r\n,,,\n', "x", "", "\n\n,\n",
])
@pytest.mark.parametrize("size", [1, 2, 3, 7])
def test_lines_are_found_alike_whatever_the_read_size(tmp_path, monkeypatch, text, size):
    from retrain_loop import lines

    path = _write(tmp_path, text)
    whole = lines.scan(path, count_commas=True)
    monkeypatch.setattr(lines, "_READ", size)
    parts = lines.scan(path, count_commas=True)
    for name in ("bounds", "text_ends", "commas"):
        assert getattr(parts, name).tolist() == getattr(whole, name).tolist(), name
    assert (parts.lone_cr, parts.has_quote, parts.size) == (whole.lone_cr, whole.has_quote,
                                                            whole.size)
    split = text.encode().split(b"\n")
    if split and split[-1] == b"":
        split.pop()  # the break after the last line
    assert whole.commas.tolist() == [line.count(b",") for line in split]
    assert whole.lone_cr == ("\r" in text.replace("\r\n", ""))


@pytest.mark.parametrize("text", [
    HEADER.replace("score", "weight") + "".join(_rows(40)),  # a "score" column is replaced
    'id,name,x\na,"b, c",1\nb,"two\nlines",2.50\nc,plain,1e3\n',
])
def test_scored_rows_written_from_the_files_text_read_back_as_the_records_would(tmp_path, text):
    import csv

    from retrain_loop.offline import dump_csv, write_rows
    from retrain_loop.records import csv_cell
    from retrain_loop.scored import ScoredRows

    pool = load_pool(_write(tmp_path, text))
    rng = np.random.default_rng(0)
    order = rng.permutation(len(pool))
    proba = rng.dirichlet(np.ones(3), len(pool))
    rows = ScoredRows(pool, order, ["x,y", "b", 'say "c"'], proba, rng.random(len(pool)))
    fast, slow = tmp_path / "fast.csv", tmp_path / "slow.csv"
    write_rows(fast, rows)
    columns = list(csv.DictReader(fast.open(newline="")).fieldnames)
    assert rows.csv_lines(columns) is not None  # the rows' own text, not dump_csv
    with slow.open("w", newline="") as out:
        dump_csv(out, rows, columns)
    def read(path):
        return [{k: csv_cell(v) for k, v in row.items()}
                for row in csv.DictReader(path.open(newline=""))]
    assert read(fast) == read(slow)
    assert len(read(fast)) == len(pool)
    first = read(fast)[0]
    assert first["_input_hash"] == int(pool.input_hashes[order[0]])
    assert first["label"] == ["x,y", "b", 'say "c"'][int(proba[0].argmax())]
    assert first["prob_x,y"] == pytest.approx(proba[0][0], rel=1e-15)
