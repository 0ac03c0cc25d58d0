"""A stand-in for Prodigy, for tests only: it cannot be installed here (it is licensed).

It provides what the recipe touches, behaving as Prodigy's documentation describes
(../shared/notes/prodigy-api.md): the ``recipe`` decorator and its registry, ``Arg`` (v1.12+)
or plac tuples (older), ``components.db.connect()`` with a database that stores examples per
dataset, and a controller loop that drives the components like Prodigy's web app does.
"""

from __future__ import annotations

import copy
import sys
import types
from collections.abc import Callable
from typing import Any

from retrain_loop.hashing import stable_hash


class Arg:
    def __init__(self, *flags: str, help: str = ""):
        self.flags = flags
        self.help = help


class Database:
    """Examples per dataset, in the order they were added, as Prodigy's database keeps them."""

    def __init__(self, old_api: bool = False):
        self.datasets: dict[str, list[dict[str, Any]]] = {}
        self.reads = 0
        if old_api:  # Prodigy before get_dataset_examples existed
            self.get_dataset_examples = None

    def __contains__(self, name: str) -> bool:
        return name in self.datasets

    def add_dataset(self, name: str) -> None:
        self.datasets.setdefault(name, [])

    def add_examples(self, examples: list[dict[str, Any]], datasets: list[str]) -> None:
        for name in datasets:
            self.datasets.setdefault(name, []).extend(copy.deepcopy(examples))

    def get_dataset_examples(self, name: str) -> list[dict[str, Any]]:
        self.reads += 1
        return copy.deepcopy(self.datasets.get(name, []))

    def get_dataset(self, name: str) -> list[dict[str, Any]]:
        self.reads += 1
        return copy.deepcopy(self.datasets.get(name, []))

    def get_input_hashes(self, *names: str) -> set[int]:
        return {eg["_input_hash"] for n in names for eg in self.datasets.get(n, [])}

    def get_task_hashes(self, *names: str) -> set[int]:
        return {eg["_task_hash"] for n in names for eg in self.datasets.get(n, [])}


def set_hashes(eg: dict[str, Any], input_keys=("text", "image", "html"), task_keys=("options",),
               overwrite: bool = False) -> dict[str, Any]:
    if overwrite or "_input_hash" not in eg:
        eg["_input_hash"] = stable_hash({k: eg.get(k) for k in input_keys})
    if overwrite or "_task_hash" not in eg:
        eg["_task_hash"] = stable_hash([eg["_input_hash"], {k: eg.get(k) for k in task_keys}])
    return eg


class Prodigy:
    """Installs fake ``prodigy`` modules into sys.modules; ``uninstall`` restores the old ones."""

    NAMES = ("prodigy", "prodigy.core", "prodigy.components", "prodigy.components.db",
             "prodigy.util")

    def __init__(self, *, with_arg: bool = True, old_db: bool = False):
        self.recipes: dict[str, tuple[Callable, dict[str, Any]]] = {}
        self.db = Database(old_api=old_db)
        self.with_arg = with_arg
        self._saved: dict[str, Any] = {}

    def recipe(self, name: str, **args: Any):
        def register(func):
            self.recipes[name] = (func, args)
            return func

        return register

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


def run_controller(components: dict[str, Any], db: Database, oracle: Callable[[dict], str],
                   n_batches: int, on_update: Callable[[Any], None] | None = None) -> list[dict]:
    """Drive the components as Prodigy's controller and web app do.

    The app asks for ``batch_size`` tasks and, before the annotator finishes them, prefetches
    the next batch, so one batch is always in flight. Tasks whose input hash is already in the
    dataset are dropped (``exclude_by: input``). Each answered batch goes to the database
    first, then to ``update``. Returns every task served.
    """
    config = components["config"]
    dataset = components["dataset"]
    size = config.get("batch_size", 10)
    stream = components["stream"]
    validate = components.get("validate_answer")
    update = components.get("update")
    db.add_dataset(dataset)
    served: list[dict[str, Any]] = []

    def pull() -> list[dict[str, Any]]:
        seen = db.get_input_hashes(dataset) if config.get("exclude_by") == "input" \
            else db.get_task_hashes(dataset)
        batch = []
        key = "_input_hash" if config.get("exclude_by") == "input" else "_task_hash"
        for eg in stream:
            set_hashes(eg)
            if eg[key] in seen:
                continue
            batch.append(eg)
            if len(batch) == size:
                break
        served.extend(batch)
        return batch

    current = pull()
    for _ in range(n_batches):
        if not current:
            break
        in_flight = pull()
        answers = []
        for eg in current:
            answer = dict(copy.deepcopy(eg), answer="accept", accept=[oracle(eg)])
            if validate is not None:
                validate(answer)
            answers.append(answer)
        db.add_examples(answers, datasets=[dataset])
        if update is not None:
            result = update(answers)
            if on_update is not None:
                on_update(result)
        current = in_flight
    return served
