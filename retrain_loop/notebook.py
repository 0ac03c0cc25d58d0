"""The notebook API: the loop over a DataFrame, an array or a pool file, from Python.

    loop = Loop(frame, labels=["setosa", "versicolor", "virginica"])
    tasks = loop.next(10)                      # the rows the model is least sure of
    loop.teach({task["id"]: "setosa" for task in tasks})
    loop.model.predict(frame)                  # labels, from the frame's feature columns

A ``Loop`` is the engine the server runs, refitting in the foreground so that ``teach`` returns
with the new model in place; ``serve()`` opens the same web page on the same state, for
labelling by hand beside the notebook.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .engine import Engine
from .frame import is_frame, plain, pool_from_array, pool_from_frame
from .models import label_probabilities
from .pool import Pool, load_pool
from .settings import UNLIMITED, EngineSettings
from .store import open_store


class LoopError(ValueError):
    """A row id the loop does not have, or data it cannot take."""


def pool_of(data: Any, features: Sequence[str] | None = None, id_column: str = "id") -> Pool:
    """A pool from a DataFrame, a 2-D array, or the path of a pool file."""
    if isinstance(data, Pool):
        return data
    if isinstance(data, (str, Path)):
        return load_pool(data, features=list(features) if features else None,
                         id_column=id_column)
    if is_frame(data):
        return pool_from_frame(data, features)
    if isinstance(data, (np.ndarray, list)):
        return pool_from_array(data, features)
    raise LoopError(f"cannot make a pool of a {type(data).__name__}: give a pandas DataFrame, "
                    "a 2-D numpy array or the path of a .csv or .jsonl file")


class LabelledModel:
    """The loop's fitted model with its labels: ``predict`` gives label names, and a DataFrame
    is read by its feature columns. ``estimator`` is the fitted scikit-learn object itself."""

    def __init__(self, estimator: Any, labels: Sequence[str], features: Sequence[str]):
        self.estimator = estimator
        self.classes_ = np.array(list(labels), dtype=object)
        self.features = list(features)

    def _X(self, data: Any) -> np.ndarray:
        if is_frame(data):
            missing = [f for f in self.features if f not in data.columns]
            if missing:
                raise LoopError(f"the data has no feature column {missing[0]!r}")
            data = data[self.features]
        return np.asarray(data, dtype=np.float32)

    def predict_proba(self, data: Any) -> np.ndarray:
        """Each row's probability of every label, columns in ``classes_`` order."""
        return label_probabilities(self.estimator, self._X(data), len(self.classes_))

    def predict(self, data: Any) -> np.ndarray:
        return self.classes_[self.predict_proba(data).argmax(axis=1)]

    def __repr__(self) -> str:
        return f"LabelledModel({self.estimator!r}, labels={list(self.classes_)})"


class Loop:
    """Label ``data`` with active learning from Python.

    ``db`` is a SQLite file that keeps the answers (None: in memory), or a team's
    ``postgresql://`` database; ``settings`` are
    ``EngineSettings`` fields (``model="logreg"``, ``strategy=``, ``batch_size=``, ...).
    """

    def __init__(self, data: Any, labels: Sequence[str], *, db: str | Path | None = None,
                 dataset: str = "notebook", features: Sequence[str] | None = None,
                 id_column: str = "id", session: str = "notebook", **settings: Any):
        self.pool = pool_of(data, features, id_column)
        self.session = session
        settings.setdefault("max_out", UNLIMITED)  # one person at a notebook holds no one up
        self.store = open_store(db)
        try:
            self.engine = Engine(self.pool, self.store, dataset, list(labels),
                                 EngineSettings(**settings), background=False).start()
        except BaseException:
            self.store.close()
            raise
        id_key = self.pool.id_column
        self._rows = {}
        for index, task in enumerate(self.pool.tasks):
            self._rows[task[id_key] if id_key else index] = index
        self._server: _Server | None = None

    @property
    def labels(self) -> list[str]:
        return self.engine.labels

    @property
    def features(self) -> list[str]:
        return self.pool.features

    def next(self, n: int | None = None) -> list[dict[str, Any]]:
        """The ``n`` rows (a batch by default) to label next, best first. Each task is the row
        with its ``id``, and ``meta`` says why it was chosen and what the model predicts. Asking
        again hands back what the last call gave, so the answer is always the current best."""
        self.engine.release_session(self.session)
        tasks = self.engine.get_questions(self.session, n)
        id_key = self.pool.id_column
        for task in tasks:
            if id_key and id_key != "id":
                task["id"] = task.get(id_key)
            elif not id_key:
                task["id"] = self.pool.index_of(task["_input_hash"])
        return tasks

    def teach(self, answers: Mapping[Any, str | None]) -> int:
        """Store ``{id: label}`` (None: skip the row) and refit; returns how many answers were
        new. The model is the new one when this returns."""
        batch = []
        for row_id, label in answers.items():
            index = self._rows.get(plain(row_id))
            if index is None:
                raise LoopError(f"no row has id {row_id!r}")
            task = {"_input_hash": int(self.pool.input_hashes[index]),
                    "_task_hash": self.engine.task_hash(index)}
            if label is None:
                batch.append({**task, "answer": "ignore", "accept": []})
            else:
                batch.append({**task, "answer": "accept", "accept": [str(plain(label))]})
        stored = self.engine.add_answers(batch, self.session)
        self.engine.wait_idle(600)  # a served page refits in the background; teach waits
        return stored

    @property
    def model(self) -> LabelledModel | None:
        """The model fitted on every answer so far; None until two labels have answers."""
        estimator = self.engine.model_
        return None if estimator is None else LabelledModel(estimator, self.labels,
                                                            self.features)

    def stats(self) -> dict[str, Any]:
        """What the page's side panel shows: answers per label, the accuracy estimate with its
        interval, the stop signal, the round history."""
        return self.engine.stats()

    def serve(self, host: str = "127.0.0.1", port: int = 8080, *, view: str = "record",
              keys: str | None = None) -> str:
        """Open the annotation page on this loop's state, in a thread; returns its URL.

        Answers given on the page and through ``teach`` go to the same store and the same model.
        ``stop_serving()`` (or ``close()``) stops it.
        """
        import uvicorn

        from .server import create_app

        if self._server is not None:
            return self._server.url
        self.engine.worker.background = True  # the page never waits for a fit
        app = create_app(self.engine, view=view, host=host, keys=keys)
        server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                               lifespan="off"))
        self._server = _Server(server, f"http://{host}:{port}/")
        return self._server.url

    def stop_serving(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
            self.engine.wait_idle(600)
            self.engine.worker.background = False

    def close(self) -> None:
        self.stop_serving()
        self.engine.close()
        self.store.close()

    def __enter__(self) -> Loop:  # noqa: PYI034 - typing.Self needs Python 3.11
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        stats = self.engine.stats()
        return (f"<Loop {self.engine.dataset}: {len(self.pool)} rows, {stats['n_annotations']} "
                f"answers, round {stats['model_round']}, model {stats['model']}>")


class _Server:
    """uvicorn in a daemon thread, started and stopped from the notebook."""

    def __init__(self, server: Any, url: str):
        self.server = server
        self.url = url
        self.thread = threading.Thread(target=server.run, name="retrain-loop-serve", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise LoopError(f"the page could not start on {url} (is the port in use?)")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)
