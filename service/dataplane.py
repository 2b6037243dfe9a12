"""DataPlane: what every transport (FastAPI routes, the raw-ASGI fast path, gRPC) shares.

It owns the model repository, the settings, the preprocessing pool and readiness, and runs one request
lifecycle: resolve the model version -> decode and validate (every 4xx here, before anything is queued)
-> the version's batcher -> encode. A transport translates its wire format into a decode and an encode
step and hands an explicit RequestContext along; nothing passes through the web framework's state.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from service import __version__
from service.config import Settings
from service.context import RequestContext
from service.decoding import BoundedPool, request_deadline
from service.errors import InvalidInput, UnsupportedMediaType
from service.kinds import InputKind, Prepared
from service.metrics import Metrics
from service.protocol import triton
from service.protocol.v2_codec import V2Request
from service.protocol.v2_feeds import raw_bytes_input, tensor_feeds
from service.repository.polling import RepositoryPoller
from service.repository.registry import ModelRepository
from service.repository.versions import ModelVersion
from service.runtime import Feeds
from service.stats import merge_stats

if TYPE_CHECKING:
    from service.process.group import WorkerGroup

log = logging.getLogger(__name__)
T = TypeVar("T")
S = TypeVar("S")

EXTENSIONS = [
    "binary_tensor_data",
    "classification",
    "model_repository",
    "model_configuration",
    "statistics",
    "parameters",
]


Wait = Callable[["asyncio.Future[Feeds]"], Awaitable[Feeds]]


class DataPlane:
    def __init__(
        self, settings: Settings, metrics: Metrics | None = None, group: WorkerGroup | None = None
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.group = group  # set when this process is one worker of several
        self.repository = ModelRepository(settings, metrics)
        self._pool: BoundedPool | None = None
        self.shutting_down = False
        self.draining = False  # SIGTERM seen (server.py sets it), before shutdown begins
        self._poller: asyncio.Task[None] | None = None

    # ---------------------------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Load every model and start the batchers (on the running loop)."""
        self._pool = BoundedPool(self.settings.preprocess_threads, self.settings.max_preprocess_queue)
        repository = self.repository
        skip: set[str] = set()
        if self.group is not None:  # listen before loading, so a change sent meanwhile is not missed
            await self.group.start(repository, self._locally_ready)
            skip = self.group.unloaded()
        await repository.load_all(skip=skip)
        log.info(
            "serving %s from %s", ", ".join(repository.names()) or "no models", repository.storage.describe()
        )
        # Everything loaded so far lives as long as the process: keep it out of the cyclic GC's scans.
        gc.collect()
        gc.freeze()
        # At 256 connections, the default threshold (700 net container allocations) ran ~60 collections
        # a second (gen1 up to 27 ms, gen2 up to 42 ms, ~10% of the loop), each pausing every request in
        # flight; most per-request objects are freed by reference counting, so collect far less often.
        gc.set_threshold(50_000, 10, 10)
        if self.settings.repository_poll_s > 0:
            poller = RepositoryPoller(repository, self.settings.repository_poll_s)
            self._poller = asyncio.create_task(poller.run_forever())

    async def stop(self) -> None:
        self.shutting_down = True
        if self._poller is not None:
            self._poller.cancel()
        if self.group is not None:
            await self.group.close()
        await self.repository.close(self.settings.drain_timeout_s)
        if self._pool is not None:
            self._pool.shutdown(wait=False)

    @property
    def pool(self) -> BoundedPool:
        """The bounded decoding pool (images, audio, long texts), once started."""
        assert self._pool is not None, "start() the data plane first"
        return self._pool

    # ---------------------------------------------------------------------------------- health
    def _locally_ready(self) -> bool:
        return self.repository.is_ready() and not (self.shutting_down or self.draining)

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        """(ready, the details the HTTP route answers): this process, and with workers all of them."""
        repo = self.repository
        if self.shutting_down or self.draining:
            return False, {"ready": False, "error": "shutting down"}
        if repo.is_ready():
            why = await self.group.not_ready() if self.group is not None else None
            if why is None:
                return True, {"ready": True, "models": repo.names()}
            return False, {"ready": False, "models": repo.names(), "error": why}
        body: dict[str, Any] = {"ready": False, "models": repo.names(), "failed": repo.failures()}
        body["error"] = (
            "models are still loading" if not repo.loaded else f"models failed to load: {repo.failures()}"
        )
        return False, body

    def model(self, name: str, version: str | int | None = None) -> ModelVersion:
        """The named version (or the latest); NotFound otherwise."""
        return self.repository.get(name, version)

    # ---------------------------------------------------------------------------------- repository
    async def load_model(self, name: str) -> None:
        """Load or reload; with workers every one of them does, and the answer waits for all."""
        if self.group is not None:
            await self.group.change("load", name)
        else:
            await self.repository.load_or_fail(name)

    async def unload_model(self, name: str) -> None:
        if self.group is not None:
            await self.group.change("unload", name)
        else:
            await self.repository.unload(name)

    # ---------------------------------------------------------------------------------- metadata
    def server_metadata(self) -> dict[str, Any]:
        return {"name": "modelserve", "version": __version__, "extensions": EXTENSIONS}

    def model_metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        mv = self.model(name, version)
        return {
            "name": mv.name,
            "versions": [str(v.version) for v in self.repository.versions(name)],
            "platform": mv.model.platform,
            "inputs": [t.as_dict() for t in mv.inputs],
            "outputs": [t.as_dict() for t in mv.outputs],
            "parameters": {
                "input_kind": mv.input_kind,
                "labels": mv.meta.labels,
                "max_batch_size": mv.batcher.max_batch_size,
                **mv.kind.describe(),
            },
        }

    def model_config(self, name: str, version: str | None = None) -> dict[str, Any]:
        return triton.model_config(self.model(name, version))

    async def model_stats(self, name: str | None = None, version: str | None = None) -> dict[str, Any]:
        """Every loaded version of every model, of one model, or one version; with workers, the sum of
        what each counted (a request reaches one of them)."""
        if not name:
            versions = self.repository.all_versions()
        elif version:
            versions = [self.model(name, version)]
        else:
            versions = self.repository.versions(name)
            if not versions:
                self.model(name)  # raises NotFound with what is served
        if self.group is None:
            return triton.model_stats(versions)
        wanted = {(mv.name, str(mv.version)) for mv in versions}
        per_worker = await self.group.statistics()
        return {
            "model_stats": merge_stats(
                s for worker in per_worker for s in worker if (s["name"], s["version"]) in wanted
            )
        }

    # ---------------------------------------------------------------------------------- inference
    async def run(
        self,
        mv: ModelVersion,
        prepare: Callable[[ModelVersion], Awaitable[tuple[S, Feeds, int]]],
        encode: Callable[[ModelVersion, S, Feeds], T],
        ctx: RequestContext,
        wait: Wait | None = None,
        started: float | None = None,
    ) -> T:
        """The lifecycle after resolving ``mv``: prepare (decode + validate: every 4xx, before the queue)
        -> the version's batcher -> encode, under the request's deadline, recording statistics.

        ``prepare`` returns what ``encode`` needs besides the outputs, the feeds and their rows. ``wait``
        awaits the queued answer (HTTP cancels it when the client leaves); by default it is awaited as it
        is (gRPC cancels the handler's task). Call it right after resolving ``mv``: the lease below is then
        taken with no await in between, so a reload retires ``mv`` only after this answer. The deadline
        counts from ``started`` (time.monotonic(), once the body arrived) or from now."""
        start, start_monotonic = time.perf_counter(), started if started is not None else time.monotonic()
        ctx.mv = mv
        ok, rows, input_s, output_s = False, 0, 0.0, 0.0
        with mv.lease():
            # The model's timeout covers decoding too; a gRPC client's deadline may end it sooner.
            deadline = start_monotonic + mv.batcher.timeout_s
            if ctx.deadline is not None:
                deadline = min(deadline, ctx.deadline)
            request_deadline.set(deadline)  # the decoding pool skips work for a request past it
            try:
                state, feeds, rows = await prepare(mv)
                ctx.rows = rows
                input_s = time.perf_counter() - start
                answer = mv.batcher.enqueue(feeds, rows=rows, trace=ctx, deadline=deadline)
                outputs = await (wait(answer) if wait is not None else answer)
                encode_start = time.perf_counter()
                result = encode(mv, state, outputs)
                output_s = time.perf_counter() - encode_start
                ok = True
                return result
            finally:
                if mv.stats is not None:
                    mv.stats.on_request(ok, rows, time.perf_counter() - start, input_s, output_s)

    async def infer_v2(
        self,
        name: str,
        version: str | None,
        decode: Callable[[], V2Request],
        encode: Callable[[ModelVersion, V2Request, Feeds], T],
        ctx: RequestContext,
        wait: Wait | None = None,
    ) -> T:
        """The Open Inference Protocol's infer, whatever the transport's codec (``decode``, ``encode``)."""

        async def prepare(mv: ModelVersion) -> tuple[V2Request, Feeds, int]:
            request = decode()
            check_outputs(mv, request)
            feeds, rows = await self._v2_feeds(mv, request, ctx)
            return request, feeds, rows

        return await self.run(self.model(name, version), prepare, encode, ctx, wait)

    async def _v2_feeds(self, mv: ModelVersion, request: V2Request, ctx: RequestContext) -> tuple[Feeds, int]:
        """A lone BYTES input the model's kind takes (encoded images, sentences, ...), or a lone input the
        graph does not have that the kind takes (an audio waveform), goes through the kind's own
        preprocessing; anything else is checked as tensors against the graph's inputs."""
        settings, pool = self.settings, self.pool
        raw = raw_bytes_input(request)
        items = None
        if raw is not None:
            assert isinstance(raw.value, list)  # BYTES elements
            items = mv.kind.from_v2_bytes(raw.name, raw.value, raw.binary)
        elif len(request.inputs) == 1 and request.inputs[0].name not in {t.name for t in mv.inputs}:
            only = request.inputs[0]  # not a graph input: the kind may take it (an audio model's waveform)
            if isinstance(only.value, np.ndarray):
                items = mv.kind.from_v2_tensor(only.name, only.datatype, only.value.reshape(only.shape))
        if items is None:
            feeds, rows = tensor_feeds(mv, request, settings.max_items_per_request)
            mv.kind.check_feeds(feeds)  # the kind's own value checks (tabular: finite, valid categories)
            return feeds, rows
        ctx.rows = len(items)
        prepared = await mv.kind.prepare(items, settings, pool)
        return prepared.feeds, prepared.rows


def require_kind(mv: ModelVersion, kind: type[InputKind]) -> None:
    """415 when the request's inputs are not the kind the model takes."""
    if not isinstance(mv.kind, kind):
        raise UnsupportedMediaType(mv.kind.refusal(mv.name, kind))


async def prepare(
    mv: ModelVersion, kind: type[InputKind], items: Sequence[Any], settings: Settings, pool: Executor
) -> Prepared:
    """The model's kind validates and preprocesses the items into feeds (4xx here, before queueing)."""
    require_kind(mv, kind)
    return await mv.kind.prepare(items, settings, pool)


def check_outputs(mv: ModelVersion, request: V2Request) -> None:
    """Requested outputs must exist: 422 before the request is queued, not after its batch ran."""
    if not request.outputs:
        return
    names = mv.model.output_names
    for out in request.outputs:
        if out.name not in names:
            raise InvalidInput(f"model {mv.name!r} has no output {out.name!r}; outputs: {', '.join(names)}")
