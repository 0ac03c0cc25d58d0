"""The refit worker: runs the engine's refit on a thread of its own, so serving never waits.

Requests coalesce: while a refit runs, any number of requests make one more refit after it,
which reads every answer stored by then. Without a thread (``background=False``: offline
scoring, simulations, the Prodigy recipe, whose ``update`` callback may block) a request runs the
job at once, in the caller's thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class RefitWorker:
    def __init__(self, job: Callable[[], object], *, background: bool = True,
                 name: str = "refit"):
        self.job = job
        self.background = background
        self.name = name
        self._cond = threading.Condition()
        self._pending = False
        self._running = False
        self._closed = False
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
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name=self.name, daemon=True)
                self._thread.start()
            self._cond.notify_all()

    @property
    def busy(self) -> bool:
        """Whether a run is going on or waiting."""
        with self._cond:
            return self._pending or self._running

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
                self.job()
            except Exception:
                log.exception("%s failed", self.name)
            finally:
                with self._cond:
                    self._running = False
                    self._cond.notify_all()

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Block until no run goes on or waits; False if that took longer than ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending or self._running:
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
