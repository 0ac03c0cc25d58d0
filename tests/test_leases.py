"""The lease queue on its own: leases, expiry on a fake clock, caps, hand-backs and refits."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from conftest import FakeClock

from retrain_loop.audit import AuditDraw
from retrain_loop.leases import LeaseQueue
from retrain_loop.ranking import Ranking
from retrain_loop.worker import RefitWorker

LABELS = ["a", "b"]


def queue(n=20, *, audit=0.0, lease_seconds=60.0, cap=float("inf"), clock=None):
    q = LeaseQueue(n, LABELS, AuditDraw(audit, seed=0), lease_seconds=lease_seconds,
                   session_cap=cap, clock=clock or FakeClock())
    q.publish(Ranking(np.arange(n), None, None, 0))  # cold start: rows in pool order
    return q


def scored(n, round=1):
    """A model's ranking of n rows: row i has utility i/n, so the last row is served first."""
    utility = np.arange(n) / n
    proba = np.column_stack([utility, 1 - utility])
    order = np.argsort(-utility)
    return Ranking.partial(np.arange(n), utility, proba, round, order, n, np.zeros(n))


def counts(q):
    return {k: v for k, v in q.counts().items() if k in ("open", "out")}


def rows(leased):
    return [index for index, _ in leased]


def test_rows_are_leased_in_ranking_order_and_not_twice():
    q = queue()
    assert rows(q.lease("alice", 5)) == [0, 1, 2, 3, 4]
    assert rows(q.lease("bob", 5)) == [5, 6, 7, 8, 9]
    assert counts(q) == {"open": 20, "out": 10}
    assert q.open_rows().sum() == 10


def test_a_lease_runs_out_on_the_clock_and_the_row_goes_to_whoever_asks_next():
    clock = FakeClock()
    q = queue(4, lease_seconds=60, clock=clock)
    assert q.counts()["next_release_s"] is None
    assert rows(q.lease("alice", 4)) == [0, 1, 2, 3]
    clock.advance(59.5)
    assert q.counts()["next_release_s"] == 0.5
    clock.advance(0.49)
    assert q.lease("bob", 4) == []
    clock.advance(0.01)
    leased = q.lease("bob", 4)
    assert rows(leased) == [0, 1, 2, 3]
    assert {lease.session for _, lease in leased} == {"bob"}
    assert all(lease.expires == clock.now + 60 for _, lease in leased)


def test_a_session_holds_at_most_its_cap():
    q = queue(cap=6)
    assert len(q.lease("alice", 10)) == 6
    assert q.lease("alice", 1) == []
    assert len(q.lease("bob", 3)) == 3  # the cap is per session
    q.mark_answered([0, 1])
    assert rows(q.lease("alice", 10)) == [9, 10]  # answering frees room


def test_released_rows_come_back_first_in_their_order():
    q = queue()
    q.lease("alice", 3)
    q.lease("bob", 2)
    assert q.release("alice") == 3
    assert rows(q.lease("carol", 4)) == [0, 1, 2, 5]


def test_answered_rows_end_their_lease_and_are_never_served():
    clock = FakeClock()
    q = queue(6, clock=clock)
    q.lease("alice", 3)
    q.mark_answered([1])
    assert counts(q) == {"open": 5, "out": 2}
    assert q.served([0, 1]) == [{"source": "initial", "round": 0}, None]
    clock.advance(3600)
    assert rows(q.lease("bob", 10)) == [0, 2, 3, 4, 5]


def test_answered_rows_given_as_a_mask_are_skipped():
    q = queue(6)
    q.lease("alice", 2)
    q.mark_answered(np.array([True, False, True, False, False, False]))
    assert counts(q) == {"open": 4, "out": 1}
    assert rows(q.lease("bob", 10)) == [3, 4, 5]


def test_a_new_ranking_restarts_the_cursor_and_takes_in_returned_rows():
    clock = FakeClock()
    q = queue(10, clock=clock)
    q.lease("alice", 4)
    clock.advance(61)  # alice's rows run out: they wait at the head of the queue
    open_at_refit = q.open_rows()
    assert open_at_refit.all()
    q.publish(scored(10), open_at_refit)
    leased = q.lease("bob", 3)
    # The refit ranked the returned rows too, so the new order comes first, not the returns.
    assert rows(leased) == [9, 8, 7]
    assert [lease.meta["source"] for _, lease in leased] == ["active"] * 3
    assert leased[0][1].guess == "a" and leased[0][1].meta["predicted"] == "a"


def test_rows_returned_after_the_refit_read_the_open_rows_still_come_first():
    clock = FakeClock()
    q = queue(10, clock=clock)
    q.lease("alice", 2)  # out while the refit reads which rows are open
    open_at_refit = q.open_rows()
    q.release("alice")
    q.publish(scored(10), open_at_refit)
    assert rows(q.lease("bob", 3)) == [0, 1, 9]


def test_audit_draws_take_their_share_and_hide_the_guess():
    q = queue(1000, audit=0.25)
    q.publish(scored(1000))
    leased = q.lease("alice", 40)
    audits = [lease for _, lease in leased if lease.meta["source"] == "audit"]
    assert len(audits) == 10
    assert all(lease.guess is None and "predicted" in lease.meta for lease in audits)
    assert len(set(rows(leased))) == 40


def test_no_audit_before_a_model_exists():
    q = queue(100, audit=1.0)
    assert [lease.meta["source"] for _, lease in q.lease("alice", 10)] == ["initial"] * 10


def test_concurrent_sessions_never_share_a_row():
    q = queue(2000)
    got: dict[str, list[int]] = {}

    def take(name):
        got[name] = [i for _ in range(25) for i in rows(q.lease(name, 10))]

    threads = [threading.Thread(target=take, args=(f"s{k}",)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [i for taken in got.values() for i in taken]
    assert len(every) == 2000 == len(set(every))


def test_the_worker_coalesces_requests_while_a_run_goes_on():
    gate, running, runs = threading.Event(), threading.Event(), []

    def job():
        runs.append(1)
        running.set()
        gate.wait(10)

    worker = RefitWorker(job)
    worker.request()
    assert running.wait(10)
    for _ in range(5):
        worker.request()
    assert worker.busy
    gate.set()
    assert worker.wait_idle(10)
    assert len(runs) == 2  # the one that ran, and one for every request during it
    worker.close()
    worker.request()  # a closed worker runs nothing more
    assert not worker.busy and len(runs) == 2


def test_a_foreground_worker_runs_in_the_callers_thread_and_raises():
    seen = []

    def job():
        seen.append(threading.current_thread())
        raise RuntimeError("fit failed")

    worker = RefitWorker(job, background=False)
    with pytest.raises(RuntimeError, match="fit failed"):
        worker.request()
    assert seen == [threading.current_thread()]


def test_a_failing_background_job_leaves_the_worker_running():
    calls = []

    def job():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first run fails")

    worker = RefitWorker(job)
    worker.request()
    assert worker.wait_idle(10)
    worker.request()
    assert worker.wait_idle(10) and len(calls) == 2
    worker.close()
