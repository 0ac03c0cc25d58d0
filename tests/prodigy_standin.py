"""A stand-in for Prodigy, for tests only: it cannot be installed here (it is licensed).

It provides what the recipe touches, behaving as Prodigy's documentation describes
(../shared/notes/prodigy-api.md):

- ``recipe`` registers a function the way Prodigy does, with the real command-line library
  Prodigy uses: radicli's ``Arg`` and ``Radicli.command`` for v1.12 and later, plac's
  annotations and parser before. So a signature Prodigy cannot parse fails here, at
  registration, as it does in Prodigy. ``parse`` and ``run`` take a command line as
  ``prodigy RECIPE ... [-F file.py]`` does, with recipes from ``-F`` or from the
  ``prodigy_recipes`` entry points.
- ``components.db.connect()`` gives a database that keeps examples per dataset.
- ``Controller`` drives the components as Prodigy's server and web app do: batches pulled ahead
  of the annotator, tasks checked against the interfaces' documented fields, answers of every
  kind, ``validate_answer``, ``before_db``, the database, then ``update``; several sessions at
  once from several threads.

Run as a script it parses command lines (a JSON list of argv lists on stdin) and prints what
they parsed to as JSON, so a test can check the recipe against other versions of radicli or
plac in a subprocess:

    echo '[["retrain.loop", "ds", "pool.csv", "-l", "a,b"]]' | \
        python tests/prodigy_standin.py [--plac]
"""

from __future__ import annotations

import contextlib
import copy
import importlib.metadata
import importlib.util
import io
import json
import sys
import threading
import time
import types
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from retrain_loop.hashing import stable_hash


class CommandLineError(Exception):
    """The command line was refused, as Prodigy refuses it (radicli or argparse's message)."""


class Database:
    """Examples per dataset, in the order they were added, as Prodigy's database keeps them.

    ``missing`` is what reading a dataset that does not exist does: None returns an empty list,
    an exception class is raised (versions and database backends differ here).
    """

    def __init__(self, old_api: bool = False, missing: type[Exception] | None = None):
        self.datasets: dict[str, list[dict[str, Any]]] = {}
        self.reads = 0
        self.missing = missing
        self._lock = threading.Lock()
        if old_api:  # Prodigy before get_dataset_examples existed
            self.get_dataset_examples = None

    def __contains__(self, name: str) -> bool:
        return name in self.datasets

    def add_dataset(self, name: str) -> None:
        with self._lock:
            self.datasets.setdefault(name, [])

    def add_examples(self, examples: list[dict[str, Any]], datasets: list[str]) -> None:
        with self._lock:
            for name in datasets:
                self.datasets.setdefault(name, []).extend(copy.deepcopy(examples))

    def _get(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            self.reads += 1
            if name not in self.datasets and self.missing is not None:
                raise self.missing(f"dataset {name!r} does not exist")
            return copy.deepcopy(self.datasets.get(name, []))

    def get_dataset_examples(self, name: str) -> list[dict[str, Any]]:
        return self._get(name)

    def get_dataset(self, name: str) -> list[dict[str, Any]]:
        return self._get(name)

    def get_input_hashes(self, *names: str) -> set[int]:
        with self._lock:
            return {eg["_input_hash"] for n in names for eg in self.datasets.get(n, [])}

    def get_task_hashes(self, *names: str) -> set[int]:
        with self._lock:
            return {eg["_task_hash"] for n in names for eg in self.datasets.get(n, [])}


def set_hashes(eg: dict[str, Any], input_keys=("text", "image", "html"), task_keys=("options",),
               overwrite: bool = False) -> dict[str, Any]:
    if overwrite or "_input_hash" not in eg:
        eg["_input_hash"] = stable_hash({k: eg.get(k) for k in input_keys})
    if overwrite or "_task_hash" not in eg:
        eg["_task_hash"] = stable_hash([eg["_input_hash"], {k: eg.get(k) for k in task_keys}])
    return eg


class Prodigy:
    """Installs fake ``prodigy`` modules into sys.modules; ``uninstall`` restores the old ones.

    ``with_arg=True`` is Prodigy 1.12 and later (``prodigy.core.Arg``, radicli); False is
    Prodigy 1.11 and earlier (plac).
    """

    NAMES = ("prodigy", "prodigy.core", "prodigy.components", "prodigy.components.db",
             "prodigy.util")

    def __init__(self, *, with_arg: bool = True, old_db: bool = False,
                 missing: type[Exception] | None = None):
        self.recipes: dict[str, Callable] = {}
        self.commands: dict[str, Any] = {}  # name -> radicli CLI (new) or plac parser (old)
        self.db = Database(old_api=old_db, missing=missing)
        self.with_arg = with_arg
        self._saved: dict[str, Any] = {}

    # -- registering and command lines --------------------------------------------------------

    def recipe(self, name: str, **args: Any):
        def register(func):
            if self.with_arg:
                import radicli

                # Registering builds the command from the annotations, as Prodigy does; a type
                # radicli cannot parse raises UnsupportedTypeError here. A later registration
                # of the same name (a -F file over an installed one) replaces the earlier.
                cli = radicli.Radicli(prog="prodigy")
                cli.command(name, **args)(func)
                self.commands[name] = cli
            else:
                import plac

                func = plac.annotations(**args)(func)
                self.commands[name] = plac.parser_from(func)
            self.recipes[name] = func
            return func

        return register

    def parse(self, argv: list[str]) -> tuple[str, dict[str, Any]]:
        """``prodigy RECIPE ARGS... [-F file.py]`` -> (recipe name, keyword arguments)."""
        argv = list(argv)
        if "-F" in argv:  # Prodigy imports the file before it looks the recipe up
            at = argv.index("-F")
            path = argv[at + 1]
            del argv[at:at + 2]
            spec = importlib.util.spec_from_file_location(Path(path).stem, path)
            spec.loader.exec_module(importlib.util.module_from_spec(spec))
        name, rest = argv[0], argv[1:]
        if name not in self.recipes:
            for point in importlib.metadata.entry_points(group="prodigy_recipes"):
                if point.name == name:
                    point.load()
        if name not in self.recipes:
            raise CommandLineError(f"can't find recipe or command {name!r}")
        command = self.commands[name]
        if self.with_arg:
            from radicli.util import CliParserError

            try:
                return name, command.parse(rest, command.commands[name])
            except CliParserError as e:
                raise CommandLineError(str(e)) from e
        stderr = io.StringIO()
        try:
            with contextlib.redirect_stderr(stderr):
                namespace = command.parse_args(rest)
        except SystemExit as e:
            raise CommandLineError(stderr.getvalue().strip().splitlines()[-1]) from e
        return name, vars(namespace)

    def run(self, argv: list[str]) -> dict[str, Any]:
        """What ``prodigy RECIPE ARGS...`` does before it starts the server: the components."""
        name, kwargs = self.parse(argv)
        return self.recipes[name](**kwargs)

    def help(self, name: str) -> str:
        """The text ``prodigy RECIPE --help`` prints."""
        command = self.commands[name]
        if self.with_arg:
            return command.get_parsers(command.commands[name])[0].format_help()
        return command.format_help()

    # -- modules ------------------------------------------------------------------------------

    def install(self) -> Prodigy:
        root = types.ModuleType("prodigy")
        core = types.ModuleType("prodigy.core")
        components = types.ModuleType("prodigy.components")
        db = types.ModuleType("prodigy.components.db")
        util = types.ModuleType("prodigy.util")
        root.recipe = self.recipe
        root.set_hashes = set_hashes
        util.set_hashes = set_hashes
        core.recipe = self.recipe
        if self.with_arg:
            from radicli import Arg

            core.Arg = Arg
        db.connect = lambda: self.db
        root.core, root.components, root.util, components.db = core, components, util, db
        modules = dict(zip(self.NAMES, (root, core, components, db, util)))
        for name, module in modules.items():
            self._saved[name] = sys.modules.get(name)
            sys.modules[name] = module
        return self

    def uninstall(self) -> None:
        for name, module in self._saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


# -- the interfaces' documented task fields ----------------------------------------------------

def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_spans(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(s, dict) for s in v)


def _is_options(v: Any) -> bool:
    return (isinstance(v, list) and all(isinstance(o, dict) and "id" in o and _is_str(o.get("text"))
                                        for o in v)
            and len({json.dumps(o["id"]) for o in v}) == len(v))


# What a key at the top level of a task means to the interfaces that read it (prodi.gy/docs,
# api-interfaces): a value of another type breaks the card or the answer.
FIELD_TYPES: dict[str, Callable[[Any], bool]] = {
    "text": _is_str,
    "html": _is_str,
    "image": _is_str,  # a URL, a data URI or a path
    "label": _is_str,  # classification's label, shown above the content
    "spans": _is_spans,
    "tokens": _is_spans,
    "width": _is_number,
    "height": _is_number,
    "options": _is_options,
    "accept": lambda v: isinstance(v, list),
    "meta": lambda v: isinstance(v, dict) and all(not isinstance(x, (dict, list))
                                                   for x in v.values()),
}
# The field each interface cannot show a task without.
REQUIRED = {"html": ("html",), "image": ("image",), "text": ("text",),
            "choice": ("options",), "classification": ("label",)}


def check_task(task: dict[str, Any], view_id: str, config: dict[str, Any]) -> None:
    """Raise ValueError if a task does not fit the interfaces it is shown with."""
    views = [b["view_id"] for b in config.get("blocks", [])] if view_id == "blocks" else [view_id]
    for view in views:
        for key in REQUIRED.get(view, ()):
            if key not in task:
                raise ValueError(f"the {view} interface needs {key!r}: task has {sorted(task)}")
    for key, ok in FIELD_TYPES.items():
        if key in task and not ok(task[key]):
            raise ValueError(f"task field {key!r} means something else to Prodigy: {task[key]!r}")
    if "options" in task:
        ids = {json.dumps(o["id"]) for o in task["options"]}
        if not all(json.dumps(a) in ids for a in task.get("accept", [])):
            raise ValueError(f"accept {task['accept']} names no option")
        if config.get("choice_style", "single") == "single" and len(task.get("accept", [])) > 1:
            raise ValueError("a single choice task preselects more than one option")
    json.dumps(task)  # it travels to the browser as JSON


# -- the controller ------------------------------------------------------------------------------

Annotator = Callable[[dict[str, Any]], "str | dict[str, Any]"]


class Controller:
    """Drives a recipe's components as Prodigy's server and web app do.

    The web app asks for a batch (``batch_size`` tasks) and asks for the next before the
    annotator has finished this one. Tasks whose hash is already in the dataset are dropped
    (``exclude_by``). Every task served is checked against the interfaces it is shown with.
    An answer is checked by ``validate_answer``: a refused one stays with the annotator, who
    here skips it instead. A batch of answers goes through ``before_db`` into the database,
    then to ``update``. Sessions may pull and answer from several threads at once; the stream
    is shared and is not locked, as in Prodigy.
    """

    def __init__(self, components: dict[str, Any], db: Database):
        self.c = components
        self.db = db
        self.config = components.get("config", {})
        self.dataset = components["dataset"]
        self.size = self.config.get("batch_size", 10)
        self.exclude_by = self.config.get("exclude_by", "task")
        self.served: list[dict[str, Any]] = []
        self.refused: list[tuple[dict[str, Any], str]] = []
        self.updates: list[Any] = []
        self._lock = threading.Lock()
        db.add_dataset(self.dataset)  # Prodigy adds it once the recipe has returned

    def pull(self, session: str = "default") -> list[dict[str, Any]]:
        key = "_input_hash" if self.exclude_by == "input" else "_task_hash"
        seen = (self.db.get_input_hashes if key == "_input_hash" else self.db.get_task_hashes)(
            self.dataset)
        batch = []
        for eg in self.c["stream"]:
            set_hashes(eg)
            if eg[key] in seen:
                continue
            check_task(eg, self.c.get("view_id", ""), self.config)
            batch.append(eg)
            if len(batch) == self.size:
                break
        with self._lock:
            self.served.extend(batch)
        return batch

    def answer(self, batch: list[dict[str, Any]], annotate: Annotator,
               session: str = "default") -> list[dict[str, Any]]:
        validate = self.c.get("validate_answer")
        answers = []
        for task in batch:
            verdict = annotate(task)
            if isinstance(verdict, str):
                verdict = {"answer": "accept", "accept": [verdict]}
            eg = dict(copy.deepcopy(task), **verdict, _session_id=f"{self.dataset}-{session}",
                      _annotator_id=f"{self.dataset}-{session}", _timestamp=int(time.time()))
            if validate is not None:
                try:
                    validate(eg)
                except Exception as e:  # noqa: BLE001 - the app shows any error; answer again
                    with self._lock:
                        self.refused.append((eg, str(e)))
                    eg = dict(eg, answer="ignore", accept=[])
                    validate(eg)
            answers.append(eg)
        return answers

    def submit(self, answers: list[dict[str, Any]]) -> Any:
        before_db = self.c.get("before_db")
        saved = copy.deepcopy(answers)
        if before_db is not None:
            saved = before_db(saved)
        self.db.add_examples(saved, datasets=[self.dataset])
        update = self.c.get("update")
        result = update(answers) if update is not None else None
        with self._lock:
            self.updates.append(result)
        return result

    def session(self, annotate: Annotator, n_batches: int, *, name: str = "default",
                ahead: int = 1, on_update: Callable[[Any], None] | None = None,
                start: threading.Barrier | None = None) -> list[dict[str, Any]]:
        """One annotator's run: ``n_batches`` answered, ``ahead`` batches pulled in advance."""
        if start is not None:
            start.wait()
        served: list[dict[str, Any]] = []
        current = self.pull(name)
        served.extend(current)
        in_flight: deque[list[dict[str, Any]]] = deque()
        for _ in range(n_batches):
            if not current:
                break
            while len(in_flight) < ahead:
                in_flight.append(self.pull(name))
                served.extend(in_flight[-1])
            result = self.submit(self.answer(current, annotate, name))
            if on_update is not None:
                on_update(result)
            current = in_flight.popleft()
        return served

    def sessions(self, annotate: Annotator, n_batches: int, names: tuple[str, ...],
                 ahead: int = 1) -> dict[str, list[dict[str, Any]]]:
        """Several annotators at once, each in its own thread, as Prodigy serves ?session=."""
        start = threading.Barrier(len(names))
        out: dict[str, list[dict[str, Any]]] = {}
        errors: list[BaseException] = []

        def work(name: str) -> None:
            try:
                out[name] = self.session(annotate, n_batches, name=name, ahead=ahead, start=start)
            except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
                errors.append(e)

        threads = [threading.Thread(target=work, args=(n,)) for n in names]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return out


def run_controller(components: dict[str, Any], db: Database, annotate: Annotator,
                   n_batches: int, on_update: Callable[[Any], None] | None = None,
                   ahead: int = 1) -> list[dict]:
    """One session of ``n_batches``; returns every task served (answered or in flight)."""
    return Controller(components, db).session(annotate, n_batches, ahead=ahead,
                                              on_update=on_update)


def main(argv: list[str]) -> None:
    """Parse each command line of a JSON list on stdin; print what each parsed to, as JSON."""
    old = argv[:1] == ["--plac"]
    library = "plac" if old else "radicli"
    prodigy = Prodigy(with_arg=not old).install()
    parsed = [prodigy.parse(line)[1] for line in json.load(sys.stdin)]
    # The first distribution on sys.path, so PYTHONPATH picks another version of the library.
    print(json.dumps({"library": library, "version": importlib.metadata.version(library),
                      "file": sys.modules[library].__file__, "parsed": parsed}))


if __name__ == "__main__":
    main(sys.argv[1:])
