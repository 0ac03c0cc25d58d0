"""Pool scoring on a Dask cluster (dask_scoring.py): a real LocalCluster of two worker processes,
real fits on scikit-learn's bundled datasets, pools written as CSV and Parquet files.

The probabilities from the workers are compared with this process's own: equal for LightGBM
(which scores each row on its own, in float64), equal up to float32 rounding for logistic
regression (whose BLAS products depend on how the rows are batched).
"""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import closing

import numpy as np
import pytest
from click.testing import CliRunner

distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")
pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

from sklearn.datasets import load_breast_cancer, load_digits

from retrain_loop import dask_scoring, offline, partitions
from retrain_loop.cli import main
from retrain_loop.dask_scoring import DaskError, DaskPool
from retrain_loop.engine import Engine
from retrain_loop.frame import pool_from_frame
from retrain_loop.models import label_probabilities, make_model
from retrain_loop.pool import PoolError, load_pool
from retrain_loop.settings import EngineSettings
from retrain_loop.store import AnnotationStore

DIGITS = [f"d{k}" for k in range(10)]
N_LABELLED = 300
SMALL = 400  # rows per partition here, so a file of 1,797 rows is five partitions


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster:
        yield cluster


@pytest.fixture(scope="module")
def client(cluster):
    with distributed.Client(cluster, set_as_default=False) as client:
        yield client


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """The digits as a CSV and a Parquet pool (row groups of 256 rows), the true labels, and a
    db-out file answering the first rows."""
    folder = tmp_path_factory.mktemp("digits")
    data = load_digits()
    frame = pd.DataFrame(data.data, columns=[f"p{k}" for k in range(64)])
    frame.insert(0, "id", [f"r{i}" for i in range(len(frame))])
    frame.to_csv(folder / "digits.csv", index=False)
    frame.to_parquet(folder / "digits.parquet", row_group_size=256)
    options = [{"id": d, "text": d} for d in DIGITS]
    answers = [{"id": f"r{i}", "answer": "accept", "accept": [DIGITS[data.target[i]]],
                "options": options} for i in range(N_LABELLED)]
    (folder / "answers.jsonl").write_text("".join(json.dumps(a) + "\n" for a in answers))
    return folder, data.target


def fitted(name, pool, y):
    return make_model(name).fit(pool.X[:N_LABELLED], y[:N_LABELLED])


def assert_same(got, local, model_name):
    if model_name == "lightgbm":
        np.testing.assert_array_equal(got, local)
    else:
        np.testing.assert_allclose(got, local, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(got.argmax(axis=1), local.argmax(axis=1))


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
@pytest.mark.parametrize("model_name", ["lightgbm", "logreg"])
def test_the_workers_read_their_partitions_and_score_as_this_process_does(
        client, digits, suffix, model_name):
    folder, y = digits
    pool = load_pool(folder / f"digits.{suffix}")
    model = fitted(model_name, pool, y)
    with DaskPool(client, pool, partition_rows=SMALL) as cluster:
        assert cluster.source.kind == suffix and len(cluster.parts) > 1
        assert [p.start for p in cluster.parts[1:]] == [p.stop for p in cluster.parts[:-1]]
        got = cluster.probabilities(model, len(DIGITS))
        rows = np.array([5, 1796, 0, 400])
        picked = cluster.probabilities(model, len(DIGITS), rows)
    assert_same(got, label_probabilities(model, pool.X, len(DIGITS)), model_name)
    np.testing.assert_array_equal(picked, got[rows])


def test_a_pool_without_a_file_is_sent_from_here_and_scored_the_same(client):
    data = load_breast_cancer()
    pool = pool_from_frame(pd.DataFrame(data.data, columns=list(data.feature_names)))
    model = make_model("logreg").fit(pool.X[::3], data.target[::3])
    with DaskPool(client, pool, partition_rows=100) as cluster:
        assert cluster.source.kind == "host" and len(cluster.parts) == 6
        first = cluster.probabilities(model, 2)
        again = cluster.probabilities(make_model("lightgbm").fit(pool.X, data.target), 2)
    assert_same(first, label_probabilities(model, pool.X, 2), "logreg")
    assert again.shape == (len(pool), 2)


def test_partitions_come_in_order_a_few_at_a_time_from_where_the_sweep_stopped(client, digits):
    folder, y = digits
    pool = load_pool(folder / "digits.csv")
    model = fitted("lightgbm", pool, y)
    with DaskPool(client, pool, partition_rows=SMALL) as cluster:
        todo = np.zeros(len(pool), dtype=bool)
        todo[[10, 900, 1700]] = True
        assert cluster.plan(todo, cursor=850) == [2, 4, 0]  # row 850 is in partition 2
        stream = cluster.stream(model, len(DIGITS), [4, 0, 2], in_flight=1)
        taken = []
        while not stream.done:
            got = stream.next(timeout=5)
            if got is not None:
                taken.append(got)
    assert [part.start for part, _ in taken] == [1600, 0, 800]
    for part, proba in taken:
        np.testing.assert_array_equal(
            proba, label_probabilities(model, pool.X[part.start:part.stop], len(DIGITS)))


def write_csv(path, frame):
    frame.to_csv(path, index=False)


@pytest.mark.parametrize("change", ["longer", "same size", "rows moved"])
def test_a_csv_file_changed_after_it_was_loaded_is_an_error_not_other_rows(
        client, tmp_path, change):
    frame = pd.DataFrame({"id": [f"r{i}" for i in range(1000)], "a": np.arange(1000) % 7 + 1,
                          "b": np.arange(1000) % 5 + 1})
    write_csv(tmp_path / "pool.csv", frame)
    pool = load_pool(tmp_path / "pool.csv")
    model = make_model("logreg").fit(pool.X, np.arange(1000) % 2)
    cluster = DaskPool(client, pool, partition_rows=300)
    if change == "rows moved":  # the same bytes, two rows of one partition swapped
        frame.iloc[[600, 650]] = frame.iloc[[650, 600]].to_numpy()
    else:  # one byte more, or as many
        frame.loc[700, "a"] = 12 if change == "longer" else 9
    write_csv(tmp_path / "pool.csv", frame)
    with pytest.raises(PoolError, match="changed after it was loaded") as raised:
        cluster.probabilities(model, 2)
    if change != "longer":  # the fingerprint of the values read names the partition
        assert "rows 601-900: other values than were loaded" in str(raised.value)


def test_a_parquet_file_changed_or_missing_a_column_after_it_was_loaded_is_an_error(
        client, tmp_path):
    path = tmp_path / "pool.parquet"
    frame = pd.DataFrame({"a": np.arange(600.0) % 7, "b": np.arange(600.0) % 3})
    frame.to_parquet(path, row_group_size=100)
    pool = load_pool(path)
    model = make_model("logreg").fit(pool.X, np.arange(600) % 2)
    frame.iloc[:500].to_parquet(path, row_group_size=100)  # fewer rows
    with pytest.raises(PoolError, match="it has 500 rows, the pool 600"):
        DaskPool(client, pool, partition_rows=200)
    frame.assign(a=frame.a + 1).to_parquet(path, row_group_size=100)  # other values
    with pytest.raises(PoolError, match="other values than were loaded"):
        DaskPool(client, pool, partition_rows=200).probabilities(model, 2)
    frame[["a"]].assign(c=1.0).to_parquet(path, row_group_size=100)
    with pytest.raises(PoolError, match="it has no column 'b'"):
        DaskPool(client, pool, partition_rows=200).probabilities(model, 2)


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_score_on_dask_writes_the_rows_local_scoring_writes(digits, tmp_path, monkeypatch):
    monkeypatch.setattr(partitions, "PARTITION_ROWS", SMALL)
    folder, _ = digits
    common = ["score", folder / "digits.parquet", "--annotations", folder / "answers.jsonl",
              "--dataset", "digits", "--model", "lightgbm", "--top", 200]
    here = run(*common, "--out", tmp_path / "here.csv")
    there = run(*common, "--out", tmp_path / "there.csv", "--dask", "local")
    assert here.exit_code == 0 and there.exit_code == 0, there.output
    lines = (tmp_path / "there.csv").read_text().splitlines()
    assert len(lines) == 201 and lines == (tmp_path / "here.csv").read_text().splitlines()


def test_logistic_regression_ranks_the_same_top_rows_on_dask(client, digits, cluster):
    folder, _ = digits
    pool = load_pool(folder / "digits.csv")
    scored = {}
    for where in (None, cluster.scheduler_address):
        with closing(offline.open_annotations(folder / "answers.jsonl", "digits")) as store:
            scored[where] = offline.score(pool, store, "digits", DIGITS, top=100, model="logreg",
                                          dask=where)
    here, there = scored[None], scored[cluster.scheduler_address]
    assert [r["id"] for r in here] == [r["id"] for r in there]
    np.testing.assert_allclose([r["score"] for r in there], [r["score"] for r in here], atol=1e-6)


def test_predict_on_dask_gives_the_labels_local_prediction_gives(digits, tmp_path, monkeypatch):
    monkeypatch.setattr(partitions, "PARTITION_ROWS", SMALL)
    folder, _ = digits
    trained = run("train", folder / "digits.csv", "--annotations", folder / "answers.jsonl",
                  "--dataset", "digits", "--model", "logreg", "--out", tmp_path / "m.skops")
    assert trained.exit_code == 0, trained.output
    for name, extra in (("here", []), ("there", ["--dask", "local"])):
        result = run("predict", tmp_path / "m.skops", folder / "digits.csv",
                     "--out", tmp_path / f"{name}.jsonl", *extra)
        assert result.exit_code == 0, result.output
    here, there = (read_jsonl(tmp_path / f"{n}.jsonl") for n in ("here", "there"))
    assert len(there) == 1797 and [r["label"] for r in there] == [r["label"] for r in here]
    np.testing.assert_allclose([list(r["probs"].values()) for r in there],
                               [list(r["probs"].values()) for r in here], atol=1e-6)


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_command_line_refuses_a_missing_column_or_scheduler_with_exit_2(
        digits, tmp_path, monkeypatch, cluster):
    folder, _ = digits
    common = ["score", folder / "digits.csv", "--annotations", folder / "answers.jsonl",
              "--dataset", "digits", "--out", tmp_path / "out.csv"]
    missing = run(*common, "--features", "p1,nope", "--dask", cluster.scheduler_address)
    assert missing.exit_code == 2 and "missing feature column 'nope'" in missing.output
    monkeypatch.setattr(dask_scoring, "CONNECT_TIMEOUT", 1)
    unreachable = run(*common, "--dask", "tcp://127.0.0.1:1")
    assert unreachable.exit_code == 2
    assert "cannot reach a Dask scheduler at tcp://127.0.0.1:1" in unreachable.output
    assert not (tmp_path / "out.csv").exists()


def test_serve_rescores_the_rows_a_bounded_round_did_not_on_dask(digits, cluster):
    folder, y = digits
    pool = load_pool(folder / "digits.parquet")
    store = AnnotationStore(None)
    settings = EngineSettings(model="lightgbm", round_sample=300, round_head=40,
                              dask=cluster.scheduler_address)
    engine = Engine(pool, store, "digits", DIGITS, settings)
    try:
        assert engine.refitter.dask.source.kind == "parquet"
        engine.start()
        session = "alice"
        for _ in range(3):
            tasks = engine.get_questions(session)
            engine.add_answers([dict(t, answer="accept", accept=[DIGITS[y[pool.index_of(
                t["_input_hash"])]]]) for t in tasks], session)
            assert engine.wait_idle(60)
        assert engine.wait_idle(60, swept=True)
        stats = engine.stats()
        assert stats["n_unscored"] == 0 and stats["n_scored"] == stats["n_remaining"]
        # The head is the best of every open row the serving model scored, here and there.
        head = engine.sweep.head()
        open_rows = np.flatnonzero(engine.queue.open_rows())
        proba = label_probabilities(engine.model_, pool.X, len(DIGITS))
        utility = engine.refitter.utility(proba, np.random.default_rng(0))
        assert len(head) == 40 and np.isin(head, open_rows).all()
        assert utility[head].min() >= np.sort(utility[open_rows])[-40]
    finally:
        engine.close()
        store.close()
    assert engine.refitter.dask is None  # closing the engine let go of the cluster


def test_without_dask_installed_the_error_says_what_to_install():
    code = ("import sys; sys.modules['distributed'] = None\n"
            "from retrain_loop.dask_scoring import DaskError, connect\n"
            "try:\n    connect('local')\nexcept DaskError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'retrain-loop[dask]'" in out.stdout
    with pytest.raises(DaskError, match="scheduler's address"):
        dask_scoring.connect(None)
