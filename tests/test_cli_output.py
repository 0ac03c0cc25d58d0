"""What the command line writes and where: rows as CSV or JSONL by the ``--out`` suffix, ``-`` for
stdout, a port in use refused before anything is created, and the package's files for setuptools.

Everything runs on real files under ``tmp_path``; the stdout and port tests run the real command
in a subprocess.
"""

from __future__ import annotations

import csv
import json
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import RGB, build_engine, rgb_label, rgb_rows, write_jsonl

from retrain_loop import offline
from retrain_loop.cli import main
from retrain_loop.pool import load_pool
from retrain_loop.store import AnnotationStore

ROOT = Path(__file__).resolve().parent.parent
DATASET = "colours"
N_ROWS, N_ANSWERS = 120, 40
COMMAND = [sys.executable, "-m", "retrain_loop.cli"]


@pytest.fixture(scope="module")
def answered(tmp_path_factory) -> dict[str, Path]:
    """A pool, a database of answers made as an annotator makes them, and a model trained on it."""
    folder = tmp_path_factory.mktemp("answered")
    pool = write_jsonl(folder / "pool.jsonl", rgb_rows(N_ROWS))
    db = folder / "answers.db"
    with closing(AnnotationStore(db)) as store:
        engine = build_engine(load_pool(pool), store, DATASET, RGB, model="logreg",
                              batch_size=10, background=False)
        try:
            while store.count(DATASET) < N_ANSWERS:
                tasks = engine.get_questions("alice")
                engine.add_answers([dict(t, answer="accept", accept=[rgb_label(t)])
                                    for t in tasks], "alice")
        finally:
            engine.close()
    model = folder / "model.skops"
    result = run("train", pool, "--annotations", db, "--dataset", DATASET, "--out", model,
                 "--model", "logreg")
    assert result.exit_code == 0, result.output
    return {"pool": pool, "db": db, "model": model}


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def rows_command(command: str, files: dict[str, Path], out, pool: Path | None = None) -> list:
    pool = pool or files["pool"]
    if command == "score":
        return ["score", pool, "--annotations", files["db"], "--dataset", DATASET, "--out", out]
    return ["predict", files["model"], pool, "--out", out]


def read_jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def read_csv(path: Path) -> list[dict]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def as_cell(value) -> str:
    """What a CSV cell holds for a value: numbers as Python writes them, nested values as JSON."""
    if value is None:
        return ""
    if isinstance(value, (bool, dict, list)):
        return json.dumps(value)
    return str(value)


# -- rows: the format from the suffix -----------------------------------------------------------


@pytest.mark.parametrize("command", ["score", "predict"])
def test_csv_has_the_rows_fields_and_a_probability_column_per_label(answered, tmp_path, command):
    as_csv, as_jsonl = tmp_path / "rows.csv", tmp_path / "rows.jsonl"
    for out in (as_csv, as_jsonl):
        result = run(*rows_command(command, answered, out))
        assert result.exit_code == 0, result.output
    expected = read_jsonl(as_jsonl.read_text(encoding="utf-8"))
    header = next(csv.reader(as_csv.open(encoding="utf-8", newline="")))
    fields = [key for key in expected[0] if key != "probs"]
    assert header == fields + [f"prob_{label}" for label in RGB]

    got = read_csv(as_csv)
    assert len(got) == len(expected) == (N_ROWS - N_ANSWERS if command == "score" else N_ROWS)
    for cells, row in zip(got, expected):
        assert {k: cells[k] for k in fields} == {k: as_cell(row[k]) for k in fields}
        # Every probability to the last digit, so a spreadsheet's sums come out as the model's.
        assert [float(cells[f"prob_{label}"]) for label in RGB] == [row["probs"][label]
                                                                     for label in RGB]


def test_a_csv_of_predictions_loads_back_as_a_pool(answered, tmp_path):
    out = tmp_path / "predictions.csv"
    assert run(*rows_command("predict", answered, out)).exit_code == 0
    pool = load_pool(out, features=["r", "g", "b"])  # no byte-order mark ahead of "id"
    assert [t["id"] for t in pool.tasks] == [r["id"] for r in rgb_rows(N_ROWS)]
    assert {f"prob_{label}" for label in RGB} <= set(pool.tasks[0])


@pytest.mark.parametrize("suffix", [".jsonl", ".ndjson", ".JSONL"])
def test_jsonl_suffixes_write_jsonl(answered, tmp_path, suffix):
    out = tmp_path / f"predictions{suffix}"
    result = run(*rows_command("predict", answered, out))
    assert result.exit_code == 0, result.output
    rows = read_jsonl(out.read_text(encoding="utf-8"))
    assert len(rows) == N_ROWS and all(set(row["probs"]) == set(RGB) for row in rows)


def test_nested_values_are_json_text_in_a_csv(answered, tmp_path):
    rows = rgb_rows(N_ROWS)
    rows[0].update(tags=["warm", "dark"], source={"camera": 2}, checked=True, note=None)
    rows[1].update(tags=[], checked=False)  # rows[1:] have no source or note: empty cells
    pool = write_jsonl(tmp_path / "nested.jsonl", rows)
    out = tmp_path / "predictions.csv"
    result = run(*rows_command("predict", answered, out, pool=pool))
    assert result.exit_code == 0, result.output
    first, second = read_csv(out)[:2]
    assert (first["tags"], first["source"], first["checked"], first["note"]) == (
        '["warm", "dark"]', '{"camera": 2}', "true", "")
    assert (second["tags"], second["source"], second["checked"], second["note"]) == (
        "[]", "", "false", "")
    assert json.loads(first["tags"]) == ["warm", "dark"]


@pytest.mark.parametrize("command", ["score", "predict"])
def test_a_field_named_like_a_probability_column_is_refused_in_a_csv(answered, tmp_path,
                                                                     command):
    pool = write_jsonl(tmp_path / "clash.jsonl",
                       [dict(r, prob_red=0.5) for r in rgb_rows(N_ROWS)])
    out = tmp_path / "rows.csv"
    result = run(*rows_command(command, answered, out, pool=pool))
    assert result.exit_code == 2, result.output
    assert "'prob_red'" in result.output and ".jsonl" in result.output
    assert not out.exists()
    assert run(*rows_command(command, answered, tmp_path / "rows.jsonl", pool=pool)).exit_code == 0


@pytest.mark.parametrize("command", ["score", "predict", "export"])
@pytest.mark.parametrize("name", ["rows.txt", "rows", "rows.json", "rows.csv.gz"])
def test_an_unknown_suffix_exits_2_before_anything_is_read(tmp_path, command, name):
    out = tmp_path / name
    missing = {"pool": tmp_path / "no-pool.jsonl", "db": tmp_path / "no.db",
               "model": tmp_path / "no.skops"}
    args = (["export", DATASET, "--db", missing["db"], "--out", out] if command == "export"
            else rows_command(command, missing, out))
    result = run(*args)
    assert result.exit_code == 2
    # The inputs do not exist either: the suffix is refused first, so none was looked at.
    assert "--out" in result.output and ".jsonl" in result.output, result.output
    assert "not found" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_export_refuses_a_csv_it_would_not_write(answered, tmp_path):
    out = tmp_path / "answers.csv"
    result = run("export", DATASET, "--db", answered["db"], "--out", out)
    assert result.exit_code == 2
    assert "db-out" in result.output and not out.exists()


def test_a_csv_that_fails_part_way_leaves_the_old_file(tmp_path):
    class Unprintable:
        def __str__(self):
            raise RuntimeError("cannot write this cell")

    out = tmp_path / "rows.csv"
    out.write_text("old\n")
    rows = [{"id": "a", "probs": {"red": 0.5}}, {"id": "b", "probs": {"red": Unprintable()}}]
    with pytest.raises(RuntimeError, match="cannot write this cell"):
        offline.write_rows(out, rows)
    assert out.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["rows.csv"]


# -- rows: "-" is JSONL on stdout ----------------------------------------------------------------


@pytest.mark.parametrize("command", ["score", "predict"])
def test_dash_writes_jsonl_to_stdout_and_messages_to_stderr(answered, tmp_path, command):
    file = tmp_path / "rows.jsonl"
    assert run(*rows_command(command, answered, file)).exit_code == 0
    done = subprocess.run([*COMMAND, *map(str, rows_command(command, answered, "-"))],
                          check=False, capture_output=True, text=True, cwd=tmp_path,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert read_jsonl(done.stdout) == read_jsonl(file.read_text(encoding="utf-8"))
    assert re.search(r"Wrote \d+ (rows|predictions) to stdout", done.stderr)
    assert not (tmp_path / "-").exists()


def test_dash_keeps_the_progress_bar_on_stderr(answered, tmp_path):
    n = 20_000  # enough rows for the progress bar
    pool = write_jsonl(tmp_path / "big.jsonl", rgb_rows(n, seed=1))
    done = subprocess.run([*COMMAND, *map(str, rows_command("predict", answered, "-", pool))],
                          check=False, capture_output=True, text=True, cwd=tmp_path,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Writing stdout" in done.stderr
    assert len(read_jsonl(done.stdout)) == n  # every line of stdout is a row


def test_export_dash_writes_to_stdout_not_to_a_file_named_dash(answered, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    to_file = run("export", DATASET, "--db", answered["db"], "--out", tmp_path / "a.jsonl")
    dash = run("export", DATASET, "--db", answered["db"], "--out", "-")
    assert to_file.exit_code == dash.exit_code == 0
    assert dash.stdout == (tmp_path / "a.jsonl").read_text(encoding="utf-8")
    assert len(read_jsonl(dash.stdout)) == N_ANSWERS
    assert not (tmp_path / "-").exists()


# -- serve: the port first -----------------------------------------------------------------------


def serve_command(pool: Path, db: Path, host: str, port: int) -> list[str]:
    return [*COMMAND, "serve", DATASET, str(pool), "--label", ",".join(RGB), "--db", str(db),
            "--host", host, "--port", str(port)]


def ipv6_available() -> bool:
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        return False
    return True


HOSTS = ["127.0.0.1", "0.0.0.0",
         pytest.param("::", marks=pytest.mark.skipif(not ipv6_available(), reason="no IPv6"))]


@pytest.mark.parametrize("host", HOSTS)
def test_a_port_in_use_exits_2_before_anything_is_created(tmp_path, host):
    pool = write_jsonl(tmp_path / "pool.jsonl", rgb_rows(20))
    db = tmp_path / "answers.db"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.create_server((host, 0), family=family) as taken:  # a server holding the port
        port = taken.getsockname()[1]
        done = subprocess.run(serve_command(pool, db, host, port), check=False,
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"port {port} on {host} is in use" in done.stderr and "--port" in done.stderr
    assert "Open http" not in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pool.jsonl"]


@pytest.mark.parametrize("host", [
    "127.0.0.1",
    pytest.param("::", marks=pytest.mark.skipif(not (ipv6_available()
                                                     and socket.has_dualstack_ipv6()),
                                                reason="no dual-stack IPv6")),
])
def test_serve_answers_on_the_address_it_prints(tmp_path, host):
    """The socket bound before the database is the one uvicorn serves on (--port 0: any)."""
    pool = write_jsonl(tmp_path / "pool.jsonl", rgb_rows(20))
    db = tmp_path / "answers.db"
    server = subprocess.Popen(serve_command(pool, db, host, 0), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        line = ""
        while "Open http" not in line:
            line = server.stdout.readline()
            assert line, server.stderr.read()
        url = re.search(r"http://(\S+?)/(\?token=\S+)?", line)
        assert url.group(1).startswith("127.0.0.1:") and not url.group(1).endswith(":0")
        with urllib.request.urlopen(f"http://{url.group(1)}/api/stats{url.group(2) or ''}",
                                    timeout=10) as response:
            assert json.load(response)["n_annotations"] == 0
        assert db.exists()
    finally:
        server.send_signal(signal.SIGINT)
        _, stderr = server.communicate(timeout=30)
    assert server.returncode == 0, stderr  # Ctrl+C is a normal stop


# -- packaging -----------------------------------------------------------------------------------


def test_every_folder_of_the_package_is_listed_for_setuptools():
    """A folder setuptools can import but is not told about makes every install print a warning
    ("Package would be ignored"); the page's files must still be package data."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"][
        "setuptools"]
    folders = {".".join(path.relative_to(ROOT).parts)
               for path in (ROOT / "retrain_loop").rglob("*")
               if path.is_dir() and path.name.isidentifier() and path.name != "__pycache__"}
    mapped = {name for name, folder in config["package-dir"].items() if folder}
    assert folders | {"retrain_loop"} | mapped == set(config["packages"])
    static = sorted(p.name for p in (ROOT / "retrain_loop/server/static").iterdir())
    assert static and config["package-data"]["retrain_loop.server.static"] == ["*"]
    assert (ROOT / config["package-dir"]["retrain_loop.recipes"] / "retrain_loop.py").is_file()
