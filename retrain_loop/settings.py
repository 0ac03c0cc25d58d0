"""How an engine runs: one frozen object that every host builds and the engine checks once.

The CLI, the Prodigy recipe, a simulation and the Python API all make an ``EngineSettings``;
each field's help text lives here, beside its default, and the CLI's options and the recipe's
arguments are generated from it, so a new setting is one new field. What a project *is* (its
pool, its store, its dataset and labels) is not a setting: those are the engine's arguments.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .audit import DEFAULT_SHARE, AuditError
from .estimate import DEFAULT_WINDOW
from .models import DEFAULT_MODEL, MODELS
from .stopping import StopRule
from .strategies import STRATEGIES, get_strategy

UPDATE_MODES = ("refit", "incremental")
# round_sample where a background sweep scores the rest, and round_head: a bounded round scores
# at most 32,768 rows, one slice of predict_proba (refit.PREDICT_SLICE).
ROUND_SAMPLE = 28_672
ROUND_HEAD = 4_096
MODES = ("choice", "binary")


class EngineError(ValueError):
    """Settings the engine cannot run with."""


def _setting(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class EngineSettings:
    """Every choice of how the loop learns and serves, with its default.

    Built once per engine; ``replace(**changes)`` gives a copy with some fields changed.
    """

    # A name, or from Python an unfitted estimator, which every refit clones.
    model: Any = _setting(  # noqa: RUF009 - a field(), as every default here
        DEFAULT_MODEL, f"{', '.join(MODELS)}, module:callable or path/to/file.py:callable.")
    strategy: str = _setting("margin", f"How open rows are ranked: {', '.join(STRATEGIES)}.")
    batch_size: int = _setting(10, "Answers per batch, and so per refit.")
    explore: float = _setting(
        0.0, "Share of each batch drawn uniformly at random from the whole ranked order.")
    discovery: float = _setting(
        0.2, "Share of each batch given to rows far from every labelled row while some label "
        "has no answers (for a few rounds at most).")
    prefer: str | None = _setting(None, "Favour rows likely to be this label but still uncertain.")
    seed: int = _setting(0, "Random seed.")
    update: str = _setting(
        "refit", "refit: fit from scratch on every batch; incremental: partial_fit (nb, sgd).")
    mode: str = _setting(
        "choice", "choice: pick each row's label; binary: accept or reject the model's guess, one "
        "suggested label per row (rows without a guess yet, and random checks, are asked as "
        "choice).")
    lease_seconds: float = _setting(600.0, "How long a served row stays reserved for its annotator.")
    max_out: float | None = _setting(
        None, "Rows one session may hold at once (default: three batches).")
    distinct: float = _setting(
        0.01, "How close two rows are, in standard deviations per feature, to count as near "
        "copies that one batch does not ask twice (0: off).")
    cold_start_size: int | None = _setting(
        None, "Rows chosen to cover the feature space before a model exists "
        "(default: five batches, at least 50).")
    threads: int = _setting(1, "Threads a fit and a prediction may use (BLAS, OpenMP, and the "
                            "n_jobs of the named models).")
    round_sample: int | None = _setting(
        None, "In a pool with more open rows, a refit scores a fresh random sample of this many "
        "and the best rows found so far, and the rest are rescored in the background between "
        f"rounds (0: every open row). Default: {ROUND_SAMPLE} where a background thread "
        "rescores (serve), else every open row.")
    round_head: int = _setting(
        ROUND_HEAD, "Best rows found by the serving model, in its round and in the background, "
        "that the next refit scores again beside its sample.")
    audit: float = _setting(
        DEFAULT_SHARE, "Share of tasks drawn uniformly at random to measure accuracy honestly "
        "(0: none).")
    audit_window: int = _setting(
        DEFAULT_WINDOW, "Most audit answers the accuracy estimate uses (the latest quarter, at "
        "least 20).")
    stop_threshold: float = _setting(
        StopRule.threshold, "Mean kappa between rounds' stop-set predictions that suggests "
        "stopping.")
    stop_window: int = _setting(StopRule.window, "Rounds the mean kappa is taken over.")
    dask: str | None = _setting(
        None, "Score the pool on a Dask cluster: local starts a 2-worker LocalCluster on this "
        "machine, or give a scheduler's address (tcp://host:8786). The workers read CSV and "
        "Parquet pools themselves (at the same path); other pools are sent from here. Scoring "
        "every row (score, predict) and the background rescoring (serve) run there.")

    def __post_init__(self) -> None:
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise EngineError("batch size must be at least 1")
        for name in ("explore", "discovery"):
            share = getattr(self, name)
            if not 0.0 <= share <= 1.0:
                raise EngineError(f"{name} must be between 0 and 1, got {share}")
        if not 0.0 <= self.audit <= 1.0:
            raise AuditError(f"the audit share must be between 0 and 1, got {self.audit}")
        if self.distinct < 0:
            raise EngineError(f"distinct must be at least 0, got {self.distinct}")
        if self.update not in UPDATE_MODES:
            raise EngineError(
                f"unknown update mode {self.update!r}: use one of {', '.join(UPDATE_MODES)}")
        if self.mode not in MODES:
            raise EngineError(f"unknown mode {self.mode!r}: use one of {', '.join(MODES)}")
        if not self.lease_seconds > 0:
            raise EngineError(f"lease seconds must be above 0, got {self.lease_seconds}")
        if self.max_out is not None and not self.max_out >= 1:
            raise EngineError(f"max_out must be at least 1, got {self.max_out}")
        if self.threads < 1:
            raise EngineError(f"threads must be at least 1, got {self.threads}")
        if self.round_sample is not None and self.round_sample < 0:
            raise EngineError(f"round_sample must be at least 0, got {self.round_sample}")
        if self.round_head < 0:
            raise EngineError(f"round_head must be at least 0, got {self.round_head}")
        if self.audit_window < 1:
            raise EngineError(f"the audit window must be at least 1, got {self.audit_window}")
        get_strategy(self.strategy)  # StrategyError names the strategies there are
        self.stop_rule  # noqa: B018 - StopRuleError for a threshold that cannot work

    @property
    def stop_rule(self) -> StopRule:
        return StopRule(self.stop_threshold, self.stop_window)

    @property
    def session_cap(self) -> float:
        """Rows one session may hold: a page holds a batch and the next, so one session (or one
        page that is not ours) cannot take the whole pool."""
        return 3 * self.batch_size if self.max_out is None else self.max_out

    @property
    def cold_start_rows(self) -> int:
        return self.cold_start_size or max(5 * self.batch_size, 50)

    def round_bound(self, background: bool) -> int:
        """Open rows a round's random sample takes (0: every open row), for an engine with a
        background sweep or without."""
        if self.round_sample is not None:
            return self.round_sample
        return ROUND_SAMPLE if background else 0

    @property
    def ranked_per_batch(self) -> int:
        """Rows per batch that come from the ranked order: audit draws take the other slots, not
        the explore or discovery picks that the order places within each batch."""
        return max(1, self.batch_size - round(self.audit * self.batch_size))

    @property
    def model_name(self) -> str:
        return self.model if isinstance(self.model, str) else type(self.model).__name__

    def replace(self, **changes: Any) -> EngineSettings:
        return dataclasses.replace(self, **changes)

    def check_labels(self, labels: Sequence[str]) -> list[str]:
        """The labels as a list of plain strings, if this project can run with them."""
        if isinstance(labels, str):
            raise EngineError(f"labels must be a list of names, not the string {labels!r}")
        labels = [str(label) for label in labels]  # numpy's str_, or digits given as ints
        if len(labels) < 2:
            raise EngineError("give at least two labels")
        if len(set(labels)) != len(labels):
            raise EngineError(f"labels repeat: {', '.join(labels)}")
        if self.prefer is not None and self.prefer not in labels:
            raise EngineError(
                f"--prefer {self.prefer!r} is not one of the labels: {', '.join(labels)}")
        return labels

    @classmethod
    def help(cls, name: str) -> str:
        """The help text of setting ``name``, for the CLI and the recipe."""
        return FIELDS[name].metadata["help"]

    @classmethod
    def default(cls, name: str) -> Any:
        return FIELDS[name].default


FIELDS = {f.name: f for f in dataclasses.fields(EngineSettings)}
UNLIMITED = math.inf  # for lease_seconds and max_out where a host keeps rows until answered
