"""The ``retrain-loop`` command: a thin shell over the library.

Each command calls into the library and turns its typed errors into a one-line message and exit
code 2. Nothing here knows how a refit or a ranking works.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path

import click

from . import __version__
from .loop import AnswerError, Engine, EngineError
from .models import MODELS, ModelError
from .pool import PoolError, load_pool
from .store import AnnotationStore, StoreError
from .strategies import STRATEGIES, StrategyError

DEFAULT_DB = "retrain_loop.db"
_USER_ERRORS = (PoolError, ModelError, EngineError, StrategyError, StoreError, AnswerError)


class CliError(click.ClickException):
    exit_code = 2


@contextmanager
def user_errors():
    try:
        yield
    except _USER_ERRORS as e:
        raise CliError(str(e)) from e


@contextmanager
def _new_file_removed_on_error(path: str | Path):
    """Bad settings must leave no empty database behind."""
    path = Path(path)
    existed = path.exists()
    try:
        yield
    except BaseException:
        if not existed:
            for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                leftover.unlink(missing_ok=True)
        raise


def _split(value: str | None) -> list[str] | None:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    return items or None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="retrain-loop")
def main() -> None:
    """Active learning for small tabular data: refit on every batch, ask about the least sure rows."""


@main.command()
@click.argument("dataset")
@click.argument("pool_path", metavar="POOL", type=click.Path(dir_okay=False))
@click.option("--label", "labels", required=True, help="Comma-separated labels, e.g. red,green,blue.")
@click.option("--features", help="Comma-separated feature columns (default: all numeric columns).")
@click.option("--id-column", default="id", show_default=True, help="Column holding each row's id.")
@click.option("--model", default="lightgbm", show_default=True,
              help=f"{', '.join(MODELS)}, module:callable or path/to/file.py:callable.")
@click.option("--strategy", type=click.Choice(list(STRATEGIES)), default="margin", show_default=True)
@click.option("--db", "db_path", default=DEFAULT_DB, show_default=True, help="SQLite file for answers.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--view", type=click.Choice(["colour", "record", "image"]), default="record",
              show_default=True)
@click.option("--batch-size", default=10, show_default=True, type=click.IntRange(1, 200))
@click.option("--explore", default=0.0, show_default=True, type=click.FloatRange(0, 1),
              help="Share of each batch picked at random.")
@click.option("--prefer", help="Favour rows likely to be this label but still uncertain.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--lease-seconds", default=600.0, show_default=True, type=float,
              help="How long a served row stays reserved for its annotator.")
def serve(dataset, pool_path, labels, features, id_column, model, strategy, db_path, host, port,
          view, batch_size, explore, prefer, seed, lease_seconds):
    """Serve the annotation page and API for DATASET over the rows in POOL.

    Example: retrain-loop serve colours colours.jsonl --label red,green,blue --features r,g,b --view colour
    """
    import uvicorn

    from .server import create_app

    with user_errors():
        pool = load_pool(pool_path, features=_split(features), id_column=id_column)
        with _new_file_removed_on_error(db_path):
            store = AnnotationStore(db_path)
            try:
                engine = Engine(pool, store, dataset, _split(labels) or [], model=model,
                                strategy=strategy, batch_size=batch_size, explore=explore,
                                prefer=prefer, seed=seed, lease_seconds=lease_seconds)
            except BaseException:
                store.close()
                raise
        app = create_app(engine, view=view)
    stats = engine.stats()
    click.echo(
        f"retrain-loop: {dataset}: {len(pool)} rows, {stats['n_annotations']} answers in {db_path}, "
        f"model round {engine.round}" + (f" (error: {engine.last_error})" if engine.last_error else "")
    )
    click.echo(f"Open http://{host}:{port}/ to annotate (Ctrl+C stops).")
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        engine.close()
        store.close()


@main.command()
@click.argument("dataset")
@click.option("--db", "db_path", default=DEFAULT_DB, show_default=True, type=click.Path(dir_okay=False))
@click.option("--out", "out_path", type=click.Path(dir_okay=False), help="File to write (default: stdout).")
def export(dataset, db_path, out_path):
    """Write every answer of DATASET as JSONL, in Prodigy's db-out format.

    Example: retrain-loop export colours --db colours.db --out colours.jsonl
    """
    if not Path(db_path).exists():
        raise CliError(f"database not found: {db_path}")
    with user_errors():
        store = AnnotationStore(db_path)
        if dataset not in store.datasets():
            known = ", ".join(store.datasets()) or "none"
            raise CliError(f"no dataset {dataset!r} in {db_path} (datasets: {known})")
        if out_path:
            with open(out_path, "w", encoding="utf-8") as out:
                n = store.export_jsonl(dataset, out)
            click.echo(f"Wrote {n} answers to {out_path}", err=True)
        else:
            store.export_jsonl(dataset, sys.stdout)


if __name__ == "__main__":
    main()
