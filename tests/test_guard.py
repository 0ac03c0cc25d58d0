"""What a request must show: the host, the token, JSON from our own origin, a bounded body.
The app in process over a real SQLite file (the ``client`` fixture; the guard reads only the
request's headers and body, which a TestClient sends as a server would pass them on), and the
``serve`` command as a real process where the token it makes up is the point. Nothing a refusal
turns away is stored."""

from __future__ import annotations

import json

import httpx
import pytest
from conftest import RGB, rgb_label, rgb_rows

from retrain_loop.server.guard import COOKIE

TOKEN = "s3cret-token"


def answers_for(tasks):
    return [dict(t, answer="accept", accept=[rgb_label(t)]) for t in tasks]


def nothing_leased_or_stored(engine):
    return engine.stats()["n_out"] == 0 and engine.store.count("test") == 0


def test_a_get_leases_nothing(client):
    api = client(rgb_rows(30), RGB)
    response = api.get("/api/questions", params={"session": "a"})
    assert response.status_code == 405
    assert nothing_leased_or_stored(api.engine)


@pytest.mark.parametrize("headers, body", [
    ({"content-type": "text/plain"}, '{"session": "a"}'),  # what a form or no-cors fetch sends
    ({"content-type": "application/x-www-form-urlencoded"}, "session=a"),
    ({}, '{"session": "a"}'),
])
def test_writes_must_be_json(client, headers, body):
    api = client(rgb_rows(30), RGB)
    leased = api.post("/api/questions", content=body, headers=headers)
    task = api.post("/api/questions", json={"session": "b", "n": 1}).json()["tasks"][0]
    answered = api.post("/api/answers", headers=headers, content=json.dumps(
        {"session": "b", "answers": answers_for([task])}))
    assert leased.status_code == answered.status_code == 415
    assert api.engine.stats()["n_out"] == 1  # only b's own, JSON request
    assert api.engine.store.count("test") == 0


def test_writes_from_another_origin_are_refused(client):
    url = "http://127.0.0.1:8123"
    api = client(rgb_rows(30), RGB, base_url=url)
    # Another site, and another port of this machine: each is another origin.
    for origin in ("http://evil.example", "http://127.0.0.1:9999", "https://127.0.0.1:8123"):
        evil = api.post("/api/questions", json={"session": "a"}, headers={"origin": origin})
        assert evil.status_code == 403, origin
    assert nothing_leased_or_stored(api.engine)
    ours = api.post("/api/questions", json={"session": "a", "n": 2}, headers={"origin": url})
    assert ours.status_code == 200 and len(ours.json()["tasks"]) == 2


def test_a_loopback_server_answers_only_to_loopback_names(client):
    api = client(rgb_rows(30), RGB)
    for host in ("127.0.0.1:8080", "localhost", "localhost:8080", "[::1]:8080", "127.0.0.2"):
        assert api.get("/api/project", headers={"host": host}).status_code == 200, host
    for host in ("attacker.example:8080", "testserver", "localhost.attacker.example:8080", ""):
        rebound = api.get("/api/project", headers={"host": host})
        assert rebound.status_code == 400, host
        assert api.post("/api/questions", json={"session": "a"},
                        headers={"host": host}).status_code == 400, host
    assert nothing_leased_or_stored(api.engine)


def test_a_name_that_only_starts_like_a_loopback_address_is_refused(client):
    api = client(rgb_rows(30), RGB)
    for name in ("127.0.0.1.attacker.example", "127.evil.example", "127.0.0.1.nip.io"):
        assert api.get("/api/project", headers={"host": name}).status_code == 400, name
    for name in ("127.0.0.2", "127.1.2.3:8080", "[::1]:8080", "localhost:8080"):
        assert api.get("/api/project", headers={"host": name}).status_code == 200, name


def test_a_token_guards_every_route_and_the_first_visit_sets_a_cookie(client):
    api = client(rgb_rows(30), RGB, app_options={"token": TOKEN, "host": "0.0.0.0"})
    routes = ["/", "/api/project", "/api/stats", "/static/main.js", "/healthz", "/openapi.json"]
    for path in routes:
        assert api.get(path).status_code == 401, path
    assert api.post("/api/questions", json={"session": "a"}).status_code == 401
    assert api.get("/api/project", params={"token": "wrong"}).status_code == 401
    assert api.get("/api/project", params={"token": TOKEN[:-1]}).status_code == 401
    for odd in ("tökén", "\u2603" * 20):  # not ASCII: still a plain 401, never a 500
        assert api.get("/api/project", params={"token": odd}).status_code == 401
        assert api.get("/api/project", headers={
            "x-retrain-loop-token": odd.encode()}).status_code == 401
    assert nothing_leased_or_stored(api.engine)
    # Any Host is served beyond loopback: the token is the guard there.
    assert api.get("/api/project", headers={"authorization": f"Bearer {TOKEN}",
                                            "host": "labels.example"}).status_code == 200
    for path in routes:  # every one of them is there for whoever has the token
        assert api.get(path, headers={"x-retrain-loop-token": TOKEN}).status_code == 200, path
    assert not api.cookies  # a token in a header sets no cookie
    first = api.get("/", params={"token": TOKEN})
    assert first.status_code == 200
    cookie = first.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}={TOKEN}") and "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    # The page's own requests carry the cookie from here on.
    tasks = api.post("/api/questions", json={"session": "a"}).json()["tasks"]
    assert api.post("/api/answers", json={"session": "a", "answers": answers_for(tasks)}
                    ).json()["stored"] == len(tasks) > 0


def test_bodies_over_the_limit_get_413_and_store_nothing(client):
    api = client(rgb_rows(30), RGB, app_options={"max_body": 20_000})
    task = api.post("/api/questions", json={"session": "a", "n": 1}).json()["tasks"][0]
    big = dict(answers_for([task])[0], meta={"note": "x" * 30_000})
    response = api.post("/api/answers", json={"session": "a", "answers": [big]})
    assert response.status_code == 413

    def chunks():  # no Content-Length: the limit holds while reading
        yield b'{"session": "a", "answers": [{"meta": "'
        for _ in range(30):
            yield b"x" * 1000
        yield b'"}]}'

    streamed = api.post("/api/answers", content=chunks(),
                        headers={"content-type": "application/json"})
    assert "content-length" not in streamed.request.headers
    assert streamed.status_code == 413
    assert api.engine.store.count("test") == 0
    small = api.post("/api/answers", json={"session": "a", "answers": answers_for([task])})
    assert small.json()["stored"] == 1
    assert api.engine.store.count("test") == 1


def test_one_session_cannot_lease_the_whole_pool(client):
    api = client(rgb_rows(300), RGB, batch_size=10)
    got = [api.post("/api/questions", json={"session": "greedy", "n": 200}).json()["tasks"]
           for _ in range(3)]
    other = api.post("/api/questions", json={"session": "other"}).json()["tasks"]
    assert [len(batch) for batch in got] == [30, 0, 0]  # three batches at most
    assert len(other) == 10
    # Answering frees the session to lease again.
    api.post("/api/answers", json={"session": "greedy", "answers": answers_for(got[0][:10])})
    again = api.post("/api/questions", json={"session": "greedy"}).json()["tasks"]
    assert len(again) == 10


def test_framing_is_refused_and_a_nul_in_a_path_is_a_404(client, tmp_path):
    (tmp_path / "cat.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 16)
    api = client([{"id": "1", "image": "cat.png", "v": 1}], ["a", "b"], view="image",
                 features=["v"])
    assert "frame-ancestors 'none'" in api.get("/").headers["content-security-policy"]
    assert api.get("/api/image", params={"path": "cat.png"}).status_code == 200
    assert api.get("/api/image", params={"path": "cat\x00.png"}).status_code == 404


def test_serve_on_a_network_address_makes_up_a_token_and_prints_it(tmp_path):
    import re
    import subprocess
    import sys
    import time

    from conftest import free_port, write_jsonl

    pool = write_jsonl(tmp_path / "pool.jsonl", rgb_rows(40))
    port = free_port()
    command = [sys.executable, "-m", "retrain_loop.cli", "serve", "ds", str(pool), "--label",
               "red,green,blue", "--features", "r,g,b", "--model", "logreg", "--db",
               str(tmp_path / "a.db"), "--host", "0.0.0.0", "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        while line and "Open http" not in line:
            line = server.stdout.readline()
        token = re.search(r"\?token=(\S+)", line).group(1)
        assert len(token) >= 20
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                refused = httpx.get(f"{base}/api/project")
                break
            except httpx.ConnectError:
                time.sleep(0.1)
        assert refused.status_code == 401
        assert httpx.get(f"{base}/api/project", params={"token": token}).status_code == 200
    finally:
        server.terminate()
        _, err = server.communicate(timeout=20)
    assert "anyone who can reach port" in err


@pytest.mark.parametrize("meta, why", [
    ({"note": "x" * 70_000}, "at most"),
    ({"score": float("nan")}, "plain JSON"),
    ({"score": float("inf")}, "plain JSON"),
    ({"note": "a\ud800b"}, "plain JSON"),
])
def test_meta_that_cannot_be_stored_as_is_gets_422(client, meta, why):
    api = client(rgb_rows(30), RGB)
    task = api.post("/api/questions", json={"session": "a", "n": 1}).json()["tasks"][0]
    answer = dict(answers_for([task])[0], meta=meta)
    # Spelt by hand: NaN, Infinity and a lone surrogate are what a careless client sends.
    body = json.dumps({"session": "a", "answers": [answer]}, allow_nan=True)
    response = api.post("/api/answers", content=body.encode("utf-8", "surrogatepass"),
                        headers={"content-type": "application/json"})
    assert response.status_code == 422 and why in response.text
    assert api.engine.store.count("test") == 0


def test_a_pool_field_too_long_or_not_text_is_refused_with_its_line(tmp_path):
    from retrain_loop.pool import MAX_FIELD, PoolError, load_pool

    long_field = tmp_path / "long.jsonl"
    long_field.write_text('{"id": "a", "v": 1}\n' + json.dumps(
        {"id": "b", "v": 2, "t": "x" * (MAX_FIELD + 1)}) + "\n")
    with pytest.raises(PoolError, match=r"long.jsonl:2: field 't' is 100,001 characters"):
        load_pool(long_field, features=["v"])
    surrogate = tmp_path / "surrogate.jsonl"
    surrogate.write_text('{"id": "a", "v": 1, "t": "x\\ud800"}\n')
    with pytest.raises(PoolError, match=r"surrogate.jsonl:1: field 't' holds a lone surrogate"):
        load_pool(surrogate, features=["v"])


def floor_versions() -> list[list[str]]:
    from pathlib import Path

    lines = (Path(__file__).parent / "server_floor_versions.txt").read_text().splitlines()
    return [line.split() for line in lines if line.strip() and not line.startswith("#")]


@pytest.mark.skipif(bool(__import__("os").environ.get("RETRAIN_LOOP_FLOOR_RUN")),
                    reason="already running on the floor versions")
@pytest.mark.parametrize("specs", floor_versions(), ids=lambda specs: specs[0])
def test_the_server_tests_pass_on_the_oldest_fastapi_allowed(specs):
    import os
    import subprocess
    import sys
    from pathlib import Path

    here = Path(__file__).parent
    folder = here.parent / ".venv" / "compat" / specs[0].replace("==", "-")
    assert folder.is_dir(), f"{folder} is missing: `make test` installs it"
    env = dict(os.environ, PYTHONPATH=str(folder), RETRAIN_LOOP_FLOOR_RUN="1")
    versions = subprocess.run(
        [sys.executable, "-c", ("import fastapi, starlette; print(fastapi.__version__, "
                                "starlette.__version__, fastapi.__file__)")],
        env=env, capture_output=True, text=True, check=True).stdout.split()
    assert versions[:2] == [spec.split("==")[1] for spec in specs]
    assert Path(versions[2]).is_relative_to(folder)
    pyproject = (here.parent / "pyproject.toml").read_text()
    assert f'"fastapi>={".".join(versions[0].split(".")[:2])}"' in pyproject  # it is the floor
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          str(here / "test_guard.py"), str(here / "test_server.py")],
                         env=env, capture_output=True, text=True, cwd=here.parent,
                         check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
