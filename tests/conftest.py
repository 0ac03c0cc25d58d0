"""Shared fixtures: real pool files, real SQLite files, the app in process (``client``) and a real
server on 127.0.0.1 (``serve``)."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import uvicorn

from retrain_loop.engine import Engine
from retrain_loop.pool import load_pool
from retrain_loop.server import create_app
from retrain_loop.settings import FIELDS, EngineSettings
from retrain_loop.store import AnnotationStore, open_store
from retrain_loop.team import team_for

# The PostgreSQL server the team tests use; the machine provides it (trust auth). Where it is
# absent they skip, unless RETRAIN_LOOP_REQUIRE_POSTGRES is set (CI), where they fail.
POSTGRES = os.environ.get("RETRAIN_LOOP_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
STORES = ["sqlite", "postgres"]

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
    if "team" not in rest:  # as serve does, for PostgreSQL; a test's clock times its claims
        clock = {"clock": rest["clock"]} if "clock" in rest else {}
        rest["team"] = team_for(store, dataset, pool, **clock)
    return Engine(pool, store, dataset, labels, EngineSettings(**settings), **rest).start()


class FakeClock:
    """A clock for leases that moves only when a test says so."""

    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _postgres_or_skip() -> None:
    try:
        import psycopg
    except ImportError:
        reason = "psycopg is not installed (pip install 'retrain-loop[postgres]')"
    else:
        try:
            psycopg.connect(POSTGRES, connect_timeout=3).close()
            return
        except psycopg.Error as e:
            reason = f"no PostgreSQL at {POSTGRES}: {e}".strip()
    if os.environ.get("RETRAIN_LOOP_REQUIRE_POSTGRES"):
        pytest.fail(f"RETRAIN_LOOP_REQUIRE_POSTGRES is set, but {reason}")
    pytest.skip(reason)


@pytest.fixture
def pg_url():
    """A URL of the test PostgreSQL database with a schema of its own (dropped afterwards), so
    that tests share nothing."""
    _postgres_or_skip()
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in POSTGRES else "?"
    yield f"{POSTGRES}{sep}options=-csearch_path%3D{schema}"
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def db_target(tmp_path):
    """Where the fixtures below keep answers: a SQLite file. A module that runs on both stores
    overrides it with ``store_target``."""
    return tmp_path / "answers.db"


def store_target(request, tmp_path):
    """For ``@pytest.fixture(params=STORES) def db_target(request, tmp_path)``: a SQLite file
    or a PostgreSQL URL."""
    if request.param == "postgres":
        return request.getfixturevalue("pg_url")
    return tmp_path / "answers.db"


@pytest.fixture
def make_engine(tmp_path, db_target):
    """make_engine(rows, labels, **kwargs) -> a started Engine over a JSONL pool and a SQLite
    file; ``kwargs`` as for ``build_engine``, with the model ``logreg`` unless given."""
    made: list[tuple[Engine, AnnotationStore]] = []

    def make(rows, labels=RGB, *, features=None, db_path=None, dataset="test", **kwargs) -> Engine:
        pool_path = tmp_path / "pool.jsonl"
        if not pool_path.exists():
            write_jsonl(pool_path, rows)
        pool = load_pool(pool_path, features=features)
        store = open_store(db_path or db_target)
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
def serve(tmp_path, db_target):
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
        store = open_store(db_path or db_target)
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
def client(tmp_path, db_target):
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
        store = open_store(db_path or db_target)
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
