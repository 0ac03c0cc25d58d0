"""The CLI's shared options: engine settings made from ``EngineSettings`` itself, the offline
commands' inputs, and ``--out`` for the commands that write rows.

Each option takes its flag, default and help from the setting's field, so every command that
takes a setting offers it alike, and a new setting is a new field plus its click type here.
A command's setting options arrive as keyword arguments named like the fields:
``EngineSettings(**settings)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from .offline import OfflineError, output_format
from .settings import MODES, UPDATE_MODES, EngineSettings
from .strategies import STRATEGIES

# The click type of each setting a command can take; the rest are set from Python only.
TYPES: dict[str, Any] = {
    "model": str,
    "strategy": click.Choice(list(STRATEGIES)),
    "batch_size": click.IntRange(min=1),
    "explore": click.FloatRange(0, 1),
    "prefer": str,
    "seed": int,
    "update": click.Choice(UPDATE_MODES),
    "mode": click.Choice(MODES),
    "lease_seconds": click.FloatRange(min=0, min_open=True),
    "audit": click.FloatRange(0, 1),
    "audit_window": click.IntRange(min=1),
    "stop_threshold": click.FloatRange(0, 1, min_open=True),
    "stop_window": click.IntRange(min=1),
    "round_sample": click.IntRange(min=0),
    "round_head": click.IntRange(min=0),
    "dask": str,
}
# How big a refit round is in a large pool, wherever rounds run.
ROUND = ("round_sample", "round_head")
# How the accuracy estimate and the stop signal are read, wherever they are shown.
ESTIMATE = ("audit_window", "stop_threshold", "stop_window")


def setting_option(name: str, **overrides: Any) -> Callable:
    """``--name-with-dashes`` for setting ``name``, with its default and help."""
    kwargs = {"default": EngineSettings.default(name), "help": EngineSettings.help(name),
              "type": TYPES[name], "show_default": EngineSettings.default(name) is not None}
    kwargs.update(overrides)
    return click.option("--" + name.replace("_", "-"), name, **kwargs)


def setting_options(*names: str, **overrides: dict[str, Any]) -> Callable:
    """Options for several settings, in the order given; ``overrides`` maps a setting's name to
    click keywords that differ for this command (``batch_size={"type": ...}``)."""

    def decorate(command: Callable) -> Callable:
        for name in reversed(names):
            command = setting_option(name, **overrides.get(name, {}))(command)
        return command

    return decorate


def model_option(command: Callable) -> Callable:
    """``--model``, the same on every command that fits one."""
    return setting_option("model")(command)


estimate_options = setting_options(*ESTIMATE)


def dask_option(command: Callable) -> Callable:
    """``--dask SCHEDULER``: score on a Dask cluster (``local`` starts one on this machine)."""
    return setting_option("dask", metavar="SCHEDULER")(command)


def _check_rows_out(ctx, param, value):
    try:
        output_format(value)
    except OfflineError as e:  # a usage error (exit 2), before anything is read or fitted
        raise click.BadParameter(str(e), ctx, param) from e
    return value


def _check_jsonl_out(ctx, param, value):  # export's --out
    if value is not None and _check_rows_out(ctx, param, value) and output_format(value) != "jsonl":
        raise click.BadParameter(f"{value}: export writes Prodigy's db-out format, which is "
                                 "JSONL: name a .jsonl or .ndjson file, or - for stdout",
                                 ctx, param)
    return value


def rows_out_option(command):
    """``--out`` of a command that writes rows: CSV or JSONL by the suffix, ``-`` for stdout."""
    return click.option(
        "--out", "out_path", required=True, callback=_check_rows_out,
        type=click.Path(dir_okay=False, allow_dash=True),
        help="File to write, in the format its suffix names: .csv (a header of the rows' fields, "
        "each label's probability in a column prob_LABEL, lists and objects as JSON text), "
        ".jsonl or .ndjson (one JSON object a line, the probabilities under probs), .parquet "
        "(columns as in a CSV; needs pyarrow), or - for JSONL on stdout.")(command)


def offline_options(command: Callable) -> Callable:
    """The options score and train share: where the answers are and how to fit on them."""
    options = [
        click.argument("pool_path", metavar="POOL", type=click.Path(dir_okay=False)),
        click.option("--annotations", "annotations", required=True,
                     metavar="FILE|URL",
                     help="A retrain-loop .db, a .jsonl in Prodigy's db-out format, or a "
                     "team's postgresql:// database."),
        click.option("--dataset", required=True, help="Dataset whose answers to use."),
        click.option("--label", "labels",
                     help="Comma-separated labels (default: the labels the answers were asked with)."),
        click.option("--features",
                     help="Comma-separated feature columns (default: all numeric columns)."),
        click.option("--id-column", default="id", show_default=True,
                     help="Column holding each row's id."),
        setting_options("model", "seed"),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def jsonl_out_option(command: Callable) -> Callable:
    """``export``'s ``--out``: Prodigy's db-out format is JSONL, to a file or to stdout."""
    return click.option(
        "--out", "out_path", type=click.Path(dir_okay=False, allow_dash=True),
        callback=_check_jsonl_out,
        help="A .jsonl or .ndjson file to write, or - for stdout (the default).")(command)
