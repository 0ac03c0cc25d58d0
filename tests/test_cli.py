"""The command line: help text, exit codes, and that bad input writes nothing."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner
from conftest import rgb_rows, write_jsonl

from retrain_loop.cli import main
from retrain_loop.store import AnnotationStore


@pytest.mark.parametrize("name", sorted(main.commands))
def test_every_command_has_help_with_an_example(name):
    result = CliRunner().invoke(main, [name, "--help"])
    assert result.exit_code == 0
    assert main.commands[name].help and "Example:" in result.output


def test_console_script_is_installed():
    exe = shutil.which("retrain-loop") or str(
        __import__("pathlib").Path(sys.executable).parent / "retrain-loop"
    )
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True)
    assert "retrain-loop" in out.stdout


@pytest.mark.parametrize(
    "content, line, message",
    [
        ('{"id": "a", "r": 1, "g": 2}\n{"id": "b", "r": "x", "g": 2}\n', 2, "not a number"),
        ('{"id": "a", "r": 1, "g": 2}\n{"id": "a", "r": 3, "g": 4}\n', 2, "duplicate id"),
        ('{"id": "a", "r": 1, "g": 2}\n{"id": "b", "r": 1\n', 2, "JSON"),
        ('{"id": "a", "r": 1, "g": 2}\n{"id": "b", "r": NaN, "g": 2}\n', 2, "NaN"),
        ("", None, "no rows"),
    ],
)
def test_serve_with_a_bad_pool_exits_2_names_the_line_and_writes_nothing(tmp_path, content, line,
                                                                        message):
    pool = tmp_path / "pool.jsonl"
    pool.write_text(content)
    db = tmp_path / "answers.db"
    result = CliRunner().invoke(main, ["serve", "ds", str(pool), "--label", "a,b",
                                       "--features", "r,g", "--db", str(db)])
    assert result.exit_code == 2, result.output
    where = f"{pool}:{line}:" if line else f"{pool}:"
    assert where in result.output and message in result.output
    assert not db.exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--label", "a"], "at least two labels"),
        (["--label", "a,b", "--model", "nosuch"], "unknown model"),
        (["--label", "a,b", "--model", "sklearn.svm:LinearSVC"], "predict_proba"),
        (["--label", "a,b", "--prefer", "c"], "--prefer"),
        (["--label", "a,b", "--features", "r,zz"], "zz"),
    ],
)
def test_serve_with_bad_settings_exits_2(tmp_path, args, message):
    pool = write_jsonl(tmp_path / "pool.jsonl", rgb_rows(20))
    db = tmp_path / "x.db"
    result = CliRunner().invoke(main, ["serve", "ds", str(pool), "--db", str(db), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not db.exists()


def test_export_writes_prodigy_shaped_jsonl(tmp_path):
    db = tmp_path / "answers.db"
    store = AnnotationStore(db)
    store.add("colours", [{"_input_hash": i, "_task_hash": 100 + i, "_session_id": "colours-a",
                           "answer": "accept", "accept": ["red"], "r": i} for i in range(3)])
    store.close()
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(main, ["export", "colours", "--db", str(db), "--out", str(out)])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["_input_hash"] for r in records] == [0, 1, 2]
    assert all(r["answer"] == "accept" and r["accept"] == ["red"] for r in records)

    to_stdout = CliRunner().invoke(main, ["export", "colours", "--db", str(db)])
    assert to_stdout.output.splitlines() == out.read_text().splitlines()


@pytest.mark.parametrize("dataset, db_exists", [("nosuch", True), ("colours", False)])
def test_export_of_a_missing_dataset_or_database_exits_2(tmp_path, dataset, db_exists):
    db = tmp_path / "answers.db"
    if db_exists:
        AnnotationStore(db).close()
    result = CliRunner().invoke(main, ["export", dataset, "--db", str(db)])
    assert result.exit_code == 2
    assert ("no dataset" if db_exists else "not found") in result.output


def test_serve_reports_saved_answers_that_match_no_pool_row(tmp_path):
    import re
    import time

    import httpx
    from conftest import build_engine, free_port

    from retrain_loop.pool import load_pool

    old = write_jsonl(tmp_path / "old.jsonl", rgb_rows(40))
    db = tmp_path / "a.db"
    store = AnnotationStore(db)
    engine = build_engine(load_pool(old, features=["r", "g", "b"]), store, "ds",
                          ["red", "green", "blue"], model="logreg", background=False)
    tasks = engine.get_questions("a", 7)
    engine.add_answers([dict(t, answer="ignore", accept=[]) for t in tasks], "a")
    engine.close()
    store.close()
    new = write_jsonl(tmp_path / "new.jsonl",
                      [dict(r, id=f"n{i}") for i, r in enumerate(rgb_rows(40, seed=1))])
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "retrain_loop.cli", "serve", "ds", str(new), "--label",
         "red,green,blue", "--features", "r,g,b", "--model", "logreg", "--db", str(db),
         "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(100):
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz")
                break
            except httpx.ConnectError:
                time.sleep(0.1)
        stats = httpx.get(f"http://127.0.0.1:{port}/api/stats").json()
    finally:
        server.terminate()
        _, err = server.communicate(timeout=20)
    assert stats["n_unmatched"] == 7
    assert re.search(r"7 saved answers of ds match no row of .*new.jsonl", err)
