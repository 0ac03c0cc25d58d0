"""The CLI's options for engine settings, made from ``EngineSettings`` itself.

Each option takes its flag, default and help from the setting's field, so every command that
takes a setting offers it alike, and a new setting is a new field plus its click type here.
A command's setting options arrive as keyword arguments named like the fields:
``EngineSettings(**settings)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

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
}
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
