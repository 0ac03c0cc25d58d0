"""How good the model is and when to stop: audit draws, the Wilson estimate, kappa, the stop rule,
and their history, with real models, real SQLite files and the API in process."""

from __future__ import annotations

import io
import json
import math
from contextlib import closing

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import RGB, STORES, rgb_label, rgb_rows, store_target, write_jsonl
from scipy.stats import chisquare

from retrain_loop.audit import SOURCES, AuditDraw, AuditError
from retrain_loop.cli import main
from retrain_loop.estimate import audit_pairs, estimate, wilson
from retrain_loop.history import status
from retrain_loop.importing import import_file
from retrain_loop.simulate import estimate_coverage, stop_summary
from retrain_loop.stopping import STOPPED, StopRule, StopRuleError, choose_stop_set, kappa
from retrain_loop.store import AnnotationStore


@pytest.fixture(params=STORES)
def db_target(request, tmp_path):
    """Every test here runs on a SQLite file and on PostgreSQL."""
    return store_target(request, tmp_path)


def answer_all(tasks):
    return [dict(t, answer="accept", accept=[rgb_label(t)]) for t in tasks]


def label(engine, session="alice", batches=1, n=None):
    for _ in range(batches):
        engine.add_answers(answer_all(engine.get_questions(session, n)), session)


# -- the Wilson interval -----------------------------------------------------------------------

@pytest.mark.parametrize(("k", "n", "low", "high"), [
    (8, 10, 0.4902, 0.9433),  # the textbook example
    (0, 10, 0.0, 0.2775),
    (10, 10, 0.7225, 1.0),
    (50, 100, 0.4038, 0.5962),
    (81, 263, 0.2553, 0.3662),  # p far from 0.5: the interval is not symmetric
])
def test_wilson_interval_matches_known_values(k, n, low, high):
    got = wilson(k, n)
    assert got == pytest.approx((low, high), abs=1e-4)


def test_wilson_interval_of_nothing_is_none():
    assert wilson(0, 0) is None


def test_wilson_interval_narrows_with_more_answers_and_holds_the_share():
    small, large = wilson(16, 20), wilson(160, 200)
    assert small[0] < large[0] < 0.8 < large[1] < small[1]


# -- Cohen's kappa and the stop rule -----------------------------------------------------------

@pytest.mark.parametrize(("before", "after", "expected"), [
    ([0, 0, 1, 1], [0, 1, 1, 1], 0.5),  # po 0.75, pe 0.5
    ([0, 1], [1, 0], -1.0),  # total disagreement with balanced classes
    ([2, 2, 2], [2, 2, 2], 1.0),  # one label everywhere, unchanged: agreement, not 0/0
    ([0, 1, 2, 0, 1, 2], [0, 1, 2, 0, 1, 2], 1.0),
    ([0, 0, 0, 1], [0, 0, 1, 1], 0.5),  # po 0.75, pe 0.75 * 0.5 + 0.25 * 0.5 = 0.5
])
def test_kappa_on_hand_made_predictions(before, after, expected):
    assert kappa(np.array(before), np.array(after)) == pytest.approx(expected)


def test_kappa_refuses_predictions_of_different_rows():
    with pytest.raises(ValueError, match="shape"):
        kappa(np.zeros(3), np.zeros(4))


def test_stop_rule_waits_for_labels_for_every_label_and_for_a_stable_window():
    rule = StopRule(threshold=0.99, window=3, min_labels=50, min_per_label=3)
    enough = {"a": 30, "b": 30}
    stable = [None, 0.8, 0.995, 0.999, 1.0]
    assert rule.check(stable, {"a": 20, "b": 20})["message"].startswith("Too early")
    short = rule.check(stable, {"a": 58, "b": 2})
    assert not short["suggested"] and "b" in short["message"]
    assert not rule.check([None, 1.0, 1.0], enough)["suggested"]  # only two kappas in the window
    moving = rule.check([None, 1.0, 1.0, 0.95], enough)
    assert not moving["suggested"] and moving["mean_kappa"] == pytest.approx(0.9833, abs=1e-4)
    assert moving["message"].startswith("Still learning")
    done = rule.check(stable, enough)
    assert done["suggested"] and done["message"] == STOPPED
    assert done["mean_kappa"] == pytest.approx((0.995 + 0.999 + 1.0) / 3, abs=1e-4)
    assert done["f_change_bound"] == pytest.approx(4 * 0.01 / 0.99, abs=1e-4)


@pytest.mark.parametrize("settings", [{"threshold": 0.0}, {"threshold": 1.5}, {"window": 0}])
def test_stop_rule_refuses_settings_that_cannot_work(settings):
    with pytest.raises(StopRuleError):
        StopRule(**settings)


def test_stop_set_is_a_uniform_sample_of_at_most_2000_rows():
    rng = np.random.default_rng(0)
    assert len(choose_stop_set(300, rng)) == 300
    rows = choose_stop_set(100_000, rng)
    assert len(rows) == len(np.unique(rows)) == 2000
    assert np.all(np.diff(rows) > 0)
    # Spread over the pool, not its head: each tenth of the pool holds about a tenth of the set.
    counts = np.bincount(rows // 10_000, minlength=10)
    assert chisquare(counts).pvalue > 0.001


# -- audit draws -------------------------------------------------------------------------------

def test_audit_draws_are_uniform_over_the_open_rows():
    draw = AuditDraw(0.1, seed=1)
    open_rows = np.zeros(200, dtype=bool)
    open_rows[np.random.default_rng(2).choice(200, 40, replace=False)] = True
    picks = [draw.pick(200, lambda p: open_rows[p]) for _ in range(20_000)]
    counts = np.bincount(picks, minlength=200)
    assert counts[~open_rows].sum() == 0  # never a closed row
    assert chisquare(counts[open_rows]).pvalue > 0.001  # equally often each open row


def test_audit_draws_still_find_the_last_open_rows():
    draw = AuditDraw(0.1, seed=3)
    open_rows = np.zeros(100_000, dtype=bool)
    open_rows[[17, 99_998]] = True
    picks = {draw.pick(len(open_rows), lambda p: open_rows[p]) for _ in range(200)}
    assert picks == {17, 99_998}
    assert draw.pick(10, lambda p: np.zeros(len(p), dtype=bool)) is None


@pytest.mark.parametrize("share", [0.0, 0.1, 0.25, 1.0])
def test_audit_share_is_exact(share):
    draw = AuditDraw(share)
    assert sum(draw.due() for _ in range(1000)) == round(1000 * share)


@pytest.mark.parametrize("share", [-0.1, 1.5])
def test_audit_share_outside_zero_to_one_is_refused(share):
    with pytest.raises(AuditError):
        AuditDraw(share)


def test_engine_serves_a_tenth_as_audits_with_the_prediction_hidden(make_engine):
    engine = make_engine(rgb_rows(600), features=["r", "g", "b"], background=False)
    first = engine.get_questions("alice")
    assert {t["meta"]["source"] for t in first} == {"initial"}  # no model, nothing to audit
    engine.add_answers(answer_all(first), "alice")
    served = []
    for _ in range(10):
        tasks = engine.get_questions("alice")
        served += tasks
        engine.add_answers(answer_all(tasks), "alice")
    audits = [t for t in served if t["meta"]["source"] == "audit"]
    assert len(audits) == 10 and len(served) == 100
    for task in audits:
        assert task["accept"] == []  # not preselected, so it cannot sway the answer
        assert task["meta"]["predicted"] in RGB and task["meta"]["round"] >= 1
    active = [t for t in served if t["meta"]["source"] == "active"]
    assert all(t["accept"] == [t["meta"]["predicted"]] for t in active)
    assert {t["meta"]["source"] for t in served} <= set(SOURCES)
    # The strategy serves the least sure rows; the audit draws are as sure as the pool is.
    assert np.mean([t["meta"]["score"] for t in active]) > np.mean(
        [t["meta"]["score"] for t in audits])


def test_no_audits_when_turned_off(make_engine):
    engine = make_engine(rgb_rows(300), features=["r", "g", "b"], background=False, audit=0.0)
    label(engine, batches=6)
    assert engine.stats()["estimate"]["n"] == 0
    records = engine.store.get("test")
    assert "audit" not in {r["meta"]["source"] for r in records}


# -- the estimate ------------------------------------------------------------------------------

def _audit(predicted, answered, answer="accept"):
    return {"answer": answer, "accept": [answered] if answer == "accept" else [],
            "meta": {"source": "audit", "predicted": predicted, "round": 1}}


def test_estimate_from_hand_made_audit_answers():
    records = ([_audit("red", "red")] * 6 + [_audit("red", "blue")] * 2 + [_audit("blue", "blue")]
               * 2 + [_audit("green", "red", answer="ignore")]
               + [{"answer": "accept", "accept": ["green"], "meta": {"source": "active",
                                                                     "predicted": "red"}}])
    est = estimate(records, RGB)
    assert (est["n"], est["n_audit"]) == (10, 10)  # the skip and the active answer do not count
    assert est["accuracy"] == 0.8
    assert (est["low"], est["high"]) == pytest.approx(wilson(8, 10), abs=1e-4)
    # Rows: the annotator's label; columns: the model's prediction.
    assert est["confusion"]["matrix"] == [[6, 0, 0], [0, 0, 0], [2, 0, 2]]
    assert est["per_label"]["red"] == {"precision": 0.75, "recall": 1.0, "support": 6}
    assert est["per_label"]["blue"] == {"precision": 1.0, "recall": 0.5, "support": 4}
    assert est["per_label"]["green"] == {"precision": None, "recall": None, "support": 0}


def test_estimate_follows_the_latest_audit_answers():
    records = [_audit("red", "blue")] * 100 + [_audit("red", "red")] * 50
    est = estimate(records, RGB)
    assert (est["n"], est["n_audit"]) == (38, 150)  # the latest quarter
    assert est["accuracy"] == 1.0  # the old mistakes are behind the model now
    assert estimate(records[:30], RGB)["n"] == 20  # at least 20 while answers are few
    assert estimate(records[:12], RGB)["n"] == 12
    assert estimate(records * 4, RGB)["n"] == 100  # at most the window
    assert estimate(records * 4, RGB, window=10)["n"] == 10
    assert estimate(records[:90] + records[-10:], RGB, window=100)["accuracy"] == pytest.approx(
        10 / 25, abs=1e-4)


def test_estimate_without_audit_answers_invents_nothing():
    est = estimate([{"answer": "accept", "accept": ["red"], "meta": {"source": "active"}}], RGB)
    assert est["n"] == 0 and est["accuracy"] is None and est["low"] is None


# -- what is stored, and what survives ---------------------------------------------------------

def test_source_and_serve_time_prediction_survive_export_and_db_in(make_engine, tmp_path):
    engine = make_engine(rgb_rows(400), features=["r", "g", "b"], background=False, audit=0.3)
    label(engine, batches=8)
    records = engine.store.get("test")
    assert all(r["meta"]["source"] in SOURCES for r in records)
    audited = engine.store.audited("test")
    assert len(audited) >= 15
    assert all(r["meta"]["source"] == "audit" and r["meta"]["predicted"] in RGB for r in audited)
    out = io.StringIO()
    engine.store.export_jsonl("test", out)
    path = tmp_path / "export.jsonl"
    path.write_text(out.getvalue(), encoding="utf-8")
    with closing(AnnotationStore(tmp_path / "other.db")) as other:
        import_file(other, "copy", path)
        assert audit_pairs(other.audited("copy")) == audit_pairs(audited)
        assert estimate(other.get("copy"), RGB) == engine.stats()["estimate"]
    result = CliRunner().invoke(main, ["db-in", "copy2", str(path), "--db",
                                       str(tmp_path / "third.db")])
    assert result.exit_code == 0, result.output
    with closing(AnnotationStore(tmp_path / "third.db")) as third:
        assert audit_pairs(third.audited("copy2")) == audit_pairs(audited)


def test_the_server_keeps_what_it_served_over_what_comes_back(make_engine):
    engine = make_engine(rgb_rows(300), features=["r", "g", "b"], background=False, audit=1.0)
    label(engine)
    tasks = engine.get_questions("alice")
    assert {t["meta"]["source"] for t in tasks} == {"audit"}
    forged = [dict(t, meta={"source": "active", "predicted": "nonsense"}) for t in answer_all(tasks)]
    engine.add_answers(forged, "alice")
    stored = engine.store.audited("test")
    assert {r["_input_hash"] for r in stored} == {t["_input_hash"] for t in tasks}
    assert [r["meta"]["predicted"] for r in stored] == [t["meta"]["predicted"] for t in tasks]


def test_stop_set_and_history_survive_a_restart(make_engine, tmp_path):
    db = tmp_path / "answers.db"
    engine = make_engine(rgb_rows(500), features=["r", "g", "b"], background=False, db_path=db)
    label(engine, batches=6)
    before = [dict(h) for h in engine.history]
    stop_set = list(engine.rounds.stop_hashes)
    assert len(stop_set) == 500  # min(pool, 2000)
    engine.close()
    engine.store.close()

    again = make_engine(rgb_rows(500), features=["r", "g", "b"], background=False, db_path=db,
                        seed=99)  # another seed would draw another stop set; the first one stays
    assert again.rounds.stop_hashes == stop_set
    assert again.history == before  # the refit on restart saw nothing new: not a round
    label(again)
    assert again.history[:-1] == before
    assert again.history[-1]["round"] == again.round > before[-1]["round"]
    # The first new round is compared with the last round before the restart, on the same rows.
    assert again.history[-1]["kappa"] is not None and again.history[-1]["kappa"] > 0.9


def test_refits_without_new_labels_are_not_rounds_and_cannot_suggest_stopping(make_engine,
                                                                               tmp_path):
    db = tmp_path / "answers.db"
    engine = make_engine(rgb_rows(500), features=["r", "g", "b"], background=False, db_path=db)
    label(engine, batches=6)
    before = [dict(h) for h in engine.history]
    for _ in range(3):  # batches of skips only: answers, but no label
        tasks = engine.get_questions("alice")
        engine.add_answers([dict(t, answer="ignore", accept=[]) for t in tasks], "alice")
    assert engine.history == before
    engine.close()
    engine.store.close()
    for _ in range(3):  # restarts
        again = make_engine(rgb_rows(500), features=["r", "g", "b"], background=False,
                            db_path=db)
        again.close()
        again.store.close()
    again = make_engine(rgb_rows(500), features=["r", "g", "b"], background=False, db_path=db)
    assert again.history == before
    assert again.stats()["stop"]["suggested"] is before[-1]["stop_suggested"]


def test_a_new_pool_for_the_same_dataset_gets_a_new_stop_set(make_engine, tmp_path):
    db = tmp_path / "answers.db"
    first = make_engine(rgb_rows(300), features=["r", "g", "b"], background=False, db_path=db)
    label(first, batches=3)
    old = list(first.rounds.stop_hashes)
    first.close()
    first.store.close()
    (tmp_path / "pool.jsonl").unlink()
    rows = [dict(r, id=f"new{i}") for i, r in enumerate(rgb_rows(300, seed=8))]
    second = make_engine(rows, features=["r", "g", "b"], background=False, db_path=db)
    assert not set(second.rounds.stop_hashes) & set(old)
    assert all(second.pool.index_of(h) is not None for h in second.rounds.stop_hashes)
    label(second)
    # The old predictions were of other rows: nothing to compare the first new round with.
    assert second.history[-1]["kappa"] is None
    label(second)
    assert second.history[-1]["kappa"] is not None


def test_an_offline_fit_leaves_the_history_alone(make_engine, tmp_path):
    from retrain_loop.offline import score

    db = tmp_path / "answers.db"
    engine = make_engine(rgb_rows(300), features=["r", "g", "b"], background=False, db_path=db)
    label(engine, batches=3)
    before = [dict(h) for h in engine.history]
    score(engine.pool, engine.store, "test", RGB, model="logreg", strategy="margin")
    assert engine.store.rounds("test") == before


def test_resending_answers_keeps_what_was_served(make_engine):
    engine = make_engine(rgb_rows(300), features=["r", "g", "b"], background=False, audit=1.0)
    label(engine)
    tasks = engine.get_questions("alice")
    bare = [{k: v for k, v in t.items() if k != "meta"} for t in answer_all(tasks)]
    assert engine.add_answers(bare, "alice") == 10
    served = {r["_input_hash"]: r["meta"] for r in engine.store.audited("test")}
    assert len(served) == 10
    assert engine.add_answers(bare, "alice") == 0  # the same answers again: nothing new
    assert {r["_input_hash"]: r["meta"] for r in engine.store.audited("test")} == served
    # A revised answer, sent without a lease and with a forged meta, keeps the served one.
    revised = [dict(a, accept=["red"], meta={"source": "active", "predicted": "x", "note": 1})
               for a in bare]
    engine.add_answers(revised, "alice")
    after = {r["_input_hash"]: r for r in engine.store.audited("test")}
    assert {h: {k: v for k, v in r["meta"].items() if k != "note"} for h, r in after.items()} \
        == served
    assert all(r["meta"]["note"] == 1 and r["accept"] == ["red"] for r in after.values())


def test_an_answer_never_served_cannot_claim_to_be_an_audit(make_engine):
    engine = make_engine(rgb_rows(300), features=["r", "g", "b"], background=False)
    label(engine)
    rows = [i for i in range(len(engine.pool)) if not engine.queue.is_answered(i)][:5]
    forged = [dict(engine.pool.tasks[i], _task_hash=engine.task_hash(i), answer="accept",
                   accept=[rgb_label(engine.pool.tasks[i])],
                   meta={"source": "audit", "predicted": rgb_label(engine.pool.tasks[i])})
              for i in rows]
    engine.add_answers(forged, "mallory")
    assert engine.store.audited("test") == []
    stored = [r for r in engine.store.get("test") if r["_session_id"].endswith("mallory")]
    assert len(stored) == 5 and all("predicted" not in r["meta"] for r in stored)
    assert engine.stats()["estimate"]["n"] == 0


def test_a_failed_history_write_leaves_the_new_model_serving_with_the_error(make_engine):
    from retrain_loop.store import AnnotationStore

    state = AnnotationStore(None)
    engine = make_engine(rgb_rows(300), features=["r", "g", "b"], background=False, state=state)
    label(engine, batches=2)
    state.close()  # the history's database goes away
    label(engine)
    assert engine.round == 3 and engine.model_ is not None
    assert "round history not saved" in engine.stats()["last_error"]
    assert engine.get_questions("alice")[0]["meta"]["round"] == 3


def test_stop_is_suggested_once_predictions_settle(make_engine):
    engine = make_engine(rgb_rows(800, seed=4), features=["r", "g", "b"], background=False,
                         stop_threshold=0.95, stop_window=3)
    for _ in range(20):
        label(engine)
        if engine.stats()["stop"]["suggested"]:
            break
    stop = engine.stats()["stop"]
    assert stop["suggested"] and stop["message"] == STOPPED
    kappas = [h["kappa"] for h in engine.history[-3:]]
    assert np.mean(kappas) >= 0.95 and engine.history[-1]["stop_suggested"]
    assert stop["n_labels"] >= 50


# -- status, from the database alone -----------------------------------------------------------

def test_status_on_a_database_without_audit_answers_says_so(make_engine, db_target):
    engine = make_engine(rgb_rows(300), features=["r", "g", "b"], background=False, audit=0.0)
    label(engine, batches=3)
    result = CliRunner().invoke(main, ["status", "test", "--db", str(db_target)])
    assert result.exit_code == 0, result.output
    assert "no audit answers yet" in result.output and "%" not in result.output.split("\n")[1]
    data = json.loads(CliRunner().invoke(main, ["status", "test", "--db",
                                                str(db_target), "--json"]).output)
    assert data["estimate"]["accuracy"] is None and data["n_labels"] == 30


def test_status_recomputes_what_the_server_showed(make_engine, db_target):
    engine = make_engine(rgb_rows(500), features=["r", "g", "b"], background=False, audit=0.3)
    label(engine, batches=8)
    live = engine.stats()
    report = status(engine.store, "test")
    assert report["labels"] == RGB
    assert report["estimate"] == live["estimate"]
    assert report["stop"] == live["stop"]
    assert report["history"] == live["history"]
    result = CliRunner().invoke(main, ["status", "test", "--db", str(db_target)])
    assert result.exit_code == 0
    est = live["estimate"]
    assert f"Accuracy: {est['accuracy']:.3f} (95% interval {est['low']:.3f}" in result.output
    assert live["stop"]["message"] in result.output
    assert "Confusion" in result.output


def test_status_of_an_unknown_dataset_or_database_exits_2(tmp_path):
    result = CliRunner().invoke(main, ["status", "nope", "--db", str(tmp_path / "none.db")])
    assert result.exit_code == 2 and "not found" in result.output
    AnnotationStore(tmp_path / "empty.db").close()
    result = CliRunner().invoke(main, ["status", "nope", "--db", str(tmp_path / "empty.db")])
    assert result.exit_code == 2 and "no dataset" in result.output


# -- the server --------------------------------------------------------------------------------

def test_api_stats_has_the_estimate_and_the_stop_signal(client):
    api = client(rgb_rows(300), RGB, features=["r", "g", "b"], batch_size=10, audit=0.5)
    engine = api.engine
    for _ in range(5):
        tasks = api.post("/api/questions", json={"session": "a"}).json()["tasks"]
        api.post("/api/answers", json={"session": "a", "answers": answer_all(tasks)}
                 ).raise_for_status()
        assert engine.wait_idle(30)
    stats = api.get("/api/stats").json()
    est = stats["estimate"]
    assert stats["audit"] == 0.5
    audited = engine.store.audited("test")
    assert est["n"] == len(audited) >= 15
    # The share of audit answers the model's serve-time guess got right, and its interval.
    right = sum(r["meta"]["predicted"] == r["accept"][0] for r in audited)
    assert est["accuracy"] == pytest.approx(right / len(audited), abs=1e-4)
    assert (est["low"], est["high"]) == pytest.approx(wilson(right, len(audited)), abs=1e-4)
    assert set(est["per_label"]) == set(RGB) and len(est["confusion"]["matrix"]) == 3
    assert sum(map(sum, est["confusion"]["matrix"])) == est["n"]
    assert sum(row[i] for i, row in enumerate(est["confusion"]["matrix"])) == right
    assert set(stats["stop"]) >= {"suggested", "kappa", "mean_kappa", "threshold", "message"}
    assert [h["round"] for h in stats["history"]] == list(range(1, 6))


# -- simulation summaries ----------------------------------------------------------------------

def _row(seed, n, accuracy, stop=False, low=math.nan, high=math.nan, n_audit=0):
    return {"seed": seed, "n_labels": n, "accuracy": accuracy, "stop_suggested": stop,
            "estimate_low": low, "estimate_high": high, "n_audit": n_audit}


def test_stop_summary_takes_the_first_suggestion_of_each_seed():
    rows = [_row(0, 50, 0.8), _row(0, 60, 0.9, stop=True), _row(0, 70, 0.95, stop=True),
            _row(0, 100, 1.0), _row(1, 50, 0.7), _row(1, 100, 0.8)]
    s = stop_summary(rows)
    assert s == {"labels_at_stop": 60, "accuracy_at_stop": 0.9, "stop_ratio": 0.9,
                 "stopped_runs": 0.5}
    assert stop_summary([_row(0, 10, 0.5)])["labels_at_stop"] is None


def test_estimate_coverage_counts_rounds_with_enough_audits():
    rows = [_row(0, 10, 0.9, low=0.0, high=0.1, n_audit=5),  # too few audits to count
            _row(0, 20, 0.9, low=0.8, high=0.95, n_audit=20),
            _row(0, 30, 0.9, low=0.92, high=0.99, n_audit=25)]
    assert estimate_coverage(rows) == 0.5
    assert estimate_coverage(rows[:1]) is None


def test_simulate_cli_writes_the_estimate_and_stop_columns(tmp_path):
    rng = np.random.default_rng(0)
    rows = [{"id": i, "x": float(x), "y": float(y), "label": "a" if x + y > 0 else "b"}
            for i, (x, y) in enumerate(rng.normal(size=(400, 2)))]
    pool = write_jsonl(tmp_path / "pool.jsonl", rows)
    result = CliRunner().invoke(main, ["simulate", str(pool), "--label-column", "label",
                                       "--strategy", "margin", "--seeds", "1", "--budget", "250",
                                       "--model", "logreg", "--audit", "0.2",
                                       "--out", str(tmp_path / "sim")])
    assert result.exit_code == 0, result.output
    from retrain_loop.simulate import read_curves

    curves = read_curves(tmp_path / "sim" / "curves.csv")
    assert curves[-1]["n_audit"] >= 20  # the answers behind the estimate: 20 of the 40 or more
    last = curves[-1]
    # The interval from the audit answers holds the accuracy measured on the held-out rows.
    assert last["estimate_low"] <= last["accuracy"] <= last["estimate_high"]
    assert last["estimate_high"] - last["estimate_low"] < 0.3
    assert any(c["stop_suggested"] for c in curves)
    summary = (tmp_path / "sim" / "summary.csv").read_text()
    assert "labels_at_stop" in summary and "estimate_coverage" in summary


def test_every_served_task_says_where_it_came_from(make_engine):
    engine = make_engine(rgb_rows(600), features=["r", "g", "b"], background=False,
                         explore=0.2, audit=0.1)
    first = engine.get_questions("alice")
    engine.add_answers(answer_all(first), "alice")
    sources = []
    for _ in range(5):
        tasks = engine.get_questions("alice")
        sources += [t["meta"]["source"] for t in tasks]
        engine.add_answers(answer_all(tasks), "alice")
    assert {t["meta"]["source"] for t in first} == {"initial"}
    assert sources.count("audit") == 5  # a tenth of 50
    assert sources.count("explore") == 10  # two slots in every batch of ten, by --explore 0.2
    assert sources.count("active") == 35
    stored = [r["meta"]["source"] for r in engine.store.get("test")]
    assert sorted(stored) == sorted(["initial"] * 10 + sources)
