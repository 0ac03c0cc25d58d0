"""The Prodigy recipe ``retrain.loop``: the retrain-every-batch loop inside Prodigy.

    prodigy retrain.loop colours colours.jsonl --label red,green,blue --features r,g,b --view colour

A thin layer over ``retrain_loop.loop.Engine``: Prodigy pulls tasks from the engine's ranked
queue, saves the answers in its own database, and calls ``update``, which refits the engine from
every answer in the dataset. Installed as ``retrain_loop.recipes.retrain_loop`` and registered
under the ``prodigy_recipes`` entry point; ``-F recipes/retrain_loop.py`` loads it from a checkout.
"""

from __future__ import annotations

import base64
import html
import math
import mimetypes
from pathlib import Path
from typing import Any

from retrain_loop.loop import Engine
from retrain_loop.pool import load_pool
from retrain_loop.prodigy_db import ProdigyStore

# One Prodigy server is one annotator stream for the engine. Prodigy hands rows out and keeps
# them until they are answered, so the engine's lease on them never expires.
SESSION = "prodigy"

# name: (help, positional, short flag, type). Built into Prodigy's Arg (v1.12+) or plac tuples.
ARGS: dict[str, tuple[str, bool, str | None, type]] = {
    "dataset": ("Dataset to save answers to", True, None, str),
    "source": ("Pool file of rows to label (JSONL or CSV)", True, None, str),
    "label": ("Comma-separated labels, e.g. red,green,blue", False, "l", str),
    "features": ("Comma-separated feature columns (default: all numeric)", False, "f", str),
    "id_column": ("Column holding each row's id", False, None, str),
    "model": ("lightgbm, logreg, forest, nb, sgd, or module:callable", False, "m", str),
    "strategy": ("margin, least_confident, entropy or random", False, "s", str),
    "view": ("How a row looks: colour, record or image", False, None, str),
    "batch_size": ("Tasks per batch, and so per refit", False, "b", int),
    "prefer": ("Favour rows likely to be this label but still uncertain", False, None, str),
    "explore": ("Share of each batch picked at random", False, None, float),
    "update": ("refit (from scratch) or incremental (partial_fit)", False, None, str),
    "seed": ("Random seed", False, None, int),
    "model_out": ("Where on_exit saves the model (default: DATASET.model.skops)", False, None, str),
}


def _recipe_decorator():
    try:
        from prodigy.core import Arg, recipe

        def arg(name: str, help: str, positional: bool, short: str | None, kind: type):
            if positional:
                return Arg(help=help)
            flags = ["--" + name.replace("_", "-")] + (["-" + short] if short else [])
            return Arg(*flags, help=help)
    except ImportError:  # Prodigy before 1.12: plac annotations
        from prodigy import recipe

        def arg(name: str, help: str, positional: bool, short: str | None, kind: type):
            return (help, "positional" if positional else "option", short, kind)

    return recipe("retrain.loop", **{name: arg(name, *spec) for name, spec in ARGS.items()})


@_recipe_decorator()
def retrain_loop(
    dataset: str,
    source: str,
    label: str = "",
    features: str | None = None,
    id_column: str = "id",
    model: str = "lightgbm",
    strategy: str = "margin",
    view: str = "record",
    batch_size: int = 10,
    prefer: str | None = None,
    explore: float = 0.0,
    update: str = "refit",
    seed: int = 0,
    model_out: str | None = None,
) -> dict[str, Any]:
    from prodigy.components.db import connect

    pool = load_pool(source, features=_split(features), id_column=id_column)
    engine = Engine(
        pool, ProdigyStore(connect()), dataset, _split(label) or [], model=model,
        strategy=strategy, batch_size=batch_size, explore=explore, prefer=prefer, seed=seed,
        update=update, background=False, lease_seconds=math.inf,
    )
    render = _renderer(view, pool.features, pool.path.parent)
    model_path = Path(model_out or f"{dataset}.model.skops")

    def stream():
        # One task per pull, so every pull sees the ranking of the latest refit.
        while tasks := engine.get_questions(SESSION, 1):
            yield render(tasks[0])

    def on_answers(answers: list[dict[str, Any]]) -> dict[str, Any]:
        engine.update([_ours(engine, eg) for eg in answers if _in_pool(engine, eg)], SESSION)
        stats = engine.stats()
        return {"round": stats["model_round"], "n_annotations": stats["n_annotations"],
                "n_train": stats["history"][-1]["n_train"] if stats["history"] else 0,
                "error": stats["last_error"]}

    def validate_answer(eg: dict[str, Any]) -> None:
        if eg.get("answer") == "accept" and len(eg.get("accept") or []) != 1:
            raise ValueError("Choose one label, or skip the task.")

    def progress(ctrl: Any = None, update_return_value: Any = None) -> float:
        stats = engine.stats()
        return (stats["n_pool"] - stats["n_remaining"]) / max(stats["n_pool"], 1)

    def on_exit(ctrl: Any = None) -> None:
        from retrain_loop.persist import save_model

        if engine.model_ is not None:
            save_model(model_path, engine.model_, labels=engine.labels,
                       features=pool.features, n_annotations=engine.stats()["n_annotations"],
                       cv_accuracy=None, dataset=dataset, model_spec=engine.model_spec)

    return {
        "dataset": dataset,  # where Prodigy saves the answers
        "stream": stream(),  # lazy: each pull takes the top of the current ranked queue
        "update": on_answers,  # refit from every answer in the dataset, then rescore
        "validate_answer": validate_answer,  # an accept must carry exactly one label
        "progress": progress,  # share of the pool answered
        "on_exit": on_exit,  # save the last good model
        "view_id": "blocks",
        "config": {
            "blocks": _blocks(view),
            "batch_size": batch_size,
            "choice_style": "single",
            "choice_auto_accept": False,
            "exclude_by": "input",
        },
    }


def _split(value: str | None) -> list[str] | None:
    items = [v.strip() for v in (value or "").split(",") if v.strip()]
    return items or None


def _in_pool(engine: Engine, eg: dict[str, Any]) -> bool:
    # A dataset may hold answers from other recipes; they are not this engine's to learn from.
    return engine.pool.index_of(eg.get("_input_hash")) is not None


def _ours(engine: Engine, eg: dict[str, Any]) -> dict[str, Any]:
    # Prodigy may re-hash a task; the engine knows the row by its input hash and checks the
    # task hash it issued, so restore that.
    index = engine.pool.index_of(eg["_input_hash"])
    return dict(eg, _task_hash=engine.task_hash(index))


def _blocks(view: str) -> list[dict[str, Any]]:
    first = {"view_id": "image"} if view == "image" else {"view_id": "html"}
    return [first, {"view_id": "choice", "text": None}]


def _renderer(view: str, features: list[str], root: Path):
    if view not in ("colour", "record", "image"):
        raise ValueError(f"unknown view {view!r}: use colour, record or image")

    def render(task: dict[str, Any]) -> dict[str, Any]:
        task = dict(task)
        if view == "colour":
            task["html"] = _swatch(task)
        elif view == "image":
            task["image"] = _image_src(task.get("image"), root)
        else:
            task["html"] = _table(task)
        return task

    return render


def _swatch(task: dict[str, Any]) -> str:
    if all(isinstance(task.get(c), (int, float)) for c in "rgb"):
        colour = "#{:02x}{:02x}{:02x}".format(*(max(0, min(255, round(task[c]))) for c in "rgb"))
    else:
        colour = str(task.get("hex") or task.get("color") or "#000000")
    colour = html.escape(colour, quote=True)
    return (f'<div style="width:240px;height:240px;margin:0 auto;border-radius:8px;'
            f'background:{colour}"></div><p style="text-align:center">{colour}</p>')


def _table(task: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(str(k))}</th>"
        f"<td>{html.escape(str(v))}</td></tr>"
        for k, v in task.items()
        if not k.startswith("_") and k not in ("options", "accept", "meta", "html")
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
