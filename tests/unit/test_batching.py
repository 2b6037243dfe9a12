"""DynamicBatcher on plain functions: batching, routing of answers, limits, failures. Time is a clock the
test moves (``FakeClock``): no assertion depends on how fast the machine is."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from service.batch_policy import BatchPolicy
from service.batching import BatchObserver, DynamicBatcher
from service.errors import InferenceFailed, Overloaded, QueueTimeout


class FakeClock:
    """A clock that moves only when told: ``advance`` (thread-safe: a float under the GIL)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def batcher(
    run: Callable[[list[Any]], list[Any]], clock: FakeClock | None = None, **policy: Any
) -> DynamicBatcher:
    return DynamicBatcher(run, BatchPolicy(**policy), clock=clock or FakeClock())


async def settle() -> None:
    """Let every ready callback and task run (the batcher's workers wake within a few iterations)."""
    for _ in range(10):
        await asyncio.sleep(0)


def doubler(calls: list[list[Any]], delay_s: float = 0.0):
    """A model that doubles numbers, records each run, and (optionally) takes time."""

    def run(payloads: list[Any]) -> list[Any]:
        calls.append(list(payloads))
        if delay_s:
            time.sleep(delay_s)
        return [p * 2 for p in payloads]

    return run


def gated(calls: list[list[Any]]) -> tuple[threading.Event, Callable[[list[Any]], list[Any]]]:
    """A model that records each run and holds it until the returned gate opens (at most 5 s)."""
    gate = threading.Event()

    def run(payloads: list[Any]) -> list[Any]:
        calls.append(list(payloads))
        gate.wait(5)
        return payloads

    return gate, run


def run_async(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_lone_request_runs_at_once_without_waiting_for_time_to_pass() -> None:
    async def main() -> list[list[Any]]:
        calls: list[list[Any]] = []
        b = batcher(doubler(calls), FakeClock(), max_queue_delay_ms=0)  # a clock that never moves
        await b.start()
        assert await b.submit(21) == 42
        await b.close()
        return calls

    assert run_async(main()) == [[21]]


def test_queue_delay_waits_from_first_arrival_but_not_longer() -> None:
    async def main() -> list[list[Any]]:
        calls: list[list[Any]] = []
        clock = FakeClock()
        b = batcher(doubler(calls), clock, max_queue_delay_ms=50, max_batch_size=8)
        await b.start()
        first = asyncio.create_task(b.submit(1))
        await settle()
        clock.advance(0.03)
        second = asyncio.create_task(b.submit(2))
        await asyncio.sleep(0.1)  # real time passes; the batcher's clock says 30 ms: it keeps waiting
        assert not first.done() and calls == []
        clock.advance(0.02)  # 50 ms after the first arrival (20 ms after the second): the batch goes
        assert await asyncio.gather(first, second) == [2, 4]
        await b.close()
        return calls

    assert run_async(main()) == [[1, 2]]  # waited and took both in one run


def test_a_full_batch_does_not_wait_for_the_delay() -> None:
    async def main() -> list[list[Any]]:
        calls: list[list[Any]] = []
        b = batcher(doubler(calls), FakeClock(), max_queue_delay_ms=50, max_batch_size=4)
        await b.start()
        assert await asyncio.gather(*(b.submit(i) for i in range(4))) == [0, 2, 4, 6]
        await b.close()
        return calls

    assert run_async(main()) == [[0, 1, 2, 3]]  # the clock never moved: only the size let it go


def test_64_concurrent_requests_run_in_fewer_runs_and_each_gets_its_own_answer() -> None:
    async def main() -> tuple[list[int], list[list[Any]]]:
        calls: list[list[Any]] = []
        b = batcher(doubler(calls, delay_s=0.005), max_batch_size=16)
        await b.start()
        results = await asyncio.gather(*(b.submit(i) for i in range(64)))
        await b.close()
        return results, calls

    results, calls = run_async(main())
    assert results == [2 * i for i in range(64)]  # same as unbatched, in the caller's order
    assert len(calls) < 64
    assert all(len(c) <= 16 for c in calls)
    assert sorted(x for c in calls for x in c) == list(range(64))  # each request ran exactly once


def test_batches_count_rows_not_requests() -> None:
    async def main() -> list[list[Any]]:
        calls: list[list[Any]] = []
        gate, run = gated(calls)
        b = batcher(run, max_batch_size=8)
        await b.start()
        blocker = asyncio.create_task(b.submit(0, rows=1))
        while not calls:  # the first run is busy; the rest queue
            await asyncio.sleep(0.001)
        rest = [asyncio.create_task(b.submit(i, rows=3)) for i in range(1, 6)]
        await settle()
        gate.set()
        await asyncio.gather(blocker, *rest)
        await b.close()
        return calls

    calls = run_async(main())
    assert calls[0] == [0]
    assert calls[1:] == [[1, 2], [3, 4], [5]]  # 3-row requests: two per 8-row batch


def test_request_bigger_than_max_batch_runs_alone() -> None:
    async def main() -> tuple[Any, list[list[Any]]]:
        calls: list[list[Any]] = []
        b = batcher(doubler(calls), max_batch_size=4)
        await b.start()
        result = await b.submit(5, rows=10)
        await b.close()
        return result, calls

    assert run_async(main()) == (10, [[5]])


def test_full_queue_answers_overloaded_at_once() -> None:
    async def main() -> None:
        gate, slow = gated([])
        b = batcher(slow, max_batch_size=1, max_queue_size=2)
        await b.start()
        running = asyncio.create_task(b.submit("running"))
        await asyncio.sleep(0.01)
        queued = [asyncio.create_task(b.submit(i)) for i in range(2)]
        await asyncio.sleep(0.01)
        with pytest.raises(Overloaded) as err:
            await b.submit("one too many")
        assert err.value.status_code == 503
        assert err.value.headers["Retry-After"]
        gate.set()
        assert await running == "running"
        assert await asyncio.gather(*queued) == [0, 1]
        await b.close()

    run_async(main())


def test_request_past_its_timeout_answers_504_and_never_runs() -> None:
    async def main() -> list[list[Any]]:
        calls: list[list[Any]] = []
        gate, slow = gated(calls)
        clock = FakeClock()
        b = batcher(slow, clock, max_batch_size=1, timeout_s=30)
        await b.start()
        first = asyncio.create_task(b.submit("first"))
        while not calls:  # "first" runs (held by the gate)
            await asyncio.sleep(0.001)
        late = asyncio.create_task(b.submit("late"))
        on_time = asyncio.create_task(b.submit("on time"))
        await settle()
        clock.advance(29)
        on_time_too = asyncio.create_task(b.submit("queued later"))  # its 30 s start now
        await settle()
        clock.advance(1.5)  # "late" and "on time" have waited 30.5 s; "queued later" 1.5 s
        gate.set()
        assert await first == "first"
        for task in (late, on_time):
            with pytest.raises(QueueTimeout) as err:
                await task
            assert err.value.status_code == 504
        assert await on_time_too == "queued later"
        with pytest.raises(QueueTimeout):  # a deadline already past when it reaches the queue
            await b.enqueue("too late", deadline=clock() - 1)
        await b.close()
        return calls

    assert run_async(main()) == [["first"], ["queued later"]]  # the timed-out ones never ran


def test_queued_requests_time_out_at_their_deadlines_while_a_run_holds_the_model() -> None:
    """One timer serves the queue's deadlines (the earliest first): a request with an earlier deadline
    queued after one with a later deadline still answers 504 at its own, on the real clock."""

    async def main() -> list[list[Any]]:
        calls: list[list[Any]] = []
        gate, slow = gated(calls)
        b = DynamicBatcher(slow, BatchPolicy(max_batch_size=1, timeout_s=1.0))
        await b.start()
        first = asyncio.create_task(b.submit("first"))
        while not calls:  # "first" runs (held by the gate)
            await asyncio.sleep(0.001)
        late = b.enqueue("late")  # deadline in 1 s
        early = b.enqueue("early", deadline=time.monotonic() + 0.1)  # queued after, due before
        with pytest.raises(QueueTimeout) as err:
            await asyncio.wait_for(early, 3)
        # The time it waited, not the model's timeout_s (a gRPC caller's 1 ms deadline was told "30 s").
        waited = float(err.value.message.split("after ")[1].split(" s ")[0])
        assert 0.05 <= waited < 1.0 and "timeout_s is 1 s" in err.value.message, err.value.message
        assert not late.done()  # its own deadline has not come
        with pytest.raises(QueueTimeout):
            await asyncio.wait_for(late, 3)
        assert not first.done()  # both timed out while the run ahead of them still held the model
        gate.set()
        assert await first == "first"
        await b.close()
        return calls

    assert run_async(main()) == [["first"]]


def test_cancelled_caller_is_dropped_before_running() -> None:
    async def main() -> list[list[Any]]:
        calls: list[list[Any]] = []
        gate, slow = gated(calls)
        b = batcher(slow, max_batch_size=8)
        await b.start()
        first = asyncio.create_task(b.submit("first"))
        await asyncio.sleep(0.01)
        gone = asyncio.create_task(b.submit("client left"))
        stays = asyncio.create_task(b.submit("stays"))
        await asyncio.sleep(0.01)
        gone.cancel()
        gate.set()
        assert await first == "first"
        assert await stays == "stays"
        await b.close()
        return calls

    assert run_async(main()) == [["first"], ["stays"]]


def test_a_raising_batch_fails_only_its_own_requests() -> None:
    async def main() -> None:
        gate = threading.Event()

        def flaky(payloads: list[Any]) -> list[Any]:
            if "boom" in payloads:
                raise RuntimeError("model exploded")
            gate.wait(5)
            return payloads

        b = batcher(flaky, max_batch_size=2)
        await b.start()
        good_first = asyncio.create_task(b.submit("ok-1"))
        await asyncio.sleep(0.01)
        doomed = [asyncio.create_task(b.submit("boom")), asyncio.create_task(b.submit("with-boom"))]
        await asyncio.sleep(0.01)
        gate.set()
        assert await good_first == "ok-1"
        for task in doomed:
            with pytest.raises(InferenceFailed, match=r"failed on this batch \(RuntimeError\)"):
                await task
        assert await b.submit("ok-2") == "ok-2"  # the batcher goes on
        await b.close()

    run_async(main())


def test_per_request_exceptions_fail_only_that_request() -> None:
    async def main() -> None:
        def picky(payloads: list[Any]) -> list[Any]:
            return [ValueError("bad row") if p < 0 else p for p in payloads]

        b = batcher(picky)
        await b.start()
        good, bad = await asyncio.gather(b.submit(1), b.submit(-1), return_exceptions=True)
        assert good == 1
        assert isinstance(bad, InferenceFailed)
        await b.close()

    run_async(main())


def test_instances_run_batches_concurrently() -> None:
    """Four instances: four runs meet at a barrier, which only four side-by-side runs can pass."""
    barrier = threading.Barrier(4, timeout=20)

    def run(payloads: list[Any]) -> list[Any]:
        barrier.wait()  # BrokenBarrierError (the requests fail) if the runs came one after another
        return payloads

    async def main() -> list[Any]:
        b = batcher(run, max_batch_size=1, instances=4)
        await b.start()
        answers = await asyncio.gather(*(b.submit(i) for i in range(4)))
        await b.close()
        return answers

    assert run_async(main()) == [0, 1, 2, 3]


def test_close_drains_queued_requests_then_refuses_new_ones() -> None:
    async def main() -> None:
        b = batcher(doubler([], delay_s=0.02), max_batch_size=2)
        await b.start()
        tasks = [asyncio.create_task(b.submit(i)) for i in range(6)]
        await asyncio.sleep(0)
        await b.close()
        assert await asyncio.gather(*tasks) == [0, 2, 4, 6, 8, 10]
        with pytest.raises(Overloaded):
            await b.submit(1)

    run_async(main())


def test_observer_counts_runs_and_rows() -> None:
    class Recorder(BatchObserver):
        def __init__(self) -> None:
            self.batches: list[tuple[int, int]] = []

        def on_batch(self, rows: int, requests: int, run_s: float) -> None:
            self.batches.append((rows, requests))

    async def main() -> None:
        seen = Recorder()
        b = DynamicBatcher(doubler([]), observer=seen, clock=FakeClock())
        await b.start()
        await b.submit(1, rows=3)
        await b.submit(2, rows=2)
        await b.close()
        runs, rows, requests = (
            len(seen.batches),
            sum(r for r, _ in seen.batches),
            sum(q for _, q in seen.batches),
        )
        assert (runs, rows, requests) == (2, 5, 2)
        assert [r for r, _ in seen.batches] == [3, 2]

    run_async(main())


def test_short_runs_move_onto_the_event_loop_once_measured() -> None:
    """A size class runs in the inference thread until one run of it was measured short; then on the loop
    (a lone request on an idle batcher is answered inside enqueue); a slow size class stays threaded.
    Each run moves the batcher's clock by its duration: 1 ms for a small batch, 20 ms for a big one."""
    clock = FakeClock()

    async def main() -> None:
        threads: list[str] = []

        def run(payloads: list[Any]) -> list[Any]:
            threads.append(threading.current_thread().name)
            clock.advance(0.02 if len(payloads) > 4 else 0.001)
            return [p * 2 for p in payloads]

        b = batcher(run, clock, inline_run_ms=5.0)
        await b.start()
        assert await b.submit(1) == 2  # unknown: measured in the inference thread
        assert threads[-1].startswith("infer-")
        future = b.enqueue(2)
        assert future.done() and future.result() == 4  # known short, idle batcher: run right here
        assert threads[-1] == threading.current_thread().name
        # A crowd: the first runs at once, the rest queue and form batches; each gets its own answer.
        answers = await asyncio.gather(*(b.submit(i) for i in range(20)))
        assert answers == [i * 2 for i in range(20)]
        big = [t for t in threads[2:] if t.startswith("infer-")]
        assert big  # the first batch of 19 rows went to the thread to be measured
        answers = await asyncio.gather(*(b.submit(i) for i in range(20)))
        assert answers == [i * 2 for i in range(20)]
        assert threads[-1].startswith("infer-")  # measured slow: it stays threaded
        await b.close()

    run_async(main())


def test_the_policy_decides_size_delay_and_where_a_run_goes() -> None:
    policy = BatchPolicy(max_batch_size=8, max_queue_delay_ms=2, inline_run_ms=5)
    assert policy.takes(0, 20)  # the first request always, even bigger than the maximum
    assert policy.takes(5, 3) and not policy.takes(6, 3)
    assert policy.waits_for_more(7) and not policy.waits_for_more(8)
    assert not BatchPolicy(max_queue_delay_ms=0).waits_for_more(1)
    assert not policy.inline(4)  # never measured: the thread measures it first
    policy.learn(4, 0.001)
    assert policy.inline(3) and policy.inline(4) and not policy.inline(5)  # 3-4 rows: one size class
    assert not policy.runs_at_once(4)  # a queue delay: even a lone request waits for company
    policy.learn(16, 0.05)
    assert not policy.inline(16)


def test_inline_run_that_raises_fails_only_its_request() -> None:
    async def main() -> None:
        def run(payloads: list[Any]) -> list[Any]:
            return [ValueError("bad row") if p < 0 else p for p in payloads]

        b = batcher(run, inline_run_ms=50.0)
        await b.start()
        assert await b.submit(1) == 1
        with pytest.raises(InferenceFailed, match=r"failed on this batch \(ValueError\)"):
            await b.submit(-1)  # inline now: the same error as from the thread
        assert await b.submit(3) == 3
        await b.close()

    run_async(main())


def test_the_policy_gathers_a_crowd_only_with_no_delay_and_more_than_one_caller() -> None:
    policy = BatchPolicy(max_batch_size=8, gather_ms=1.0, inline_run_ms=5)
    assert policy.crowd(5, ended=10.0, now=10.0005) == 5  # the last batch's callers, coming back
    assert policy.crowd(5, ended=10.0, now=10.002) == 0  # too long ago: no crowd
    assert policy.gathers(crowd=5, queued=1, queued_rows=1)
    assert not policy.gathers(crowd=5, queued=5, queued_rows=5)  # all back
    assert not policy.gathers(crowd=5, queued=2, queued_rows=8)  # a full batch goes
    assert not policy.gathers(crowd=1, queued=1, queued_rows=1)  # a lone caller never waits
    assert not BatchPolicy(max_queue_delay_ms=2, gather_ms=1.0).gathers(5, 1, 1)  # the delay decides
    assert not BatchPolicy(gather_ms=0).gathers(5, 1, 1)
    policy.learn(1, 0.0001)
    assert policy.runs_at_once(1, crowd=1) and policy.runs_at_once(1, crowd=0)
    assert not policy.runs_at_once(1, crowd=3)  # queued instead, to wait for the other two


def test_the_first_of_a_crowd_waits_for_the_rest_and_a_lone_caller_never_does() -> None:
    """With no queue delay, after a batch of two (on a clock that never moves, so the crowd stays
    recent) the next arrival is held until the other caller is back: one run of two, not two of one.
    One caller at a time (a crowd of one) runs at once every time."""

    async def main() -> list[list[Any]]:
        calls: list[list[Any]] = []
        b = batcher(doubler(calls), FakeClock(), inline_run_ms=5, gather_ms=60_000)
        b.policy.learn(1, 0.0001)
        b.policy.learn(2, 0.0001)
        await b.start()
        assert await asyncio.gather(b.submit(1), b.submit(2), b.submit(3)) == [2, 4, 6]
        assert calls == [[1], [2, 3]]  # the first ran at once, the other two together
        first = asyncio.create_task(b.submit(4))
        await settle()
        assert not first.done() and len(calls) == 2  # held: the last batch's two callers come back
        second = asyncio.create_task(b.submit(5))
        assert await asyncio.gather(first, second) == [8, 10]
        assert calls[-1] == [4, 5]
        await b.close()

        lone: list[list[Any]] = []
        b = batcher(doubler(lone), FakeClock(), inline_run_ms=5, gather_ms=60_000)
        b.policy.learn(1, 0.0001)
        await b.start()
        for i in range(3):  # closed loop, one caller: answered inside enqueue, every time
            future = b.enqueue(i)
            assert future.done() and future.result() == 2 * i
            await settle()  # the caller's next request comes in a later loop iteration
        await b.close()
        return lone

    assert run_async(main()) == [[0], [1], [2]]


def test_the_crowds_window_starts_when_its_answers_are_out() -> None:
    """Under load, handing a batch's answers out (encoding, writing) can take longer than the window: the
    callers coming back are still a crowd, held for one another, not a run of one followed by the rest."""

    async def main() -> list[list[Any]]:
        calls: list[list[Any]] = []
        clock = FakeClock()
        b = batcher(doubler(calls), clock, inline_run_ms=5, gather_ms=60_000)
        b.policy.learn(1, 0.0001)
        b.policy.learn(2, 0.0001)
        await b.start()
        lone = b.enqueue(1)  # runs at once: the next two queue and run together
        pair = [b.enqueue(2), b.enqueue(3)]
        for future in pair:  # each answer takes longer than the whole window to hand out
            future.add_done_callback(lambda _: clock.advance(90))
        assert lone.result() == 2 and await asyncio.gather(*pair) == [4, 6]
        first = asyncio.create_task(b.submit(4))
        await settle()
        assert not first.done() and len(calls) == 2  # held for the other caller of the pair
        second = asyncio.create_task(b.submit(5))
        assert await asyncio.gather(first, second) == [8, 10]
        await b.close()
        return calls

    assert run_async(main()) == [[1], [2, 3], [4, 5]]


def test_a_worker_already_gathering_waits_for_a_crowd_whose_answers_went_out_late() -> None:
    """The worker starts gathering as a run ends, before the run's answers go out. When handing them out
    takes longer than the window it armed for, a request that queued during the run waits for the crowd
    from when the answers went out, instead of running alone as that first window ends."""

    async def main() -> list[list[Any]]:
        calls: list[list[Any]] = []
        clock = FakeClock()
        gate, run = gated(calls)
        b = batcher(run, clock, gather_ms=500)  # every run in the inference thread
        await b.start()
        crowd = [b.enqueue(i) for i in (1, 2, 3)]
        await settle()  # one run of three, held at the gate
        late = asyncio.create_task(b.submit(4))  # queued behind the run
        await settle()
        for future in crowd:  # each answer takes longer than the whole window to hand out
            future.add_done_callback(lambda _: clock.advance(1))
        gate.set()
        assert await asyncio.gather(*crowd) == [1, 2, 3]
        await asyncio.sleep(0.75)  # past the first window's timer (0.5 s, armed as the run ended)
        assert not late.done() and len(calls) == 1
        again = [asyncio.create_task(b.submit(i)) for i in (5, 6, 7)]
        assert await asyncio.gather(late, *again) == [4, 5, 6, 7]
        await b.close()
        return calls

    assert run_async(main()) == [[1, 2, 3], [4, 5, 6, 7]]


def test_a_crowd_that_does_not_come_back_is_waited_for_at_most_the_gathering_window() -> None:
    async def main() -> list[list[Any]]:
        calls: list[list[Any]] = []
        b = batcher(doubler(calls), FakeClock(), inline_run_ms=5, gather_ms=1.0)
        b.policy.learn(1, 0.0001)
        b.policy.learn(2, 0.0001)
        await b.start()
        await asyncio.gather(b.submit(1), b.submit(2), b.submit(3))
        # The clock never moves, so only the window's own timer (1 ms, real time) ends the hold.
        assert await b.submit(4) == 8
        await b.close()
        return calls

    assert run_async(main())[-1] == [4]
