"""Prometheus collectors. Per model version, the labelled children are made once at load and cached,
so a request pays for a few increments, not for label lookups.

With several workers, prometheus-client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set by the
supervisor before anything imports prometheus_client): every worker writes its values to its own mmap'd
files and a scrape of any worker sums them, so one scrape shows the whole server. Counters and histograms
of a dead worker stay in the sum (monotonic across restarts); "live" gauges leave with it (the supervisor
marks it dead). Gauges are therefore set when they change, not read at scrape time: a scrape reaches one
process only.
"""

from __future__ import annotations

import asyncio
import os
import resource
import time
from bisect import bisect_left

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess, values

from service.batching import BatchObserver

# Sub-millisecond to seconds.
LATENCY_BUCKETS = (
    0.0002,
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.2,
    0.5,
    1.0,
    2.0,
    5.0,
    10.0,
    30.0,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
OUTCOMES = {
    200: "success",
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    499: "client_gone",
    503: "overloaded",
    504: "timeout",
}


def multiprocess_mode() -> bool:
    return "PROMETHEUS_MULTIPROC_DIR" in os.environ


# In multiprocess mode every value checks, on each update, whether the process has forked (a getpid()
# system call each: a dozen per request). The pid read here and refreshed in a forked child answers the
# same question without a system call.
_pid = os.getpid()


def _refresh_pid() -> None:
    global _pid
    _pid = os.getpid()


def _process_id() -> int:
    return _pid


os.register_at_fork(after_in_child=_refresh_pid)
if multiprocess_mode():
    values.ValueClass = values.MultiProcessValue(process_identifier=_process_id)


def scrape_registry() -> CollectorRegistry:
    """What /metrics renders: this process's registry, or in multiprocess mode every worker's files."""
    registry = CollectorRegistry()
    if multiprocess_mode():
        multiprocess.MultiProcessCollector(registry)
    return registry


def supervisor_restarts() -> Counter:
    """Counted by the supervisor process itself (its own file in the multiprocess folder)."""
    return Counter("modelserve_worker_restarts", "Worker processes replaced after dying", registry=None)


def mark_worker_dead(pid: int) -> None:
    multiprocess.mark_process_dead(pid)


def _pss() -> int | None:
    """Proportional set size (Linux): a page shared by N processes counts 1/N in each."""
    try:
        with open("/proc/self/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


# Models whose metrics of this loop step are not written yet (ModelMetrics.flush).
_dirty: set[ModelMetrics] = set()


def flush_all() -> None:
    """Write every model's metrics recorded so far (before a scrape reads them)."""
    for model_metrics in list(_dirty):
        model_metrics.flush()


def outcome_of(status: int) -> str:
    return OUTCOMES.get(status, "error" if status >= 500 else "other")


class Metrics:
    """Every collector of one server process. ``registry`` is where they register: the scraped one in a
    single process; in multiprocess mode a private one (the scrape reads the files instead)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        labels = ("model", "version")
        self.requests = Counter(
            "modelserve_requests",
            "Requests by model, version, outcome and protocol (http, grpc)",
            (*labels, "outcome", "protocol"),
            registry=registry,
        )
        self.request_latency = Histogram(
            "modelserve_request_duration_seconds",
            "Request latency, from the first byte read to the answer",
            (*labels, "protocol"),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.queue_wait = Histogram(
            "modelserve_queue_wait_seconds",
            "Time from queueing to the batch run",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.run_time = Histogram(
            "modelserve_inference_duration_seconds",
            "onnxruntime time per batch run",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "modelserve_batch_size", "Rows per batch run", labels, buckets=BATCH_BUCKETS, registry=registry
        )
        self.runs = Counter("modelserve_batch_runs", "Batch runs", labels, registry=registry)
        self.load_time = Gauge(
            "modelserve_model_load_seconds",
            "Time to load and warm up a model version (the slowest live worker)",
            labels,
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.queue_depth = Gauge(
            "modelserve_queue_depth",
            "Requests waiting in a model's queue (all workers)",
            labels,
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.in_flight = Gauge(
            "modelserve_in_flight",
            "Requests in a batch that is running (all workers)",
            labels,
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.workers = Gauge(
            "modelserve_workers", "Live worker processes", registry=registry, multiprocess_mode="livesum"
        )
        self.rss = Gauge(
            "modelserve_resident_memory_bytes",
            "Resident memory of every live worker together",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.worker_rss = Gauge(
            "modelserve_worker_resident_memory_bytes",
            "Resident memory of each live worker (label pid)",
            registry=registry,
            multiprocess_mode="liveall",
        )
        self.pss = Gauge(
            "modelserve_proportional_memory_bytes",
            "Memory of every live worker together, pages shared between workers counted once (PSS)",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.cpu = Counter(
            "modelserve_cpu_seconds", "CPU time of every worker, dead ones included", registry=registry
        )
        self.grpc_handed = Counter(
            "modelserve_grpc_connections_handed",
            "gRPC connections a worker handed to another holding fewer (service/transports/balance.py)",
            registry=registry,
        )
        self.load_failures = Counter(
            "modelserve_model_load_failures",
            "Model versions that failed to load",
            ("model",),
            registry=registry,
        )
        self.workers.set(1)
        self._cpu_seen = 0.0
        self._page = os.sysconf("SC_PAGE_SIZE")
        self.sample_process()

    def sample_process(self) -> None:
        """This worker's memory and CPU into the gauges (periodically, and before each scrape)."""
        try:
            with open("/proc/self/statm") as f:
                rss = int(f.read().split()[1]) * self._page
        except OSError:  # not Linux: the peak, which is what getrusage has
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        self.rss.set(rss)
        self.worker_rss.set(rss)
        self.pss.set(_pss() or rss)
        times = os.times()
        cpu = times.user + times.system
        self.cpu.inc(max(0.0, cpu - self._cpu_seen))
        self._cpu_seen = cpu
        self.sampled = time.monotonic()

    def for_model(self, model: str, version: int) -> ModelMetrics:
        return ModelMetrics(self, model, str(version))

    def unlabelled_request(self, status: int, protocol: str = "http") -> None:
        """A request that never reached a model (unknown model, malformed URL): model and version empty."""
        self.requests.labels("", "", outcome_of(status), protocol).inc()


class _Observations:
    """A histogram child's observations of one loop step, written as one increment per bucket touched
    and one to the sum. In multiprocess mode every increment is a write to an mmap'd file (a lock, a
    struct pack, a slice assignment): per observation, two of them; per step, a few."""

    __slots__ = ("_bounds", "_child", "_counts", "_sum", "held")

    def __init__(self, child: Histogram) -> None:
        self._child = child
        self._bounds: list[float] = list(child._upper_bounds)
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0
        self.held = 0  # observations not written yet

    def add(self, value: float) -> None:
        self._counts[bisect_left(self._bounds, value)] += 1  # the first bucket whose bound >= value
        self._sum += value
        self.held += 1

    def write(self) -> int:
        """Write what is held (nothing when empty); the number of observations written."""
        written = self.held
        if written:
            child = self._child
            child._sum.inc(self._sum)
            for i, n in enumerate(self._counts):
                if n:
                    child._buckets[i].inc(n)
                    self._counts[i] = 0
            self._sum, self.held = 0.0, 0
        return written


class ModelMetrics(BatchObserver):
    """One model version's children, bound once; the batcher's observer.

    What a loop step records is written at the end of that step (``flush``; before a scrape too), summed:
    a step that answers a batch of 30 requests makes ~10 metric writes, not ~200. Off the event loop's
    thread (none running) it is written at once."""

    def __init__(self, metrics: Metrics, model: str, version: str) -> None:
        self._metrics = metrics
        self._labels = (model, version)
        self._latency: dict[str, _Observations] = {}  # by protocol, made on first use
        self._queue = _Observations(metrics.queue_wait.labels(model, version))
        self._run = _Observations(metrics.run_time.labels(model, version))
        self._batch = _Observations(metrics.batch_size.labels(model, version))
        self._runs = metrics.runs.labels(model, version)
        self._depth = metrics.queue_depth.labels(model, version)
        self._in_flight = metrics.in_flight.labels(model, version)
        self._outcomes: dict[tuple[int, str], Counter] = {}
        self._counted: dict[tuple[int, str], int] = {}  # requests this step, by (status, protocol)
        self._gauges: tuple[int, int] | None = None  # the last (queued, in flight) of this step

    def _touch(self) -> None:
        if self in _dirty:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop in this thread: nothing batches here
            self._write()
            return
        _dirty.add(self)
        loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write what this step recorded (the end of the step; ``flush_all`` before a scrape)."""
        if self in _dirty:
            _dirty.discard(self)
            self._write()

    def _write(self) -> None:
        for key, n in self._counted.items():
            counter = self._outcomes.get(key)
            if counter is None:
                status, protocol = key
                counter = self._outcomes[key] = self._metrics.requests.labels(
                    *self._labels, outcome_of(status), protocol
                )
            counter.inc(n)
        self._counted.clear()
        for latency in self._latency.values():
            latency.write()
        self._queue.write()
        runs = self._batch.write()
        if runs:
            self._run.write()
            self._runs.inc(runs)
        if self._gauges is not None:
            queued, in_flight = self._gauges
            self._depth.set(queued)
            self._in_flight.set(in_flight)
            self._gauges = None

    def on_depth(self, queued: int, in_flight: int) -> None:
        self._gauges = (queued, in_flight)
        self._touch()

    def on_batch(self, rows: int, requests: int, run_s: float) -> None:
        self._batch.add(rows)
        self._run.add(run_s)
        self._touch()

    def on_queue_waits(self, waits_s: list[float]) -> None:
        add = self._queue.add
        for wait in waits_s:
            add(wait)
        self._touch()

    def on_request(self, status: int, latency_s: float, protocol: str = "http") -> None:
        key = (status, protocol)
        self._counted[key] = self._counted.get(key, 0) + 1
        latency = self._latency.get(protocol)
        if latency is None:
            latency = self._latency[protocol] = _Observations(
                self._metrics.request_latency.labels(*self._labels, protocol)
            )
        latency.add(latency_s)
        self._touch()

    def loaded(self, seconds: float) -> None:
        self._metrics.load_time.labels(*self._labels).set(seconds)
