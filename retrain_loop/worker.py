"""The refit worker: runs the engine's refit on a thread of its own, so serving never waits.

Requests coalesce: while a refit runs, any number of requests make one more refit after it,
which reads every answer stored by then. Without a thread (``background=False``: offline
scoring, simulations, the Prodigy recipe, whose ``update`` callback may block) a request runs the
job at once, in the caller's thread.

Between jobs the thread runs ``idle`` (the sweep of the rows a round did not score) one step at
a time while it says there is more to do, and checks for a request before every step: a
request waits for one step at most. Idle work is not ``busy``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class RefitWorker:
    def __init__(self, job: Callable[[], object], *, background: bool = True,
                 name: str = "refit", idle: Callable[[], bool] | None = None):
        self.job = job
        self.idle = idle  # one step of idle work; True while more is left
        self.background = background
        self.name = name
        self._cond = threading.Condition()
        self._pending = False
        self._running = False
        self._closed = False
        self._idle_more = False  # a job ran since idle work last said it was done
        self._thread: threading.Thread | None = None

    def request(self) -> None:
        """Run the job soon (in the background) or now (in the foreground)."""
        if not self.background:
            self.job()
            return
        with self._cond:
            if self._closed:
                return
            self._pending = True
            self._start()
            self._cond.notify_all()

    def has_idle_work(self) -> None:
        """Idle work was given from another thread than the worker's: run it soon."""
        if not self.background or self.idle is None:
            return
        with self._cond:
            if self._closed:
                return
            self._idle_more = True
            self._start()
            self._cond.notify_all()

    def _start(self) -> None:  # under the lock
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name=self.name, daemon=True)
            self._thread.start()

    @property
    def busy(self) -> bool:
        """Whether a run is going on or waiting."""
        with self._cond:
            return self._pending or self._running

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed and not self._idle_more:
                    self._cond.wait()
                if self._closed:
                    return
                run_job = self._pending
                self._pending = False
                self._running = run_job
            if run_job:
                try:
                    self.job()
                except Exception:
                    log.exception("%s failed", self.name)
                finally:
                    with self._cond:
                        self._running = False
                        self._idle_more = self.idle is not None
                        self._cond.notify_all()
                continue
            try:
                more = bool(self.idle())
            except Exception:
                log.exception("%s: idle work failed", self.name)
                more = False
            if not more:
                with self._cond:
                    self._idle_more = False
                    self._cond.notify_all()

    def wait_idle(self, timeout: float = 60.0, *, idle_work: bool = False) -> bool:
        """Block until no run goes on or waits (``idle_work``: and no idle work is left); False
        if that took longer than ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending or self._running or (idle_work and self._idle_more):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def close(self, timeout: float = 30.0) -> None:
        """No more runs; waits up to ``timeout`` for the one going on."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
