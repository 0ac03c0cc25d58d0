"""Shared fixtures: real pool files, real SQLite files, the app in process (``client``) and a real
server on 127.0.0.1 (``serve``)."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import uvicorn

from retrain_loop.engine import Engine
from retrain_loop.pool import load_pool
from retrain_loop.server import create_app
from retrain_loop.settings import FIELDS, EngineSettings
from retrain_loop.store import AnnotationStore

RGB = ["red", "green", "blue"]


def rgb_rows(n: int, seed: int = 0) -> list[dict]:
    """Random colours; their known label is the strongest channel."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, (r, g, b) in enumerate(rng.integers(0, 256, size=(n, 3)).tolist()):
        rows.append({"id": f"c{i:05d}", "r": r, "g": g, "b": b, "hex": f"#{r:02x}{g:02x}{b:02x}"})
    return rows


def rgb_label(task: dict) -> str:
    return RGB[int(np.argmax([task["r"], task["g"], task["b"]]))]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """uvicorn serving ``create_app(engine)`` in a thread, on a free port of 127.0.0.1."""

    def __init__(self, engine: Engine, view: str = "record", **app_options):
        self.engine = engine
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(engine, view=view, **app_options), host="127.0.0.1",
                                port=self.port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)
        self.engine.close()


def build_engine(pool, store, dataset, labels, **kwargs) -> Engine:
    """A started Engine; ``kwargs`` are settings (``EngineSettings`` fields) and the engine's own
    keywords (``background``, ``state``, ``clock``)."""
    settings = {k: v for k, v in kwargs.items() if k in FIELDS}
    rest = {k: v for k, v in kwargs.items() if k not in FIELDS}
    return Engine(pool, store, dataset, labels, EngineSettings(**settings), **rest).start()


class FakeClock:
    """A clock for leases that moves only when a test says so."""

    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def make_engine(tmp_path):
    """make_engine(rows, labels, **kwargs) -> a started Engine over a JSONL pool and a SQLite
    file; ``kwargs`` as for ``build_engine``, with the model ``logreg`` unless given."""
    made: list[tuple[Engine, AnnotationStore]] = []

    def make(rows, labels=RGB, *, features=None, db_path=None, dataset="test", **kwargs) -> Engine:
        pool_path = tmp_path / "pool.jsonl"
        if not pool_path.exists():
            write_jsonl(pool_path, rows)
        pool = load_pool(pool_path, features=features)
        store = AnnotationStore(db_path or tmp_path / "answers.db")
        kwargs.setdefault("model", "logreg")
        try:
            engine = build_engine(pool, store, dataset, labels, **kwargs)
        except BaseException:
            store.close()
            raise
        made.append((engine, store))
        return engine

    yield make
    for engine, store in made:
        engine.close()
        store.close()


@pytest.fixture
def serve(tmp_path):
    """serve(rows, labels, *, view=..., features=..., batch_size=..., model=..., dataset=...,
    db_path=..., session_lease_s=..., app_options={...}, **engine_kwargs) -> base URL of a real
    server. ``serve.last_engine`` is its engine; ``app_options`` go to ``create_app``.
    """
    servers: list[LiveServer] = []
    stores: list[AnnotationStore] = []

    def start(rows, labels, *, view="record", features=None, batch_size=5, model="logreg",
              dataset="test", db_path=None, session_lease_s=600, app_options=None,
              **kwargs) -> str:
        pool_path = tmp_path / f"pool{len(servers)}.jsonl"
        write_jsonl(pool_path, rows)
        pool = load_pool(pool_path, features=features)
        store = AnnotationStore(db_path or tmp_path / "answers.db")
        engine = build_engine(pool, store, dataset, labels, model=model, batch_size=batch_size,
                              lease_seconds=session_lease_s, **kwargs)
        server = LiveServer(engine, view=view, **(app_options or {})).start()
        servers.append(server)
        stores.append(store)
        start.last_engine = engine
        start.last_server = server
        return server.url

    start.last_engine = None
    yield start
    for server in servers:
        server.stop()
    for store in stores:
        store.close()


@pytest.fixture
def client(tmp_path):
    """client(rows, labels, *, view=..., features=..., batch_size=..., model=..., dataset=...,
    db_path=..., app_options={...}, base_url=..., **engine_kwargs) -> a ``TestClient`` over
    ``create_app(engine)``: the API in process, over a real SQLite file, with no server. Its
    ``.engine`` is the engine; ``app_options`` go to ``create_app``. The client, the engine and
    the store close at teardown.

    The client's Host is 127.0.0.1, not TestClient's "testserver": the guard of a loopback app
    (``create_app``'s default host) answers only to loopback names.
    """
    from fastapi.testclient import TestClient

    made: list[tuple[TestClient, Engine, AnnotationStore]] = []

    def make(rows, labels=RGB, *, view="record", features=None, batch_size=5, model="logreg",
             dataset="test", db_path=None, app_options=None, base_url="http://127.0.0.1",
             **kwargs) -> TestClient:
        pool_path = write_jsonl(tmp_path / f"pool{len(made)}.jsonl", rows)
        pool = load_pool(pool_path, features=features)
        store = AnnotationStore(db_path or tmp_path / "answers.db")
        try:
            engine = build_engine(pool, store, dataset, labels, model=model,
                                  batch_size=batch_size, **kwargs)
        except BaseException:
            store.close()
            raise
        try:
            test_client = TestClient(create_app(engine, view=view, **(app_options or {})),
                                     base_url=base_url).__enter__()
        except BaseException:
            engine.close()
            store.close()
            raise
        test_client.engine = engine
        made.append((test_client, engine, store))
        return test_client

    yield make
    for test_client, engine, store in made:
        test_client.__exit__(None, None, None)
        engine.close()
        store.close()
