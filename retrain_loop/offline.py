"""Offline use of the engine: score a pool, train and save a model, predict with a saved one.

Scoring and training build the same ``Engine`` the server runs, with refits in the foreground,
so an offline ranking is exactly what the server would serve next and nothing here repeats how
a fit or a ranking works.
"""

from __future__ import annotations

import csv
import json
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from contextlib import closing
from pathlib import Path
from typing import IO, Any

import numpy as np
from sklearn.base import clone

from .answers import asked_labels
from .engine import Engine
from .models import DEFAULT_MODEL, label_probabilities
from .persist import ModelFileError, SavedModel, atomic_output, check_features, save_model
from .pgstore import is_url
from .pool import PARQUET_SUFFIXES, Pool, PoolError, load_pool
from .refit import PREDICT_SLICE
from .scored import ScoredRows
from .settings import EngineSettings
from .store import AnnotationStore, describe_target, open_store

_JSONL_SUFFIXES = (".jsonl", ".ndjson")
STDOUT = "-"  # as the file of rows to write: JSONL on standard output
PROB_PREFIX = "prob_"  # a CSV's column of a label's probability: prob_red
_MAX_FOLDS = 5


class OfflineError(ValueError):
    """Annotations that cannot be read or used, or an output that cannot be written."""


def open_annotations(source: str | Path, dataset: str) -> AnnotationStore:
    """A store holding ``dataset``'s answers, from a retrain-loop SQLite file or a db-out JSONL.

    A JSONL file is imported into an in-memory store under ``dataset``; a ``postgresql://`` URL
    is a team's database. The caller closes it.
    """
    if is_url(source):
        store = open_store(str(source))
        present = store.datasets()
        if dataset not in present:
            store.close()
            raise OfflineError(f"no dataset {dataset!r} in {describe_target(source)} "
                               f"(datasets: {', '.join(present) or 'none'})")
        return store
    source = Path(source)
    if not source.is_file():
        raise OfflineError(f"annotations not found: {source}")
    if source.suffix.lower() in _JSONL_SUFFIXES:
        store = AnnotationStore(None)
        try:
            import_answers(store, dataset, source)
        except BaseException:
            store.close()
            raise
        if not store.count(dataset):
            store.close()
            raise OfflineError(f"{source}: no answers in the file")
        return store
    check_database(source)
    store = AnnotationStore(source)
    present = store.datasets()
    if dataset not in present:
        store.close()
        raise OfflineError(
            f"no dataset {dataset!r} in {source} (datasets: {', '.join(present) or 'none'})"
        )
    return store


def check_database(path: Path) -> None:
    """Refuse a file that is not a retrain-loop database before the store would add its table."""
    uri = f"{path.resolve().as_uri()}?mode=ro"
    try:
        with closing(sqlite3.connect(uri, uri=True)) as conn:
            found = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'examples'"
            ).fetchone()
    except sqlite3.Error as e:
        found, reason = None, str(e)
    else:
        reason = "it has no examples table"
    if found is None:
        raise OfflineError(
            f"{path} is not a retrain-loop database ({reason}); give a .db made by retrain-loop "
            "or a .jsonl file in Prodigy's db-out format"
        )


def import_answers(store: AnnotationStore, dataset: str, path: str | Path, *,
                   pool: Pool | None = None, labels: list[str] | None = None) -> int:
    """Import a db-out JSONL file; returns how many answers were new (``importing.py``)."""
    return import_report(store, dataset, path, pool=pool, labels=labels)[0]


def import_report(store: AnnotationStore, dataset: str, path: str | Path, *,
                  pool: Pool | None = None, labels: list[str] | None = None
                  ) -> tuple[int, Counter]:
    """``import_answers``, and what was done to the records (matched, computed, binary)."""
    from .importing import import_file

    try:
        return import_file(store, dataset, path, pool=pool, labels=labels)
    except UnicodeDecodeError:
        raise OfflineError(f"{path}: file is not UTF-8 text") from None
    except OSError as e:
        raise OfflineError(f"cannot read {path}: {e.strerror or e}") from e


def labels_from(store: AnnotationStore, dataset: str, labels: list[str] | None = None
                ) -> list[str]:
    """The given labels, else the options the answers were asked with, else the accepted ones."""
    if not labels:
        labels = asked_labels(store.get(dataset))
    if len(labels) < 2:
        found = ", ".join(labels) or "none"
        raise OfflineError(
            f"dataset {dataset!r} has fewer than two labels (found: {found}); answer rows with "
            "at least two labels, or name them with --label"
        )
    return list(labels)


def fitted_engine(pool: Pool, store: AnnotationStore, dataset: str, labels: list[str],
                  **options: Any) -> Engine:
    """An engine that has refitted on every answer, in the foreground; the caller closes it."""
    # A one-off fit is not a round of the dataset's history: that stays the server's.
    engine = Engine(pool, store, dataset, labels, EngineSettings(**options), background=False,
                    state=AnnotationStore(None))
    try:
        engine.start()
        if engine.model_ is None:
            raise OfflineError(_no_model_reason(engine))
    except BaseException:
        engine.close()  # and the Dask cluster, if its refitter started one
        raise
    return engine


def score(pool: Pool, store: AnnotationStore, dataset: str, labels: list[str], *,
          top: int | None = None, dask: Any = None, **options: Any) -> list[dict[str, Any]]:
    """The unanswered rows, most informative first, each with ``score``, ``label``, ``probs``.

    ``options`` are settings (``EngineSettings``): model, strategy, prefer, seed, ... With
    ``dask`` (``local``, a scheduler's address or a ``distributed.Client``) the model is fitted
    here and the open rows are scored on that cluster, then ranked here as they would be after
    scoring them here.
    """
    engine = fitted_engine(pool, store, dataset, labels, dask=dask, **options)
    try:
        return ranked(engine, top)
    finally:
        engine.close()


def ranked(engine: Engine, top: int | None = None) -> ScoredRows:
    """The open rows in the current model's order, without leasing them (offline scoring).

    Each row carries ``score`` (the strategy's utility), ``label`` (the model's guess) and
    ``probs`` (every label's probability); rows are built as they are read.
    """
    ranking = engine.queue.ranking
    if not ranking.scored:
        raise OfflineError(
            "no model yet: scoring needs accepted answers for at least two labels"
            + (f" (last error: {engine.last_error})" if engine.last_error else "")
        )
    order = ranking.positions()
    rows, utility, proba = ranking.arrays()
    order = order[~engine.queue.answered_mask()[rows[order]]]
    if top is not None:
        order = order[:top]
    return ScoredRows(engine.pool, rows[order], engine.labels, proba[order], utility[order])


def train(pool: Pool, store: AnnotationStore, dataset: str, labels: list[str],
          out: str | Path, *, model: str = DEFAULT_MODEL, seed: int = 0) -> dict[str, Any]:
    """Fit on every answer, estimate accuracy by cross-validation, save; returns the metadata."""
    engine = fitted_engine(pool, store, dataset, labels, model=model, seed=seed)
    try:
        X, y = engine.training_data(store.labelled(dataset))
        accuracy, folds = cross_validated_accuracy(engine.prototype, X, y, seed=seed)
        per_label = Counter(labels[i] for i in y.tolist())
        return save_model(
            out, engine.model_, labels=labels, features=pool.features, n_annotations=len(y),
            cv_accuracy=accuracy, dataset=dataset, model_spec=engine.model_spec,
            extra={"cv_folds": folds, "per_label": {k: per_label[k] for k in labels}},
        )
    finally:
        engine.close()


def cross_validated_accuracy(prototype: Any, X: np.ndarray, y: np.ndarray, seed: int = 0
                             ) -> tuple[float | None, int]:
    """Mean accuracy over stratified folds, and the number of folds; None when too few answers.

    Each fold must hold every label at least once, so the folds are capped by the rarest label.
    """
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from threadpoolctl import threadpool_limits

    counts = np.bincount(y)
    counts = counts[counts > 0]
    folds = int(min(_MAX_FOLDS, counts.min())) if len(counts) >= 2 else 0
    if folds < 2:
        return None, 0
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    # One thread, as the engine fits: spinning OpenMP threads make small fits far slower.
    with threadpool_limits(limits=1):
        scores = cross_val_score(clone(prototype), X, y, cv=cv, scoring="accuracy",
                                 error_score=np.nan)
    if not np.isfinite(scores).all():  # a fold failed to fit; say nothing rather than guess
        return None, folds
    return float(scores.mean()), folds


def pool_for_model(saved: SavedModel, path: str | Path, features: list[str] | None = None,
                   id_column: str | None = "id") -> Pool:
    """Load a pool with the model's features, or the given ones, and check that they match."""
    if features is not None:
        pool = load_pool(path, features=features, id_column=id_column)
    else:
        try:
            pool = load_pool(path, features=saved.features, id_column=id_column)
        except PoolError as e:
            if not e.message.startswith("missing feature column"):
                raise
            # Say which columns the pool does have, which "missing column r" alone does not.
            try:
                pool = load_pool(path, features=None, id_column=id_column)
            except PoolError:
                raise e from None
    check_features(saved, pool)
    return pool


def predict(saved: SavedModel, pool: Pool, dask: Any = None) -> ScoredRows:
    """Every row of the pool with the model's ``label`` and each label's probability; scored on
    the Dask cluster ``dask`` if given (``local``, an address or a ``distributed.Client``)."""
    check_features(saved, pool)
    labels = saved.labels
    if dask is not None:
        from .dask_scoring import DaskError, DaskPool

        with DaskPool.open(dask, pool) as cluster:
            try:
                proba = cluster.probabilities(saved.estimator, len(labels))
            except (PoolError, DaskError):
                raise
            except ValueError as e:  # from label_probabilities on a worker, as below
                raise ModelFileError(f"the saved model cannot score this pool: {e}") from e
        return ScoredRows(pool, np.arange(len(pool)), labels, proba)
    proba = np.empty((len(pool), len(labels)), dtype=np.float64)
    try:
        for a in range(0, len(pool), PREDICT_SLICE):  # slices: no copy of X in any intermediate
            proba[a:a + PREDICT_SLICE] = label_probabilities(
                saved.estimator, pool.X[a:a + PREDICT_SLICE], len(labels))
    except ValueError as e:
        raise ModelFileError(f"the saved model cannot score this pool: {e}") from e
    return ScoredRows(pool, np.arange(len(pool)), labels, proba)


def output_format(path: str | Path) -> str:
    """``"csv"``, ``"jsonl"`` or ``"parquet"``: the format of a file of rows, by its suffix;
    ``-`` is JSONL."""
    if str(path) == STDOUT:
        return "jsonl"
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in _JSONL_SUFFIXES:
        return "jsonl"
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    what = f"the suffix {suffix!r}" if suffix else "a name without a suffix"
    raise OfflineError(f"{path}: cannot tell the format from {what}; name a .csv, .jsonl, "
                       f".ndjson or .parquet file, or {STDOUT} for JSONL on stdout")


def write_rows(path: str | Path, rows: Sequence[dict[str, Any]], *,
               on_row: Callable[[], None] | None = None) -> int:
    """Write rows as CSV, JSONL or Parquet, by ``path``'s suffix, all at once: a failure part-way leaves
    the old file, or none. ``on_row`` is called after each row (a progress bar)."""
    if output_format(path) == "jsonl":
        return write_jsonl(path, rows, on_row=on_row)
    if output_format(path) == "parquet":  # each label's probability in a column, as in a CSV
        from .parquet import write_parquet
        with atomic_output(path, "wb", error=OfflineError) as out:
            return write_parquet(out, (_spread(row) for row in rows), on_row=on_row)
    # Before the file, so a clash leaves no file; rows that know their columns are not read twice.
    columns = _spread_columns(rows) if isinstance(rows, ScoredRows) else csv_columns(rows)
    lines = rows.csv_lines(columns) if isinstance(rows, ScoredRows) else None
    with atomic_output(path, "w", error=OfflineError, newline="") as out:
        if lines is None:
            return dump_csv(out, rows, columns, on_row=on_row)
        csv.writer(out).writerow(columns)
        n = 0
        for line in lines:  # a CSV pool's own text of each row: nothing parsed or reformatted
            out.write(line)
            n += 1
            if on_row is not None:
                on_row()
        return n


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]], *,
                on_row: Callable[[], None] | None = None) -> int:
    """Write rows as JSONL all at once: a failure part-way leaves no file behind."""
    with atomic_output(path, "w", error=OfflineError, newline="") as out:
        return dump_jsonl(out, rows, on_row=on_row)


def dump_jsonl(out: IO[str], rows: Iterable[dict[str, Any]], *,
               on_row: Callable[[], None] | None = None) -> int:
    n = 0
    for row in rows:
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
        n += 1
        if on_row is not None:
            on_row()
    return n


def csv_columns(rows: Iterable[dict[str, Any]]) -> list[str]:
    """Every field of the rows in the order first seen, ``probs`` spread into ``prob_LABEL``."""
    columns: dict[str, None] = {}  # an ordered set
    for row in rows:
        columns.update(dict.fromkeys(_spread(row)))
    return list(columns)


def _spread_columns(rows: ScoredRows) -> list[str]:
    """The rows' columns with ``probs`` spread into a column per label, as ``csv_columns``."""
    return list(_spread({c: None for c in rows.columns} | {"probs": dict.fromkeys(rows.labels)}))


def dump_csv(out: IO[str], rows: Iterable[dict[str, Any]], columns: list[str], *,
             on_row: Callable[[], None] | None = None) -> int:
    """A header of ``columns``, then one line per row; lists and objects as JSON text."""
    writer = csv.writer(out)
    writer.writerow(columns)
    n = 0
    for row in rows:
        cells = _spread(row)
        writer.writerow([_csv_cell(cells.get(column)) for column in columns])
        n += 1
        if on_row is not None:
            on_row()
    return n


def _spread(row: dict[str, Any]) -> dict[str, Any]:
    """The row with each label's probability in a field of its own, where ``probs`` was."""
    probs = row.get("probs")
    if not isinstance(probs, dict):
        return row
    spread: dict[str, Any] = {}
    for key, value in row.items():
        if key != "probs":
            spread[key] = value
            continue
        for label, p in probs.items():
            name = f"{PROB_PREFIX}{label}"
            if name in row:
                raise OfflineError(f"the rows have a field {name!r}, which is also the CSV "
                                   f"column of {label!r}'s probability; write .jsonl instead")
            spread[name] = p
    return spread


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (bool, dict, list)):  # as the JSON they came from: true, [1, 2]
        return json.dumps(value, ensure_ascii=False)
    return value


def _no_model_reason(engine: Engine) -> str:
    labelled = engine.store.labelled(engine.dataset)
    _, y = engine.training_data(labelled)
    per_label = Counter(engine.labels[i] for i in y.tolist())
    counts = ", ".join(f"{label} {per_label[label]}" for label in engine.labels)
    message = (f"no model: it needs accepted answers for at least two labels "
               f"(answers per label: {counts}")
    if len(y) < len(labelled):
        message += (f"; {len(labelled) - len(y)} accepted answers are for rows not in "
                    f"{engine.pool.path.name} or for other labels")
    message += ")"
    if engine.last_error:
        message += f"; the last fit failed: {engine.last_error}"
    return message
