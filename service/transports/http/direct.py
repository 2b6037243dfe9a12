"""V2 infer answered by the HTTP protocol itself, without the ASGI cycle.

Why: uvicorn plus our ASGI layers cost ~130-170 µs of CPU per request before any work (bench's null route,
c=64), against ~13 µs for the same answer written straight from an httptools protocol; that difference is
a quarter of a whole V2 JSON inference request here. Most of it is per-request objects: the scope dict,
the request-response cycle and its event, the ASGI messages and the header list uvicorn renders, the
middleware's closure, Starlette's Request and Response. So the protocol (limits.py) hands a request for
``/v2/models/{name}[/versions/{version}]/infer`` here when it is the plain case, and everything else keeps
the ASGI path unchanged:
- POST over HTTP/1.1 with a Content-Length within the body limit, no Transfer-Encoding, no
  Content-Encoding (or identity), no ``Expect: 100-continue``, CORS off;
- no other request of the connection still being answered (a pipelined one waits its turn as uvicorn's
  own pipelining does);
- the whole body in the same read as its headers (the usual case for bodies up to tens of KB): a body
  still arriving goes to the ASGI path with what has arrived, so the body timeout, the drain's rules for
  uploads and lingering close stay what limits.py and body.py make them.
What such a request gets is what the ASGI path gives it: the same request id, key check, data plane steps
(``InferCall``'s, which ``DataPlane.infer`` awaits, with the HTTP codec; here without a task per request),
disconnect cancellation, error rendering (``error_response``), access line and metrics, and uvicorn's
default headers (``date``, ``server``).
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Callable
from functools import partial
from typing import Any, Literal

from service.access_log import AccessLog, fresh_request_id, valid_request_id
from service.auth import ApiKeys
from service.context import RequestContext, current_request
from service.dataplane import DataPlane, InferCall
from service.errors import ClientGone
from service.protocol.v2_encode import HTTP, JSON_HEADERS
from service.runtime import Feeds
from service.transports.http import v2
from service.transports.http.body import DRAIN_OVER, await_watched, error_response
from service.transports.http.deadline import BodyDeadline
from service.transports.http.routes import RouteMatcher

_IDENTITY = (b"", b"identity")
_JSON_LINE = b"content-type: application/json\r\n"

# How the protocol takes an answer: (call, status, header lines, body, close the connection after it).
Reply = Callable[["DirectCall", int, list[bytes], bytes, bool], None]


class DirectCycle:
    """What uvicorn's protocol reads of the request in flight (``self.cycle``): whether it is answered,
    and whether the connection may stay open after it (a server shutdown clears ``keep_alive``)."""

    __slots__ = (
        "body",
        "disconnected",
        "keep_alive",
        "message_event",
        "more_body",
        "response_complete",
        "response_started",
    )

    def __init__(self, keep_alive: bool) -> None:
        self.keep_alive = keep_alive
        self.response_started = self.response_complete = self.disconnected = False
        self.more_body = False  # the whole body is in
        self.body = b""
        self.message_event = _NOTHING


class _Nothing:
    def set(self) -> None:
        pass


_NOTHING = _Nothing()


class DirectCall:
    """One request taken by the direct path: its route, headers and body."""

    __slots__ = (
        "body",
        "ctx",
        "headers",
        "keep_alive",
        "name",
        "path",
        "pending",
        "start",
        "status",
        "version",
    )

    def __init__(
        self, path: str, name: str, version: str | None, headers: dict[bytes, bytes], keep_alive: bool
    ) -> None:
        self.path, self.name, self.version = path, name, version
        self.headers = headers
        self.keep_alive = keep_alive
        # The body as its one chunk (the usual case: no copy), or a bytearray once a second chunk came.
        self.body: bytes | bytearray = b""
        self.ctx: RequestContext | None = None  # set by answer, read by record
        self.start = 0.0
        self.status = 500
        self.pending: asyncio.Future[Any] | None = None  # the answer the server's drain waits for


class DirectInfer:
    def __init__(self, plane: DataPlane, metrics: Any) -> None:
        settings = plane.settings
        self.plane = plane
        self.limit = settings.max_body_bytes
        self.keys = ApiKeys(settings)
        self.log = AccessLog(settings, metrics)
        self.matcher = RouteMatcher()
        self._routes: dict[bytes, tuple[str, str, str | None] | Literal[False]] = {}
        name = settings.replica_name
        self.served_by = b"x-served-by: %s\r\n" % name.encode() if name else b""

    @staticmethod
    def cycle(keep_alive: bool) -> DirectCycle:
        """What the protocol keeps as ``self.cycle`` while a direct request is answered."""
        return DirectCycle(keep_alive)

    def accept(
        self, method: bytes, url: bytes, raw_headers: list[tuple[bytes, bytes]], keep_alive: bool
    ) -> DirectCall | None:
        """The call, when this request is one the direct path answers (module docstring); else None."""
        if method != b"POST" or not url.startswith(b"/v2/models/"):
            return None
        route = self._routes.get(url)
        if route is None:
            route = self._route(url)
        if route is False:
            return None
        path, name, version = route
        headers = dict(raw_headers)
        if len(headers) != len(raw_headers) or b"transfer-encoding" in headers:
            return None  # a repeated header (as Starlette would join it) or a chunked body: the ASGI path
        length = headers.get(b"content-length")
        if length is None or not length.isdigit() or int(length) > self.limit:
            return None
        if headers.get(b"content-encoding", b"").strip().lower() not in _IDENTITY:
            return None
        return DirectCall(path, name, version, headers, keep_alive)

    def _route(self, url: bytes) -> tuple[str, str, str | None] | Literal[False]:
        """(path, model, version) of a V2 infer URL, else False; remembered for the next request to it
        (a few hundred URLs at most: the cache starts over when full)."""
        path = url.split(b"?", 1)[0].decode("latin-1")
        matched = self.matcher.match(path)
        route: tuple[str, str, str | None] | Literal[False] = False
        if matched is not None and matched[0].handler is v2.infer:
            found, params = matched
            route = (path, params["name"], params.get("version", found.defaults.get("version")))
        if len(self._routes) >= 512:
            self._routes.clear()
        self._routes[url] = route
        return route

    def start(self, call: DirectCall, connection: BodyDeadline, reply: Reply) -> asyncio.Future[Any] | None:
        """Take ``call`` through the data plane's steps (``InferCall``) from the protocol's callback, with
        no task: decoded and queued now, answered by ``reply`` (status, header lines, body, close after
        it) when its batch has run. The future it waits on, for the server's drain to wait for (and at
        the drain's end to cancel); None when it is answered already (an error, or a run at once). The
        protocol writes the answer, then calls ``record``: the access line and metrics cost the client
        no latency."""
        call.start = time.perf_counter()
        request_id = call.headers.get(b"x-request-id")
        ctx = RequestContext(
            fresh_request_id() if request_id is None else valid_request_id(request_id.decode("latin-1"))
        )
        call.ctx = ctx
        # What a task would have: a context of its own (the request id for log lines, the deadline).
        return contextvars.copy_context().run(self._start, call, ctx, connection, reply)

    def _start(
        self, call: DirectCall, ctx: RequestContext, connection: BodyDeadline, reply: Reply
    ) -> asyncio.Future[Any] | None:
        current_request.set(ctx)
        headers = call.headers
        infer = None
        try:
            if self.keys.enabled:
                ctx.auth, error = self.keys.authenticate("inference", headers)
                if error is not None:
                    raise error
            infer = InferCall(self.plane, call.name, call.version, HTTP, ctx)  # resolve
            length = headers.get(b"inference-header-content-length")
            body = call.body
            payload = (
                body if type(body) is bytes else bytes(body),
                None if length is None else length.decode("latin-1"),
            )
            decoded = infer.read(payload)  # decode
            outcome: asyncio.Future[Feeds]
            if decoded is None:  # not the common JSON request: its decoding may await (preprocessing)
                outcome = asyncio.ensure_future(self._decode_and_wait(infer, connection))
                connection.watch(outcome)  # a client gone while it decodes: cancelled, never queued
            else:
                outcome = infer.admit(*decoded)  # admit
                connection.watch(outcome)  # cancelled if the client goes away: never run
        except Exception as e:
            if infer is not None:
                infer.close()
            self._reply(call, reply, *self._error(e))
            return None
        if outcome.done():  # run at once on an idle batcher
            self._answered(call, infer, connection, reply, outcome)
            return None
        outcome.add_done_callback(partial(self._answered, call, infer, connection, reply))
        return outcome

    @staticmethod
    async def _decode_and_wait(infer: InferCall[Any, Any], connection: BodyDeadline) -> Feeds:
        feeds, rows = await infer.decode()
        return await await_watched(connection, infer.admit(feeds, rows))

    def _answered(
        self,
        call: DirectCall,
        infer: InferCall[Any, tuple[bytes, dict[str, str]]],
        connection: BodyDeadline,
        reply: Reply,
        outcome: asyncio.Future[Feeds],
    ) -> None:
        """The batch ran (or the request failed, or was cancelled): encode, and hand the answer over."""
        connection.watch(None)
        try:
            try:
                outputs = outcome.result()
            except asyncio.CancelledError:
                if connection.client_gone:
                    raise ClientGone("the client closed the connection") from None
                raise
            content, extra = infer.encode(outputs)  # encode
            lines = [b"content-length: %d\r\n" % len(content)]
            if extra is JSON_HEADERS:
                lines.append(_JSON_LINE)
            else:
                lines += [
                    b"%s: %s\r\n" % (k.encode("latin-1"), v.encode("latin-1")) for k, v in extra.items()
                ]
            answer = (200, lines, content, False)
        except asyncio.CancelledError:
            # The server's drain timeout ended (it cancels what still runs): answered as the ASGI path does.
            answer = self._error(DRAIN_OVER)
        except Exception as e:
            answer = self._error(e)
        finally:
            infer.close()
        self._reply(call, reply, *answer)

    def _reply(
        self, call: DirectCall, reply: Reply, status: int, lines: list[bytes], content: bytes, close: bool
    ) -> None:
        call.status = status
        assert call.ctx is not None
        lines.append(b"x-request-id: %s\r\n" % call.ctx.request_id.encode())
        if self.served_by:
            lines.append(self.served_by)
        reply(call, status, lines, content, close)

    def record(self, call: DirectCall) -> None:
        """The access line and metrics of an answered call, its latency up to the answer's write."""
        if call.ctx is not None:
            self.log.record(call.ctx, "POST", call.path, call.status, time.perf_counter() - call.start, True)

    @staticmethod
    def _error(error: Exception) -> tuple[int, list[bytes], bytes, bool]:
        response = error_response(error)
        lines = [b"%s: %s\r\n" % (k, v) for k, v in response.raw_headers if k != b"connection"]
        close = any(k == b"connection" and v.lower() == b"close" for k, v in response.raw_headers)
        return response.status_code, lines, bytes(response.body), close
