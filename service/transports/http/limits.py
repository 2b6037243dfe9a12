"""Connection limits uvicorn's httptools protocol does not have: header and body read timeouts, header
size and count caps, a connection cap with a JSON 503, uploads still arriving at shutdown read to their end
(a JSON 503 only for one that has stopped arriving), and a lingering close.

Why a protocol subclass: these happen before (or beside) the ASGI app. A client that never finishes its
headers never reaches the app; uvicorn's ``limit_concurrency`` answers plain text; and uvicorn closes the
socket as soon as a ``Connection: close`` answer is written, so a client still sending a large body gets a
reset instead of the 413 (the kernel resets a socket closed with unread data). What the app needs (the
body deadline, deadline.py) it gets as an ASGI scope extension, ``BODY_EXTENSION``, read by ``http.read_body``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from service.config import Settings
from service.transports.http.deadline import BODY_EXTENSION, BodyDeadline

log = logging.getLogger(__name__)
# After answering a request whose body is still arriving: read and discard this long / this much, then
# close (nginx's lingering_time and lingering_timeout do the same job).
LINGER_S = 5.0
LINGER_BYTES = 256 * 1024 * 1024
# A direct-path request (service/transports/http/direct.py) whose body has not all arrived this long after
# its headers goes to the ASGI path, whose body timeout and drain rules govern uploads.
DIRECT_WAIT_S = 0.1


@dataclass(frozen=True)
class HttpLimits:
    header_timeout_s: float
    body_timeout_s: float
    max_header_bytes: int
    max_headers: int
    max_connections: int
    drain_stalled_body_s: float = 5.0

    @classmethod
    def from_settings(cls, s: Settings) -> HttpLimits:
        return cls(
            s.header_timeout_s,
            s.body_timeout_s,
            s.max_header_bytes,
            s.max_headers,
            s.max_connections,
            s.drain_stalled_body_s,
        )


class _HeaderLimit(Exception):
    """Raised inside the parser's header callback to stop parsing at once."""


class _CycleTransport:
    """The transport as uvicorn's request cycle sees it: ``close`` lingers while the body still arrives,
    and an answer's head waits for its body, so both leave in one send (uvicorn writes them apart: two
    syscalls and two TCP segments per answer, each waking the client). A head with no body after it in
    the same loop step (HEAD, a streamed answer) is sent on the next one."""

    def __init__(self, protocol: LimitedHttpToolsProtocol) -> None:
        self._protocol = protocol
        self._transport = protocol.transport
        self._head: bytes | None = None
        self.is_closing = self._transport.is_closing
        self.get_extra_info = self._transport.get_extra_info

    def write(self, data: bytes) -> None:
        head = self._head
        if head is not None:
            self._head = None
            if len(data) < _JOIN_BYTES:
                self._transport.write(head + data)
            else:
                self._transport.writelines((head, data))
        elif data.startswith(b"HTTP/1.1 ") and not data.startswith(b"HTTP/1.1 100 "):
            self._head = data
            self._protocol.loop.call_soon(self._flush)
        else:
            self._transport.write(data)

    def _flush(self) -> None:
        head, self._head = self._head, None
        if head is not None and not self._transport.is_closing():
            self._transport.write(head)

    def close(self) -> None:
        self._flush()
        self._protocol.close_after_answer()


_JOIN_BYTES = 64 * 1024  # smaller bodies are copied behind the head; bigger ones go as a second buffer

# uvicorn's default headers (date, server), rendered once per list: the server makes a new list when the
# date changes, once a second.
_rendered: tuple[list[tuple[bytes, bytes]] | None, bytes] = (None, b"")


def _default_headers(headers: list[tuple[bytes, bytes]]) -> bytes:
    global _rendered
    source, text = _rendered
    if source is not headers:
        text = b"".join(b"%s: %s\r\n" % pair for pair in headers)
        _rendered = (headers, text)
    return text


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits above; ``limits`` come from MODELSERVE_* unless bound
    by ``http_protocol(settings)``."""

    limits: ClassVar[HttpLimits | None] = None
    direct: ClassVar[Any] = None  # a DirectInfer (service/transports/http/direct.py), bound by http_protocol

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cls = type(self)
        if cls.limits is None:
            cls.limits = HttpLimits.from_settings(Settings())
        self._limits = cls.limits
        self._timer: asyncio.TimerHandle | None = None
        self._in_headers = True
        self._began = False  # bytes of the current request arrived
        self._header_bytes = 0
        self._header_count = 0
        self._lingering = False
        self._discarded = 0
        self._body: BodyDeadline | None = None
        self._direct: Any = None  # a DirectCall whose body is being read
        self._direct_wait: asyncio.TimerHandle | None = None
        self._direct_body: BodyDeadline | None = None  # the direct path's, one per connection
        self._direct_cycle: Any = None  # the direct path's DirectCycle, one per connection
        self._idle_until: float | None = None  # the keep-alive deadline while idle; None while busy
        self._upgrade_head = False  # an Upgrade request's headers are in: see _without_upgrade

    # ------------------------------------------------------------------------------ connection
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self._limits.header_timeout_s, self._header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._unset_keepalive_if_required()  # the keep-alive timer (uvicorn cancels it only on a clean close)
        if self._direct_wait is not None:
            self._direct_wait.cancel()
            self._direct_wait = None
        self._direct = None
        super().connection_lost(exc)
        if self._body is not None:
            self._body.connection_lost()

    def eof_received(self) -> None:
        if self._lingering:  # the client is done sending: the answer was written, close now
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            self._discarded += len(data)
            if self._discarded > LINGER_BYTES:
                self.transport.close()
            return
        if self._in_headers:
            self._header_bytes += len(data)
        self._idle_until = None  # busy: the keep-alive timer, if armed, finds this and stands down
        while True:  # a loop, not a recursion: each Upgrade request in ``data`` is fed again
            try:
                self.parser.feed_data(data)
                break
            except httptools.HttpParserUpgrade as e:
                replay = self._without_upgrade(data[e.args[0] :] if e.args else b"")
                if replay is None:
                    return
                data = replay
            except httptools.HttpParserError as e:
                self._direct = None
                if isinstance(e.__context__, _HeaderLimit):
                    self._refuse(431, str(e.__context__))
                elif not self._malformed_body(e):
                    self._refuse(400, "invalid HTTP request")
                return
        if self._direct is not None and self._direct_wait is None:
            # The body did not come with the headers (clients often write them apart): wait a moment for
            # it; a body still arriving after that is an upload, and the ASGI path's rules take it.
            self._direct_wait = self.loop.call_later(DIRECT_WAIT_S, self._direct_to_asgi)
        if self._began and self._timer is None:
            # A request whose headers did not all come in this read: their timeout starts now. (Armed
            # here, not at each request's start: headers that come whole need no timer.)
            self._arm(self._limits.header_timeout_s, self._header_timeout)
        if self._in_headers and self._header_bytes > self._limits.max_header_bytes:
            self._refuse(431, f"the request line and headers exceed {self._limits.max_header_bytes} bytes")

    def awaits_request(self) -> bool:
        """Open, and no byte of a request has arrived yet (the drain's queued connections: serving.py)."""
        return (
            not self.transport.is_closing()
            and self.cycle is None
            and self._direct is None
            and not self._began
        )

    def shutdown(self) -> None:
        """Server shutdown: an upload still arriving is read on while it keeps arriving, within the drain
        (uvicorn's graceful timeout); one that has stopped is answered 503, not cancelled at the drain's end."""
        if self._direct is not None:
            if self._direct_wait is not None:
                self._direct_wait.cancel()
            self._direct_to_asgi()
        cycle = self.cycle
        if self._body is not None and cycle is not None and not cycle.response_started:
            self._body.drain(self.config.timeout_graceful_shutdown)
        super().shutdown()

    # ------------------------------------------------------------------------------ parser callbacks
    def on_message_begin(self) -> None:
        # uvicorn's own, without the ASGI scope: a request the direct path answers never needs one (a dict
        # of nine entries and a copy of the app state per request); _headers_complete makes it (uvicorn's
        # on_message_begin, called there).
        self.url = b""
        self.expect_100_continue = False
        self.headers = []
        self.scope = None  # type: ignore[assignment]
        self._began = True
        self._in_headers = True
        self._header_bytes = self._header_count = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self._limits.max_headers:
            raise _HeaderLimit(f"more than {self._limits.max_headers} request headers")
        # uvicorn's own on_header, inlined (a call less per header): lower-case names, no trailing OWS.
        name = name.lower()
        value = value.rstrip(b" \t")
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._disarm()
        self._in_headers = False
        self._began = False
        if self.parser.should_upgrade():
            self._upgrade_head = True  # the parser stops after these headers: see _without_upgrade
            return
        direct = self.direct
        if (
            direct is not None
            and (self.cycle is None or self.cycle.response_complete)
            and not self.expect_100_continue
            and len(self.connections) <= self._limits.max_connections
            and self.parser.get_http_version() == "1.1"
        ):
            call = direct.accept(
                self.parser.get_method(), self.url, self.headers, self.parser.should_keep_alive()
            )
            if call is not None:
                self._direct = call  # answered at on_message_complete, if the body comes in this read
                return
        self._headers_complete()

    def _headers_complete(self) -> None:
        # The ASGI scope, as uvicorn's on_message_begin makes it, for the headers and URL already read.
        headers, url, expect = self.headers, self.url, self.expect_100_continue
        super().on_message_begin()
        self.headers, self.url, self.expect_100_continue = headers, url, expect
        self.scope["headers"] = headers
        over = len(self.connections) > self._limits.max_connections
        app = self.app
        if over:
            log.warning(
                "%d connections open (limit %d): answering 503",
                len(self.connections),
                self._limits.max_connections,
            )
            self.app = _too_many_connections
        else:
            self._body = BodyDeadline(
                self.loop, self._limits.body_timeout_s, self._limits.drain_stalled_body_s
            )
            self.scope.setdefault("extensions", {})[BODY_EXTENSION] = self._body  # type: ignore[assignment]
        try:
            super().on_headers_complete()
        finally:
            self.app = app
        if self.cycle is not None:
            self.cycle.transport = _CycleTransport(self)  # type: ignore[assignment]

    def on_body(self, body: bytes) -> None:
        call = self._direct
        if call is not None:
            if not call.body:
                call.body = body  # the usual one chunk: kept as it is
            elif type(call.body) is bytes:
                call.body = bytearray(call.body) + body
            else:
                call.body += body
            return
        if self._body is not None:
            self._body.last_bytes = self.loop.time()
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self._direct is not None:
            call, self._direct = self._direct, None
            if self._direct_wait is not None:
                self._direct_wait.cancel()
                self._direct_wait = None
            self._answer_direct(call)
            return
        if self._upgrade_head:  # not this request's end: its body (if any) follows unparsed
            return
        if self._body is not None:
            self._body.complete = True
        super().on_message_complete()

    def _without_upgrade(self, rest: bytes) -> bytes | None:
        """An Upgrade request (``Upgrade: h2c`` from Java's HTTP clients and curl --http2, or a WebSocket
        handshake): served as plain HTTP/1.1, as RFC 9110 section 7.8 lets a server do. httptools stops
        at the end of its headers and would take it as bodiless (its body lost, uvicorn issue 2722), so
        the request is fed again, without the upgrade, to a new parser: what to feed it (the request
        again and the bytes that followed it); None when it was refused (CONNECT)."""
        head, self._upgrade_head = self._upgrade_head, False
        if not head or self.parser.get_method() == b"CONNECT":  # a tunnel: nothing to serve
            self._refuse(405, "CONNECT is not served here")
            return None
        lines = [
            b"%s %s HTTP/%s\r\n"
            % (self.parser.get_method(), self.url, self.parser.get_http_version().encode())
        ]
        for name, value in self.headers:
            if name in (b"upgrade", b"http2-settings"):
                continue
            if name == b"connection":
                kept = [
                    t for t in value.split(b",") if t.strip().lower() not in (b"upgrade", b"http2-settings")
                ]
                if not kept:
                    continue
                value = b",".join(kept).strip()
            lines.append(b"%s: %s\r\n" % (name, value))
        lines.append(b"\r\n")
        self.parser = httptools.HttpRequestParser(self)
        return b"".join(lines) + rest

    # ------------------------------------------------------------------------------ the direct path
    def _direct_to_asgi(self) -> None:
        """The request's body is slow (or the server is stopping): the ASGI path takes it from here."""
        self._direct_wait = None
        call, self._direct = self._direct, None
        if call is None or self.transport.is_closing():
            return
        self._headers_complete()
        if call.body:
            self.on_body(bytes(call.body))

    def _answer_direct(self, call: Any) -> None:
        """Answer a DirectCall from this callback: decoded and queued now, written when its batch has run
        (no task per request). The drain waits for its pending answer as for uvicorn's request tasks."""
        cycle, connection = self._direct_cycle, self._direct_body
        if cycle is None or connection is None:
            # One of each per connection, made at its first direct request: a direct request is taken only
            # when the one before it is answered. The body is always complete; the watch is per call.
            cycle = self._direct_cycle = self.direct.cycle(call.keep_alive)
            connection = self._direct_body = BodyDeadline(
                self.loop, self._limits.body_timeout_s, self._limits.drain_stalled_body_s
            )
            connection.complete = True
        else:
            cycle.keep_alive = call.keep_alive
            cycle.response_started = cycle.response_complete = False
        self.cycle = cycle
        self._body = connection
        pending = self.direct.start(call, connection, self._write_direct)
        if pending is not None:
            call.pending = pending
            self.tasks.add(pending)  # the drain waits for it; _write_direct takes it out

    def _write_direct(self, call: Any, status: int, lines: list[bytes], body: bytes, close: bool) -> None:
        cycle = self._direct_cycle
        keep = cycle.keep_alive and not close
        if not self.transport.is_closing():
            if not keep:
                lines.append(b"connection: close\r\n")
            head = _default_headers(self.server_state.default_headers)
            self.transport.write(b"".join((STATUS_LINE[status], head, *lines, b"\r\n", body)))
        cycle.response_started = cycle.response_complete = True
        if call.pending is not None:
            self.tasks.discard(call.pending)
        if not keep:
            self.transport.close()
        self.direct.record(call)  # after the write: the access line and metrics add no latency
        self.on_response_complete()

    # ------------------------------------------------------------------------------ keep-alive
    # uvicorn arms a keep-alive timer after every answer and cancels it at the next request's first bytes
    # (~1 µs a request with uvloop, most of it the timer's handle). Here one timer per idle spell: an
    # answer sets the deadline and arms the timer only if none is armed; bytes arriving clear the
    # deadline; the timer, when it fires, closes an idle connection whose deadline has passed, re-arms for
    # a later one, and stands down on a busy connection (its next answer arms it again).
    def on_response_complete(self) -> None:
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        if self.flow.read_paused:
            self.flow.resume_reading()
        if self.pipeline:
            self._idle_until = None
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
            return
        self._idle_until = self.loop.time() + self.timeout_keep_alive
        if self.timeout_keep_alive_task is None:
            self.timeout_keep_alive_task = self.loop.call_at(self._idle_until, self._keep_alive_due)

    def _keep_alive_due(self) -> None:
        self.timeout_keep_alive_task = None
        until = self._idle_until
        if until is None:  # a request came in since: its answer arms the timer again
            return
        if self.loop.time() < until:
            self.timeout_keep_alive_task = self.loop.call_at(until, self._keep_alive_due)
            return
        self.timeout_keep_alive_handler()

    # ------------------------------------------------------------------------------ answers and closing
    def close_after_answer(self) -> None:
        """Close once the client has sent what it was sending (bounded), so it reads the answer."""
        cycle = self.cycle
        if cycle is None or not cycle.more_body or self.transport.is_closing():
            self.transport.close()
        else:
            self._linger()

    def _linger(self) -> None:
        """Half-close (the client reads the answer, then EOF), discard what still arrives, then close."""
        self._lingering = True
        self.flow.resume_reading()
        try:
            self.transport.write_eof()
        except (NotImplementedError, OSError, RuntimeError):
            self.transport.close()
            return
        self._arm(LINGER_S, self.transport.close)

    def _malformed_body(self, error: Exception) -> bool:
        """Whether the bytes that failed to parse are the body (its chunk framing) of the one request being
        read, with nothing of its answer written: then that request answers 400 (its body read raises), and
        the connection closes after it (nothing more is parsed). Else the caller refuses or closes."""
        cycle, body = self.cycle, self._body
        if (
            cycle is None
            or body is None
            or self._in_headers
            or self.pipeline
            or cycle.response_started
            or not cycle.more_body
        ):
            return False
        body.malformed = f"the request body is malformed ({str(error).rstrip('.').lower()})"
        cycle.keep_alive = False
        self.flow.pause_reading()
        cycle.message_event.set()
        return True

    def _refuse(self, status: int, message: str) -> None:
        """Answer before the app saw the request (headers too big, too slow), then close."""
        self._disarm()
        log.warning("%s: %d %s", _peer(self.client), status, message)
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()  # an answer now would interleave with the running one
            return
        body = orjson.dumps({"error": message})
        head = STATUS_LINE[status] + b"content-type: application/json\r\n"
        head += b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
        self.transport.write(head + body)
        self._linger()

    def _header_timeout(self) -> None:
        self._timer = None
        if self._began:
            self._refuse(
                408, f"the request headers did not arrive within {self._limits.header_timeout_s:g} s"
            )
        elif not self.transport.is_closing():
            self.transport.close()  # nothing sent at all: nobody to answer

    def _arm(self, delay_s: float, callback: Any) -> None:
        self._disarm()
        self._timer = self.loop.call_later(delay_s, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


async def _too_many_connections(scope: Any, receive: Any, send: Any) -> None:
    body = orjson.dumps({"error": "too many open connections; retry shortly"})
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", b"1"),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "client"


def http_protocol(settings: Settings, direct: Any = None) -> type[LimitedHttpToolsProtocol]:
    """The protocol class for uvicorn's ``http=``, bound to these settings (and, with ``direct``, a
    DirectInfer that answers plain V2 infer requests without the ASGI cycle)."""
    return type(
        "BoundHttpToolsProtocol",
        (LimitedHttpToolsProtocol,),
        {"limits": HttpLimits.from_settings(settings), "direct": direct},
    )
