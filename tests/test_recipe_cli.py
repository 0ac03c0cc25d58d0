"""The recipe's command line, built with the real libraries Prodigy uses: radicli (1.12+), plac.

The README's command lines are parsed as written, from the entry point and with ``-F``, with the
newest radicli and plac in this process and with older versions in a subprocess each.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest
from conftest import rgb_label, rgb_rows, write_jsonl
from prodigy_standin import CommandLineError, Controller, Prodigy

ROOT = Path(__file__).resolve().parent.parent
MODULE = "retrain_loop.recipes.retrain_loop"
COLOURS = ["red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink", "brown", "grey",
           "black", "white"]
EXPECTED = {"dataset": "colours", "source": "demo/colours.jsonl", "label": COLOURS,
            "features": ["r", "g", "b"], "view": "colour", "batch_size": 10,
            "id_column": "id", "model": "auto", "strategy": "margin", "prefer": None,
            "explore": 0.0, "update": "refit", "seed": 0, "model_out": None, "audit": 0.1,
            "history": None, "mode": "choice", "round_sample": None, "round_head": 4096}
EVERY_OPTION = ("ds pool.csv --label a,b --features x,y --id-column key --model logreg "
                "--strategy entropy --view record --batch-size 5 --prefer a --explore 0.25 "
                "--update incremental --seed 7 --model-out out.skops --audit 0.2 "
                "--history h.db --mode binary --round-sample 5000 --round-head 300")
EVERY_SHORT = ("ds pool.csv -l a,b -f x,y -i key -m logreg -s entropy -v record -b 5 -p a "
               "-e 0.25 -u incremental -S 7 -o out.skops -a 0.2 -H h.db -M binary -R 5000 -K 300")
EVERY_PARSED = {"dataset": "ds", "source": "pool.csv", "label": ["a", "b"],
                "features": ["x", "y"], "id_column": "key", "model": "logreg",
                "strategy": "entropy", "view": "record", "batch_size": 5, "prefer": "a",
                "explore": 0.25, "update": "incremental", "seed": 7, "model_out": "out.skops",
                "audit": 0.2, "history": "h.db", "mode": "binary", "round_sample": 5000,
                "round_head": 300}


def readme_command_lines() -> list[list[str]]:
    """Every ``prodigy retrain.loop`` command in the README's Prodigy section, as argv."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Inside Prodigy", 1)[1].split("\n## ", 1)[0]
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL):
        for command in block.replace("\\\n", " ").splitlines():
            command = command.split("#", 1)[0].strip()
            if command.startswith("prodigy retrain.loop"):
                lines.append(shlex.split(command)[1:])
    return lines


def compat_versions() -> list[str]:
    specs = (Path(__file__).parent / "prodigy_cli_versions.txt").read_text().splitlines()
    return [s.strip() for s in specs if s.strip() and not s.startswith("#")]


@pytest.fixture(params=["radicli", "plac"])
def prodigy(request):
    """Prodigy 1.12+ (radicli) and Prodigy 1.11 and earlier (plac)."""
    stand_in = Prodigy(with_arg=request.param == "radicli").install()
    sys.modules.pop(MODULE, None)
    yield stand_in
    stand_in.uninstall()
    sys.modules.pop(MODULE, None)


@pytest.fixture
def in_checkout(tmp_path, monkeypatch):
    """A folder where the README's relative paths resolve: demo/colours.jsonl and recipes/."""
    (tmp_path / "demo").mkdir()
    write_jsonl(tmp_path / "demo" / "colours.jsonl", rgb_rows(300, seed=2))
    (tmp_path / "recipes").symlink_to(ROOT / "recipes")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_readme_shows_the_entry_point_and_the_dash_f_command():
    lines = readme_command_lines()
    assert len(lines) == 2
    assert "-F" not in lines[0] and lines[1][-2:] == ["-F", "recipes/retrain_loop.py"]


def test_readme_command_lines_parse(prodigy):
    for argv in readme_command_lines():
        name, kwargs = prodigy.parse(argv)
        assert name == "retrain.loop"
        assert kwargs == EXPECTED


@pytest.mark.parametrize("line", [EVERY_OPTION, EVERY_SHORT], ids=["long", "short"])
def test_every_option_by_long_and_short_name(prodigy, line):
    assert prodigy.parse(["retrain.loop", *line.split()]) == ("retrain.loop", EVERY_PARSED)


@pytest.mark.parametrize("bad, message", [
    ("ds pool.csv --batch-size ten", "batch"),
    ("ds pool.csv --explore lots", "explore"),
    ("ds pool.csv --no-such-option 1", "no-such-option"),
    ("ds", "source"),
])
def test_a_bad_command_line_is_refused_with_the_option_named(prodigy, bad, message):
    with pytest.raises(CommandLineError, match=message.replace("-", ".")):
        prodigy.parse(["retrain.loop", *bad.split()])


def test_help_shows_the_recipe_and_every_option(prodigy):
    import inspect

    from retrain_loop.settings import FIELDS, EngineSettings

    prodigy.parse(["retrain.loop", "ds", "pool.csv"])  # loads the recipe from its entry point
    text = " ".join(prodigy.help("retrain.loop").split())
    assert "with active learning: refit a model on every answer" in text
    options = re.findall(r"--[a-z-]+", EVERY_OPTION)
    assert len(options) == len(EVERY_PARSED) - 2  # every option: all but dataset and source
    for option in options:
        assert f"{option} " in text, option
    # These settings say in the recipe what the engine's own help says (settings.py).
    parameters = inspect.signature(prodigy.recipes["retrain.loop"]).parameters
    for name in ("model", "strategy", "batch_size", "prefer", "explore", "update", "seed",
                 "audit", "round_sample", "round_head"):
        assert name in parameters and name in FIELDS, name
        assert " ".join(EngineSettings.help(name).split()) in text, name


def test_the_readme_command_runs_the_recipe_from_the_entry_point_and_from_dash_f(prodigy,
                                                                                 in_checkout):
    for argv in readme_command_lines():
        components = prodigy.run(argv)
        assert components["dataset"] == "colours" and components["config"]["batch_size"] == 10
        controller = Controller(components, prodigy.db)
        served = controller.session(lambda t: rgb_label(t["fields"]), n_batches=3)
        assert len({t["_input_hash"] for t in served}) == len(served) == 40
        assert [u["n_train"] for u in controller.updates] == [10, 20, 30]
        prodigy.db.datasets.clear()


@pytest.mark.parametrize("spec", compat_versions())
def test_readme_command_lines_parse_with_older_versions(spec):
    library, version = spec.split("==")
    folder = ROOT / ".venv" / "compat" / f"{library}-{version}"
    assert folder.is_dir(), f"{folder} is missing: `make test` installs it"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(folder), str(Path(__file__).parent)]))
    lines = [*readme_command_lines(), ["retrain.loop", *EVERY_OPTION.split()],
             ["retrain.loop", *EVERY_SHORT.split()]]
    run = subprocess.run([sys.executable, str(Path(__file__).parent / "prodigy_standin.py"),
                          *(["--plac"] if library == "plac" else [])],
                         input=json.dumps(lines), check=False, cwd=ROOT, env=env,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert (out["library"], out["version"]) == (library, version)
    assert Path(out["file"]).is_relative_to(folder)
    assert out["parsed"] == [EXPECTED, EXPECTED, EVERY_PARSED, EVERY_PARSED]


def test_the_stand_in_refuses_what_radicli_refuses():
    """It registers through the real radicli, so a signature Prodigy cannot parse fails here."""
    from radicli import Arg
    from radicli.util import UnsupportedTypeError

    def recipe(dataset, features=None):
        return {}

    prodigy = Prodigy(with_arg=True)
    args = {"dataset": Arg(help="d"), "features": Arg("--features", "-f", help="f")}
    # What ``from __future__ import annotations`` leaves, and a PEP 604 union.
    for features in ("Optional[str]", str | None):
        recipe.__annotations__ = {"dataset": str, "features": features}
        with pytest.raises(UnsupportedTypeError):
            prodigy.recipe("bad", **args)(recipe)
    recipe.__annotations__ = {"dataset": str, "features": Optional[str]}  # noqa: UP045
    prodigy.recipe("good", **args)(recipe)
    assert prodigy.parse(["good", "ds", "-f", "x"])[1] == {"dataset": "ds", "features": "x"}


def test_the_stand_in_refuses_what_plac_refuses():
    """Under plac an option without a short flag has only a single-dash name."""

    def recipe(dataset: str, view: str = "record"):
        return {}

    prodigy = Prodigy(with_arg=False)
    prodigy.recipe("no-short-flag", dataset=("d", "positional", None, str),
                   view=("v", "option", None, str))(recipe)
    with pytest.raises(CommandLineError, match="unrecognized arguments: --view"):
        prodigy.parse(["no-short-flag", "ds", "--view", "colour"])
    assert prodigy.parse(["no-short-flag", "ds", "-view", "colour"])[1]["view"] == "colour"
