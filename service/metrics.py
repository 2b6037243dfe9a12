"""Prometheus collectors. Per model version, the labelled children are made once at load and cached,
so a request pays for a few increments, not for label lookups. Queue depth and in-flight counts are read
from the batchers at scrape time (no per-request gauge updates)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from service.batching import BatchObserver, DynamicBatcher

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


def outcome_of(status: int) -> str:
    return OUTCOMES.get(status, "error" if status >= 500 else "other")


class Metrics:
    """Every collector of one server process, in its own registry (plus the process collectors)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        labels = ("model", "version")
        self.requests = Counter(
            "modelserve_requests",
            "Requests by model, version and outcome",
            (*labels, "outcome"),
            registry=registry,
        )
        self.request_latency = Histogram(
            "modelserve_request_duration_seconds",
            "Request latency, from the first byte read to the answer",
            labels,
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
            "Time to load and warm up a model version",
            labels,
            registry=registry,
        )
        self.load_failures = Counter(
            "modelserve_model_load_failures",
            "Model versions that failed to load",
            ("model",),
            registry=registry,
        )
        self._batchers: Callable[[], Iterable[DynamicBatcher]] = lambda: ()
        registry.register(_BatcherGauges(lambda: self._batchers()))

    def watch_batchers(self, batchers: Callable[[], Iterable[DynamicBatcher]]) -> None:
        self._batchers = batchers

    def for_model(self, model: str, version: int) -> ModelMetrics:
        return ModelMetrics(self, model, str(version))

    def unlabelled_request(self, status: int) -> None:
        """A request that never reached a model (unknown model, malformed URL): model and version empty."""
        self.requests.labels("", "", outcome_of(status)).inc()


class ModelMetrics(BatchObserver):
    """One model version's children, bound once; the batcher's observer."""

    def __init__(self, metrics: Metrics, model: str, version: str) -> None:
        self._metrics = metrics
        self._labels = (model, version)
        self._latency = metrics.request_latency.labels(model, version)
        self._queue = metrics.queue_wait.labels(model, version)
        self._run = metrics.run_time.labels(model, version)
        self._batch = metrics.batch_size.labels(model, version)
        self._runs = metrics.runs.labels(model, version)
        self._outcomes: dict[int, Counter] = {}

    def on_batch(self, rows: int, requests: int, run_s: float) -> None:
        self._batch.observe(rows)
        self._run.observe(run_s)
        self._runs.inc()

    def on_queue_wait(self, wait_s: float) -> None:
        self._queue.observe(wait_s)

    def on_request(self, status: int, latency_s: float) -> None:
        counter = self._outcomes.get(status)
        if counter is None:
            counter = self._outcomes[status] = self._metrics.requests.labels(
                *self._labels, outcome_of(status)
            )
        counter.inc()
        self._latency.observe(latency_s)

    def loaded(self, seconds: float) -> None:
        self._metrics.load_time.labels(*self._labels).set(seconds)


class _BatcherGauges(Collector):
    def __init__(self, batchers: Callable[[], Iterable[DynamicBatcher]]) -> None:
        self._batchers = batchers

    def collect(self) -> Iterable[GaugeMetricFamily]:
        depth = GaugeMetricFamily(
            "modelserve_queue_depth", "Requests waiting in a model's queue", labels=("model", "version")
        )
        running = GaugeMetricFamily(
            "modelserve_in_flight", "Requests in a batch that is running", labels=("model", "version")
        )
        for b in self._batchers():
            model, _, version = b.name.rpartition(":")
            depth.add_metric((model, version), b.queue_depth)
            running.add_metric((model, version), b.in_flight)
        yield depth
        yield running
