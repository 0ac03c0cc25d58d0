"""The bounded round: in a large pool a refit scores a random sample of the open rows and the
best found so far, and the worker's sweep rescores the rest between rounds. Real fits on a pool
of Gaussian clusters larger than the bound."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import build_engine

from retrain_loop.frame import pool_from_array
from retrain_loop.models import label_probabilities
from retrain_loop.refit import Refitter
from retrain_loop.settings import EngineSettings
from retrain_loop.store import AnnotationStore
from retrain_loop.worker import RefitWorker

LABELS = ["c0", "c1", "c2"]
N_ROWS = 5_000
BOUND = {"round_sample": 500, "round_head": 100}


def blobs(n: int = N_ROWS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=1.5, size=(len(LABELS), 5))
    y = rng.integers(0, len(LABELS), n)
    return (centres[y] + rng.normal(size=(n, 5))).astype(np.float32), y


@pytest.fixture
def bounded():
    """bounded(**kwargs) -> (engine, truth): a started engine over 5,000 rows of blobs."""
    made = []

    def make(n: int = N_ROWS, **kwargs):
        X, y = blobs(n)
        pool = pool_from_array(X)
        store = AnnotationStore(None)
        kwargs.setdefault("model", "logreg")
        kwargs.setdefault("background", False)
        engine = build_engine(pool, store, "blobs", LABELS, **kwargs)
        made.append((engine, store))
        return engine, y

    yield make
    for engine, store in made:
        engine.close()
        store.close()


def answer(engine, y, n: int = 10) -> list[int]:
    """Lease ``n`` rows and answer them with their true labels; returns their pool indices."""
    tasks = engine.get_questions("s", n)
    rows = [engine.pool.index_of(t["_input_hash"]) for t in tasks]
    engine.add_answers([dict(t, answer="accept", accept=[LABELS[y[i]]])
                        for t, i in zip(tasks, rows)], "s")
    return rows


def utilities(engine, rows: np.ndarray) -> np.ndarray:
    """The serving model's utility of pool rows ``rows``, as a round computes it."""
    proba = label_probabilities(engine.model_, engine.pool.X[rows], len(LABELS))
    return engine.refitter.utility(proba, np.random.default_rng(0))


def sweep_inline(engine) -> int:
    steps = 0
    while engine.sweep.step():
        steps += 1
    return steps


def test_a_round_scores_at_most_the_bound_and_says_how_much_it_has_seen(bounded):
    engine, y = bounded(**BOUND)
    assert engine.stats()["n_scored"] is None  # no model yet
    for _ in range(4):
        open_before = engine.queue.open_rows()
        answer(engine, y)
        candidates = engine.queue.ranking.candidates
        assert 500 <= len(candidates) <= 600
        assert (np.diff(candidates) > 0).all()  # sorted and distinct
        answered = ~engine.queue.unanswered()
        assert open_before[candidates].all() and not answered[candidates].any()
        assert len(engine.queue.ranking.uniform) == 500  # the fresh sample among them
        stats = engine.stats()
        assert stats["n_scored"] == len(candidates)
        assert stats["n_scored"] + stats["n_unscored"] == stats["n_remaining"]
    sweep_inline(engine)
    stats = engine.stats()
    assert stats["n_unscored"] == 0 and stats["n_scored"] == stats["n_remaining"]


def test_the_sweep_keeps_the_best_rows_and_the_next_round_scores_them(bounded):
    engine, y = bounded(**BOUND, discovery=0.0)
    answer(engine, y, 30)
    open_rows = np.flatnonzero(engine.queue.open_rows())
    assert sweep_inline(engine) >= 0
    head = engine.sweep.head()
    # Every open row is scored now (the round's and the swept), and the head is their best 100.
    best = open_rows[np.argsort(-utilities(engine, open_rows))[:100]]
    assert set(head.tolist()) == set(best.tolist())
    answered = answer(engine, y)
    candidates = set(engine.queue.ranking.candidates.tolist())
    still_open = set(head.tolist()) - set(answered)
    assert still_open <= candidates
    assert len(candidates) > 500  # the sample and the head


def test_served_rows_rank_high_among_all_open_rows(bounded):
    # In the background, as serve runs it: the worker sweeps between rounds.
    engine, y = bounded(**BOUND, background=True, discovery=0.0, audit=0.0)
    answer(engine, y, 30)
    for _ in range(3):
        assert engine.wait_idle(60, swept=True)
        assert engine.stats()["n_unscored"] == 0
        answer(engine, y)
        assert engine.wait_idle(60)
    served = [engine.pool.index_of(t["_input_hash"]) for t in engine.get_questions("s", 10)]
    open_rows = np.flatnonzero(engine.queue.unanswered())
    utility = utilities(engine, open_rows)
    threshold = np.quantile(utility, 0.95)
    mine = utilities(engine, np.asarray(served))
    # Rows out of a sample of 500 and the last head, yet each in the top 5% of all ~4,900.
    assert (mine >= threshold).all(), (mine, threshold)


def test_a_refit_request_interrupts_the_sweep(bounded):
    engine, y = bounded(**BOUND, background=True)
    engine.sweep.slice_rows = 100  # 50 steps over the pool
    seen = []
    step = engine.sweep.step

    def watched_step():
        seen.append((engine.round, engine.sweep.n_scored))
        if len(seen) == 2:
            engine.worker.request()  # a batch came in while the sweep ran
        return step()

    engine.worker.idle = watched_step
    answer(engine, y, 20)
    assert engine.wait_idle(60, swept=True)
    first_round = seen[0][0]
    # The request during the second step ran the refit before a third step.
    assert seen[2][0] == first_round + 1, seen[:4]
    # A new round's sweep starts afresh, from the new round's own candidates.
    assert seen[1][1] > 500 and seen[2][1] <= 600, seen[:4]
    assert engine.stats()["n_unscored"] == 0


def test_the_worker_runs_a_request_between_two_idle_steps():
    log = []

    def idle():
        log.append("idle")
        if log.count("idle") == 2:
            worker.request()
        return log.count("idle") < 5

    worker = RefitWorker(lambda: log.append("job"), idle=idle)
    worker.request()
    assert worker.wait_idle(10, idle_work=True)
    worker.close()
    assert log[:4] == ["job", "idle", "idle", "job"]
    assert log.count("idle") == 5  # idle work goes on after the job until it says it is done


def test_audits_are_drawn_from_the_uniform_sample_only(bounded):
    engine, y = bounded(**BOUND, audit=1.0)  # every task a random check
    answer(engine, y, 30)
    sweep_inline(engine)
    answer(engine, y)  # a round whose candidates hold the sweep's head
    ranking = engine.queue.ranking
    sample = set(ranking.candidates[ranking.uniform].tolist())
    head_only = set(ranking.candidates.tolist()) - sample
    assert len(head_only) > 50
    tasks = engine.get_questions("audits", 30)
    assert all(t["meta"]["source"] == "audit" for t in tasks)
    rows = {engine.pool.index_of(t["_input_hash"]) for t in tasks}
    assert rows <= sample and not rows & head_only


def served_order(engine, y, rounds: int = 4) -> list[list[int]]:
    return [answer(engine, y) for _ in range(rounds)]


@pytest.mark.parametrize("n_rows, sample, head", [(600, 500, 100), (400, 300, 100)])
def test_a_pool_within_the_bound_ranks_exactly_as_scoring_every_row(bounded, n_rows, sample,
                                                                   head):
    within, y = bounded(n_rows, round_sample=sample, round_head=head)
    every, _ = bounded(n_rows, round_sample=0)
    assert served_order(within, y) == served_order(every, y)
    assert within.queue.ranking.uniform is None
    assert within.stats()["n_unscored"] == 0


def test_a_pool_just_over_the_bound_is_sampled(bounded):
    # The control of the test above: 611 rows, of which 601 are open at the first refit, one
    # over the bound, so that round is a sample and what it serves differs.
    over, y = bounded(611, round_sample=500, round_head=100)
    every, _ = bounded(611, round_sample=0)
    answer(over, y)
    answer(every, y)
    assert len(over.queue.ranking.candidates) == 500
    assert over.queue.ranking.uniform is not None
    assert served_order(over, y, 1) != served_order(every, y, 1)


def test_the_default_bound_is_for_engines_that_sweep():
    settings = EngineSettings()
    assert settings.round_bound(background=True) == 28_672  # and the head: 32,768 at most
    assert settings.round_bound(background=False) == 0  # offline scoring ranks every row
    assert settings.replace(round_sample=200).round_bound(background=False) == 200


def test_the_cold_start_is_the_same_as_with_a_set_difference():
    X, _ = blobs(3_000)
    pool = pool_from_array(X)
    open_rows = np.ones(len(pool), dtype=bool)
    open_rows[::7] = False
    settings = EngineSettings(seed=3)
    order = Refitter(pool, LABELS, settings, None).cold_start(open_rows).candidates
    # What it was before the mask: the seeds, then np.setdiff1d of the rest, shuffled.
    from retrain_loop.strategies import coverage_order

    rng = np.random.default_rng(3)
    rows = np.flatnonzero(open_rows)
    k = settings.cold_start_rows
    seeds = rows[coverage_order(pool.X[rows], k, rng)][:k]
    expected = np.concatenate([seeds, rng.permutation(np.setdiff1d(rows, seeds))])
    assert np.array_equal(order, expected)


def test_a_sweep_goes_on_from_where_the_last_one_stopped(bounded):
    # Where rounds come faster than a sweep ends, successive sweeps still cover the pool.
    engine, y = bounded(**BOUND)
    engine.sweep.slice_rows = 500
    swept = []
    predict = engine.refitter.predict

    def recording(model, rows):
        swept.append(np.asarray(rows))
        return predict(model, rows)

    answer(engine, y)
    engine.refitter.predict = recording
    assert engine.sweep.step() and engine.sweep.step()
    assert swept[-1].max() < 1000
    engine.refitter.predict = predict
    answer(engine, y)  # a new round, before the sweep got further
    engine.refitter.predict = recording
    swept.clear()
    engine.sweep.step()
    assert 1000 <= swept[0].min() and swept[0].max() < 1500
    sweep_inline(engine)
    rows = np.concatenate(swept)
    assert rows.min() < 1000  # round the pool, back to its start
    candidates = engine.queue.ranking.candidates
    open_rows = np.flatnonzero(~np.isin(np.arange(N_ROWS), candidates)
                               & engine.queue.unanswered())
    assert np.array_equal(np.sort(rows), open_rows)  # every open row the round did not score


@pytest.mark.parametrize("n_rows, bound", [(1_500, {}), (N_ROWS, BOUND)])
def test_the_stop_set_is_predicted_in_the_rounds_own_call_to_the_same_labels(bounded, n_rows,
                                                                            bound):
    # 1,500 rows: the stop set is the whole pool, and its 10 answered rows with the 1,490
    # candidates are as many rows as the pool, though not the pool in order.
    engine, y = bounded(n_rows, **bound)
    answer(engine, y)
    refitter, rounds = engine.refitter, engine.rounds
    result = refitter.refit(engine.store.labelled("blobs"), engine.queue.open_rows(),
                            engine.tally.rejected(), engine.round + 1, also=rounds.rows)
    extra, extra_proba = result.also
    assert len(extra) >= 10 and not np.isin(extra, result.candidates).any()
    expected = label_probabilities(result.model, engine.pool.X[extra], len(LABELS))
    assert np.array_equal(extra_proba, expected)
    separate = rounds.predict(result.model, result.candidates, result.proba)
    assert np.array_equal(rounds.predict(result.model, result.candidates, result.proba,
                                         also=result.also), separate)


def test_the_sample_is_uniform_over_the_open_rows():
    from itertools import combinations

    from retrain_loop.refit import uniform_sample

    rng = np.random.default_rng(0)
    mask = np.ones(7, dtype=bool)
    mask[[2, 5]] = False  # five open rows
    counts = dict.fromkeys(combinations([0, 1, 3, 4, 6], 2), 0)
    for _ in range(20_000):
        sample = uniform_sample(mask, 5, 2, rng)
        assert sample[0] < sample[1]
        counts[tuple(sample.tolist())] += 1
    assert all(1_800 < c < 2_200 for c in counts.values()), counts  # 2,000 each
    big = np.ones(1_000_000, dtype=bool)
    big[::3] = False
    sample = uniform_sample(big, int(big.sum()), 28_672, rng)
    assert len(sample) == 28_672 and big[sample].all() and (np.diff(sample) > 0).all()
    # Spread over the pool as a uniform draw is: about a tenth in each tenth.
    assert (np.abs(np.bincount(sample // 100_000) - 2_867) < 250).all()
