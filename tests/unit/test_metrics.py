"""ModelMetrics writes a loop step's observations summed (service/metrics.py): what a scrape then shows must
be what one write per observation shows, in one process and in prometheus-client's multiprocess mode."""

from __future__ import annotations

import asyncio
import random

from prometheus_client import CollectorRegistry, generate_latest

from service.metrics import Metrics, flush_all


def _scrape(metrics: Metrics) -> dict[str, float]:
    # Series of the model metrics only (process memory and CPU differ between the two registries); sums
    # rounded, as floats added in another order may differ in the last bit.
    text = generate_latest(metrics.registry).decode()
    series = [
        line.rsplit(" ", 1) for line in text.splitlines() if "digits" in line and "_created" not in line
    ]
    return {name: round(float(value), 9) for name, value in series}


def _record(m: object, events: list[tuple[str, tuple[object, ...]]]) -> None:
    for name, args in events:
        getattr(m, name)(*args)


def _events(seed: int) -> list[tuple[str, tuple[object, ...]]]:
    rng = random.Random(seed)
    out: list[tuple[str, tuple[object, ...]]] = []
    for _ in range(300):
        kind = rng.choice(["request", "queue", "batch", "depth"])
        if kind == "request":
            status = rng.choice([200, 200, 200, 400, 503])
            out.append(("on_request", (status, rng.expovariate(300.0), rng.choice(["http", "grpc"]))))
        elif kind == "queue":
            waits = [
                rng.choice([0.0, rng.expovariate(1000.0), 0.0002, 0.001]) for _ in range(rng.randint(1, 4))
            ]
            out.append(("on_queue_waits", (waits,)))
        elif kind == "batch":
            out.append(("on_batch", (rng.randint(1, 64), rng.randint(1, 20), rng.expovariate(500.0))))
        else:
            out.append(("on_depth", (rng.randint(0, 30), rng.randint(0, 64))))
    return out


class _Direct:
    """The same observations written one by one, through the public API."""

    def __init__(self, metrics: Metrics) -> None:
        self.m = metrics
        for family in (metrics.queue_wait, metrics.run_time, metrics.batch_size, metrics.runs):
            family.labels("digits", "1")  # made at load, as ModelMetrics makes them
        for gauge in (metrics.queue_depth, metrics.in_flight):
            gauge.labels("digits", "1")

    def on_request(self, status: int, latency_s: float, protocol: str) -> None:
        from service.metrics import outcome_of

        self.m.requests.labels("digits", "1", outcome_of(status), protocol).inc()
        self.m.request_latency.labels("digits", "1", protocol).observe(latency_s)

    def on_queue_waits(self, waits_s: list[float]) -> None:
        for wait in waits_s:
            self.m.queue_wait.labels("digits", "1").observe(wait)

    def on_batch(self, rows: int, requests: int, run_s: float) -> None:
        self.m.batch_size.labels("digits", "1").observe(rows)
        self.m.run_time.labels("digits", "1").observe(run_s)
        self.m.runs.labels("digits", "1").inc()

    def on_depth(self, queued: int, in_flight: int) -> None:
        self.m.queue_depth.labels("digits", "1").set(queued)
        self.m.in_flight.labels("digits", "1").set(in_flight)


def test_a_steps_observations_written_summed_equal_one_write_each() -> None:
    events = _events(7)
    batched, reference = Metrics(CollectorRegistry()), Metrics(CollectorRegistry())
    _record(_Direct(reference), events)

    async def on_a_loop() -> list[str]:
        model = batched.for_model("digits", 1)
        _record(model, events[:150])  # one loop step
        await asyncio.sleep(0)  # its end: written
        seen_between = _scrape(batched)
        _record(model, events[150:])
        flush_all()  # a scrape in the same step writes what the step holds first
        return seen_between

    between = asyncio.run(on_a_loop())
    assert _scrape(batched) == _scrape(reference)
    half = Metrics(CollectorRegistry())
    _record(_Direct(half), events[:150])
    assert between == _scrape(half)  # nothing held back past the step's end


def test_without_a_loop_each_observation_is_written_at_once() -> None:
    batched, reference = Metrics(CollectorRegistry()), Metrics(CollectorRegistry())
    events = _events(11)
    model = batched.for_model("digits", 1)
    for event in events:
        _record(model, [event])
        _record(_Direct(reference), [event])
        assert _scrape(batched) == _scrape(reference)
