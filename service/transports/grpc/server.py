"""The Open Inference Protocol over gRPC (``inference.GRPCInferenceService``), with Triton's repository,
model-configuration and statistics extensions and ModelStreamInfer: a thin adapter over the DataPlane,
served on its own port in the same process and event loop as HTTP, so one batch mixes HTTP and gRPC
requests. The wire is ours by default (transports/grpc/http2.py: HTTP/2 framed by hand, a third of
grpc.aio's CPU per call); ``MODELSERVE_GRPC_ENGINE=grpcio`` serves the same handlers with grpc.aio.

Messages come from the vendored Triton .proto (service/protocol/oip, ``make proto``). The handler table
is written here rather than generated, so one method can answer a message both Triton's and KServe's
clients read (RepositoryModelLoad/Unload, whose request fields the two protos number differently).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any

import grpc
from google.protobuf import json_format, wrappers_pb2
from google.protobuf.any_pb2 import Any as AnyMessage
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

from service.access_log import AccessLog, valid_request_id
from service.auth import Access, ApiKeys
from service.config import Settings
from service.context import RequestContext, current_request
from service.dataplane import DataPlane
from service.errors import BadRequest, NotFound, ServiceError
from service.metrics import Metrics
from service.protocol.oip import grpc_service_pb2 as pb
from service.protocol.v2_grpc import GRPC
from service.transports.balance import ConnectionBalancer
from service.transports.grpc.calls import Method
from service.transports.grpc.http2 import Http2Server

log = logging.getLogger(__name__)
SERVICE = "inference.GRPCInferenceService"
# gRPC's standard health checking (what Kubernetes' gRPC probes and grpc_health_probe call): Check only.
HEALTH = "grpc.health.v1.Health"

# Our errors' HTTP status -> the gRPC code Triton and KServe answer for the same condition.
_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    499: grpc.StatusCode.CANCELLED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def grpc_code(status: int) -> grpc.StatusCode:
    return _CODES.get(status, grpc.StatusCode.INTERNAL if status >= 500 else grpc.StatusCode.UNKNOWN)


def _trailers(error: ServiceError, code: grpc.StatusCode, request_id: str) -> tuple[tuple[str, Any], ...]:
    """x-request-id, and for a retryable refusal a google.rpc.Status with RetryInfo (plus retry-after)."""
    trailers: list[tuple[str, Any]] = [("x-request-id", request_id)]
    retry_after = error.headers.get("Retry-After")
    if retry_after is not None:
        detail = AnyMessage()
        detail.Pack(error_details_pb2.RetryInfo(retry_delay=Duration(seconds=int(retry_after))))
        status = status_pb2.Status(code=code.value[0], message=error.message, details=[detail])
        trailers += [("retry-after", retry_after), ("grpc-status-details-bin", status.SerializeToString())]
    return tuple(trailers)


class _Call:
    """What one RPC knows: its context, request id, deadline, and the access-log trace."""

    def __init__(self, method: str, context: grpc.aio.ServicerContext) -> None:
        self.method = method
        self.start = time.perf_counter()
        metadata = context.invocation_metadata() or ()
        self.headers = {k.encode(): v.encode("latin-1") if isinstance(v, str) else v for k, v in metadata}
        remaining = context.time_remaining()
        self.ctx = RequestContext(
            valid_request_id(_text(self.headers.get(b"x-request-id"))),
            protocol="grpc",
            deadline=None if remaining is None else time.monotonic() + remaining,
        )
        current_request.set(self.ctx)  # log lines and error answers of this RPC's task name its id


def _text(value: bytes | None) -> str | None:
    return value.decode("latin-1") if value is not None else None


class GrpcTransport:
    def __init__(self, plane: DataPlane, settings: Settings, metrics: Metrics | None) -> None:
        self.plane = plane
        self.settings = settings
        self.metrics = metrics
        self.keys = ApiKeys(settings)
        self.log = AccessLog(settings, metrics)
        self.server: grpc.aio.Server | Http2Server | None = None
        self.port = 0

    # ---------------------------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        s = self.settings
        # Several workers share the port (the kernel spreads connections); one process alone must fail
        # loudly when the port is taken, not share it with a stranger.
        shared = self.plane.group is not None
        if s.grpc_engine == "native":
            methods = {
                f"/{SERVICE}/{name}": Method(streaming, deserialize, _serialize, handler)
                for name, (streaming, deserialize, handler) in self._methods().items()
            }
            methods[f"/{HEALTH}/Check"] = Method(False, health_request, _serialize, self._health_check())
            group = self.plane.group
            balancer = None
            if group is not None and group.identity.count > 1:
                me = group.identity
                counted = None if self.metrics is None else self.metrics.grpc_handed.inc
                balancer = ConnectionBalancer(me.run_dir, "grpc", me.index, me.count, counted)
            self.server = Http2Server(
                methods, s.max_body_bytes, s.max_header_bytes, s.header_timeout_s, s.max_connections, balancer
            )
            self.port = await self.server.start(s.host, s.grpc_port, reuse_port=shared)
        else:
            options = [
                # The same limit as HTTP bodies; grpc checks it on the decompressed message too.
                ("grpc.max_receive_message_length", s.max_body_bytes),
                ("grpc.max_send_message_length", -1),
                ("grpc.so_reuseport", 1 if shared else 0),
            ]
            server = grpc.aio.server(options=options)
            check = grpc.unary_unary_rpc_method_handler(
                self._health_check(), request_deserializer=health_request, response_serializer=_serialize
            )
            server.add_generic_rpc_handlers(
                (
                    grpc.method_handlers_generic_handler(SERVICE, self._grpcio_handlers()),
                    grpc.method_handlers_generic_handler(HEALTH, {"Check": check}),
                )
            )
            self.port = server.add_insecure_port(f"{_host(s.host)}:{s.grpc_port}")
            await server.start()
            self.server = server
        log.info("gRPC (Open Inference Protocol, %s) on %s:%d", s.grpc_engine, s.host, self.port)

    async def stop(self, grace_s: float) -> None:
        if self.server is not None:
            await self.server.stop(grace_s)

    def _methods(self) -> dict[str, tuple[bool, Callable[[bytes], Any], Callable[..., Any]]]:
        """name -> (streaming, request parser, handler(request or requests, context))."""
        unary: dict[str, tuple[Any, Access, Callable[[Any, _Call], Awaitable[Any]]]] = {
            "ServerLive": (pb.ServerLiveRequest, "health", self._live),
            "ServerReady": (pb.ServerReadyRequest, "health", self._ready),
            "ModelReady": (pb.ModelReadyRequest, "health", self._model_ready),
            "ServerMetadata": (pb.ServerMetadataRequest, "inference", self._server_metadata),
            "ModelMetadata": (pb.ModelMetadataRequest, "inference", self._model_metadata),
            "ModelInfer": (pb.ModelInferRequest, "inference", self._infer),
            "ModelConfig": (pb.ModelConfigRequest, "inference", self._config),
            "ModelStatistics": (pb.ModelStatisticsRequest, "inference", self._stats),
            "RepositoryIndex": (pb.RepositoryIndexRequest, "admin", self._index),
            "RepositoryModelLoad": (pb.RepositoryModelLoadRequest, "admin", self._load),
            "RepositoryModelUnload": (pb.RepositoryModelUnloadRequest, "admin", self._unload),
        }
        methods: dict[str, tuple[bool, Callable[[bytes], Any], Callable[..., Any]]] = {
            name: (False, message.FromString, self._unary(name, access, fn))
            for name, (message, access, fn) in unary.items()
        }
        methods["ModelStreamInfer"] = (True, pb.ModelInferRequest.FromString, self._stream_infer)
        return methods

    def _grpcio_handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        make = {False: grpc.unary_unary_rpc_method_handler, True: grpc.stream_stream_rpc_method_handler}
        return {
            name: make[streaming](handler, request_deserializer=deserialize, response_serializer=_serialize)
            for name, (streaming, deserialize, handler) in self._methods().items()
        }

    # ---------------------------------------------------------------------------------- plumbing
    def _unary(
        self, method: str, access: Access, fn: Callable[[Any, _Call], Awaitable[Any]]
    ) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]:
        async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
            call = _Call(method, context)
            status = 200
            error: ServiceError | None = None
            try:
                self._authorize(access, call)
                answer = await fn(request, call)
                context.set_trailing_metadata((("x-request-id", call.ctx.request_id),))
                return answer
            except ServiceError as e:
                status, error = e.status_code, e
            except asyncio.CancelledError:
                status = 499
                raise
            except Exception as e:
                status, error = 500, _internal(e, call)
            finally:
                after_answer = getattr(context, "after_answer", None)  # the native engine: after the write
                if after_answer is not None:
                    after_answer(partial(self._record, call, status))
                else:
                    self._record(call, status)
            assert error is not None
            code = grpc_code(error.status_code)
            await context.abort(code, error.message, _trailers(error, code, call.ctx.request_id))

        return handle

    def _authorize(self, access: Access, call: _Call) -> None:
        if self.keys.enabled:
            call.ctx.auth, error = self.keys.authenticate(access, call.headers)
            if error is not None:
                raise error

    def _record(self, call: _Call, status: int) -> None:
        inference = call.method in ("ModelInfer", "ModelStreamInfer")
        self.log.record(call.ctx, "GRPC", call.method, status, time.perf_counter() - call.start, inference)

    def _health_check(self) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]:
        return self._unary("Health/Check", "health", self._health)

    # ---------------------------------------------------------------------------------- methods
    async def _health(self, service: str, call: _Call) -> bytes:
        """HealthCheckResponse: SERVING when the server is ready (as ServerReady and /v2/health/ready say),
        else NOT_SERVING; for the server ("") or this service by name; another name is NOT_FOUND."""
        if service not in ("", SERVICE):
            raise NotFound(f"unknown service {service[:64]!r}: ask for '' (the server) or {SERVICE!r}")
        return _SERVING if (await self.plane.readiness())[0] else _NOT_SERVING

    async def _live(self, request: pb.ServerLiveRequest, call: _Call) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def _ready(self, request: pb.ServerReadyRequest, call: _Call) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=(await self.plane.readiness())[0])

    async def _model_ready(self, request: pb.ModelReadyRequest, call: _Call) -> pb.ModelReadyResponse:
        try:
            self.plane.resolve(request.name, request.version or None)
        except ServiceError:
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=True)

    async def _server_metadata(self, request: Any, call: _Call) -> pb.ServerMetadataResponse:
        return json_format.ParseDict(self.plane.server_metadata(), pb.ServerMetadataResponse())

    async def _model_metadata(self, request: pb.ModelMetadataRequest, call: _Call) -> Any:
        meta = self.plane.model_metadata(request.name, request.version or None)
        meta.pop("parameters")  # V2 REST only: the gRPC message has no parameters field
        return json_format.ParseDict(meta, pb.ModelMetadataResponse())

    async def _config(self, request: pb.ModelConfigRequest, call: _Call) -> pb.ModelConfigResponse:
        config = self.plane.model_config(request.name, request.version or None)
        return json_format.ParseDict({"config": config}, pb.ModelConfigResponse(), ignore_unknown_fields=True)

    async def _stats(self, request: pb.ModelStatisticsRequest, call: _Call) -> pb.ModelStatisticsResponse:
        stats = await self.plane.model_stats(request.name or None, request.version or None)
        return json_format.ParseDict(stats, pb.ModelStatisticsResponse(), ignore_unknown_fields=True)

    async def _infer(self, request: pb.ModelInferRequest, call: _Call) -> pb.ModelInferResponse:
        return await self.plane.infer(
            request.model_name, request.model_version or None, request, GRPC, call.ctx
        )

    async def _index(self, request: pb.RepositoryIndexRequest, call: _Call) -> pb.RepositoryIndexResponse:
        rows = self.plane.repository.index()
        if request.ready:
            rows = [r for r in rows if r["state"] == "READY"]
        return json_format.ParseDict({"models": rows}, pb.RepositoryIndexResponse())

    async def _load(self, request: pb.RepositoryModelLoadRequest, call: _Call) -> bytes:
        name = _repository_model(request)
        if request.parameters:
            raise BadRequest("load parameters (config or file overrides) are not supported: change models/")
        await self.plane.load_model(name)
        return _loaded_answer(name)

    async def _unload(self, request: pb.RepositoryModelUnloadRequest, call: _Call) -> bytes:
        name = _repository_model(request)
        await self.plane.unload_model(name)
        return _loaded_answer(name)

    # ---------------------------------------------------------------------------------- streaming
    async def _stream_infer(
        self, requests: AsyncIterator[pb.ModelInferRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        """Each request of the stream runs as it arrives (they batch like any others); answers go back
        as they finish, an error as a response with ``error_message`` (the stream goes on)."""
        answers: asyncio.Queue[pb.ModelStreamInferResponse | None] = asyncio.Queue()
        running: set[asyncio.Task[None]] = set()
        opening = _Call("ModelStreamInfer", context)
        try:
            self._authorize("inference", opening)
        except ServiceError as e:
            self._record(opening, e.status_code)
            code = grpc_code(e.status_code)
            await context.abort(code, e.message, _trailers(e, code, opening.ctx.request_id))

        async def one(request: pb.ModelInferRequest) -> None:
            call = _Call("ModelStreamInfer", context)
            status = 200
            try:
                answer = await self._infer(request, call)
                await answers.put(pb.ModelStreamInferResponse(infer_response=answer))
            except ServiceError as e:
                status = e.status_code
                failed = pb.ModelInferResponse(
                    model_name=request.model_name, model_version=request.model_version, id=request.id
                )
                await answers.put(pb.ModelStreamInferResponse(error_message=e.message, infer_response=failed))
            except Exception as e:
                status = 500
                await answers.put(pb.ModelStreamInferResponse(error_message=_internal(e, call).message))
            finally:
                self._record(call, status)

        failed: list[Exception] = []

        async def read() -> None:
            try:
                async for request in requests:
                    task = asyncio.create_task(one(request))
                    running.add(task)
                    task.add_done_callback(running.discard)
            except Exception as e:  # a message that does not parse: the call fails, after the answers due
                failed.append(e)
            if running:
                await asyncio.gather(*list(running), return_exceptions=True)
            await answers.put(None)

        reader = asyncio.create_task(read())
        try:
            while (answer := await answers.get()) is not None:
                yield answer
            if failed:
                raise failed[0]
        finally:
            reader.cancel()
            for task in list(running):
                task.cancel()


def _internal(error: Exception, call: _Call) -> ServiceError:
    """Our own fault: the detail to the log under the request id, only the id to the client (as HTTP)."""
    request_id = call.ctx.request_id
    log.error("unhandled error in gRPC %s %s", call.method, request_id, exc_info=error)
    return ServiceError(f"internal error; the server log has the detail under request id {request_id}")


# grpc.health.v1's two messages (no package here ships them) have the wire format of protobuf's own
# wrappers: HealthCheckRequest {string service = 1} is a StringValue; HealthCheckResponse
# {ServingStatus status = 1} an Int32Value, SERVING = 1, NOT_SERVING = 2.
_SERVING, _NOT_SERVING = (wrappers_pb2.Int32Value(value=v).SerializeToString() for v in (1, 2))


def health_request(data: bytes) -> str:
    """The ``service`` of a HealthCheckRequest; ValueError when the bytes are no such message."""
    try:
        return str(wrappers_pb2.StringValue.FromString(data).value)
    except DecodeError as e:
        raise ValueError(str(e)) from None


def _serialize(message: Any) -> bytes:
    return message if isinstance(message, bytes) else message.SerializeToString()


def _repository_model(request: Any) -> str:
    """Triton numbers the load request's fields (repository_name=1, model_name=2); KServe's proto has only
    model_name=1, which Triton's schema reads as repository_name. modelserve has one repository, so a
    request with only field 1 names the model."""
    name = request.model_name or request.repository_name
    if not name:
        raise BadRequest("name the model to load or unload (model_name)")
    return str(name)


def _loaded_answer(name: str) -> bytes:
    """Triton's load/unload responses are empty messages; KServe's carry (model_name=1, isLoaded=2 or
    isUnloaded=2). These bytes are both: Triton's clients skip the fields their message does not have."""
    encoded = name.encode()
    return b"\x0a" + _varint(len(encoded)) + encoded + b"\x10\x01"


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
