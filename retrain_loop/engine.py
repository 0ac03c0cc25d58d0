"""The engine: store answers, refit from all of them, and serve a ranked queue.

The engine composes parts that each have one job and says in what order they act:

- ``EngineSettings`` (``settings.py``): how it learns and serves;
- the answer schema (``answers.py``): the one check every answer passes before it is stored;
- a ``LeaseQueue`` (``leases.py``): leases, open rows and the cursor into the current ranking;
- a ``Refitter`` (``refit.py``): fits a model and ranks the open rows, without locks or threads;
- a ``RefitWorker`` (``worker.py``): runs refits on a thread of their own, coalescing requests;
- a ``Sweep`` (``sweep.py``): between rounds, on the worker's thread, the serving model scores
  the open rows a bounded round did not, and keeps the best for the next round;
- the ``RoundHistory`` (``history.py``): each round's kappa, accuracy estimate and stop signal;
- with a team's PostgreSQL store, a ``Team`` (``team.py``): claims of rows across processes, one
  refit at a time across them, and the published round that every process serves from.

``add_answers`` stores a batch and asks for a refit. A refit reads every annotation of the
dataset, fits a clone of the model, rescores the rows that are neither answered nor out with an
annotator (in a large pool, a random sample of them and the best found so far:
``settings.round_sample``), and publishes the new ranking in one step. Serving reads whatever ranking is current,
so it never waits for a fit. Nothing is read or fitted until ``start``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import numpy as np

from .answers import (
    SERVED,
    Answered,
    UnknownTask,
    check_session,
    served_meta,
    to_record,
)
from .audit import AuditDraw
from .hashing import task_hash
from .history import RoundHistory
from .leases import Lease, LeaseQueue
from .models import ModelError, describe, make_model, with_threads
from .pool import Pool
from .ranking import Ranking
from .refit import Refit, Refitter
from .settings import EngineError, EngineSettings
from .store import AnnotationStore, session_id
from .sweep import Sweep
from .tally import Tally
from .team import payload_of, refit_of
from .worker import RefitWorker

log = logging.getLogger(__name__)


class Engine:
    """One dataset's loop over ``pool``, with its answers in ``store``.

    ``state`` keeps the round history and stop set (default: ``store``; the Prodigy recipe keeps
    them in a file of its own, a one-off offline fit in memory). ``background=False`` refits in
    the caller's thread. ``clock`` times the leases. ``team`` (a ``team.Team``) shares the
    dataset with other processes.
    """

    def __init__(self, pool: Pool, store: AnnotationStore, dataset: str, labels: list[str],
                 settings: EngineSettings | None = None, *, state: Any = None,
                 background: bool = True, clock: Callable[[], float] = time.monotonic,
                 team: Any = None):
        self.settings = settings = settings or EngineSettings()
        self.labels = settings.check_labels(labels)
        self.pool = pool
        self.store = store
        self.dataset = dataset
        self.options = [{"id": label, "text": label} for label in self.labels]
        self.model_spec = settings.model_name
        model = settings.model
        self.prototype = make_model(model, seed=settings.seed) if isinstance(model, str) else model
        if isinstance(model, str) and settings.threads > 1:  # named models run one thread
            self.prototype = with_threads(self.prototype, settings.threads)
        if settings.update == "incremental" and not callable(
                getattr(self.prototype, "partial_fit", None)):
            raise ModelError(
                f"{self.model_spec} ({type(self.prototype).__name__}) has no partial_fit(), so it "
                "cannot learn incrementally; use --update refit, or a model such as nb or sgd"
            )
        self._state = state or store
        self.team = team
        self.queue = LeaseQueue(len(pool), self.labels, AuditDraw(settings.audit, settings.seed),
                                lease_seconds=settings.lease_seconds,
                                session_cap=settings.session_cap, clock=clock,
                                claims=team.claims if team is not None else None)
        self.refitter = Refitter(pool, self.labels, settings, self.prototype,
                                 round_sample=settings.round_bound(background))
        self.sweep = Sweep(self.refitter, settings.round_head, seed=settings.seed)
        self.worker = RefitWorker(self.refit, background=background, idle=self.sweep.step)
        self.rounds: RoundHistory | None = None
        self._refit_lock = threading.Lock()  # one refit at a time
        self.tally = Tally(self.refitter.label_index)
        self._task_hashes: dict[int, int] = {}
        self.model_: Any = None
        self.round = 0
        self.last_refit_ms: float | None = None
        self.last_timings: dict[str, float] = {}
        self.last_error: str | None = None

    # -- life ---------------------------------------------------------------------------------

    def start(self) -> Engine:
        """Read the stored answers and the history, and serve. A restarted server refits on the
        saved answers in the background, so the page opens at once and the first batch comes
        from the cold start while the model fits."""
        if self.rounds is not None:
            return self
        s = self.settings
        self.rounds = RoundHistory(self.store, self._state, self.dataset, self.pool, self.labels,
                                   rule=s.stop_rule, window=s.audit_window, seed=s.seed)
        self.round = self.rounds.last_round  # round numbers go on across restarts
        self._take_stored_answers()
        getattr(self.store, "changed_elsewhere", lambda: False)()  # what we read is the baseline
        self.queue.publish(self.refitter.cold_start(self.queue.unanswered()))
        if len(self.tally):
            self.worker.request()
        return self

    def __enter__(self) -> Engine:  # noqa: PYI034 - typing.Self needs Python 3.11
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.worker.close()
        self.refitter.close()  # a Dask cluster it started stops

    def _started(self) -> RoundHistory:
        if self.rounds is None:
            raise EngineError("the engine has not started: call start() first")
        return self.rounds

    def _take_stored_answers(self, replace: bool = False) -> None:
        """Take in the stored answers (``answers.Answered``), counting those for no pool row;
        ``replace``: they are all there is (an answer was deleted), not only what is new."""
        summaries = getattr(self.store, "summaries", None)  # the stores of ours: no JSON to parse
        if summaries is not None:
            answered = Answered.summarised(summaries(self.dataset), self.pool,
                                           self.tally.label_index)
        else:
            answered = Answered.read(self.store.get(self.dataset), self.pool,
                                     self.tally.label_index)
        self.tally.take(answered, replace)
        self.queue.mark_answered(answered.rows, exactly=replace)

    # -- serving ------------------------------------------------------------------------------

    def task_hash(self, index: int, label: str | None = None) -> int:
        """The question asked about row ``index``: which of the labels, or (``label``) whether
        it is that label."""
        if label is not None:
            return task_hash(int(self.pool.input_hashes[index]), [label])
        h = self._task_hashes.get(index)
        if h is None:
            h = task_hash(int(self.pool.input_hashes[index]), self.labels)
            self._task_hashes[index] = h
        return h

    def _task(self, index: int, lease: Lease) -> dict[str, Any]:
        task = dict(self.pool.tasks[index])
        task["options"] = self.options
        task["meta"] = dict(lease.meta)
        if self.settings.mode == "binary" and lease.guess is not None:
            # Is it the model's guess? Rows without one (cold start, audits) are asked as choice.
            task["label"] = lease.guess
            task["_task_hash"] = self.task_hash(index, lease.guess)
            task["accept"] = []
        else:
            task["_task_hash"] = self.task_hash(index)
            task["accept"] = [lease.guess] if lease.guess is not None else []
        return task

    def get_questions(self, session: str, n: int | None = None) -> list[dict[str, Any]]:
        """Lease up to ``n`` rows to a session, best first. Never waits for a refit."""
        self._started()
        check_session(session)
        changed = getattr(self.store, "changed_elsewhere", None)
        if changed is not None and changed():  # answers imported while we run: not served again
            if self.team is None:  # a team's claims keep them out; the refit thread reads them
                self._take_stored_answers()
            self.worker.request()
        leased = self.queue.lease(session, self.settings.batch_size if n is None else n)
        return [self._task(index, lease) for index, lease in leased]

    def release_session(self, session: str) -> int:
        """Put a session's outstanding rows back at the head of the queue (a page reload, a
        closed tab)."""
        return self.queue.release(session)

    def retract(self, session: str, input_hash: Any, task_hash: Any) -> int:
        """Undo a saved answer: delete ``session``'s answer to the task, and hold its row for
        that session again (the page shows it next). Returns how many answers were deleted."""
        self._started()
        check_session(session)
        index = self.pool.index_of(input_hash)
        if index is None:
            raise UnknownTask(f"no row in the pool has _input_hash {input_hash}")
        if not -(2**63) <= task_hash < 2**63:  # no stored answer has it, and SQLite cannot say so
            return 0
        removed = self.store.remove(self.dataset, session_id(self.dataset, session), task_hash)
        if removed is None:
            return 0
        self._take_stored_answers(replace=True)  # another session's answer may still hold the row
        served = {k: v for k, v in (removed.get("meta") or {}).items() if k in SERVED}
        self.queue.hold(index, session, served)
        self.worker.request()
        return 1

    # -- answers ------------------------------------------------------------------------------

    def add_answers(self, answers: list[dict[str, Any]], session: str) -> int:
        """Store a batch of answers and ask for a refit. Returns how many were new.

        Every answer is checked before any is stored, so a bad batch stores nothing; the server's
        own keys of each answer's meta come from how its row was served (``served_meta``).
        """
        self._started()
        check_session(session)
        sid = session_id(self.dataset, session)
        now = int(time.time())
        checked = [to_record(a, self.pool, self.labels, self.task_hash, sid, now)
                   for a in answers]
        indices = [index for index, _ in checked]
        records = [record for _, record in checked]
        for record, served in zip(records, self.queue.served(indices, session)):
            record["meta"] = served_meta(record, served, self.store, self.dataset)
        stored = self.store.add(self.dataset, records)
        said_not = self.tally.add(sid, checked)
        # A rejected suggestion leaves its row to label, never again as that label.
        self.queue.mark_answered([index for index in indices if index not in said_not],
                                 session=session)
        self.queue.end_leases(list(said_not))
        if stored:
            self.worker.request()
        return stored

    # -- refits -------------------------------------------------------------------------------

    def refit(self) -> Ranking:
        """Fit on all annotations, rescore the open rows and publish the new ranking.

        A model that fails leaves the last good one serving, with the error in ``last_error``.
        """
        rounds = self._started()
        with self._refit_lock, (self.team.turn() if self.team is not None else nullcontext()):
            version = None
            if self.team is not None:
                version, covered = self._catch_up(rounds)
                if covered:  # a published round read every answer stored: it is this round
                    return self.queue.ranking
            started = time.perf_counter()
            labelled = self.store.labelled(self.dataset)
            read_ms = (time.perf_counter() - started) * 1000
            # A team's round ranks the rows out with sessions too: the others serve from it, and
            # a process that dies leaves its rows to them.
            open_rows = self.queue.open_rows() if self.team is None else self.queue.unanswered()
            rejected = self.tally.rejected()
            try:
                result = self.refitter.refit(labelled, open_rows, rejected, self.round + 1,
                                             serving=self.model_, head=self.sweep.head(),
                                             also=rounds.rows)
                if result is None:  # no model until two labels have answers
                    return self.queue.ranking
                stop_predicted = rounds.predict(result.model, result.candidates, result.proba,
                                                also=result.also)
            except Exception as e:  # noqa: BLE001 - a user's model may raise anything
                self.last_error = f"{type(e).__name__}: {e}"
                log.warning("refit on %d labels failed, keeping round %d: %s",
                            len(labelled), self.round, self.last_error)
                return self.queue.ranking
            self._serve(result, open_rows, rejected)
            self.last_refit_ms = (time.perf_counter() - started) * 1000
            self.last_timings = {"read_ms": read_ms, **result.timings}
            n_answers = len(self.tally)
            try:
                rounds.record(round=self.round, predicted=stop_predicted, n_annotations=n_answers,
                              labelled=labelled, y_train=result.y_train,
                              refit_ms=self.last_refit_ms)
            except Exception as e:  # noqa: BLE001 - the new model serves whether or not it is logged
                self.last_error = f"round history not saved: {type(e).__name__}: {e}"
                log.warning("%s", self.last_error)
            if self.team is not None:  # after its history entry, which the others read with it
                self.team.publish(self.round, version, payload_of(
                    result, self.pool.input_hashes, self.last_refit_ms, self.last_timings))
            return result.ranking

    def _catch_up(self, rounds: RoundHistory) -> tuple[int, bool]:
        """A team's process, in its refit turn: take in the answers every process stored, and
        follow the rounds another published since ours: serve the latest if it read every
        answer stored (else only number this round after it, since it is refitted anyway).
        Returns the store's change counter as of before reading the answers, and whether the
        published round covers them."""
        version = self.team.version()
        self._take_stored_answers(replace=True)
        published = self.team.published()
        if published is None:
            return version, False
        covered = published.version >= version
        if published.round > self.round:
            payload = self.team.payload(published.round) if covered else None
            if payload is not None:
                self._serve(refit_of(payload, self.pool, published.round))
                self.last_refit_ms = payload["refit_ms"]
            else:  # refitted now: numbered after it (a later one replaced it: the same)
                self.round, covered = published.round, False
            rounds.reload()
        return version, covered

    def _serve(self, result: Refit, open_rows: np.ndarray | None = None,
               rejected: dict[int, set[int]] | None = None) -> None:
        """Serve from ``result`` from now on (this process's refit, or another's, published)."""
        if open_rows is None:
            open_rows, rejected = self.queue.open_rows(), self.tally.rejected()
        self.queue.publish(result.ranking, open_rows)
        self.sweep.begin(result, open_rows, rejected)  # open_rows is the sweep's now
        self.worker.has_idle_work()
        self.refitter.adopt(result)
        self.model_ = result.model
        self.round = result.ranking.round
        self.last_error = None
        self.last_timings = dict(result.timings)

    def wait_idle(self, timeout: float = 60.0, *, swept: bool = False) -> bool:
        """Block until no refit runs or waits (``swept``: and the background sweep of the rows
        the round did not score is done). For tests, scripts and shutdown."""
        return self.worker.wait_idle(timeout, idle_work=swept)

    def training_data(self, labelled: list[tuple[int, str]]):
        """Features and label indices for ``(input_hash, label)`` pairs whose rows are in the pool."""
        return self.refitter.training_data(labelled)

    # -- reporting ----------------------------------------------------------------------------

    def answered_share(self) -> float:
        """The share of the pool answered: cheap, unlike ``stats``, which reads the store."""
        return self.queue.answered_share()

    def stats(self) -> dict[str, Any]:
        rounds = self._started()
        outcomes = self.tally.outcomes()
        counts = self.queue.counts()
        return {
            "dataset": self.dataset,
            "n_annotations": sum(outcomes.values()),
            "per_label": {label: outcomes.get(label, 0) for label in self.labels},
            "answers": {a: outcomes.get(f"_{a}", 0) for a in ("reject", "ignore")}
            | {"accept": sum(outcomes.get(label, 0) for label in self.labels)},
            "model": self.model_spec,
            "learner": describe(self.model_),  # what the model in use is, e.g. auto's members
            "model_round": self.round,
            "last_refit_ms": round(self.last_refit_ms, 2) if self.last_refit_ms else None,
            "last_timings": {k: round(v, 2) for k, v in self.last_timings.items()},
            "last_error": self.last_error,
            "refitting": self.worker.busy,
            "n_pool": len(self.pool),
            "n_remaining": counts["open"],
            # Rows the serving model has scored (its round's, then the sweep's), and those open
            # at its round that it has not scored yet: the ranking has seen n_scored of them.
            "n_scored": self.sweep.n_scored if self.model_ is not None else None,
            "n_unscored": self.sweep.n_unscored if self.model_ is not None else 0,
            "n_out": counts["out"],
            "next_release_s": counts["next_release_s"],  # when the first row out frees up
            "n_unmatched": self.tally.n_unmatched,  # stored answers for rows not in this pool
            "audit": self.settings.audit,
            "estimate": rounds.estimate(),
            "stop": rounds.stop(),
            "history": list(rounds.entries),
        }

    @property
    def n_unmatched(self) -> int:
        """Stored answers for rows not in this pool (an edited pool, a changed id column)."""
        return self.tally.n_unmatched

    @property
    def history(self) -> list[dict[str, Any]]:
        """One entry per refit, this run's and those before a restart."""
        return self._started().entries
