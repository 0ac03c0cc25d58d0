"""The ``retrain-loop`` command: a thin shell over the library.

Each command calls into the library and turns its typed errors into a one-line message and exit
code 2. Nothing here knows how a refit or a ranking works.
"""

from __future__ import annotations

import sys
from contextlib import closing, contextmanager
from pathlib import Path

import click

from . import __version__
from .answers import AnswerError
from .audit import AuditError
from .dask_scoring import DaskError
from .engine import Engine
from .keys import KeysError
from .models import ModelError
from .offline import STDOUT, OfflineError
from .options import (
    ESTIMATE,
    ROUND,
    dask_option,
    estimate_options,
    jsonl_out_option,
    offline_options,
    rows_out_option,
    setting_options,
)
from .persist import ModelFileError
from .pgstore import is_url
from .pool import PoolError, load_pool
from .server.listen import ListenError, listen, url_host
from .settings import EngineError, EngineSettings
from .simulate import SimulationError
from .stopping import StopRule, StopRuleError
from .store import AnnotationStore, StoreError, describe_target, open_store
from .strategies import STRATEGIES, StrategyError
from .team import team_for

DEFAULT_DB = "retrain_loop.db"


def db_option(fn):
    """``--db``: a SQLite file, or a team's PostgreSQL database by URL."""
    return click.option(
        "--db", "db_path", default=DEFAULT_DB, show_default=True, metavar="FILE|URL",
        help="SQLite file for answers, or postgresql://user@host/db for a team's database "
        "(several servers on one dataset; needs retrain-loop[postgres]).")(fn)
_USER_ERRORS = (PoolError, ModelError, EngineError, StrategyError, StoreError, AnswerError,
                OfflineError, ModelFileError, AuditError, StopRuleError, SimulationError,
                KeysError, ListenError, DaskError)
# Below this many rows a file is written before a progress bar would have drawn itself.
_PROGRESS_ROWS = 20_000


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
    if is_url(path):  # a server's database is the team's, never ours to remove
        yield
        return
    path = Path(path)
    existed = path.exists()
    try:
        yield
    except BaseException:
        if not existed:
            for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                leftover.unlink(missing_ok=True)
        raise


def _check_existing(db_path: str) -> None:
    """A SQLite file must exist, and be a retrain-loop database, before opening it adds tables
    to any file; a database URL is checked by connecting."""
    from .offline import check_database

    if is_url(db_path):
        return
    if not Path(db_path).exists():
        raise CliError(f"database not found: {db_path}")
    with user_errors():
        check_database(Path(db_path))


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
@db_option
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--view", type=click.Choice(["colour", "record", "image"]), default="record",
              show_default=True)
@setting_options("model", "strategy", "mode", "batch_size", "explore", "prefer", "seed",
                 "lease_seconds", "update", "audit", *ESTIMATE, *ROUND,
                 batch_size={"type": click.IntRange(1, 200)})
@dask_option
@click.option("--keys", help="The keys that pick the labels, one character per label in order "
              "(default: 1-9, 0, then q, w, e, ... as on a keyboard).")
@click.option("--token", envvar="RETRAIN_LOOP_TOKEN", show_envvar=True,
              help="Required of every request. Made up and printed in the URL when --host is not "
              "this machine and none is given; none by default on 127.0.0.1.")
def serve(dataset, pool_path, labels, features, id_column, db_path, host, port, view, token,
          keys, **settings):
    """Serve the annotation page and API for DATASET over the rows in POOL.

    Example: retrain-loop serve colours colours.jsonl --label red,green,blue --features r,g,b --view colour
    """
    import secrets

    import uvicorn

    from .keys import label_keys
    from .server import create_app
    from .server.guard import is_loopback

    with user_errors():
        label_keys(_split(labels) or [], keys)  # refused before anything is read or created
        pool = load_pool(pool_path, features=_split(features), id_column=id_column)
        # Before the database: a port in use is refused with nothing created. uvicorn serves
        # on these very sockets, so no other process can take the port in between.
        sockets = listen(host, port)
    port = sockets[0].getsockname()[1]  # --port 0 takes a free one
    try:
        with user_errors():
            with _new_file_removed_on_error(db_path):
                store = open_store(db_path)
                try:
                    engine = Engine(pool, store, dataset, _split(labels) or [],
                                    EngineSettings(**settings),
                                    team=team_for(store, dataset, pool)).start()
                except BaseException:
                    store.close()
                    raise
            exposed = not is_loopback(host)
            if exposed and not token:
                token = secrets.token_urlsafe(18)
            app = create_app(engine, view=view, host=host, token=token, keys=keys)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    stats = engine.stats()
    click.echo(
        f"retrain-loop: {dataset}: {len(pool)} rows, {stats['n_annotations']} answers in {describe_target(db_path)}"
        + (", refitting on them in the background" if stats["n_annotations"] else "")
    )
    if engine.n_unmatched:
        click.echo(f"{engine.n_unmatched} saved answers of {dataset} match no row of {pool_path}: "
                   "was the pool edited, or its id column changed? They are kept, not used.",
                   err=True)
    shown = url_host(host)
    click.echo(f"Open http://{shown}:{port}/{f'?token={token}' if token else ''} to annotate "
               "(Ctrl+C stops).")
    if exposed:
        click.echo(f"Listening on {host}: anyone who can reach port {port} and has the token can "
                   "read every row and answer. Share the URL only with annotators.", err=True)
    # Request threads wait on the database and the network while the refit thread computes;
    # handing the GIL over every 1 ms instead of 5 ms spares them queueing behind it
    # (BENCHMARKS.md, "Team: several servers").
    sys.setswitchinterval(0.001)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    try:
        server.run(sockets=sockets)
    except KeyboardInterrupt:  # uvicorn hands Ctrl+C back once it has stopped, as uvicorn.run
        pass
    finally:
        engine.close()
        store.close()
        for sock in sockets:
            sock.close()
    if not server.started:
        raise SystemExit(3)  # uvicorn's STARTUP_FAILURE, which it has logged


@main.command()
@click.argument("dataset")
@db_option
@jsonl_out_option
def export(dataset, db_path, out_path):
    """Write every answer of DATASET as JSONL, in Prodigy's db-out format.

    Example: retrain-loop export colours --db colours.db --out colours.jsonl
    """
    from .persist import atomic_output

    _check_existing(db_path)
    with user_errors(), closing(open_store(db_path)) as store:
        if dataset not in store.datasets():
            known = ", ".join(store.datasets()) or "none"
            raise CliError(f"no dataset {dataset!r} in {describe_target(db_path)} "
                           f"(datasets: {known})")
        if out_path in (None, STDOUT):
            store.export_jsonl(dataset, sys.stdout)
            return
        with atomic_output(out_path, "w", error=OfflineError, newline="") as out:
            n = store.export_jsonl(dataset, out)
    click.echo(f"Wrote {n} answers to {out_path}", err=True)


@main.command()
@click.argument("dataset")
@db_option
@click.option("--history", "history_path", type=click.Path(exists=True, dir_okay=False),
              help="SQLite file of the round history, where it is kept apart from the answers "
              "(the Prodigy recipe's DATASET.history.db; default: the --db file).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@estimate_options
def status(dataset, db_path, history_path, as_json, audit_window, stop_threshold, stop_window):
    """How good the model of DATASET is and whether to stop, from the database alone.

    Example: retrain-loop status colours --db colours.db
    """
    import json

    from .history import status as read_status
    from .report import status_text

    _check_existing(db_path)
    with user_errors(), closing(open_store(db_path)) as store:
        if dataset not in store.datasets():
            known = ", ".join(store.datasets()) or "none"
            raise CliError(f"no dataset {dataset!r} in {describe_target(db_path)} "
                           f"(datasets: {known})")
        with closing(AnnotationStore(history_path or None)) as state:
            report = read_status(store, dataset, state=state if history_path else None,
                                 rule=StopRule(stop_threshold, stop_window), window=audit_window)
    click.echo(json.dumps(report, indent=2) if as_json else status_text(report))


# -- offline: score, train, predict, db-in -----------------------------------------------------


def _write_rows(out_path: str, rows: list[dict]) -> int:
    """Rows to ``out_path`` in its suffix's format, or JSONL to stdout; any progress on stderr."""
    from .offline import dump_jsonl, write_rows

    def write(on_row=None):
        if out_path == STDOUT:
            return dump_jsonl(sys.stdout, rows, on_row=on_row)
        return write_rows(out_path, rows, on_row=on_row)

    if len(rows) < _PROGRESS_ROWS:
        return write()
    with click.progressbar(length=len(rows), label=f"Writing {_shown(out_path)}",
                           file=sys.stderr, update_min_steps=len(rows) // 100) as bar:
        return write(on_row=lambda: bar.update(1))


def _shown(out_path: str) -> str:
    return "stdout" if out_path == STDOUT else out_path


@main.command()
@offline_options
@rows_out_option
@click.option("--top", type=click.IntRange(min=1), help="Write only the N most useful rows.")
@setting_options("strategy", "prefer")
@dask_option
def score(pool_path, annotations, dataset, out_path, labels, features, id_column, top, **settings):
    """Fit on the answers so far and write POOL's unanswered rows, most useful first.

    Each row has its fields, its score, the model's label and each label's probability.

    Example: retrain-loop score colours.jsonl --annotations colours.db --dataset colours --out next.csv --top 100
    """
    from . import offline

    with user_errors():
        pool = load_pool(pool_path, features=_split(features), id_column=id_column)
        with closing(offline.open_annotations(annotations, dataset)) as store:
            label_list = offline.labels_from(store, dataset, _split(labels))
            rows = offline.score(pool, store, dataset, label_list, top=top, **settings)
            n_answers = store.count(dataset)
        n = _write_rows(out_path, rows)
    click.echo(f"Wrote {n} rows to {_shown(out_path)}, ranked by {settings['strategy']} with "
               f"{settings['model']} on {n_answers} "
               f"answers (labels: {', '.join(label_list)})", err=True)


@main.command()
@offline_options
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False),
              help="Model file to write (a skops file, e.g. colours.skops).")
def train(pool_path, annotations, dataset, out_path, labels, features, id_column, **settings):
    """Fit a model on every answer and save it with its metadata and an accuracy estimate.

    Example: retrain-loop train colours.jsonl --annotations colours.db --dataset colours --out colours.skops
    """
    from . import offline

    with user_errors():
        pool = load_pool(pool_path, features=_split(features), id_column=id_column)
        with closing(offline.open_annotations(annotations, dataset)) as store:
            label_list = offline.labels_from(store, dataset, _split(labels))
            meta = offline.train(pool, store, dataset, label_list, out_path, **settings)
    accuracy = meta["cv_accuracy"]
    click.echo(f"Saved {meta['model']} model to {out_path}: {meta['n_annotations']} answers, "
               f"labels {', '.join(meta['labels'])}, features {', '.join(meta['features'])}")
    if accuracy is None:
        click.echo("Cross-validated accuracy: not estimated (it needs at least two answers for "
                   "each of two labels, and every fold to fit)")
    else:
        # Active learning asked about the hardest rows, so this understates accuracy on the rest.
        click.echo(f"Cross-validated accuracy: {accuracy:.3f} ({meta['cv_folds']}-fold, on the "
                   "answered rows, which were picked for being hard)")


@main.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False))
@click.argument("pool_path", metavar="POOL", type=click.Path(dir_okay=False))
@rows_out_option
@click.option("--features", help="Comma-separated feature columns (default: the model's).")
@click.option("--id-column", default="id", show_default=True, help="Column holding each row's id.")
@click.option("--trust", is_flag=True,
              help="Load types off the allowlist, which can run code: only for files you made.")
@dask_option
def predict(model_path, pool_path, out_path, features, id_column, trust, dask):
    """Label every row of POOL with a saved model, with each label's probability.

    Example: retrain-loop predict colours.skops colours.jsonl --out predictions.csv
    """
    from . import offline
    from .persist import load_model, version_differences

    with user_errors():
        saved = load_model(model_path, trusted=trust)
        for difference in version_differences(saved):
            click.echo(f"Warning: {difference}; predictions may differ", err=True)
        pool = offline.pool_for_model(saved, pool_path, _split(features), id_column)
        rows = offline.predict(saved, pool, dask=dask)
        n = _write_rows(out_path, rows)
    click.echo(f"Wrote {n} predictions to {_shown(out_path)} "
               f"(labels: {', '.join(saved.labels)})", err=True)


@main.command("db-in")
@click.argument("dataset")
@click.argument("in_path", metavar="FILE", type=click.Path(exists=True, dir_okay=False))
@db_option
@click.option("--pool", "pool_path", type=click.Path(exists=True, dir_okay=False),
              help="Match each answer to a row of this pool, by hash, id or content, and say how "
              "many match.")
@click.option("--id-column", default="id", show_default=True, help="The pool's id column.")
@click.option("--features", help="The pool's feature columns (default: all numeric columns).")
@click.option("--label", "labels", help="Comma-separated labels the answers were asked with, for "
              "records without options.")
def db_in(dataset, in_path, db_path, pool_path, id_column, features, labels):
    """Import answers in Prodigy's db-out JSONL format into DATASET.

    Records without hashes get retrain-loop's (from the id, or the row's fields); a binary answer
    about a suggested label becomes that label when accepted and is kept when rejected.

    Example: retrain-loop db-in colours colours-answers.jsonl --db colours.db --pool colours.jsonl
    """
    from .offline import import_report
    from .report import import_lines

    with user_errors():
        pool = (load_pool(pool_path, features=_split(features), id_column=id_column)
                if pool_path else None)
    with (user_errors(), _new_file_removed_on_error(db_path),
          closing(open_store(db_path)) as store):
        new, report = import_report(store, dataset, in_path, pool=pool, labels=_split(labels))
        total = store.count(dataset)
    click.echo(f"Imported {new} new answers into {dataset} in {describe_target(db_path)} ({total} in total)")
    for line in import_lines(report, pool_path if pool is not None else None):
        click.echo(line)


# -- simulate ----------------------------------------------------------------------------------


@main.command()
@click.argument("pool_path", metavar="POOL", type=click.Path(dir_okay=False))
@click.option("--label-column", required=True, help="Column holding each row's true label.")
@click.option("--features", help="Comma-separated feature columns (default: all numeric columns "
              "but the id and the label).")
@click.option("--id-column", default="id", show_default=True, help="Column holding each row's id.")
@click.option("--strategy", "strategies", type=click.Choice(list(STRATEGIES)), multiple=True,
              default=("margin", "random"), show_default=True,
              help="Strategy to compare; repeat the option for several.")
@click.option("--seeds", default=5, show_default=True, type=click.IntRange(min=1),
              help="Runs per strategy, each with its own test split (seeds 0..N-1).")
@click.option("--initial", default=10, show_default=True, type=click.IntRange(min=1),
              help="Random rows labelled before the model picks any.")
@click.option("--budget", default=300, show_default=True, type=click.IntRange(min=1),
              help="Labels per run, the initial ones included.")
@click.option("--test-size", default=0.3, show_default=True,
              type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Share of the rows held out to measure accuracy.")
@setting_options("model", "batch_size", "explore", "update", "audit", *ESTIMATE, *ROUND)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for curves.csv, summary.csv and curves.png.")
def simulate(pool_path, label_column, features, id_column, strategies, seeds, initial, budget,
             test_size, out_dir, **settings):
    """Label POOL with an oracle that knows LABEL-COLUMN, and draw each strategy's learning curve.

    Example: retrain-loop simulate flowers.csv --label-column species --strategy margin --strategy random --out sim/
    """
    import numpy as np

    from . import simulate as sim
    from .report import summary_table

    feature_list = _split(features)
    if feature_list and label_column in feature_list:
        raise CliError(f"the label column {label_column!r} cannot also be a feature")
    with user_errors():
        pool = load_pool(pool_path, features=feature_list, id_column=id_column,
                         exclude=(label_column,))
    strategies = list(dict.fromkeys(strategies))
    with user_errors():
        labels, y = sim.known_labels(pool, label_column)
        engine_settings = EngineSettings(**settings)
    run_options = {"initial": initial, "budget": budget, "test_size": test_size}
    rounds = sim.rounds_per_run(len(pool), batch_size=engine_settings.batch_size, **run_options)
    model = engine_settings.model_name
    click.echo(f"Simulating {', '.join(strategies)} with {model} on {len(pool)} rows "
               f"({len(labels)} labels, features {', '.join(pool.features)}), {seeds} seeds",
               err=True)
    with user_errors():
        with click.progressbar(length=rounds * len(strategies) * seeds, label="Rounds",
                               file=sys.stderr) as bar:
            curves, full = sim.simulate(pool.X, np.asarray(y), labels, engine_settings,
                                        strategies=strategies, seeds=range(seeds),
                                        on_round=lambda: bar.update(1), **run_options)
        title = f"{Path(pool_path).name}: {model}, {engine_settings.update}, {seeds} seeds"
        summary = sim.write_outputs(out_dir, curves, full, title=title)
    click.echo(summary_table(summary))
    click.echo(f"Wrote curves.csv, summary.csv and curves.png to {out_dir}", err=True)


if __name__ == "__main__":
    main()
