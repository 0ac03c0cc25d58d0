"""Scoring a pool on a Dask cluster: the fitted model goes to every worker once, and each worker
reads its partitions of the pool file itself (``partitions.py``) and scores them, as dask-ml's
``ParallelPostFit`` maps ``predict_proba`` over a collection's partitions. The host sends no
features, and takes each partition's probabilities as it is scored, checking that the worker
read the rows and values it loaded.

A pool that is not a CSV or Parquet file (JSONL, a DataFrame, an array) is sent from the host's
X instead, once, a partition at a time, and then scored by every model on the cluster.

dask.distributed is optional (the ``dask`` extra) and imported when used; workers need
retrain-loop installed, and, for a file, the file at the same path.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

import numpy as np

from .partitions import Part, changed, fingerprint, plan, score_part
from .pool import Pool

NEEDS = "scoring on Dask needs dask.distributed: pip install 'retrain-loop[dask]'"
LOCAL = "local"  # the scheduler that starts a LocalCluster on this machine
LOCAL_WORKERS = 2
CONNECT_TIMEOUT = 10  # seconds to reach a scheduler at an address
TRIM = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"


class DaskError(ValueError):
    """No dask.distributed, no scheduler at the address, or a cluster that failed while scoring."""


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise DaskError(NEEDS) from None
    return distributed


def connect(scheduler: Any, n_workers: int = LOCAL_WORKERS) -> Any:
    """A ``distributed.Client``: ``local`` starts a LocalCluster of ``n_workers`` processes of one
    thread each on this machine (closing the client stops it); any other string is a
    scheduler's address (``tcp://host:8786``). A Client is returned as it is."""
    distributed = _distributed()
    if isinstance(scheduler, distributed.Client):
        return scheduler
    if not isinstance(scheduler, str) or not scheduler.strip():
        raise DaskError(f"give a Dask scheduler's address (tcp://host:8786) or {LOCAL}, not "
                        f"{scheduler!r}")
    if scheduler == LOCAL:
        return _local_cluster(distributed, n_workers)
    try:  # the scheme first: a Client would fail on it slowly, in its finalizer
        from distributed.comm import parse_address
        from distributed.comm.registry import get_backend

        get_backend(parse_address(scheduler)[0])
        return distributed.Client(scheduler, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as e:
        raise DaskError(f"cannot reach a Dask scheduler at {scheduler}: {e}") from e


def _local_cluster(distributed: Any, n_workers: int) -> Any:
    """A client of a new LocalCluster, which closing the client stops.

    One thread per worker, as fits run here: spinning OpenMP threads contend for cores. A free
    port for the scheduler's HTTP routes, so two clusters here do not clash. Results straight
    from the workers, not relayed by the scheduler (a million rows scored 12% sooner here). And
    the workers start without the MALLOC_TRIM_THRESHOLD_ Dask gives them: setting it turns off
    glibc's adaptive mmap threshold, so every array over 128 kB is mapped and faulted in afresh,
    which made scoring with logistic regression twice as slow.
    """
    import dask

    try:
        with dask.config.set({TRIM: None}):
            return distributed.Client(n_workers=n_workers, threads_per_worker=1, processes=True,
                                      dashboard_address=":0", set_as_default=False,
                                      direct_to_workers=True)
    except (OSError, RuntimeError, TimeoutError) as e:  # RuntimeError: a worker did not start
        raise DaskError(f"cannot start a Dask cluster on this machine: {e}") from e


@contextmanager
def _cluster_errors() -> Iterator[None]:
    distributed = _distributed()
    try:
        yield
    except (OSError, TimeoutError, distributed.KilledWorker, distributed.CancelledError) as e:
        raise DaskError(f"the Dask cluster failed while scoring: {type(e).__name__}: {e}") from e


class DaskPool:
    """A pool's partitions on a cluster: every row's probabilities under a model at once
    (``probabilities``), or partition by partition in an order (``stream``).

    ``owns_client``: ``close`` closes the client (and a LocalCluster it started).
    """

    def __init__(self, client: Any, pool: Pool, *, partition_rows: int | None = None,
                 owns_client: bool = False):
        self.client, self.pool = client, pool
        self.owns_client = owns_client
        self.source, self.parts = plan(pool, partition_rows)
        self._starts = np.array([part.start for part in self.parts], dtype=np.int64)
        self._sent: list[Any] | None = None  # the host's X, on the cluster, for a "host" source

    @classmethod
    def open(cls, scheduler: Any, pool: Pool, **options: Any) -> DaskPool:
        """Connect to ``scheduler`` (``connect``) for ``pool``; the DaskPool closes a client it
        made."""
        client = connect(scheduler)
        owns = client is not scheduler
        try:
            return cls(client, pool, owns_client=owns, **options)
        except BaseException:
            if owns:
                client.close()
            raise

    def __enter__(self) -> DaskPool:  # noqa: PYI034 - typing.Self needs Python 3.11
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._sent = None
        if self.owns_client:
            self.client.close()

    def probabilities(self, model: Any, n_labels: int, rows: np.ndarray | None = None
                      ) -> np.ndarray:
        """Each pool row's probabilities under ``model`` (float64), or of the pool rows ``rows``:
        as ``label_probabilities(model, pool.X[rows], n_labels)``, from the cluster."""
        out = np.empty((len(self.pool), n_labels), dtype=np.float64)
        stream = self.stream(model, n_labels, range(len(self.parts)), in_flight=len(self.parts))
        with _cluster_errors():
            try:
                for part, proba in stream.as_completed():
                    out[part.start:part.stop] = proba
            finally:
                stream.cancel()
        if rows is None or (len(rows) == len(out) and (rows == np.arange(len(out))).all()):
            return out
        return out[rows]

    def stream(self, model: Any, n_labels: int, order: Sequence[int],
               in_flight: int | None = None) -> PartStream:
        """The partitions ``order`` (indices into ``parts``) scored by ``model``, at most
        ``in_flight`` at a time on the cluster (default: two per worker thread)."""
        if in_flight is None:
            with _cluster_errors():
                in_flight = 2 * sum(self.client.nthreads().values())
        return PartStream(self, model, n_labels, order, max(1, in_flight))

    def plan(self, todo: np.ndarray, cursor: int = 0) -> list[int]:
        """The partitions holding a row where ``todo`` (a bool per pool row) holds, from the
        one at pool row ``cursor`` round the pool."""
        if not len(self.parts):
            return []
        has = np.logical_or.reduceat(todo, self._starts)
        first = int(np.searchsorted(self._starts, cursor, side="right")) - 1
        order = list(range(first, len(self.parts))) + list(range(first))
        return [i for i in order if has[i]]

    def _submit(self, model: Any, n_labels: int, index: int) -> Any:
        part = self.parts[index]
        return self.client.submit(score_part, self.source, part, model, n_labels,
                                  self._host_part(index), pure=False)

    def _host_part(self, index: int) -> Any:
        if self.source.kind != "host":
            return None
        if self._sent is None:  # sent once, and scored by every model after
            X = self.pool.X
            self._sent = self.client.scatter([X[p.start:p.stop] for p in self.parts], hash=False)
        return self._sent[index]

    def _checked(self, part: Part, result: tuple[np.ndarray, np.ndarray | None],
                 n_labels: int) -> np.ndarray:
        proba, seen = result
        if proba.shape != (len(part), n_labels):
            raise DaskError(f"a worker returned {proba.shape} probabilities for rows "
                            f"{part.start + 1}-{part.stop}, expected ({len(part)}, {n_labels})")
        if seen is not None and not np.array_equal(
                seen, fingerprint(self.pool.X[part.start:part.stop])):
            raise changed(self.source, part, "other values than were loaded")
        return proba


class PartStream:
    """Partitions scored on the cluster, taken in order (``next``) or as they finish
    (``as_completed``), with at most ``in_flight`` submitted and not yet taken."""

    def __init__(self, owner: DaskPool, model: Any, n_labels: int, order: Sequence[int],
                 in_flight: int):
        self.owner, self.n_labels, self.in_flight = owner, n_labels, in_flight
        self._waiting = deque(order)
        self._running: deque[tuple[int, Any]] = deque()
        self.rows_left = sum(len(owner.parts[i]) for i in order)
        with _cluster_errors():
            # Scattered once, to every worker, rather than sent with each task.
            self._model = owner.client.scatter(model, broadcast=True, hash=False)
            self._fill()

    @property
    def done(self) -> bool:
        return not self._running and not self._waiting

    def next(self, timeout: float | None = None) -> tuple[Part, np.ndarray] | None:
        """The next partition in order and its probabilities; None if it is not scored within
        ``timeout`` seconds (or none is left)."""
        if not self._running:
            return None
        index, future = self._running[0]
        with _cluster_errors():
            try:
                result = future.result(timeout=timeout)
            except TimeoutError:
                if future.done():  # the task's own TimeoutError
                    raise
                return None
            self._running.popleft()
            self._fill()
        return self._taken(index, result)

    def as_completed(self) -> Iterator[tuple[Part, np.ndarray]]:
        """Every partition left and its probabilities, as each is scored."""
        distributed = _distributed()
        with _cluster_errors():
            # One as_completed for them all: each result is fetched once, as it is ready.
            done = distributed.as_completed([f for _, f in self._running], with_results=True,
                                            loop=self.owner.client.loop)
            where = {future.key: index for index, future in self._running}
            for future, result in done:
                self._running = deque(item for item in self._running if item[1] is not future)
                before = len(self._running)
                self._fill()
                for index, new in list(self._running)[before:]:
                    where[new.key] = index
                    done.add(new)
                yield self._taken(where.pop(future.key), result)

    def cancel(self) -> None:
        """Drop the partitions not taken yet, and the model."""
        futures = [future for _, future in self._running]
        self._running.clear()
        self._waiting.clear()
        self._model = None
        if futures:
            with suppress(Exception):  # a closed client has cancelled them already
                self.owner.client.cancel(futures)

    def _fill(self) -> None:
        while self._waiting and len(self._running) < self.in_flight:
            index = self._waiting.popleft()
            self._running.append((index, self.owner._submit(self._model, self.n_labels, index)))

    def _taken(self, index: int, result: Any) -> tuple[Part, np.ndarray]:
        part = self.owner.parts[index]
        self.rows_left -= len(part)
        return part, self.owner._checked(part, result, self.n_labels)
