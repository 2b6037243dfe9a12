"""Request and response plumbing shared by the protocols: bounded body reads, JSON in and out."""

from __future__ import annotations

import asyncio
import logging
import zlib
from typing import Any, TypeVar

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive

from service.context import current_request_id
from service.errors import (
    BadRequest,
    ClientGone,
    Overloaded,
    PayloadTooLarge,
    RequestTimeout,
    ServiceError,
    Unimplemented,
    UnsupportedMediaType,
)
from service.transports.http.deadline import BODY_EXTENSION, BodyDeadline

T = TypeVar("T")
log = logging.getLogger(__name__)


_CLOSE = {"Connection": "close"}  # answered before the body was read: do not wait for the rest of it
# What a request still running when the drain timeout ends answers (uvicorn cancels its task then).
DRAIN_OVER = Overloaded("the server is shutting down and the request did not finish within the drain timeout")
DRAIN_OVER.headers["Connection"] = "close"


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing (413) on Content-Length before reading, or as soon as a chunk passes;
    within the server's body deadline (408), at shutdown while it keeps arriving (else 503); a gzip or deflate body
    (Content-Encoding, or a transfer coding before chunked: ``Transfer-Encoding: gzip, chunked``) comes
    back decompressed, the limit counting its decompressed size."""
    codings = _transfer_codings(request)  # checked before the body is read: 501 at once
    body = await _read_raw(request, limit)
    encoding = request.headers.get("content-encoding")
    if encoding is not None and encoding.strip().lower() not in ("", "identity"):
        codings.insert(0, encoding)  # the innermost: undone last
    if not codings:
        return body
    if len(body) < _INLINE_INFLATE_BYTES:
        return _undo(body, codings, limit)
    return await asyncio.to_thread(_undo, body, codings, limit)


def _transfer_codings(request: Request) -> list[str]:
    """The transfer codings applied before chunked, in the order they were applied; 501 for one this server
    cannot undo (RFC 9112 6.1). The parser has undone chunked, and refuses a request whose last coding is
    not chunked."""
    codings = [
        c.strip().lower()
        for value in request.headers.getlist("transfer-encoding")
        for c in value.split(",")
        if c.strip()
    ]
    if codings and codings[-1] == "chunked":
        codings.pop()
    for coding in codings:
        if coding not in _WBITS:
            raise Unimplemented(
                f"unsupported Transfer-Encoding {coding!r}: send chunked, after gzip or deflate if compressed",
                headers=dict(_CLOSE),
            )
    return codings


def _undo(body: bytes, codings: list[str], limit: int) -> bytes:
    for coding in reversed(codings):
        body = decompress(body, coding, limit)
    return body


# Smaller compressed bodies are inflated on the event loop; bigger ones in a thread.
_INLINE_INFLATE_BYTES = 256 * 1024
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """Inflate a request body, never past ``limit`` bytes: a decompression bomb is refused (413) after
    producing at most limit + 1 bytes. deflate is the zlib format (RFC 9110); raw deflate is taken too."""
    coding = encoding.strip().lower()
    wbits = _WBITS.get(coding)
    if wbits is None:
        raise UnsupportedMediaType(
            f"unsupported Content-Encoding {encoding!r}: send gzip, deflate or identity"
        )
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as e:
        if coding != "deflate":
            raise BadRequest(f"the {coding} body is corrupt: {e}") from None
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate, as some clients send it
        try:
            out = inflater.decompress(body, limit + 1)
        except zlib.error:
            raise BadRequest(f"the {coding} body is corrupt: {e}") from None
    if len(out) > limit:
        raise PayloadTooLarge(f"the decompressed request body exceeds the limit of {limit} bytes")
    if not inflater.eof or inflater.unused_data:
        raise BadRequest(f"the {coding} body is truncated or has data after its end")
    return out


async def _read_raw(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise BadRequest("invalid Content-Length header") from None
        if size > limit:
            raise PayloadTooLarge(f"request body is {size} bytes; the limit is {limit}", headers=dict(_CLOSE))
    deadline: BodyDeadline | None = request.scope.get("extensions", {}).get(BODY_EXTENSION)
    # Straight from ASGI receive, not Starlette's stream generator: the common single-message body costs
    # one await.
    chunks: list[bytes] = []
    total = 0
    receive = request.receive
    while True:
        try:
            message = await (receive() if deadline is None else deadline.receive(receive))
        except TimeoutError:
            assert deadline is not None
            why = deadline.shutdown_reason()
            if why is not None:
                error = Overloaded(f"the server is shutting down and {why}")
                error.headers.update(_CLOSE)
                raise error from None
            raise RequestTimeout(
                f"the request body did not arrive within {deadline.timeout_s:g} s of its headers"
            ) from None
        if message["type"] == "http.disconnect":
            raise ClientGone("the client closed the connection while sending the body")
        chunk = message.get("body", b"")
        total += len(chunk)
        if total > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes", headers=dict(_CLOSE))
        if not message.get("more_body", False):
            if not chunks:
                return chunk
            chunks.append(chunk)
            return b"".join(chunks)
        chunks.append(chunk)


def json_response(content: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status_code,
        headers=headers,
        media_type="application/json",
    )


def error_response(exc: Exception) -> Response:
    """The one rendering of every error: ``{"error": "..."}`` with its status; our own faults are logged
    (not load: 503 overloaded and 504 past the queue's deadline are in the access log and the metrics, and
    an overloaded server would write one error line per request)."""
    if isinstance(exc, ServiceError):
        if exc.status_code >= 500 and exc.status_code not in (503, 504):
            log.error("%s: %s", type(exc).__name__, exc.message)
        return json_response({"error": exc.message}, exc.status_code, exc.headers)
    # The detail (exception, traceback, maybe paths) goes to the log only, under the request id.
    request_id = current_request_id()
    log.error("unhandled error in request %s", request_id, exc_info=exc, extra={"request_id": request_id})
    return json_response(
        {"error": f"internal error; the server log has the detail under request id {request_id}"}, 500
    )


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def await_watched(connection: BodyDeadline, answer: asyncio.Future[T]) -> T:
    """Await ``answer`` while ``connection`` (our protocol) cancels it if the client goes away."""
    if answer.done():
        return answer.result()
    if connection.client_gone:  # it left while the request was decoded: never run
        answer.cancel()
        raise ClientGone("the client closed the connection")
    connection.watch(answer)
    try:
        return await answer
    except asyncio.CancelledError:
        if connection.client_gone:
            raise ClientGone("the client closed the connection") from None
        raise
    finally:
        connection.watch(None)


async def await_unless_disconnected(request: Request, answer: asyncio.Future[T]) -> T:
    """Await a queued request's ``answer`` but cancel it if the client goes away: a dropped request is
    never run. Call only after the body was read, when the next ASGI message can only be a disconnect.
    Under modelserve's own HTTP protocol the connection cancels the answer as it closes; elsewhere one
    watcher task waits for the disconnect message."""
    if answer.done():  # run at once on an idle batcher: nothing to watch
        return answer.result()
    connection: BodyDeadline | None = request.scope.get("extensions", {}).get(BODY_EXTENSION)
    if connection is not None:  # our protocol cancels the answer when the connection closes
        return await await_watched(connection, answer)
    # Another server (tests' in-process client): watch for the disconnect message instead.
    watcher = asyncio.ensure_future(_until_disconnect(request.receive))
    watcher.add_done_callback(lambda _: answer.cancel())
    try:
        return await answer
    except asyncio.CancelledError:
        if watcher.done() and not watcher.cancelled():
            raise ClientGone("the client closed the connection") from None
        raise
    finally:
        watcher.cancel()
