"""The preprocessing thread pool, bounded like a batcher queue and aware of request deadlines.

Decoding a large image takes longer than running the model on it, so an unbounded pool lets a crowd of
big uploads queue for seconds with no 503. Past ``max_pending`` requests (decoding or waiting to), a new
one is refused at once with 503 + Retry-After; a job whose request passed its deadline while it waited is
never run (504). Callers keep using ``loop.run_in_executor(pool, fn)``: ``submit`` does the checks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import ContextVar
from typing import Any, TypeVar

from service.errors import Overloaded, QueueTimeout

T = TypeVar("T")
# The current request's deadline (time.monotonic()); set by the handler once it knows the model's timeout.
request_deadline: ContextVar[float | None] = ContextVar("request_deadline", default=None)


class BoundedPool(ThreadPoolExecutor):
    def __init__(self, threads: int, max_pending: int) -> None:
        super().__init__(threads, thread_name_prefix="preprocess")
        self.max_pending = max_pending
        self._pending = 0
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        return self._pending

    def refuse_if_full(self) -> None:
        """Overloaded (503, and close: the upload is not read) when no request could be admitted now."""
        if self._pending >= self.max_pending:
            error = self._busy()
            error.headers["Connection"] = "close"
            raise error

    def _busy(self) -> Overloaded:
        return Overloaded(f"the server is busy decoding: {self._pending} requests decoding or waiting")

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        with self._lock:
            if self._pending >= self.max_pending:
                raise self._busy()
            self._pending += 1
        deadline = request_deadline.get()

        def run() -> T:
            if deadline is not None and time.monotonic() > deadline:
                raise QueueTimeout("the request passed its deadline waiting to be decoded and was not run")
            return fn(*args, **kwargs)

        try:
            future = super().submit(run)
        except BaseException:
            self._release(None)
            raise
        future.add_done_callback(self._release)
        return future

    def _release(self, _: object) -> None:
        with self._lock:
            self._pending -= 1
