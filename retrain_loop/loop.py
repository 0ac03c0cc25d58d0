"""The engine: store answers, refit from all of them, and serve a ranked queue.

``update`` stores a batch of answers and schedules a refit. A refit reads every annotation of
the dataset, fits a clone of the model, rescores the rows that are neither answered nor out with
an annotator, and swaps in the new ranking in one assignment. Serving reads whatever ranking is
current, so it never waits for a fit. Refits coalesce: at most one runs and one waits.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import clone
from threadpoolctl import ThreadpoolController

from .answers import (  # noqa: F401 - the hosts import the answer errors from here
    SESSION_PATTERN,
    Answered,
    AnswerError,
    UnknownLabel,
    UnknownTask,
    check_session,
    outcome,
    served_meta,
    to_record,
)
from .audit import DEFAULT_SHARE, AuditDraw
from .estimate import DEFAULT_WINDOW
from .hashing import task_hash
from .history import RoundHistory
from .models import DEFAULT_MODEL, ModelError, describe, label_probabilities, make_model
from .pool import Pool
from .ranking import Ranking
from .stopping import StopRule
from .store import AnnotationStore, session_id
from .strategies import (
    coverage_order,
    exclude_labels,
    farthest_first,
    feature_scale,
    get_strategy,
    mix_random,
    prefer_label,
    sort_by,
    spread_near_copies,
)

log = logging.getLogger(__name__)

UPDATE_MODES = ("refit", "incremental")
_THREADS = ThreadpoolController()
# Pools larger than this are scored in slices of this many rows (see Engine._predict); 16k-64k
# measured alike at 1M rows, 16k-32k best at 100k.
_SLICE = 32_768
_DISCOVERY_ROUNDS = 5  # rounds that look for missing labels before giving up


class EngineError(ValueError):
    """Settings the engine cannot run with."""


@dataclass
class _Lease:
    session: str
    expires: float
    meta: dict[str, Any] = field(default_factory=dict)
    guess: str | None = None


class Engine:
    def __init__(
        self,
        pool: Pool,
        store: AnnotationStore,
        dataset: str,
        labels: list[str],
        *,
        model: str | Any = DEFAULT_MODEL,
        strategy: str = "margin",
        batch_size: int = 10,
        explore: float = 0.0,
        prefer: str | None = None,
        lease_seconds: float = 600.0,
        seed: int = 0,
        background: bool = True,
        update: str = "refit",
        discover: float = 0.2,
        distinct: float = 0.01,
        cold_start_size: int | None = None,
        threads: int = 1,
        audit: float = DEFAULT_SHARE,
        audit_window: int = DEFAULT_WINDOW,
        stop_rule: StopRule | None = None,
        state: Any = None,
        max_out: float | None = None,
    ):
        labels = list(labels)
        if len(labels) < 2:
            raise EngineError("give at least two labels")
        if len(set(labels)) != len(labels):
            raise EngineError(f"labels repeat: {', '.join(labels)}")
        if batch_size < 1:
            raise EngineError("batch size must be at least 1")
        if not 0.0 <= explore <= 1.0:
            raise EngineError(f"explore must be between 0 and 1, got {explore}")
        if prefer is not None and prefer not in labels:
            raise EngineError(f"--prefer {prefer!r} is not one of the labels: {', '.join(labels)}")
        self.pool = pool
        self.store = store
        self.dataset = dataset
        self.labels = labels
        self.options = [{"id": label, "text": label} for label in labels]
        self.model_spec = model if isinstance(model, str) else type(model).__name__
        self.prototype = make_model(model, seed=seed) if isinstance(model, str) else model
        self.strategy = strategy
        self._scorer = get_strategy(strategy)
        self.batch_size = batch_size
        self.explore = explore
        self.prefer = prefer
        self.lease_seconds = lease_seconds
        # Rows one session may hold at once: a page holds a batch and the next, so one session
        # (or one page that is not ours) cannot take the whole pool.
        self.max_out = 3 * batch_size if max_out is None else max_out
        self.seed = seed
        self.background = background
        if update not in UPDATE_MODES:
            raise EngineError(f"unknown update mode {update!r}: use one of {', '.join(UPDATE_MODES)}")
        if update == "incremental" and not callable(getattr(self.prototype, "partial_fit", None)):
            raise ModelError(
                f"{self.model_spec} ({type(self.prototype).__name__}) has no partial_fit(), so it "
                "cannot learn incrementally; use --update refit, or a model such as nb or sgd"
            )
        self.update_mode = update
        if not 0.0 <= discover <= 1.0:
            raise EngineError(f"discover must be between 0 and 1, got {discover}")
        self.discover = discover
        self._discovery_rounds = 0  # rounds that gave part of their head to far rows
        if distinct < 0:
            raise EngineError(f"distinct must be at least 0, got {distinct}")
        self.distinct = distinct  # how close two rows are to count as copies (0: never)
        self._scale: np.ndarray | None = None  # feature spreads, for telling copies apart
        self._fed: set[tuple[int, str]] = set()  # (input_hash, label) pairs given to partial_fit
        self.threads = threads
        self.cold_start_size = cold_start_size or max(5 * batch_size, 50)
        self._label_index = {label: i for i, label in enumerate(labels)}
        self._rng = np.random.default_rng(seed)
        self._audit = AuditDraw(audit, seed)
        # Ranked rows per batch: audit draws take the other slots, not the explore or discovery
        # picks that the order places within each batch.
        self._ranked_per_batch = max(1, batch_size - round(audit * batch_size))
        # The round history and stop set go to ``state``, the answer store unless told otherwise.
        self.rounds = RoundHistory(store, state or store, dataset, pool, labels, rule=stop_rule,
                                   window=audit_window, seed=seed)

        self._lock = threading.Lock()  # guards the serving state below
        self._refit_lock = threading.Lock()  # one refit at a time
        self._answered = np.zeros(len(pool), dtype=bool)
        self._leases: dict[int, _Lease] = {}
        self._returned: deque[tuple[int, _Lease]] = deque()
        self._latest: dict[tuple[str, int], str] = {}  # (session id, task hash) -> label/answer
        self._task_hashes: dict[int, int] = {}
        self._cursor = 0
        self._ranking = Ranking(np.empty(0, dtype=np.int64), None, None, 0)

        self.model_: Any = None
        self.round = self.rounds.last_round  # round numbers go on across restarts
        self.last_refit_ms: float | None = None
        self.last_timings: dict[str, float] = {}
        self.last_error: str | None = None

        self._cond = threading.Condition()
        self._pending = False
        self._running = False
        self._closed = False
        self._worker: threading.Thread | None = None

        self.n_unmatched = self._load_answered()
        getattr(store, "changed_elsewhere", lambda: False)()  # what we read is the baseline
        self._ranking = self._cold_start_ranking()
        # A restarted server refits from the stored answers; in the background, so that the page
        # opens at once and the first batch comes from the cold start while the model fits.
        if self._latest:
            self.schedule_refit()

    # -- hashes and tasks ---------------------------------------------------------------------

    def task_hash(self, index: int) -> int:
        h = self._task_hashes.get(index)
        if h is None:
            h = task_hash(int(self.pool.input_hashes[index]), self.labels)
            self._task_hashes[index] = h
        return h

    def _task(self, index: int, lease: _Lease) -> dict[str, Any]:
        task = dict(self.pool.tasks[index])
        task["_task_hash"] = self.task_hash(index)
        task["options"] = self.options
        task["accept"] = [lease.guess] if lease.guess is not None else []
        task["meta"] = dict(lease.meta)
        return task

    # -- serving ------------------------------------------------------------------------------

    def get_questions(self, session: str, n: int | None = None) -> list[dict[str, Any]]:
        """Lease up to ``n`` rows to a session, best first. Never waits for a refit."""
        check_session(session)
        n = self.batch_size if n is None else n
        changed = getattr(self.store, "changed_elsewhere", None)
        if changed is not None and changed():  # answers imported while we run: not served again
            with self._lock:
                self.n_unmatched = self._load_answered()
            self.schedule_refit()
        out: list[tuple[int, _Lease]] = []
        with self._lock:
            now = time.monotonic()
            self._expire(now)
            held = sum(lease.session == session for lease in self._leases.values())
            n = min(n, max(self.max_out - held, 0))
            while self._returned and len(out) < n:
                index, lease = self._returned.popleft()
                if not self._answered[index] and index not in self._leases:
                    out.append((index, lease))
                    self._leases[index] = lease
            ranking = self._ranking
            while len(out) < n:
                picked = self._audited(ranking) if ranking.scored and self._audit.due() else None
                while picked is None and self._cursor < len(ranking):
                    j = self._cursor
                    self._cursor += 1
                    index = ranking.row(j)
                    if not (self._answered[index] or index in self._leases):
                        picked = index, self._describe(ranking, ranking.position(j), index)
                if picked is None:
                    break
                out.append(picked)
                self._leases[picked[0]] = picked[1]
            for _, lease in out:
                lease.session = session
                lease.expires = now + self.lease_seconds
        return [self._task(index, lease) for index, lease in out]

    def _audited(self, ranking: Ranking) -> tuple[int, _Lease] | None:
        """A row drawn uniformly from the open rows the ranking scored, served as an audit:
        its prediction is recorded, and not offered as the guess, so it cannot sway the answer."""
        rows = ranking.candidates

        def is_open(positions: np.ndarray) -> np.ndarray:
            picked = rows[positions]
            leased = np.fromiter(self._leases, dtype=np.int64, count=len(self._leases))
            return ~self._answered[picked] & ~np.isin(picked, leased)

        p = self._audit.pick(len(rows), is_open)
        if p is None:
            return None
        lease = self._describe(ranking, p, int(rows[p]), source="audit")
        lease.guess = None
        return int(rows[p]), lease

    def _describe(self, ranking: Ranking, p: int, index: int, source: str | None = None
                  ) -> _Lease:
        """What a task records about how it was served: where it came from, the round of the
        model that served it, and that model's prediction (``p``: the row's array position)."""
        meta: dict[str, Any] = {"source": source or ranking.source(index), "round": ranking.round}
        predicted = None
        scores = ranking.at(p)
        if scores is not None:
            utility, proba = scores
            best = int(proba.argmax())
            predicted = self.labels[best]
            meta.update(score=round(utility, 4), p=round(float(proba[best]), 4),
                        predicted=predicted)
        return _Lease(session="", expires=0.0, meta=meta, guess=predicted)

    def _expire(self, now: float) -> None:
        for index in [i for i, lease in self._leases.items() if lease.expires <= now]:
            self._returned.append((index, self._leases.pop(index)))

    def ranked(self, top: int | None = None) -> list[dict[str, Any]]:
        """The open rows in the current model's order, without leasing them (offline scoring).

        Each row carries ``score`` (the strategy's utility), ``label`` (the model's guess) and
        ``probs`` (every label's probability).
        """
        ranking = self._ranking
        if not ranking.scored:
            raise EngineError(
                "no model yet: scoring needs accepted answers for at least two labels"
                + (f" (last error: {self.last_error})" if self.last_error else "")
            )
        out = []
        for j in range(len(ranking)):
            index = ranking.row(j)
            if self._answered[index]:
                continue
            utility, p = ranking.scores(j)
            row = dict(self.pool.tasks[index])
            row["score"] = utility
            row["label"] = self.labels[int(p.argmax())]
            row["probs"] = {label: float(v) for label, v in zip(self.labels, p)}
            out.append(row)
            if top is not None and len(out) >= top:
                break
        return out

    def release_session(self, session: str) -> int:
        """Put a session's outstanding rows back at the head of the queue (a page reload)."""
        with self._lock:
            mine = [i for i, lease in self._leases.items() if lease.session == session]
            for index in reversed(mine):
                self._returned.appendleft((index, self._leases.pop(index)))
        return len(mine)

    # -- answers ------------------------------------------------------------------------------

    def update(self, answers: list[dict[str, Any]], session: str) -> int:
        """Store a batch of answers and schedule a refit. Returns how many were new.

        Every answer is checked before any is stored, so a bad batch stores nothing.
        """
        check_session(session)
        sid = session_id(self.dataset, session)
        now = int(time.time())
        records, indices = [], []
        for answer in answers:
            index, record = to_record(answer, self.pool, self.labels, self.task_hash, sid, now)
            records.append(record)
            indices.append(index)
        with self._lock:
            leases = [self._leases.get(index) for index in indices]
        for record, lease in zip(records, leases):
            record["meta"] = served_meta(record, lease.meta if lease else None,
                                         self.store, self.dataset)
        stored = self.store.add(self.dataset, records)
        with self._lock:
            for index, record in zip(indices, records):
                self._answered[index] = True
                self._leases.pop(index, None)
                self._latest[(sid, record["_task_hash"])] = outcome(record)
        if stored:
            self.schedule_refit()
        return stored

    def _load_answered(self) -> int:
        """Take in the stored answers; returns how many match no pool row (``answers.Answered``)."""
        answered = Answered.read(self.store.get(self.dataset), self.pool, self._label_index)
        self._answered |= answered.rows
        self._rejected = answered.rejected
        self._latest.update(answered.latest)
        return answered.unmatched

    # -- refits -------------------------------------------------------------------------------

    def schedule_refit(self) -> None:
        if not self.background:
            self.refit()
            return
        with self._cond:
            self._pending = True
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="refit", daemon=True)
                self._worker.start()
            self._cond.notify_all()

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                self._pending = False
                self._running = True
            try:
                self.refit()
            except Exception:
                log.exception("refit failed")
            finally:
                with self._cond:
                    self._running = False
                    self._cond.notify_all()

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Block until no refit runs or waits. For tests, scripts and shutdown."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending or self._running:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def training_data(self, labelled: list[tuple[int, str]]) -> tuple[np.ndarray, np.ndarray]:
        """Features and label indices for ``(input_hash, label)`` pairs whose rows are in the pool."""
        indices, y = [], []
        for input_hash, label in labelled:
            index = self.pool.index_of(input_hash)
            label_index = self._label_index.get(label)
            if index is None or label_index is None:
                continue
            indices.append(index)
            y.append(label_index)
        return self.pool.X[np.asarray(indices, dtype=np.int64)], np.asarray(y, dtype=np.int64)

    def refit(self) -> Ranking:
        """Fit on all annotations, rescore the open rows and swap in the new ranking."""
        with self._refit_lock:
            return self._refit()

    def _refit(self) -> Ranking:
        started = time.perf_counter()
        labelled = self.store.labelled(self.dataset)
        X_train, y_train = self.training_data(labelled)
        read_done = time.perf_counter()
        if len(np.unique(y_train)) < 2:
            # No model until two classes have labels: keep serving rows that cover the space.
            return self._ranking
        try:
            with _THREADS.limit(limits=self.threads):
                if self.update_mode == "incremental":
                    estimator, fed = self._partial_fit(labelled, X_train, y_train)
                else:
                    estimator, fed = clone(self.prototype).fit(X_train, y_train), set()
                fit_done = time.perf_counter()
                with self._lock:
                    open_rows = ~self._answered
                    for index in self._leases:
                        open_rows[index] = False
                candidates = np.flatnonzero(open_rows)
                proba = exclude_labels(self._predict(estimator, candidates), candidates,
                                       self._rejected)
                stop_predicted = self.rounds.predict(estimator, candidates, proba)
        except Exception as e:  # noqa: BLE001 - a user's model may raise anything
            self.last_error = f"{type(e).__name__}: {e}"
            log.warning("refit on %d labels failed, keeping round %d: %s",
                        len(y_train), self.round, self.last_error)
            return self._ranking
        score_done = time.perf_counter()
        utility = self._scorer(proba, self._rng)
        if self.prefer is not None:
            utility = prefer_label(utility, proba, self._label_index[self.prefer])
        # Drawn for every row, as a full sort would, so a seed gives the same order as before.
        jitter = self._rng.random(utility.shape[0])
        tags = {}
        if self.explore > 0:  # random picks come from the whole order, so sort it all
            order, n_sorted = sort_by(utility, jitter)
            per_batch = self._ranked_per_batch
            order, explored = mix_random(order, min(1.0, self.explore * self.batch_size / per_batch),
                                         per_batch, self._rng)
            tags["explore"] = candidates[explored]
        else:  # a round serves its head; the rest is sorted only if someone reads that far
            order, n_sorted = sort_by(utility, jitter, head=max(50 * self.batch_size, 1000))
        order, n_sorted, far = self._with_discovery(order, n_sorted, candidates, X_train, y_train)
        tags["discovery"] = candidates[far]
        if self.distinct > 0 and self.strategy != "random":  # the baseline stays pure
            if self._scale is None:
                self._scale = feature_scale(self.pool.X)
            order = spread_near_copies(order, n_sorted, self.pool.X, candidates, self._scale,
                                       window=5 * self.batch_size, tol=self.distinct)
        ranking = Ranking.partial(candidates, utility, proba, self.round + 1, order, n_sorted,
                                  jitter, tags)
        with self._lock:
            self._ranking = ranking
            self._cursor = 0
            # Rows handed back before this round are ranked in it now; they wait no longer
            # at the head of the queue.
            self._returned = deque(
                (index, lease) for index, lease in self._returned if not open_rows[index]
            )
            n_answers = len(self._latest)
        self.model_ = estimator
        self._fed |= fed
        self.round = ranking.round
        self.last_error = None
        done = time.perf_counter()
        self.last_refit_ms = (done - started) * 1000
        self.last_timings = {
            "read_ms": (read_done - started) * 1000,
            "fit_ms": (fit_done - read_done) * 1000,
            "score_ms": (score_done - fit_done) * 1000,
            "rank_ms": (done - score_done) * 1000,
        }
        try:
            self.rounds.record(round=self.round, predicted=stop_predicted, n_annotations=n_answers,
                               labelled=labelled, y_train=y_train, refit_ms=self.last_refit_ms)
        except Exception as e:  # noqa: BLE001 - the new model serves whether or not it is logged
            self.last_error = f"round history not saved: {type(e).__name__}: {e}"
            log.warning("%s", self.last_error)
        return ranking

    def _with_discovery(self, order, n_sorted, candidates, X_train, y_train
                        ) -> tuple[np.ndarray, int, np.ndarray]:
        """While a label has no answers, give part of the next batch to far-away rows.

        ``order`` is final in its first ``n_sorted`` positions (at least a batch); so is the
        returned one, which has the far rows in its head and the sorted rows less those. The
        far rows' positions come third.
        """
        missing = np.bincount(y_train, minlength=len(self.labels)) == 0
        k = round(self.discover * self.batch_size)
        # The random strategy is the baseline that others are measured against; keep it pure.
        # A label still missing after a few rounds of far rows is rare rather than far away
        # (Seattle's snow days); more far rows would only spend labels, so the search stops.
        if (not missing.any() or k == 0 or len(order) <= k or self.strategy == "random"
                or self._discovery_rounds >= _DISCOVERY_ROUNDS):
            return order, n_sorted, order[:0]
        self._discovery_rounds += 1
        far = farthest_first(self.pool.X, candidates, X_train, k, self._rng)
        keep = ~np.isin(order, far)
        rest = order[keep]
        head = max(self._ranked_per_batch - len(far), 0)
        n_sorted = int(keep[:n_sorted].sum()) + len(far)
        return np.concatenate([rest[:head], far, rest[head:]]), n_sorted, far

    def _partial_fit(self, labelled, X_train, y_train) -> tuple[Any, set[tuple[int, str]]]:
        """Update a copy of the current model on the answers it has not seen.

        The copy keeps the last good model serving if ``partial_fit`` fails. Classes are declared
        up front, so a batch without some label still yields probabilities for every label.
        """
        classes = np.arange(len(self.labels))
        if self.model_ is None:
            estimator = clone(self.prototype)
            estimator.partial_fit(X_train, y_train, classes=classes)
            return estimator, set(labelled)
        new = [pair for pair in labelled if pair not in self._fed]
        estimator = copy.deepcopy(self.model_)
        X_new, y_new = self.training_data(new)
        if len(y_new):
            estimator.partial_fit(X_new, y_new, classes=classes)
        return estimator, set(new)

    def _predict(self, estimator: Any, candidates: np.ndarray) -> np.ndarray:
        """Probabilities for the rows ``candidates`` (sorted, distinct pool indices).

        A large pool goes to ``predict_proba`` in slices: no copy of the whole open part of X
        (80 MB at 1M x 20), and every intermediate stays in cache. Rows are scored one by one
        either way, so the probabilities are the same, bit for bit.
        """
        X, n_labels = self.pool.X, len(self.labels)
        every_row = len(candidates) == len(X)  # nothing answered or out: X itself, not a copy
        if len(candidates) <= _SLICE:
            return label_probabilities(estimator, X if every_row else X[candidates], n_labels)
        proba = np.empty((len(candidates), n_labels), dtype=np.float64)
        for start in range(0, len(candidates), _SLICE):
            stop = start + _SLICE
            part = X[start:stop] if every_row else X[candidates[start:stop]]
            proba[start:stop] = label_probabilities(estimator, part, n_labels)
        return proba

    def _cold_start_ranking(self) -> Ranking:
        open_rows = np.flatnonzero(~self._answered)
        if len(open_rows) == 0:
            return Ranking(open_rows, None, None, 0)
        # Seeding is O(rows x seeds); a sample of the pool covers the space as well.
        sample = open_rows
        if len(sample) > 20_000:
            sample = np.sort(self._rng.choice(open_rows, 20_000, replace=False))
        seeds = sample[coverage_order(self.pool.X[sample], self.cold_start_size, self._rng)]
        seeds = seeds[: self.cold_start_size]
        rest = np.setdiff1d(open_rows, seeds)
        return Ranking(np.concatenate([seeds, self._rng.permutation(rest)]), None, None, 0)

    # -- reporting ----------------------------------------------------------------------------

    def answered_share(self) -> float:
        """The share of the pool answered: cheap, unlike ``stats``, which reads the store."""
        return float(self._answered.mean()) if len(self._answered) else 0.0

    def stats(self) -> dict[str, Any]:
        with self._lock:
            outcomes = Counter(self._latest.values())
            n_open = int((~self._answered).sum())
            n_out = len(self._leases)
        with self._cond:
            refitting = self._pending or self._running
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
            "refitting": refitting,
            "n_pool": len(self.pool),
            "n_remaining": n_open,
            "n_out": n_out,
            "n_unmatched": self.n_unmatched,  # stored answers for rows not in this pool
            "audit": self._audit.share,
            "estimate": self.rounds.estimate(),
            "stop": self.rounds.stop(),
            "history": list(self.history),
        }

    @property
    def history(self) -> list[dict[str, Any]]:
        """One entry per refit, this run's and those before a restart."""
        return self.rounds.entries

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=30)
