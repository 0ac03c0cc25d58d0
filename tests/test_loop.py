"""The engine: serving, leases, answers, refits and failures, with real models and SQLite."""

from __future__ import annotations

import threading
from typing import ClassVar

import numpy as np
import pytest
from conftest import RGB, STORES, FakeClock, rgb_label, rgb_rows, store_target
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB

from retrain_loop.answers import AnswerError, UnknownLabel, UnknownTask
from retrain_loop.models import ModelError


@pytest.fixture(params=STORES)
def db_target(request, tmp_path):
    """Every test here runs on a SQLite file and on PostgreSQL."""
    return store_target(request, tmp_path)


def answer_all(tasks, rule=rgb_label, answer="accept"):
    return [dict(t, answer=answer, accept=[rule(t)] if answer == "accept" else []) for t in tasks]


class FlakyModel(LogisticRegression):
    """A real logistic regression that fails once it has seen more than ``fail_after`` rows."""

    def __init__(self, fail_after=20, C=1.0, max_iter=1000):
        super().__init__(C=C, max_iter=max_iter)
        self.fail_after = fail_after

    def fit(self, X, y):
        if len(X) > self.fail_after:
            raise RuntimeError("solver diverged")
        return super().fit(X, y)


class GatedModel(LogisticRegression):
    """A real logistic regression whose fit waits for the test to open a gate."""

    gate = threading.Event()
    running = 0
    max_running = 0
    lock = threading.Lock()

    def fit(self, X, y):
        cls = type(self)
        with cls.lock:
            cls.running += 1
            cls.max_running = max(cls.max_running, cls.running)
        try:
            assert cls.gate.wait(30), "gate never opened"
            return super().fit(X, y)
        finally:
            with cls.lock:
                cls.running -= 1


def test_cold_start_covers_the_space_not_the_file_order(make_engine):
    # The file lists 300 reds first; the first batch must still reach other colours.
    rows = [{"id": f"r{i}", "r": 200 + i % 50, "g": i % 30, "b": i % 20} for i in range(300)]
    rows += [{"id": f"g{i}", "r": i % 30, "g": 200 + i % 50, "b": i % 20} for i in range(300)]
    rows += [{"id": f"b{i}", "r": i % 20, "g": i % 30, "b": 200 + i % 50} for i in range(300)]
    engine = make_engine(rows, features=["r", "g", "b"], batch_size=10)
    first = engine.get_questions("alice")
    assert len(first) == 10
    assert {rgb_label(t) for t in first} == set(RGB)
    assert all(t["accept"] == [] and t["meta"]["round"] == 0 for t in first)


def test_served_tasks_carry_hashes_options_and_the_models_guess(make_engine):
    engine = make_engine(rgb_rows(300), features=["r", "g", "b"], background=False)
    engine.add_answers(answer_all(engine.get_questions("alice")), "alice")
    engine.add_answers(answer_all(engine.get_questions("alice")), "alice")
    task = engine.get_questions("alice", 1)[0]
    assert isinstance(task["_input_hash"], int) and isinstance(task["_task_hash"], int)
    assert [o["id"] for o in task["options"]] == RGB
    assert task["accept"] == [task["meta"]["predicted"]]
    assert 0 <= task["meta"]["p"] <= 1 and task["meta"]["round"] == engine.round >= 1


def test_refit_uses_every_stored_annotation(make_engine):
    engine = make_engine(rgb_rows(300), features=["r", "g", "b"], background=False)
    for _ in range(3):
        engine.add_answers(answer_all(engine.get_questions("alice")), "alice")
    skipped = engine.get_questions("alice", 4)
    engine.add_answers(answer_all(skipped, answer="ignore"), "alice")
    assert engine.history[-1]["n_train"] == 30
    assert engine.stats()["n_annotations"] == 34
    assert engine.stats()["answers"] == {"accept": 30, "reject": 0, "ignore": 4}


def test_answered_and_leased_rows_are_not_served_again(make_engine):
    engine = make_engine(rgb_rows(60), features=["r", "g", "b"], background=False, batch_size=10)
    seen = set()
    for session in ["alice", "bob", "alice", "bob", "carol", "alice"]:
        tasks = engine.get_questions(session)
        hashes = {t["_input_hash"] for t in tasks}
        assert not hashes & seen
        seen |= hashes
        if session == "alice":
            engine.add_answers(answer_all(tasks), session)
    assert len(seen) == 60
    assert engine.get_questions("dave") == []


def test_an_expired_lease_puts_the_row_back(make_engine):
    clock = FakeClock()
    engine = make_engine(rgb_rows(30), features=["r", "g", "b"], lease_seconds=600,
                         batch_size=30, clock=clock)
    taken = {t["_input_hash"] for t in engine.get_questions("alice")}
    assert len(taken) == 30 and engine.get_questions("bob") == []
    clock.advance(599.9)
    assert engine.get_questions("bob") == []
    clock.advance(0.1)
    assert {t["_input_hash"] for t in engine.get_questions("bob")} == taken
    assert engine.stats()["n_out"] == 30  # bob's now


def test_release_session_returns_its_rows_first(make_engine):
    engine = make_engine(rgb_rows(100), features=["r", "g", "b"])
    first = [t["_input_hash"] for t in engine.get_questions("alice")]
    assert engine.release_session("alice") == len(first)
    assert [t["_input_hash"] for t in engine.get_questions("alice")] == first


@pytest.mark.parametrize(
    "change, error",
    [
        ({"accept": ["magenta"]}, UnknownLabel),
        ({"_input_hash": 12345}, UnknownTask),
        ({"_task_hash": 1}, AnswerError),
        ({"answer": "maybe"}, AnswerError),
        ({"accept": ["red", "blue"]}, AnswerError),
        ({"accept": "red"}, AnswerError),
        ({"_input_hash": "12"}, AnswerError),
    ],
)
def test_a_bad_answer_stores_nothing(make_engine, change, error):
    engine = make_engine(rgb_rows(50), features=["r", "g", "b"])
    tasks = answer_all(engine.get_questions("alice"))
    tasks[-1] = {**tasks[-1], **change}
    with pytest.raises(error):
        engine.add_answers(tasks, "alice")
    assert engine.store.count("test") == 0
    assert engine.stats()["n_annotations"] == 0


@pytest.mark.parametrize("session", ["", "a b", "x" * 65, "<script>", None])
def test_bad_session_names_are_refused(make_engine, session):
    engine = make_engine(rgb_rows(20), features=["r", "g", "b"])
    with pytest.raises(AnswerError):
        engine.get_questions(session)


def test_a_failing_fit_keeps_the_last_good_model(make_engine):
    engine = make_engine(rgb_rows(200), features=["r", "g", "b"], background=False,
                         model=FlakyModel(fail_after=20))
    engine.add_answers(answer_all(engine.get_questions("alice")), "alice")
    engine.add_answers(answer_all(engine.get_questions("alice")), "alice")
    good_model, good_round = engine.model_, engine.round
    assert good_round == 2 and engine.last_error is None
    engine.add_answers(answer_all(engine.get_questions("alice")), "alice")
    assert engine.model_ is good_model and engine.round == good_round
    assert "RuntimeError: solver diverged" in engine.stats()["last_error"]
    assert len(engine.get_questions("alice")) == 10


def test_nan_probabilities_are_refused(make_engine):
    class NaNModel(LogisticRegression):
        def predict_proba(self, X):
            return np.full((len(X), len(self.classes_)), np.nan)

    engine = make_engine(rgb_rows(100), features=["r", "g", "b"], background=False,
                         model=NaNModel())
    engine.add_answers(answer_all(engine.get_questions("alice")), "alice")
    assert engine.round == 0 and engine.model_ is None
    assert "NaN" in engine.last_error


def test_a_model_without_predict_proba_is_refused(make_engine):
    with pytest.raises(ModelError, match="predict_proba"):
        make_engine(rgb_rows(20), model="sklearn.svm:LinearSVC")


@pytest.mark.parametrize(
    "kwargs, message",
    [({"labels": ["only"]}, "at least two labels"), ({"labels": ["a", "a"]}, "labels repeat"),
     ({"prefer": "magenta"}, "'magenta' is not one of the labels"),
     ({"explore": 1.5}, "explore must be between 0 and 1"),
     ({"discovery": -0.1}, "discovery must be between 0 and 1"),
     ({"batch_size": 0}, "batch size must be at least 1"),
     ({"strategy": "psychic"}, "unknown strategy 'psychic'"),
     ({"update": "sometimes"}, "unknown update mode"),
     ({"audit": 2.0}, "audit share must be between 0 and 1"),
     ({"stop_threshold": 0.0}, "stop threshold"),
     ({"lease_seconds": 0}, "lease seconds must be above 0")],
)
def test_bad_settings_are_refused(make_engine, kwargs, message):
    kwargs = dict(kwargs)  # the parameter's dict is shared by every store's run
    labels = kwargs.pop("labels", RGB)
    with pytest.raises(ValueError, match=message):
        make_engine(rgb_rows(20), labels, **kwargs)


def test_serving_never_waits_for_a_refit_and_refits_coalesce(make_engine):
    GatedModel.gate.clear()
    GatedModel.max_running = 0
    engine = make_engine(rgb_rows(300), features=["r", "g", "b"], model=GatedModel())
    engine.add_answers(answer_all(engine.get_questions("alice")), "alice")
    # The first refit is now blocked inside fit. Serving and storing must still work.
    served = []
    worker = threading.Thread(target=lambda: served.extend(engine.get_questions("bob")))
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive() and len(served) == 10
    for _ in range(4):
        engine.add_answers(answer_all(engine.get_questions("alice")), "alice")
    assert engine.stats()["refitting"]
    GatedModel.gate.set()
    assert engine.wait_idle(30)
    # Five updates, but the four that arrived during the first fit share one follow-up refit.
    assert engine.round == 2
    assert GatedModel.max_running == 1
    assert engine.history[-1]["n_train"] == 50


def test_prefer_and_explore_still_serve_the_whole_pool(make_engine):
    engine = make_engine(rgb_rows(120), features=["r", "g", "b"], background=False,
                         prefer="blue", explore=0.2, batch_size=10)
    seen = []
    while tasks := engine.get_questions("alice"):
        seen += [t["_input_hash"] for t in tasks]
        engine.add_answers(answer_all(tasks), "alice")
    assert len(seen) == len(set(seen)) == 120


def test_prefer_serves_the_preferred_label_more_often(make_engine, tmp_path):
    def blue_share(prefer):
        engine = make_engine(rgb_rows(600, seed=3), features=["r", "g", "b"], background=False,
                             prefer=prefer, db_path=tmp_path / f"{prefer}.db")
        for _ in range(3):
            engine.add_answers(answer_all(engine.get_questions("alice")), "alice")
        tasks = engine.get_questions("alice", 30)
        return np.mean([t["meta"]["predicted"] == "blue" for t in tasks])

    # Rows the model thinks are blue; the rule's truth differs on exactly the uncertain ones.
    assert blue_share("blue") > blue_share(None) + 0.3


def test_history_reports_how_much_each_refit_changed_the_models_mind(make_engine):
    engine = make_engine(rgb_rows(400), features=["r", "g", "b"], background=False)
    for _ in range(8):
        engine.add_answers(answer_all(engine.get_questions("alice")), "alice")
    kappas = [h["kappa"] for h in engine.history]
    assert kappas[0] is None  # nothing to compare the first model with
    assert all(-1.0 <= k <= 1.0 for k in kappas[1:])
    # A consistent annotator on a simple rule: the last refits barely move the predictions.
    assert kappas[-1] > 0.9


def test_incremental_naive_bayes_matches_a_full_refit(make_engine, tmp_path):
    # Gaussian naive Bayes updated batch by batch holds the same statistics as one fit on all.
    def run(update):
        engine = make_engine(rgb_rows(300), features=["r", "g", "b"], background=False,
                             model="nb", update=update, db_path=tmp_path / f"{update}.db")
        for _ in range(6):
            engine.add_answers(answer_all(engine.get_questions("alice")), "alice")
        return engine

    full, incremental = run("refit"), run("incremental")
    assert incremental.round == full.round == 6
    X = incremental.pool.X
    np.testing.assert_allclose(incremental.model_.predict_proba(X), full.model_.predict_proba(X),
                               atol=1e-4)


class CountingNB(GaussianNB):
    """Real Gaussian naive Bayes that records the rows each partial_fit sees and fails on
    demand (a class attribute, since each round updates a copy)."""

    seen: ClassVar[list[int]] = []
    fail = False

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        if type(self).fail:
            raise RuntimeError("update diverged")
        type(self).seen.append(len(X))
        return super().partial_fit(X, y, classes=classes, sample_weight=sample_weight)


def test_incremental_updates_only_on_new_answers_and_keeps_the_model_on_failure(make_engine):
    CountingNB.seen, CountingNB.fail = [], False
    engine = make_engine(rgb_rows(300), features=["r", "g", "b"], background=False,
                         model=CountingNB(), update="incremental")
    engine.add_answers(answer_all(engine.get_questions("alice")), "alice")
    first = engine.model_
    means = first.theta_.copy()
    engine.add_answers(answer_all(engine.get_questions("alice")), "alice")
    assert CountingNB.seen == [10, 10]  # the second update saw the new batch only
    assert engine.model_ is not first  # a copy was updated; the old one was never touched
    np.testing.assert_array_equal(first.theta_, means)
    assert engine.round == 2 and engine.history[-1]["n_train"] == 20
    good, good_means = engine.model_, engine.model_.theta_.copy()
    CountingNB.fail = True
    engine.add_answers(answer_all(engine.get_questions("alice")), "alice")
    assert engine.model_ is good and engine.round == 2
    np.testing.assert_array_equal(good.theta_, good_means)
    assert "RuntimeError: update diverged" in engine.stats()["last_error"]
    # Once updates work again, the next one takes in the batch the failed update missed too.
    CountingNB.fail = False
    engine.add_answers(answer_all(engine.get_questions("alice")), "alice")
    assert CountingNB.seen == [10, 10, 20] and engine.round == 3 and engine.last_error is None


def test_incremental_mode_needs_partial_fit(make_engine):
    with pytest.raises(ModelError, match="partial_fit"):
        make_engine(rgb_rows(20), model="logreg", update="incremental")


def _three_groups():
    """One feature: groups a (near 0) and b (near 10) get answers; c (near 100) does not."""
    rng = np.random.default_rng(0)
    rows = []
    for name, centre in (("a", 0.0), ("b", 10.0), ("c", 100.0)):
        rows += [{"id": f"{name}{i}", "x": float(centre + rng.normal()), "group": name}
                 for i in range(200)]
    return rows


@pytest.mark.parametrize("discover, finds_c", [(0.2, True), (0.0, False)])
def test_a_label_with_no_answers_gets_looked_for(make_engine, discover, finds_c):
    # Margin alone asks about the boundary between the labels it knows, far from where c is.
    engine = make_engine(_three_groups(), labels=["a", "b", "c"], features=["x"],
                         background=False, batch_size=10, discovery=discover)
    known = [t for t in engine.get_questions("alice", 600) if t["group"] != "c"][:10]
    engine.release_session("alice")
    engine.add_answers([dict(t, answer="accept", accept=[t["group"]]) for t in known], "alice")
    assert engine.round == 1
    tasks = engine.get_questions("alice")
    # The audit draw is uniform over the pool, so it may land anywhere; the strategy's rows may not.
    groups = [t["group"] for t in tasks if t["meta"]["source"] != "audit"]
    assert ("c" in groups) is finds_c
    sources = [t["meta"]["source"] for t in tasks]
    assert sources.count("audit") == 1  # the default tenth
    if finds_c:
        assert groups.count("c") == 2  # a fifth of the batch; the rest is still margin
        assert {t["group"] for t in tasks if t["meta"]["source"] == "discovery"} == {"c"}
        assert sources.count("discovery") == 2


def answer_rows(engine, ids):
    """Answers for the rows with these ids, whether served or not."""
    out = []
    for i, task in enumerate(engine.pool.tasks):
        if task["id"] in ids:
            out.append(dict(task, _task_hash=engine.task_hash(i), answer="accept",
                            accept=[rgb_label(task)]))
    return out


@pytest.mark.parametrize("distinct", [0.01, 0.0])
def test_a_batch_takes_one_of_a_set_of_near_copies(tmp_path, make_engine, distinct):
    rows = rgb_rows(300, seed=3)
    taught = {r["id"] for r in rows[:30]}
    # Where the model trained on these answers is least sure, put thirty near copies of a row.
    probe = make_engine(rows, features=["r", "g", "b"], batch_size=10, db_path=tmp_path / "p.db")
    probe.add_answers(answer_rows(probe, taught), "s")
    assert probe.wait_idle(30)
    top = probe.get_questions("s", 1)[0]
    copies = [dict(top, id=f"copy{i}", b=top["b"] + (i % 2) * 0.001) for i in range(30)]
    (tmp_path / "pool.jsonl").unlink()
    engine = make_engine(rows + [{k: v for k, v in c.items() if not k.startswith("_") and
                                  k not in ("options", "accept", "meta")} for c in copies],
                         features=["r", "g", "b"], batch_size=10, distinct=distinct)
    engine.add_answers(answer_rows(engine, taught), "s")
    assert engine.wait_idle(30) and engine.round == 1
    batch = [t for t in engine.get_questions("s") if t["meta"]["source"] != "audit"]
    assert len(batch) == 9  # the tenth is the audit draw, which may be any row
    n_copies = sum(t["id"].startswith("copy") or t["id"] == top["id"] for t in batch)
    assert n_copies == (1 if distinct else 9)


def test_distinct_must_not_be_negative(make_engine):
    from retrain_loop.settings import EngineError

    with pytest.raises(EngineError, match="distinct"):
        make_engine(rgb_rows(20), features=["r", "g", "b"], distinct=-1)


def test_an_engine_reads_and_fits_nothing_until_it_starts(make_engine, tmp_path):
    from retrain_loop.engine import Engine
    from retrain_loop.settings import EngineError, EngineSettings

    first = make_engine(rgb_rows(200), features=["r", "g", "b"], background=False)
    first.add_answers(answer_all(first.get_questions("alice", 20)), "alice")
    assert first.round == 1
    engine = Engine(first.pool, first.store, "test", RGB, EngineSettings(model="logreg", max_out=200),
                    background=False)
    assert engine.model_ is None and engine.round == 0 and engine.rounds is None
    for call in (lambda: engine.get_questions("bob"), engine.stats, engine.refit,
                 lambda: engine.add_answers([], "bob")):
        with pytest.raises(EngineError, match="start"):
            call()
    with engine:  # start() on entering: the stored answers, the history, a refit on them
        assert engine.round == 2 and engine.model_ is not None
        assert engine.stats()["n_annotations"] == 20
        served = {t["_input_hash"] for t in engine.get_questions("bob", 200)}
        assert len(served) == 180  # the answered rows are not served again
