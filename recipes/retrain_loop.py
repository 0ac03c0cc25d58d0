"""The Prodigy recipe ``retrain.loop``: the retrain-every-batch loop inside Prodigy.

    prodigy retrain.loop colours colours.jsonl --label red,green,blue --features r,g,b --view colour

A thin layer over ``retrain_loop.engine.Engine``: Prodigy pulls tasks from the engine's ranked
queue, saves the answers in its own database, and calls ``update``, which refits the engine from
every answer in the dataset. Installed as ``retrain_loop.recipes.retrain_loop`` and registered
under the ``prodigy_recipes`` entry point; ``-F recipes/retrain_loop.py`` loads it from a checkout.

Prodigy builds the recipe's command line from the function's annotations: with radicli from
v1.12, with plac before. Both read the annotations as written, so this module must not use
``from __future__ import annotations`` or ``X | None`` in the recipe's signature, and every option
has a short flag (plac gives an option without one only a single-dash name, ``-view``).
"""

import base64
import html
import mimetypes
import sys
import threading
import typing
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from retrain_loop.engine import Engine
from retrain_loop.pool import load_pool
from retrain_loop.prodigy_db import ProdigyStore
from retrain_loop.settings import UNLIMITED, EngineSettings
from retrain_loop.store import AnnotationStore

# One Prodigy server is one annotator stream for the engine. Prodigy hands rows out and keeps
# them until they are answered, so the engine's lease on them never expires.
SESSION = "prodigy"
VIEWS = ("colour", "record", "image")
# A task keeps the pool row's own columns under this key. At the top level, a column called
# text, label, spans or width would mean something to Prodigy's interfaces.
FIELDS = "fields"
# What a task takes from the engine; the row's own columns go under FIELDS.
_TASK_KEYS = ("_input_hash", "_task_hash", "options", "accept", "meta")
# Prodigy shows a task's meta on the card. An audit task's prediction must not sway the answer,
# so it travels hidden under this key and goes back into meta before the answer is saved.
HIDDEN = "_retrain_loop_audit"
_SERVED = ("predicted", "p", "score")


def split_string(value: Any) -> Optional[List[str]]:
    """``"red, green,blue"`` -> ``["red", "green", "blue"]``; a list passes through."""
    items = value if isinstance(value, (list, tuple)) else str(value or "").split(",")
    items = [str(v).strip() for v in items if str(v).strip()]
    return items or None


BINARY_HELP = (EngineSettings.help("mode") + " Here binary uses Prodigy's classification view "
               "for every task, so there are no random checks.")
# name: (help, short flag or None for a positional argument, converter or None). The help of an
# engine setting is the one EngineSettings gives it, as for the CLI's options.
ARGS: Dict[str, tuple] = {
    "dataset": ("Dataset to save answers to", None, None),
    "source": ("Pool file of rows to label (JSONL or CSV)", None, None),
    "label": ("Comma-separated labels, e.g. red,green,blue", "l", split_string),
    "features": ("Comma-separated feature columns (default: all numeric)", "f", split_string),
    "id_column": ("Column holding each row's id", "i", None),
    "model": (EngineSettings.help("model"), "m", None),
    "strategy": (EngineSettings.help("strategy"), "s", None),
    "view": (f"How a row looks: {', '.join(VIEWS)}", "v", None),
    "batch_size": (EngineSettings.help("batch_size"), "b", None),
    "prefer": (EngineSettings.help("prefer"), "p", None),
    "explore": (EngineSettings.help("explore"), "e", None),
    "update": (EngineSettings.help("update"), "u", None),
    "mode": (BINARY_HELP, "M", None),
    "seed": (EngineSettings.help("seed"), "S", None),
    "model_out": ("Where the model is saved on exit (default: DATASET.model.skops)", "o", None),
    "audit": (EngineSettings.help("audit"), "a", None),
    "history": ("SQLite file of the round history and stop set (default: DATASET.history.db)",
                "H", None),
    "round_sample": (EngineSettings.help("round_sample"), "R", None),
    "round_head": (EngineSettings.help("round_head"), "K", None),
}


def _register(name: str) -> Callable[[Callable], Callable]:
    """Register with Prodigy as ``name``: radicli ``Arg`` (v1.12+) or plac tuples (older)."""

    def register(func: Callable) -> Callable:
        try:
            from prodigy.core import Arg, recipe
        except ImportError:  # Prodigy before 1.12
            from prodigy import recipe

            hints = typing.get_type_hints(func)
            args = {
                key: (help, "positional", None, _plain(hints[key])) if short is None
                else (help, "option", short, converter or _plain(hints[key]))
                for key, (help, short, converter) in ARGS.items()
            }
        else:
            args = {
                key: Arg(help=help) if short is None
                else Arg("--" + key.replace("_", "-"), "-" + short, help=help, converter=converter)
                for key, (help, short, converter) in ARGS.items()
            }
        return recipe(name, **args)(func)

    return register


def _plain(hint: Any) -> Any:
    """``Optional[int]`` -> ``int``: plac wants the type that converts the text."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if typing.get_origin(hint) is typing.Union and len(args) == 1 else hint


@_register("retrain.loop")
def retrain_loop(
    dataset: str,
    source: str,
    label: Optional[List[str]] = None,
    features: Optional[List[str]] = None,
    id_column: str = "id",
    model: str = EngineSettings.default("model"),
    strategy: str = EngineSettings.default("strategy"),
    view: str = "record",
    batch_size: int = EngineSettings.default("batch_size"),
    prefer: Optional[str] = None,
    explore: float = EngineSettings.default("explore"),
    update: str = EngineSettings.default("update"),
    mode: str = EngineSettings.default("mode"),
    seed: int = EngineSettings.default("seed"),
    model_out: Optional[str] = None,
    audit: float = EngineSettings.default("audit"),
    history: Optional[str] = None,
    round_sample: Optional[int] = EngineSettings.default("round_sample"),
    round_head: int = EngineSettings.default("round_head"),
) -> Dict[str, Any]:
    """Label rows of numbers (colours, measurements, feature vectors) with active learning:
    refit a model on every answer after each batch and ask next about the rows it is least
    sure of."""
    from prodigy.components.db import connect

    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}: use {', '.join(VIEWS)}")
    pool = load_pool(source, features=split_string(features), id_column=id_column)
    # Prodigy's database keeps the answers; the round history and stop set need a file of their own.
    state = AnnotationStore(history or f"{dataset}.history.db")
    binary = mode == "binary"
    if binary and audit > 0:
        # A random check must not show the model's guess, and a yes/no question is one.
        print("retrain.loop: binary mode asks every task yes or no, so there are no random "
              "checks and no accuracy estimate (--audit is not used)", file=sys.stderr, flush=True)
        audit = 0.0
    settings = EngineSettings(
        model=model, strategy=strategy, batch_size=batch_size, explore=explore, prefer=prefer,
        seed=seed, update=update, audit=audit, mode=mode, round_sample=round_sample,
        round_head=round_head,
        lease_seconds=UNLIMITED,  # Prodigy keeps a row it handed out until it is answered
        max_out=UNLIMITED,  # every Prodigy annotator pulls through the one session
    )
    engine = Engine(pool, ProdigyStore(connect()), dataset, split_string(label) or [], settings,
                    state=state, background=False).start()
    model_path = Path(model_out or f"{dataset}.model.skops")

    told = {"stop": engine.stats()["stop"]["suggested"]}

    def on_answers(answers: List[Dict[str, Any]]) -> Dict[str, Any]:
        engine.add_answers([_ours(engine, eg) for eg in answers if _in_pool(engine, eg)],
                           SESSION)
        stats = engine.stats()
        estimate = stats["estimate"]
        if stats["stop"]["suggested"] != told["stop"]:
            # Prodigy's page has no room for it, so the terminal hears when the signal turns.
            told["stop"] = stats["stop"]["suggested"]
            print(f"retrain.loop: {stats['stop']['message']}", file=sys.stderr, flush=True)
        return {"round": stats["model_round"], "n_annotations": stats["n_annotations"],
                "n_train": stats["history"][-1]["n_train"] if stats["history"] else 0,
                "error": stats["last_error"],
                "accuracy": {key: estimate[key] for key in ("accuracy", "low", "high", "n")},
                "stop": stats["stop"]["message"], "stop_suggested": stats["stop"]["suggested"]}

    def validate_answer(eg: Dict[str, Any]) -> None:
        if binary or eg.get("answer") != "accept":
            return  # a yes/no question: its verdict is the answer
        if len(eg.get("accept") or []) != 1:
            raise ValueError("Choose one label, or skip the task.")

    def before_db(examples: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        # The image view sends the picture inline; the database keeps the path, as Prodigy's
        # own image recipes do, instead of a copy of every image in every answer.
        for eg in examples:
            if binary:
                _as_stored(eg)
            hidden = eg.pop(HIDDEN, None)
            if isinstance(hidden, dict):  # an audit's served prediction, saved with its answer
                eg["meta"] = {**(eg.get("meta") or {}), **hidden}
            path = (eg.get(FIELDS) or {}).get("image")
            if isinstance(eg.get("image"), str) and eg["image"].startswith("data:") and path:
                eg["image"] = path
        return examples

    def progress(ctrl: Any = None, update_return_value: Any = None) -> float:
        return engine.answered_share()

    def on_exit(ctrl: Any = None) -> None:
        from retrain_loop.persist import save_model

        if engine.model_ is not None:
            save_model(model_path, engine.model_, labels=engine.labels,
                       features=pool.features, n_annotations=engine.stats()["n_annotations"],
                       cv_accuracy=None, dataset=dataset, model_spec=engine.model_spec)

    return {
        "dataset": dataset,  # where Prodigy saves the answers
        # one task per pull, from the top of the current ranking
        "stream": TaskStream(engine, _renderer(engine, view, pool.path.parent, binary)),
        "update": on_answers,  # refit from every answer in the dataset, then rescore
        "validate_answer": validate_answer,  # an accept must carry exactly one label
        "before_db": before_db,  # image answers keep the path, not the picture
        "progress": progress,  # share of the pool answered
        "on_exit": on_exit,  # save the last good model
        "view_id": "classification" if binary else "blocks",
        "config": {
            **({} if binary else {"blocks": _blocks(view)}),
            "batch_size": batch_size,
            "choice_style": "single",
            "choice_auto_accept": False,
            "exclude_by": "input",
        },
    }


class TaskStream:
    """The stream Prodigy pulls from: one task per pull, from the top of the current ranking.

    One task at a time, so every pull sees the ranking of the latest refit. An iterator object
    rather than a generator, because several sessions' requests may pull at once and a generator
    refuses a second caller while the first runs ("generator already executing").
    """

    def __init__(self, engine: Engine, render: Callable[[Dict[str, Any]], Dict[str, Any]]):
        self.engine = engine
        self.render = render
        self._lock = threading.Lock()
        self._done = False

    def __iter__(self) -> "TaskStream":
        return self

    def __next__(self) -> Dict[str, Any]:
        with self._lock:
            tasks = [] if self._done else self.engine.get_questions(SESSION, 1)
            if not tasks:
                self._done = True  # an iterator that ended stays ended
                raise StopIteration
        return self.render(tasks[0])


def _in_pool(engine: Engine, eg: Dict[str, Any]) -> bool:
    # A dataset may hold answers from other recipes; they are not this engine's to learn from.
    return engine.pool.index_of(eg.get("_input_hash")) is not None


def _ours(engine: Engine, eg: Dict[str, Any]) -> Dict[str, Any]:
    # Prodigy may re-hash a task; the engine knows the row by its input hash and checks the
    # task hash it issued, so restore that.
    index = engine.pool.index_of(eg["_input_hash"])
    label = eg.get("label") if isinstance(eg.get("label"), str) else None
    return dict(eg, _task_hash=engine.task_hash(index, label))


def _as_stored(eg: Dict[str, Any]) -> None:
    """A binary answer as the engine stores one, so Prodigy's database reads back the same: an
    accepted label in ``accept``, a rejected one in ``meta.rejected_label``."""
    label = eg.get("label")
    if not isinstance(label, str):
        return
    if eg.get("answer") == "accept":
        eg["accept"] = [label]
    elif eg.get("answer") == "reject":
        eg["accept"] = []
        eg["meta"] = {**(eg.get("meta") or {}), "rejected_label": label}


def _blocks(view: str) -> List[Dict[str, Any]]:
    first = {"view_id": "image"} if view == "image" else {"view_id": "html"}
    return [first, {"view_id": "choice", "text": None}]


def _least_answered(engine: Engine) -> str:
    """The label with the fewest answers so far: what a yes/no question asks before any model."""
    counts = engine.tally.outcomes()
    return min(engine.labels, key=lambda label: counts.get(label, 0))


def _renderer(engine: Engine, view: str, root: Path,
              binary: bool = False) -> Callable[[Dict[str, Any]], Dict[str, Any]]:
    def render(task: Dict[str, Any]) -> Dict[str, Any]:
        out = {key: task[key] for key in _TASK_KEYS}
        if binary:
            # Every task is a yes/no question in Prodigy's classification view; before a model
            # exists it asks about the label with the fewest answers yet.
            label = task.get("label") or _least_answered(engine)
            index = engine.pool.index_of(task["_input_hash"])
            out.update(label=label, accept=[], _task_hash=engine.task_hash(index, label))
            out.pop("options")
        if task["meta"].get("source") == "audit":
            meta = dict(task["meta"])
            out[HIDDEN] = {key: meta.pop(key) for key in _SERVED if key in meta}
            out["meta"] = meta
        # The row as the pool file has it: a column may share a name with what the engine adds.
        row = engine.pool.tasks[engine.pool.index_of(task["_input_hash"])]
        fields = {key: value for key, value in row.items() if key != "_input_hash"}
        out[FIELDS] = fields
        if view == "colour":
            out["html"] = _swatch(fields)
        elif view == "image":
            out["image"] = _image_src(fields.get("image"), root)
        else:
            out["html"] = _table(fields)
        return out

    return render


def _swatch(fields: Dict[str, Any]) -> str:
    if all(isinstance(fields.get(c), (int, float)) for c in "rgb"):
        colour = "#{:02x}{:02x}{:02x}".format(*(max(0, min(255, round(fields[c]))) for c in "rgb"))
    else:
        colour = str(fields.get("hex") or fields.get("color") or "#000000")
    colour = html.escape(colour, quote=True)
    return (f'<div style="width:240px;height:240px;margin:0 auto;border-radius:8px;'
            f'background:{colour}"></div><p style="text-align:center">{colour}</p>')


def _table(fields: Dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(str(k))}</th>"
        f"<td>{html.escape(str(v))}</td></tr>"
        for k, v in fields.items()
    )
    return f"<table style='margin:0 auto'>{rows}</table>"


def _image_src(value: Any, root: Path) -> str:
    text = str(value or "")
    if text.startswith("data:image/") or not text:
        return text
    path = (root / text).resolve()
    if not path.is_relative_to(root.resolve()) or not path.is_file():
        raise ValueError(f"image {text!r} is not a file under {root}")
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"
