"""Property-based checks of the HTTP API with schemathesis.

The schema is read from the app's own ``/openapi.json``, in process (the ``client`` fixture and
schemathesis' ASGI transport: no server). Every operation in it gets requests that fit it and
requests that do not (schemathesis' positive and negative modes), here and in a ``schemathesis
run`` of the command line against a real server (the ``serve`` fixture: the command line is
another process), whose coverage phase adds boundary values: whatever comes in, the answer is
never a server error (5xx). Another run leases real tasks and answers them with generated
answers, checking the store and the stats against a model of what was sent. The last test pins a
server error found by hand: a meta nested just under the JSON parser's depth limit.

schemathesis' pytest loader for a schema from a fixture (``schemathesis.pytest.from_fixture``)
fails on pytest 9.2 (it sets ``Function._nodeid``, which pytest no longer has), so the tests draw
cases from ``APIOperation.as_strategy`` with Hypothesis' ``@given`` themselves.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from xml.etree import ElementTree

import pytest
import schemathesis
from conftest import RGB, rgb_rows
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

MAX_EXAMPLES = 40  # per operation (both modes together); the file takes about 15 s
HYPOTHESIS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,  # no .hypothesis folder in the checkout
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# Every operation the schema lists. A new route fails test_schema_lists_every_operation until it
# is added here, and then it is fuzzed too.
OPERATIONS = [
    "GET /healthz",
    "GET /api/project",
    "POST /api/questions",
    "POST /api/answers",
    "GET /api/stats",
    "GET /api/image",
    "POST /api/release",
    "POST /api/retract",
]
# Operations whose well-formed requests must sometimes succeed: without it, a guard or validator
# that refused everything would pass the fuzzing unnoticed. (/api/image: the pool folder has no
# images, so a valid path is a 404; a made-up hash is no row of the pool, so a retract is too.)
MUST_SUCCEED = {op for op in OPERATIONS if op not in ("GET /api/image", "POST /api/retract")}
# Operations that take input, where requests that break the schema must be refused (4xx).
TAKE_INPUT = {"POST /api/questions", "POST /api/answers", "GET /api/image", "POST /api/release",
              "POST /api/retract"}


# The guard of a loopback app answers only to loopback names, and schemathesis' ASGI client says
# "testserver" unless told otherwise.
BASE = "http://127.0.0.1"


class Api:
    def __init__(self, client, schema):
        self.client = client  # a TestClient of the same app, for requests of the test's own
        self.engine = client.engine
        self.schema = schema

    def operation(self, label: str):
        operation = self.schema.find_operation_by_label(label)
        assert operation is not None, f"{label} is not in the served schema"
        return operation


@pytest.fixture
def api(client) -> Api:
    test_client = client(rgb_rows(200), RGB, features=["r", "g", "b"], batch_size=5)
    schema = schemathesis.openapi.from_asgi("/openapi.json", test_client.app,
                                            headers={"host": "127.0.0.1"})
    return Api(test_client, schema)


def call(case):
    """Send a case to the app in process; raises (with the request to reproduce it) on a 5xx."""
    return case.call_and_validate(base_url=BASE, checks=[not_a_server_error], timeout=30)


def labelled_cases(operation) -> st.SearchStrategy:
    """(mode, case): cases that fit the schema and cases that break it, in one stream."""
    return st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE).map(lambda c: (GenerationMode.POSITIVE, c)),
        operation.as_strategy(GenerationMode.NEGATIVE).map(lambda c: (GenerationMode.NEGATIVE, c)),
    )


def test_schema_lists_every_operation(api):
    labels = sorted(result.ok().label for result in api.schema.get_all_operations())
    assert labels == sorted(OPERATIONS)
    # No docs page (it would load Swagger UI from a CDN); the schema is what the app serves.
    assert api.client.get("/api/docs").status_code == 404
    assert api.schema.raw_schema == api.client.get("/openapi.json").json()
    assert api.schema.raw_schema["info"]["title"] == "retrain-loop"


@pytest.mark.parametrize("label", OPERATIONS)
def test_operation_never_answers_with_a_server_error(api, label):
    operation = api.operation(label)
    statuses: dict[GenerationMode, Counter] = {m: Counter() for m in GenerationMode}

    @HYPOTHESIS
    @given(drawn=labelled_cases(operation))
    def run(drawn) -> None:
        mode, case = drawn
        statuses[mode][call(case).status_code] += 1

    run()

    positive, negative = statuses[GenerationMode.POSITIVE], statuses[GenerationMode.NEGATIVE]
    assert positive, f"{label}: no request that fits the schema was sent"
    assert all(status < 500 for status in positive | negative), statuses
    if label in MUST_SUCCEED:
        assert any(200 <= s < 300 for s in positive), f"{label}: nothing succeeded: {statuses}"
    if label in TAKE_INPUT:
        assert negative, f"{label}: no request that breaks the schema was sent"
        # Not all: pydantic's lax mode takes "3" for an int and "yes" for a bool.
        assert any(400 <= s < 500 for s in negative), f"{label}: nothing refused: {statuses}"


def test_schemathesis_run_finds_no_server_error(serve, tmp_path):
    """The command line's whole run (`schemathesis run`, in a subprocess, so against a real
    server): besides random fuzzing in both modes, its coverage phase sends each schema's
    boundary values and systematically broken requests, which 40 random examples can miss. Its
    JUnit report has one test case per operation."""
    base = serve(rgb_rows(200), RGB, features=["r", "g", "b"], batch_size=5)
    junit = tmp_path / "junit.xml"
    # fmt: off
    command = [
        sys.executable, "-m", "schemathesis.cli", "run", base + "/openapi.json",
        "--checks", "not_a_server_error",
        "--max-examples", str(MAX_EXAMPLES),
        "--workers", "1",
        "--generation-database", "none",
        "--report", "junit", "--report-junit-path", str(junit),
        "--no-color",
    ]
    # fmt: on
    run = subprocess.run(
        command, check=False, cwd=tmp_path, capture_output=True, text=True, timeout=180
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    suite = ElementTree.parse(junit).getroot()
    assert sorted(case.get("name") for case in suite.iter("testcase")) == sorted(OPERATIONS)
    assert suite.get("failures") == "0" and suite.get("errors") == "0", run.stdout[-6000:]


def outcome(answer: dict) -> str:
    """What the stats count an answer as (retrain_loop.answers.outcome)."""
    return answer["accept"][0] if answer["answer"] == "accept" else f"_{answer['answer']}"


def test_generated_answers_to_leased_tasks_are_stored_as_sent(api):
    """Lease real tasks, then post schemathesis' answer batches (any session, verdict, meta and
    extra fields) with the leased tasks' hashes and labels drawn from the project's and one it
    lacks. A batch is stored whole when every answer is valid and refused whole (422) otherwise;
    the store and the stats follow a model of the answers kept per session and task."""
    leased = []
    for i in range(3):  # a session holds at most 3 batches at a time
        got = api.client.post("/api/questions", json={"session": f"lease{i}", "n": 15})
        assert got.status_code == 200, got.text
        leased += got.json()["tasks"]
    assert len(leased) == 45 and api.engine.stats()["n_out"] == 45
    operation = api.operation("POST /api/answers")
    kept: dict[tuple[str, int], str] = {}  # (session, task hash) -> outcome
    statuses: Counter = Counter()

    @HYPOTHESIS
    @given(case=operation.as_strategy(GenerationMode.POSITIVE), data=st.data())
    def run(case, data) -> None:
        answers = case.body["answers"]
        valid = True
        for answer in answers:
            task = data.draw(st.sampled_from(leased))
            answer["_input_hash"], answer["_task_hash"] = task["_input_hash"], task["_task_hash"]
            answer.pop("label", None)  # these are multiple-choice tasks, not binary questions
            accept = data.draw(st.lists(st.sampled_from([*RGB, "purple"]), max_size=2))
            answer["accept"] = accept
            valid &= all(a in RGB for a in accept) and (
                answer["answer"] != "accept" or len(accept) == 1
            )
        before = api.engine.store.count("test")
        response = call(case)
        statuses[response.status_code] += 1
        if valid:
            assert response.status_code == 200, (response.status_code, response.text)
            new = {(case.body["session"], a["_task_hash"]) for a in answers} - kept.keys()
            assert len(new) <= response.json()["stored"] <= len(answers), response.text
            for answer in answers:
                kept[(case.body["session"], answer["_task_hash"])] = outcome(answer)
        else:
            assert response.status_code == 422, (response.status_code, response.text)
            assert api.engine.store.count("test") == before, "a refused batch stored answers"
        stats = api.client.get("/api/stats")
        assert stats.status_code == 200, stats.text
        counts = Counter(kept.values())
        assert api.engine.store.count("test") == len(kept)
        assert stats.json()["n_annotations"] == len(kept), stats.json()
        assert stats.json()["per_label"] == {label: counts[label] for label in RGB}, stats.json()

    run()
    assert statuses[200] and statuses[422], statuses  # both branches were taken
    assert api.engine.wait_idle(30), "the refit did not finish"
    assert api.engine.stats()["last_error"] is None


def nested_meta_batch(depth: int) -> bytes:
    """One answer whose meta holds ``depth`` nested lists (the task is no pool row)."""
    head = (
        '{"session": "deep", "answers": [{"_input_hash": 1, "_task_hash": 1, "answer": "ignore", '
    )
    return (head + '"meta": {"x": ' + "[" * depth + "]" * depth + "}}]}").encode()


def test_meta_nested_up_to_the_parsers_limit_is_no_server_error(api):
    def post(depth: int):
        return api.client.post(
            "/api/answers",
            content=nested_meta_batch(depth),
            headers={"Content-Type": "application/json"},
        )

    def parsed(depth: int) -> bool:
        return "error parsing the body" not in post(depth).text

    # The deepest meta FastAPI parses at all: deeper bodies get its 400 "error parsing the body".
    low, high = 1, 100_000
    assert parsed(low) and not parsed(high)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if parsed(middle) else (low, middle)
    statuses = {depth: post(depth).status_code for depth in range(max(1, low - 100), low + 1)}
    server_errors = {depth: s for depth, s in statuses.items() if s >= 500}
    assert not server_errors, f"meta nested this deep: status {server_errors}"
    assert set(statuses.values()) <= {400, 404, 422}, statuses  # no pool row, or too deep
