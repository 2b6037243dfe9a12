"""DynamicBatcher: many requests, few model runs, as its BatchPolicy decides (batch_policy.py). Knows nothing of
HTTP.

Each worker (one per instance) blocks until a request arrives, so an idle model costs nothing and a lone
request runs at once. While a batch runs, new requests queue; a freed worker takes what is queued, up to
``max_batch_size`` rows, optionally waiting ``max_queue_delay_ms`` from the first arrival for more. With
no queue delay, a crowd gathers: when the last batch answered several callers and its answers went
out under ``gather_ms`` ago, the first of them back waits (at most that long) for the others, so closed-loop
callers keep forming one batch instead of splitting into runs of one; a lone caller never waits. A
request still queued at its deadline answers QueueTimeout and never runs; one whose caller went away
(its future cancelled) is skipped. A run that raises fails only the requests in it.

A batch runs as collate (service/collate.py: join, pad, split, find the culprit) over the Runtime's ``run``
(``DynamicBatcher.for_runtime``). Time comes from ``clock`` (time.monotonic unless a test passes its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Self

from service import collate
from service.batch_policy import BatchPolicy
from service.context import RequestContext
from service.errors import InferenceFailed, Overloaded, QueueTimeout, ServiceError
from service.runtime import Runtime

log = logging.getLogger(__name__)

RunBatch = Callable[[list[Any]], Sequence[Any]]
Clock = Callable[[], float]


@dataclass(eq=False, slots=True)
class _Pending:
    payload: Any
    rows: int
    future: asyncio.Future[Any]
    arrival: float
    deadline: float
    trace: RequestContext | None = None


class BatchObserver:
    """Hooks the metrics module implements; the default does nothing."""

    def on_batch(self, rows: int, requests: int, run_s: float) -> None: ...
    def on_queue_waits(self, waits_s: list[float]) -> None:
        """How long each request of a batch waited in the queue (one call per batch)."""

    def on_depth(self, queued: int, in_flight: int) -> None: ...


class DynamicBatcher:
    def __init__(
        self,
        run_batch: RunBatch,
        policy: BatchPolicy | None = None,
        *,
        name: str = "model",
        observer: BatchObserver | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        """``run_batch`` runs many requests' payloads and answers one result (or exception) each."""
        self.name = name
        self.policy = policy or BatchPolicy()
        self.clock = clock
        self._run_batch = run_batch
        self._observer = observer or BatchObserver()
        self._queue: deque[_Pending] = deque()
        self._queued_rows = 0
        self._in_flight = 0
        self._jobs: queue.SimpleQueue[tuple[list[Any], int, asyncio.Future[Any]] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._workers: list[asyncio.Task[None]] = []
        self._arrived: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None
        # The loop of start() (asyncio.get_running_loop() is a getpid() system call per use in 3.11).
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False  # set once drained: until then requests already headed here are taken
        self._ran_now = False
        self._depth_due = False  # a queue-depth report is queued for the end of this loop step
        self._gathering = False  # _gather holds the queue for a crowd: arrivals wake it only when it is in
        # One timer for the queue's deadlines (not one per request: a timer made and cancelled per request
        # cost more than the rest of queueing it), armed for the earliest deadline of what is queued.
        self._sweep: asyncio.TimerHandle | None = None
        self._sweep_at = float("inf")
        self._answered = 0  # requests the last batch answered, and when its answers went out: the crowd
        self._ended = float("-inf")  # coming back

    @classmethod
    def for_runtime(cls, runtime: Runtime, policy: BatchPolicy, **options: Any) -> Self:
        """The batcher of one model version: collate joins its requests, the runtime runs the joined
        batch, collate splits the answers (and runs each request alone to find a culprit)."""
        run = partial(
            collate.run_batch, runtime.run, pad_values=runtime.pad_values, batchable=runtime.batchable
        )
        return cls(run, policy, **options)

    @property
    def threads(self) -> list[threading.Thread]:
        """The inference threads (each ends soon after ``close``)."""
        return self._threads

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def start(self) -> None:
        """Create the workers on the running loop (never at import or in __init__)."""
        self._arrived = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        loop = self._loop = asyncio.get_running_loop()
        self._threads = [
            threading.Thread(
                target=self._inference_thread, args=(loop,), daemon=True, name=f"infer-{self.name}-{i}"
            )
            for i in range(self.policy.instances)
        ]
        for thread in self._threads:
            thread.start()
        self._workers = [
            asyncio.create_task(self._work(), name=f"batcher-{self.name}-{i}")
            for i in range(self.policy.instances)
        ]

    async def submit(self, payload: Any, rows: int = 1, trace: RequestContext | None = None) -> Any:
        """Queue one request of ``rows`` rows and wait for its answer; ``trace`` (if given) gets
        ``batch_rows``, the rows of the run this request was part of (for the access log)."""
        return await self.enqueue(payload, rows, trace)  # a cancelled caller cancels it: the worker skips it

    def enqueue(
        self,
        payload: Any,
        rows: int = 1,
        trace: RequestContext | None = None,
        deadline: float | None = None,
    ) -> asyncio.Future[Any]:
        """``submit`` without the coroutine: the future of the answer; cancel it to drop the request.
        ``deadline`` (on ``clock``) when the request's timeout started before queueing (decoding)."""
        assert self._arrived is not None, "start() the batcher first"
        policy = self.policy
        if self._closed:
            raise Overloaded(f"model {self.name} was unloaded; retry to reach its replacement")
        if len(self._queue) >= policy.max_queue_size:
            raise Overloaded(f"model {self.name} is overloaded: {len(self._queue)} requests queued")
        now = self.clock()
        if deadline is None:
            deadline = now + policy.timeout_s
        if deadline <= now:
            raise QueueTimeout(
                f"model {self.name}: request reached its deadline before it was queued and was not run"
                f"{_WHOSE_DEADLINE % policy.timeout_s}"
            )
        loop = self._loop
        assert loop is not None
        if self._lone() and policy.runs_at_once(rows, policy.crowd(self._answered, self._ended, now)):
            self._ran_now = True  # others arriving in this loop iteration queue and batch together
            loop.call_soon(self._new_iteration)
            return self._run_now(payload, rows, trace, loop.create_future())
        pending = _Pending(payload, rows, loop.create_future(), now, deadline, trace=trace)
        if deadline < self._sweep_at:
            self._arm_sweep(loop, deadline, now)
        self._queue.append(pending)
        self._queued_rows += rows
        self._idle.clear()  # type: ignore[union-attr]
        if not self._gathering or not self._gathers(now):
            self._arrived.set()  # a gathering worker is woken once its crowd is in (or by its timer)
        if self._in_flight and not self._depth_due:
            # It waits behind a running batch: the gauge shows it at the end of this step (a long run would
            # hide it until the run ends, and an autoscaler reads this gauge), once for all that arrived in
            # the step. On an idle batcher the batch's start shows it.
            self._depth_due = True
            loop.call_soon(self._report_depth)
        return pending.future

    def _report_depth(self) -> None:
        self._depth_due = False
        self._observer.on_depth(len(self._queue), self._in_flight)

    def _lone(self) -> bool:
        """Nothing queued or running, and no other request ran at once in this loop iteration."""
        return not (self._queue or self._in_flight or self._ran_now)

    def _new_iteration(self) -> None:
        self._ran_now = False

    def _run_now(
        self, payload: Any, rows: int, trace: RequestContext | None, future: asyncio.Future[Any]
    ) -> asyncio.Future[Any]:
        """A lone request on an idle batcher with a short run: run it here, no queue, no hand-off. Its
        metrics are recorded after its answer is on its way (the next loop step)."""
        if trace is not None:
            trace.batch_rows = rows
        start = self.clock()
        try:
            [result] = self._run_batch([payload])
        except Exception as e:
            log.exception("model %s: batch of 1 request failed", self.name)
            result = e
        end = self.clock()
        run_s = end - start
        self.policy.learn(rows, run_s)
        self._answered, self._ended = 1, end
        future.get_loop().call_soon(self._observe_lone, rows, run_s)
        if isinstance(result, Exception):
            future.set_exception(_as_service_error(result, self.name))
        else:
            future.set_result(result)
        return future

    def _answers_out(self) -> None:
        self._ended = self.clock()

    def _observe_lone(self, rows: int, run_s: float) -> None:
        self._observer.on_queue_waits([0.0])
        self._observer.on_batch(rows, 1, run_s)

    def _arm_sweep(self, loop: asyncio.AbstractEventLoop, deadline: float, now: float) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
        self._sweep_at = deadline
        self._sweep = loop.call_later(deadline - now, self._expire_due)

    def _expire_due(self) -> None:
        """The sweep timer: every queued request whose deadline has come answers QueueTimeout (the timer
        firing means the clock reached the deadline it was armed for); armed again for the next one."""
        until = max(self._sweep_at, self.clock())
        self._sweep, self._sweep_at = None, float("inf")
        following = float("inf")
        kept: deque[_Pending] = deque()
        for p in self._queue:
            if p.deadline <= until:
                self._expire(p)
            if p.future.done():  # timed out, or its caller left: out of the queue and the gauge now
                self._queued_rows -= p.rows
            else:
                kept.append(p)
                following = min(following, p.deadline)
        if len(kept) != len(self._queue):
            self._queue = kept
            self._observer.on_depth(len(kept), self._in_flight)
            self._note_idle()
        if following != float("inf") and not self._closed:
            self._arm_sweep(asyncio.get_running_loop(), following, self.clock())

    def _expire(self, pending: _Pending) -> None:
        if not pending.future.done():
            waited = max(0.0, self.clock() - pending.arrival)
            pending.future.set_exception(
                QueueTimeout(
                    f"model {self.name}: request reached its deadline after {waited:.3g} s in the queue and "
                    f"was not run{_WHOSE_DEADLINE % self.policy.timeout_s}"
                )
            )

    async def _work(self) -> None:
        assert self._arrived is not None
        while True:
            if not self._queue:
                self._arrived.clear()
                await self._arrived.wait()  # an idle model costs nothing
                continue
            if self.policy.waits_for_more(self._queued_rows):
                await self._wait_for_fuller_batch()
            else:
                await self._gather()
            depth = len(self._queue)
            batch = self._take_batch()
            if batch:
                await self._run(batch)
            elif depth:  # only requests that were done (cancelled by their callers): the gauge drops
                self._observer.on_depth(len(self._queue), self._in_flight)
            self._note_idle()

    async def _wait_for_fuller_batch(self) -> None:
        assert self._arrived is not None
        deadline = self._queue[0].arrival + self.policy.max_queue_delay_s
        while self._queue and self.policy.waits_for_more(self._queued_rows):
            remaining = deadline - self.clock()
            if remaining <= 0:
                return
            self._arrived.clear()
            # Woken by an arrival or the time-out; either way the loop reads the clock again.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

    async def _gather(self) -> None:
        """With no queue delay: hold the queue (at most ``gather_ms`` from the last batch's answers going
        out) while fewer requests are queued than the last batch answered, i.e. while its callers are coming
        back. It starts as the run ends, before the answers go out: when they go out later than the window
        it armed for, it waits on for a window from then."""
        assert self._arrived is not None
        policy = self.policy
        while self._queue and self._gathers(self.clock()):
            ended = self._ended
            remaining = ended + policy.gather_s - self.clock()
            if remaining <= 0:
                return
            self._arrived.clear()
            # A timer, not wait_for (a task per wait); its firing ends the wait whatever the clock says,
            # unless the answers went out meanwhile (a window from then).
            loop = asyncio.get_running_loop()
            fires = loop.time() + remaining
            timer = loop.call_at(fires, self._arrived.set)
            self._gathering = True  # enqueue sets _arrived only once the crowd is in
            try:
                await self._arrived.wait()
            finally:
                self._gathering = False
            timer.cancel()
            if loop.time() >= fires and self._ended == ended:
                return

    def _gathers(self, now: float) -> bool:
        """Whether the queue is still held for the crowd the last batch answered (``BatchPolicy.gathers``)."""
        policy = self.policy
        return policy.gathers(
            policy.crowd(self._answered, self._ended, now), len(self._queue), self._queued_rows
        )

    def _take_batch(self) -> list[_Pending]:
        batch: list[_Pending] = []
        rows = 0
        now = self.clock()
        while self._queue:
            head = self._queue[0]
            if head.deadline <= now:  # its timer may not have fired yet (a busy loop, or a test's clock)
                self._expire(head)
            if head.future.done():  # timed out or its caller left: never run
                self._queue.popleft()
                self._queued_rows -= head.rows
                continue
            if not self.policy.takes(rows, head.rows):
                break
            self._queue.popleft()
            self._queued_rows -= head.rows
            batch.append(head)
            rows += head.rows
        return batch

    async def _run(self, batch: list[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        now = self.clock()
        rows = sum(p.rows for p in batch)
        for p in batch:
            if p.trace is not None:
                p.trace.batch_rows = rows
        self._observer.on_queue_waits([now - p.arrival for p in batch])
        self._in_flight += len(batch)
        self._observer.on_depth(len(self._queue), self._in_flight)
        start = self.clock()
        inline = self.policy.inline(rows)
        try:
            payloads = [p.payload for p in batch]
            if inline:
                results = self._run_batch(payloads)
                self.policy.learn(rows, self.clock() - start)
            else:
                done: asyncio.Future[Any] = loop.create_future()
                self._jobs.put((payloads, rows, done))
                results = await done
            if len(results) != len(batch):
                raise InferenceFailed(
                    f"model {self.name} returned {len(results)} results for {len(batch)} requests"
                )
            for p, result in zip(batch, results, strict=True):
                if isinstance(result, Exception):
                    _set_exception(p.future, _as_service_error(result, self.name))
                elif not p.future.done():
                    p.future.set_result(result)
        except Exception as e:
            log.exception("model %s: batch of %d requests failed", self.name, len(batch))
            error = _as_service_error(e, self.name)
            for p in batch:
                _set_exception(p.future, error)
        finally:
            self._in_flight -= len(batch)
            end = self.clock()
            self._answered, self._ended = len(batch), end
            # The crowd's window starts again once its answers are out: their callbacks (queued by
            # set_result above) run before this one, and under load they take longer than the window.
            loop.call_soon(self._answers_out)
            self._observer.on_batch(rows, len(batch), end - start)
            self._observer.on_depth(len(self._queue), self._in_flight)
        if inline:  # let the answers go out (and new requests in) before the next run
            await asyncio.sleep(0)

    def _inference_thread(self, loop: asyncio.AbstractEventLoop) -> None:
        """One per instance: runs batches off the event loop (onnxruntime releases the GIL). A plain thread
        and a SimpleQueue cost less per batch than run_in_executor's future wrapping."""
        while (job := self._jobs.get()) is not None:
            payloads, rows, done = job
            start = self.clock()
            try:
                result: Any = self._run_batch(payloads)
                failed = None
            except Exception as e:
                result, failed = None, e
            self.policy.learn(rows, self.clock() - start)
            try:
                loop.call_soon_threadsafe(_settle, done, result, failed)
            except RuntimeError:  # the loop has closed: nobody waits for this answer
                return

    async def _drain(self, timeout_s: float) -> None:
        if self._idle is not None and (self._queue or self._in_flight):
            try:
                await asyncio.wait_for(self._idle.wait(), timeout_s)
            except TimeoutError:
                log.warning(
                    "model %s: %d requests still queued after %.0f s drain",
                    self.name,
                    len(self._queue),
                    timeout_s,
                )

    def _note_idle(self) -> None:
        if not self._queue and self._in_flight == 0:
            self._idle.set()  # type: ignore[union-attr]

    async def close(self, drain_timeout_s: float = 30.0, grace_s: float = 0.0) -> None:
        """Let queued and running requests finish (bounded), keep taking requests for ``grace_s`` more
        (those already on their way), then refuse new ones and stop the workers."""
        await self._drain(drain_timeout_s)
        if grace_s:
            await asyncio.sleep(grace_s)
            await self._drain(drain_timeout_s)
        self._closed = True
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        for p in self._queue:
            _set_exception(p.future, Overloaded(f"model {self.name} was unloaded"))
        self._queue.clear()
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep, self._sweep_at = None, float("inf")
        self._observer.on_depth(0, self._in_flight)
        for _ in self._threads:
            self._jobs.put(None)


# Whose deadline it was: the model's timeout_s, or a shorter one the caller gave (a gRPC deadline, ...).
_WHOSE_DEADLINE = " (the model's timeout_s is %g s; the caller's own deadline, when shorter, counts)"


def _settle(future: asyncio.Future[Any], result: Any, error: Exception | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _set_exception(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


def _as_service_error(error: Exception, name: str) -> ServiceError:
    if isinstance(error, ServiceError):
        return error
    # The runtime's own text (node names, paths) goes to the log, not to the client.
    log.error("model %s failed on a batch: %s: %s", name, type(error).__name__, error)
    return InferenceFailed(f"model {name} failed on this batch ({type(error).__name__}); see the server log")
