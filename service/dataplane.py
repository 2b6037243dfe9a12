"""DataPlane: what every transport (FastAPI routes, the raw-ASGI fast path, gRPC) shares.

It owns the model repository, the settings, the decoding pool and readiness, and serves inference through
two entry points, ``predict`` (raw inputs: /predict) and ``infer`` (V2 tensors: HTTP and gRPC), each the
same named steps: resolve -> decode -> admit -> batch -> run -> encode. A transport hands over what it
read (and its codec) with an explicit RequestContext; nothing passes through the web framework's state.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import numpy as np

from service import __version__
from service.config import Settings
from service.context import RequestContext
from service.decoding import BoundedPool, request_deadline
from service.errors import BadRequest, InvalidInput, UnsupportedMediaType
from service.kinds import FormFile, InputKind, recognise_form
from service.kinds import recognise as recognise_body
from service.metrics import Metrics
from service.protocol import triton
from service.protocol.predict_codec import encode_predictions
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
P = TypeVar("P")
R = TypeVar("R")
P_contra = TypeVar("P_contra", contravariant=True)
R_co = TypeVar("R_co", covariant=True)

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
        mv = self.resolve(name, version)
        return {
            "name": mv.name,
            "versions": [str(v.version) for v in self.repository.versions(name)],
            "platform": mv.model.platform,
            "inputs": [t.as_dict() for t in mv.inputs],
            "outputs": [t.as_dict() for t in mv.outputs],
            "parameters": {
                "input_kind": mv.input_kind,
                "labels": mv.meta.labels,
                "max_batch_size": mv.batcher.policy.max_batch_size,
                **mv.kind.describe(),
            },
        }

    def model_config(self, name: str, version: str | None = None) -> dict[str, Any]:
        return triton.model_config(self.resolve(name, version))

    async def model_stats(self, name: str | None = None, version: str | None = None) -> dict[str, Any]:
        """Every loaded version of every model, of one model, or one version; with workers, the sum of
        what each counted (a request reaches one of them)."""
        if not name:
            versions = self.repository.all_versions()
        elif version:
            versions = [self.resolve(name, version)]
        else:
            versions = self.repository.versions(name)
            if not versions:
                self.resolve(name)  # raises NotFound with what is served
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
    # Two entry points, one path: resolve -> decode -> admit -> batch -> run -> encode. Every 4xx comes
    # from resolve or decode, before anything is queued; admit answers 503 (full queue) or 504 (past the
    # deadline); the version's batcher forms the batch and runs it (collate, then the Runtime).

    async def predict(
        self,
        request: PredictRequest,
        ctx: RequestContext,
        wait: Wait | None = None,
        started: float | None = None,
    ) -> dict[str, Any]:
        """/predict: raw inputs (images, texts, audio clips, rows) -> labels and scores. The inputs' kind is
        recognised once, here, and the model is chosen for it. ``wait`` awaits the queued answer (HTTP
        cancels it when the client leaves); the deadline counts from ``started`` (time.monotonic(), once
        the body arrived) or from now."""
        start = time.perf_counter()
        kind, items = recognise(request)  # decode: which kind of inputs, and the items
        ctx.rows = len(items)
        mv = ctx.mv = self.resolve_for(kind, request.name, request.version)  # resolve
        with mv.lease():  # taken right where resolved: a reload retires mv only after this answer
            deadline = self._deadline(mv, ctx, started)
            request_deadline.set(deadline)  # the decoding pool skips work for a request past it
            ok, rows, input_s, output_s = False, 0, 0.0, 0.0
            try:
                require_kind(mv, kind)  # decode: 415 when the model takes another kind
                prepared = await mv.kind.prepare(items, self.settings, self.pool)  # decode: preprocessing
                rows = ctx.rows = prepared.rows
                input_s = time.perf_counter() - start
                answer = mv.batcher.enqueue(prepared.feeds, rows=rows, trace=ctx, deadline=deadline)  # admit
                outputs = await (wait(answer) if wait is not None else answer)  # batch -> run
                encode_start = time.perf_counter()
                predictions = encode_predictions(mv, prepared, outputs, request.top_k)  # encode
                output_s = time.perf_counter() - encode_start
                ok = True
            finally:
                if mv.stats is not None:
                    mv.stats.on_request(ok, rows, time.perf_counter() - start, input_s, output_s)
        if request.explain:
            # Not the bounded decoding pool: the model has run, this answer must not turn into a 503 now.
            seen = await asyncio.to_thread(mv.kind.explain, items, prepared.feeds)
            for prediction, extra in zip(predictions, seen or (), strict=False):
                prediction.update(extra)
        return {"model": mv.name, "version": str(mv.version), "predictions": predictions}

    async def infer(
        self,
        name: str,
        version: str | None,
        payload: P,
        codec: V2Codec[P, R],
        ctx: RequestContext,
        wait: Wait | None = None,
    ) -> R:
        """The Open Inference Protocol's infer, whatever the transport: its ``codec`` decodes ``payload``
        into a V2 request and encodes the answer (HTTP: JSON and binary tensors; gRPC: protobuf). The
        steps are InferCall's; HTTP's direct path takes them without a coroutine (direct.py)."""
        call = InferCall(self, name, version, codec, ctx)  # resolve
        try:
            feeds, rows = call.read(payload) or await call.decode()  # decode
            answer = call.admit(feeds, rows)  # admit
            return call.encode(await (wait(answer) if wait is not None else answer))  # batch -> run, encode
        finally:
            call.close()

    # ---------------------------------------------------------------------------------- the steps
    def resolve(self, name: str, version: str | int | None = None) -> ModelVersion:
        """The named version (or the latest); NotFound (404) otherwise."""
        return self.repository.get(name, version)

    def resolve_for(self, kind: type[InputKind], name: str | None, version: str | None) -> ModelVersion:
        """The model for /predict inputs of ``kind``: the one named; else the configured default; else
        the only model, or the only one of this kind (among several, the one whose config.json sets
        ``default_for_kind``)."""
        repo = self.repository
        if version is not None:
            return repo.get(name or "", version)
        if name or self.settings.default_model:
            return repo.get(name or self.settings.default_model or "")
        names = repo.names()
        if len(names) == 1:
            return repo.get(names[0])
        of_kind = [n for n in names if isinstance(repo.get(n).kind, kind)]
        if len(of_kind) > 1:  # several take this kind: the one whose config.json says default_for_kind
            of_kind = [n for n in of_kind if repo.get(n).default_for_kind] or of_kind
        if len(of_kind) == 1:
            return repo.get(of_kind[0])
        raise BadRequest(
            f"name a model: POST /predict?model=NAME (served: {', '.join(names) or 'none'}), "
            "or set MODELSERVE_DEFAULT_MODEL"
        )

    def _deadline(self, mv: ModelVersion, ctx: RequestContext, started: float | None) -> float:
        """The model's timeout covers decoding too; a gRPC client's deadline may end it sooner."""
        deadline = (started if started is not None else time.monotonic()) + mv.batcher.policy.timeout_s
        if ctx.deadline is not None:
            deadline = min(deadline, ctx.deadline)
        return deadline

    async def decode_tensors(
        self, mv: ModelVersion, request: V2Request, ctx: RequestContext
    ) -> tuple[Feeds, int]:
        """A lone BYTES input the model's kind takes (encoded images, sentences, ...), or a lone input the
        graph does not have that the kind takes (an audio waveform), goes through the kind's own
        preprocessing; anything else is checked as tensors against the graph's inputs."""
        settings = self.settings
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
        prepared = await mv.kind.prepare(items, settings, self.pool)
        return prepared.feeds, prepared.rows


class InferCall(Generic[P, R]):
    """One V2 infer through the data plane's steps: resolve (here, holding the version's lease until
    ``close``), decode (``read``, and ``decode`` for what is not the common JSON request), admit (queued
    on the version's batcher), encode, and ``close`` (the statistics, the lease). ``DataPlane.infer``
    awaits them in a coroutine; HTTP's direct path runs them from the protocol's callbacks, with no task
    per request."""

    __slots__ = (
        "codec",
        "ctx",
        "deadline",
        "input_s",
        "mv",
        "ok",
        "output_s",
        "plane",
        "request",
        "rows",
        "start",
    )

    def __init__(
        self, plane: DataPlane, name: str, version: str | None, codec: V2Codec[P, R], ctx: RequestContext
    ) -> None:
        self.start = time.perf_counter()
        self.plane, self.codec, self.ctx = plane, codec, ctx
        self.ok, self.rows, self.input_s, self.output_s = False, 0, 0.0, 0.0
        self.request: V2Request | None = None
        mv = self.mv = ctx.mv = plane.resolve(name, version)
        # The lease, taken right where resolved (no await between): a reload retires mv only after close.
        mv.__enter__()
        self.deadline = plane._deadline(mv, ctx, None)

    def read(self, payload: P) -> tuple[Feeds, int] | None:
        """The wire: the common JSON request comes decoded and checked against the graph in one pass
        (v2_plain.py): its (feeds, rows). Anything else is a V2Request: None, and ``decode`` goes on."""
        mv = self.mv
        read = self.codec.read(mv, payload, self.plane.settings.max_items_per_request)
        if isinstance(read, V2Request):
            check_outputs(mv, read)
            self.request = read
            return None
        self.request, feeds, rows = read
        mv.kind.check_feeds(feeds)
        return feeds, rows

    async def decode(self) -> tuple[Feeds, int]:
        """A V2Request against the graph (or the kind's own preprocessing): ``DataPlane.decode_tensors``."""
        assert self.request is not None
        request_deadline.set(self.deadline)  # the decoding pool skips work for a request past it
        return await self.plane.decode_tensors(self.mv, self.request, self.ctx)

    def admit(self, feeds: Feeds, rows: int) -> asyncio.Future[Feeds]:
        """Queued on the version's batcher (503 when full, 504 past the deadline): the answer's future."""
        self.rows = self.ctx.rows = rows
        self.input_s = time.perf_counter() - self.start
        return self.mv.batcher.enqueue(feeds, rows=rows, trace=self.ctx, deadline=self.deadline)

    def encode(self, outputs: Feeds) -> R:
        encode_start = time.perf_counter()
        assert self.request is not None
        result = self.codec.encode(self.mv, self.request, outputs)
        self.output_s = time.perf_counter() - encode_start
        self.ok = True
        return result

    def close(self) -> None:
        """The call is answered (or failed): its statistics, and the version's lease given back."""
        mv = self.mv
        if mv.stats is not None:
            mv.stats.on_request(
                self.ok, self.rows, time.perf_counter() - self.start, self.input_s, self.output_s
            )
        mv.__exit__()


@dataclass(slots=True)
class PredictRequest:
    """/predict's raw inputs as the transport received them, and what the caller asked for."""

    name: str | None
    version: str | None
    media_type: str
    body: bytes = b""
    form: list[FormFile | str] | None = None  # a multipart body's files and fields, parsed
    top_k: int = 1
    explain: bool = False


class V2Codec(Protocol[P_contra, R_co]):
    """A transport's Open Inference Protocol wire format (service/protocol/v2_encode.py, v2_grpc.py)."""

    def read(
        self, mv: ModelVersion, payload: P_contra, max_rows: int
    ) -> V2Request | tuple[V2Request, Feeds, int]:
        """The payload as a V2Request (the general decoder), or the common request already as
        (request, feeds, rows): checked against the graph in the same pass."""

    def encode(self, mv: ModelVersion, request: V2Request, outputs: Feeds) -> R_co: ...


def recognise(request: PredictRequest) -> tuple[type[InputKind], list[Any]]:
    """The kind of the inputs and the items: by the multipart parts, else by the body (service/kinds)."""
    if request.form is not None:
        return recognise_form(request.form)
    return recognise_body(request.media_type, request.body)


def require_kind(mv: ModelVersion, kind: type[InputKind]) -> None:
    """415 when the request's inputs are not the kind the model takes."""
    if not isinstance(mv.kind, kind):
        raise UnsupportedMediaType(mv.kind.refusal(mv.name, kind))


def check_outputs(mv: ModelVersion, request: V2Request) -> None:
    """Requested outputs must exist: 422 before the request is queued, not after its batch ran."""
    if not request.outputs:
        return
    names = mv.model.output_names
    for out in request.outputs:
        if out.name not in names:
            raise InvalidInput(f"model {mv.name!r} has no output {out.name!r}; outputs: {', '.join(names)}")
