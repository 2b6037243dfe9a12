"""gRPC over HTTP/2 on the event loop itself: the framing by hand, HPACK by the ``hpack`` library.

Why by hand: grpc.aio costs 410-540 µs of server CPU per call here before any work is done (an empty
handler; bench/grpc_floor.py), more than a whole HTTP/1.1 request through uvicorn. Most of that is its
machinery, not HTTP/2: a C-core poller thread handing each completion to the loop through a socket, a
task, call and context object per RPC. A gRPC call is three frames each way, so this module parses and
writes them directly in an ``asyncio.Protocol`` (as uvicorn does for HTTP/1.1 with httptools), and runs
each call as one task calling the same handlers grpc.aio would. Calls multiplexed on one connection that
arrive in one read are enqueued in the same loop step, so they batch together.

What it implements (RFC 9113, gRPC's PROTOCOL-HTTP2.md):
- the connection preface, SETTINGS (and their ACK), PING ACK, GOAWAY both ways, RST_STREAM both ways,
  CONTINUATION, padding and priority fields (skipped);
- flow control both ways: credit returned once half a window is used; answers held per stream while the
  peer's window is short, and streamed answers wait for it;
- length-prefixed messages split across DATA frames or several per frame, gzip/deflate request
  compression (decompressed size bounded by the message limit), grpc-timeout, ``-bin`` metadata;
- unary-unary and stream-stream methods; errors as trailers (trailers-only when nothing was sent), with
  grpc-message percent-encoded.
Not implemented: server push (gRPC never uses it), compressed answers (we send identity, which every client
accepts), TLS (terminate it in front, as for HTTP).

``MODELSERVE_GRPC_ENGINE=grpcio`` serves the same handlers with grpc.aio instead.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
import zlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, cast

import hpack

from service.transports.grpc.calls import Abort, Context, Method
from service.transports.grpc.frames import (
    ACK,
    COMPRESSION_ERROR,
    CONNECTION_WINDOW,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    ENHANCE_YOUR_CALM,
    FLOW_CONTROL_ERROR,
    FRAME_SIZE_ERROR,
    GOAWAY,
    HEAD,
    HEADERS,
    INTERNAL,
    INTERNAL_ERROR,
    MAX_FRAME,
    MAX_STREAMS,
    MAX_WINDOW,
    NO_ERROR,
    OK,
    PADDED,
    PING,
    PREFACE,
    PRIORITY_FLAG,
    PROTOCOL_ERROR,
    PUSH_PROMISE,
    REFUSED_STREAM,
    RESOURCE_EXHAUSTED,
    RESPONSE_HEAD,
    RST_STREAM,
    SETTINGS,
    STATUS_OK,
    STREAM_WINDOW,
    U32,
    UNIMPLEMENTED,
    UNKNOWN,
    WINDOW_UPDATE,
    frame,
    literal,
    metadata_block,
    parse_timeout,
    percent_encode,
    unbase64,
)

if TYPE_CHECKING:
    from service.transports.balance import ConnectionBalancer

log = logging.getLogger(__name__)


class _ConnectionError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class _Stream:
    __slots__ = (
        "body",
        "context",
        "encoding",
        "ended",
        "failed",
        "head_sent",
        "id",
        "messages",
        "method",
        "pending",
        "request",
        "task",
        "trailers",
        "unacked",
        "window",
        "writable",
    )  # fmt: skip

    def __init__(self, stream_id: int, window: int) -> None:
        self.id = stream_id
        self.method: Method | None = None
        self.context: Context | None = None
        self.encoding: str | None = None
        self.body = bytearray()  # bytes of a message not complete yet
        self.request: bytes | None = None  # a unary call's one message
        self.messages: asyncio.Queue[bytes | None] | None = None  # a streaming call's messages
        self.task: asyncio.Task[None] | None = None
        self.window = window  # what we may still send on this stream
        self.unacked = 0  # bytes received on it not yet returned as credit
        self.ended = False  # the client's side is closed (END_STREAM)
        self.failed = False  # answered early (an error): later DATA is dropped
        self.head_sent = False
        self.pending = bytearray()  # DATA payload waiting for window
        self.trailers: bytes | None = None  # the closing header block, once the answer is complete
        self.writable: asyncio.Event | None = None  # set when pending drains (streamed answers wait on it)


class Connection(asyncio.Protocol):
    def __init__(self, server: Http2Server, handed: bool = False) -> None:
        self.server = server
        self.handed = handed  # taken from another worker (service/transports/balance.py): kept here
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.preface = False
        self.decoder = hpack.Decoder()
        self.decoder.max_header_list_size = server.max_header_bytes
        self.indexed: dict[bytes, list[tuple[str, str]]] = {}
        self.streams: dict[int, _Stream] = {}
        self.last_id = 0
        self.window = 65535  # ours to send on, connection-wide
        self.initial_window = 65535  # the peer's initial stream window
        self.max_frame = 16384  # the peer's largest frame
        self.unacked = 0
        self.continuation: tuple[int, int, bytearray] | None = None
        self.going_away = False
        self.closed = False
        self.out: list[bytes] = []
        self.flush_soon = False
        self.after_flush: list[Callable[[], None]] = []  # run after the next write (Context.after_answer)
        self.silent: asyncio.TimerHandle | None = None

    # ---------------------------------------------------------------------------------- connection
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        balancer = self.server.balancer
        if (
            balancer is not None
            and not self.handed
            and balancer.hand_over(transport.get_extra_info("socket"))
        ):
            self.closed = True  # another worker serves it from its first byte; this copy goes unread
            transport.abort()
            return
        if len(self.server.connections) >= self.server.max_connections:
            # Past the cap (MODELSERVE_MAX_CONNECTIONS, as for HTTP): say why, then close; clients back off.
            log.warning(
                "%d gRPC connections open (limit %d): refusing one",
                len(self.server.connections),
                self.server.max_connections,
            )
            payload = struct.pack(">II", 0, ENHANCE_YOUR_CALM) + b"too many open connections; retry shortly"
            transport.write(frame(SETTINGS, 0, 0) + frame(GOAWAY, 0, 0, payload))
            transport.close()
            self.closed = True
            return
        self.server.connections.add(self)
        if balancer is not None:
            balancer.publish(len(self.server.connections))
        settings = struct.pack(">HIHIHI", 3, MAX_STREAMS, 4, STREAM_WINDOW, 6, self.server.max_header_bytes)
        grow = U32.pack(CONNECTION_WINDOW - 65535)
        transport.write(frame(SETTINGS, 0, 0, settings) + frame(WINDOW_UPDATE, 0, 0, grow))
        # A connection that never says it speaks HTTP/2 is closed (as HTTP closes one that sends no headers).
        self.silent = asyncio.get_running_loop().call_later(self.server.preface_timeout_s, self._close)
        if self.server.stopping:  # handed over as this worker began to drain: the client goes elsewhere
            self.shutdown()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.silent is not None:
            self.silent.cancel()
        self.server.connections.discard(self)
        if self.server.balancer is not None:
            self.server.balancer.publish(len(self.server.connections))
        for stream in self.streams.values():
            if stream.task is not None:
                stream.task.cancel()
            if stream.writable is not None:
                stream.writable.set()
        self.streams.clear()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        buf = self.buf
        buf += data
        pos = 0
        if not self.preface:
            if len(buf) < len(PREFACE):
                if not PREFACE.startswith(bytes(buf)):
                    self._close()
                return
            if buf[: len(PREFACE)] != PREFACE:
                self._close()
                return
            self.preface = True
            if self.silent is not None:
                self.silent.cancel()
                self.silent = None
            pos = len(PREFACE)
        try:
            end = len(buf)
            while end - pos >= 9:
                length_type, flags, stream_id = HEAD.unpack_from(buf, pos)
                length = length_type >> 8
                if length > MAX_FRAME:
                    raise _ConnectionError(FRAME_SIZE_ERROR, "frame larger than SETTINGS_MAX_FRAME_SIZE")
                if end - pos - 9 < length:
                    break
                payload = bytes(buf[pos + 9 : pos + 9 + length])
                pos += 9 + length
                self._frame(length_type & 0xFF, flags, stream_id & 0x7FFFFFFF, payload)
        except _ConnectionError as e:
            self._go_away(e.code, str(e))
            return
        except Exception:  # our bug, not the peer's: end this connection cleanly, not the process's others
            log.exception("gRPC connection: unexpected error reading frames")
            self._go_away(INTERNAL_ERROR, "internal error")
            return
        del buf[:pos]
        self._flush()

    def _flush(self) -> None:
        self.flush_soon = False
        if self.out and not self.closed and self.transport is not None:
            self.transport.write(b"".join(self.out))
        self.out.clear()
        if self.after_flush:
            callbacks, self.after_flush = self.after_flush, []
            for callback in callbacks:
                try:
                    callback()
                except Exception:
                    log.exception("after a gRPC answer")

    def _flush_later(self) -> None:
        """Answers finished in one loop step (a batch's) leave in one write: one syscall, not one each."""
        if not self.flush_soon:
            self.flush_soon = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()

    def _go_away(self, code: int, message: str) -> None:
        """A connection error: GOAWAY with the code, then close (calls in flight are cancelled)."""
        log.info("gRPC connection error %d: %s", code, message)
        self.out.append(frame(GOAWAY, 0, 0, struct.pack(">II", self.last_id, code) + message.encode()[:256]))
        self._flush()
        self._close()

    def shutdown(self) -> None:
        """Graceful stop: no new calls (GOAWAY naming the last one taken); close once the rest end."""
        if self.closed or self.going_away:
            return
        self.going_away = True
        self.out.append(frame(GOAWAY, 0, 0, struct.pack(">II", self.last_id, NO_ERROR)))
        self._flush()
        if not self.streams:
            self._close()

    # ---------------------------------------------------------------------------------- frames in
    def _frame(self, ftype: int, flags: int, stream_id: int, payload: bytes) -> None:
        if self.continuation is not None and ftype != CONTINUATION:
            raise _ConnectionError(PROTOCOL_ERROR, "expected CONTINUATION")
        if ftype == DATA:
            self._data(flags, stream_id, payload)
        elif ftype == HEADERS:
            if stream_id == 0:
                raise _ConnectionError(PROTOCOL_ERROR, "HEADERS on stream 0")
            start, end = 0, len(payload)
            if flags & PADDED:
                if not payload:
                    raise _ConnectionError(PROTOCOL_ERROR, "PADDED without a pad length")
                start, end = 1, end - payload[0]
            if flags & PRIORITY_FLAG:
                start += 5
            if end < start:
                raise _ConnectionError(PROTOCOL_ERROR, "padding longer than the frame")
            if flags & END_HEADERS:
                self._headers(stream_id, flags, payload[start:end])
            else:
                self.continuation = (stream_id, flags, bytearray(payload[start:end]))
        elif ftype == CONTINUATION:
            if self.continuation is None or self.continuation[0] != stream_id:
                raise _ConnectionError(PROTOCOL_ERROR, "CONTINUATION without HEADERS")
            block = self.continuation[2]
            block += payload
            if len(block) > self.server.max_header_bytes:
                raise _ConnectionError(PROTOCOL_ERROR, "header block too large")
            if flags & END_HEADERS:
                first_flags = self.continuation[1]
                self.continuation = None
                self._headers(stream_id, first_flags, bytes(block))
        elif ftype == SETTINGS:
            if not flags & ACK:
                self._settings(payload)
        elif ftype == WINDOW_UPDATE:
            self._window_update(stream_id, payload)
        elif ftype == PING:
            if len(payload) != 8:
                raise _ConnectionError(FRAME_SIZE_ERROR, "PING payload is not 8 bytes")
            if not flags & ACK:
                self.out.append(frame(PING, ACK, 0, payload))
        elif ftype == RST_STREAM:
            stream = self.streams.pop(stream_id, None)
            if stream is not None:
                if stream.task is not None:
                    stream.task.cancel()
                if stream.writable is not None:
                    stream.writable.set()
                self._maybe_close()
        elif ftype == GOAWAY:
            self.going_away = True
            self._maybe_close()
        elif ftype == PUSH_PROMISE:
            raise _ConnectionError(PROTOCOL_ERROR, "clients do not push")
        # PRIORITY and unknown types: ignored, as the protocol says

    def _settings(self, payload: bytes) -> None:
        if len(payload) % 6:
            raise _ConnectionError(FRAME_SIZE_ERROR, "SETTINGS length is not a multiple of 6")
        for i in range(0, len(payload), 6):
            key, value = struct.unpack_from(">HI", payload, i)
            if key == 4:  # INITIAL_WINDOW_SIZE: applies to every open stream, as a change
                if value > MAX_WINDOW:
                    raise _ConnectionError(FLOW_CONTROL_ERROR, "initial window too large")
                delta, self.initial_window = value - self.initial_window, value
                for stream in self.streams.values():
                    stream.window += delta
            elif key == 5:  # MAX_FRAME_SIZE
                if not 16384 <= value <= (1 << 24) - 1:
                    raise _ConnectionError(PROTOCOL_ERROR, "invalid SETTINGS_MAX_FRAME_SIZE")
                self.max_frame = value
        self.out.append(frame(SETTINGS, ACK, 0))
        self._send_pending()

    def _window_update(self, stream_id: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise _ConnectionError(FRAME_SIZE_ERROR, "WINDOW_UPDATE payload is not 4 bytes")
        increment = U32.unpack(payload)[0] & 0x7FFFFFFF
        if not increment:
            if stream_id == 0:
                raise _ConnectionError(PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            self.out.append(frame(RST_STREAM, 0, stream_id, U32.pack(PROTOCOL_ERROR)))
            stream = self.streams.pop(stream_id, None)
            if stream is not None and stream.task is not None:
                stream.task.cancel()
            return
        if stream_id == 0:
            self.window += increment
            if self.window > MAX_WINDOW:
                raise _ConnectionError(FLOW_CONTROL_ERROR, "connection window over 2^31-1")
        else:
            stream = self.streams.get(stream_id)
            if stream is None:
                return
            stream.window += increment
        self._send_pending()

    def _decode(self, block: bytes) -> list[tuple[str, str]]:
        """HPACK-decode a header block. A block of one-byte indexed fields only (what clients send once
        their headers are in the table) changes no table state, so its decoding is kept and reused until
        a block that may change the table arrives."""
        known = self.indexed.get(block)
        if known is not None:
            return known
        try:  # raw: a value that is not UTF-8 is the call's problem (metadata is ASCII), not the connection's
            decoded = self.decoder.decode(block, raw=True)
            headers = [(bytes(k).decode("latin-1"), bytes(v).decode("latin-1")) for k, v in decoded]
        except hpack.HPACKError as e:
            raise _ConnectionError(COMPRESSION_ERROR, f"header block: {e}") from None
        if all(b & 0x80 for b in block) and 0xFF not in block:
            if len(self.indexed) < 64:
                self.indexed[block] = headers
        else:
            self.indexed.clear()
        return headers

    def _headers(self, stream_id: int, flags: int, block: bytes) -> None:
        headers = self._decode(block)  # always: the decoder's table must see every block
        stream = self.streams.get(stream_id)
        if stream is not None:  # the client's trailers
            if flags & END_STREAM:
                self._end(stream)
            return
        if stream_id % 2 == 0 or stream_id <= self.last_id:
            if stream_id % 2 == 0:
                raise _ConnectionError(PROTOCOL_ERROR, "even stream id from a client")
            return  # a stream we closed already (an early answer): ignore its trailers
        self.last_id = stream_id
        if self.going_away or len(self.streams) >= MAX_STREAMS:
            self.out.append(frame(RST_STREAM, 0, stream_id, U32.pack(REFUSED_STREAM)))
            return
        path = method = content_type = timeout = encoding = None
        metadata: list[tuple[str, Any]] = []
        for name, value in headers:
            if name[:1] == ":":
                if name == ":path":
                    path = value
                elif name == ":method":
                    method = value
            elif name == "content-type":
                content_type = value
            elif name == "grpc-timeout":
                timeout = value
            elif name == "grpc-encoding":
                encoding = value
            elif name not in ("te", "grpc-accept-encoding"):
                if name.endswith("-bin"):
                    metadata.append((name, unbase64(value)))
                else:
                    metadata.append((name, value))
        stream = _Stream(stream_id, self.initial_window)
        self.streams[stream_id] = stream
        if flags & END_STREAM:
            stream.ended = True
        entry = self.server.methods.get(path or "")
        if method != "POST" or not (content_type or "").startswith("application/grpc"):
            self._refuse(stream, INTERNAL, "not a gRPC request (POST with content-type application/grpc)")
            return
        if entry is None:
            self._refuse(stream, UNIMPLEMENTED, f"Method not found: {path}")
            return
        if encoding not in (None, "identity", "gzip", "deflate"):
            self._refuse(stream, UNIMPLEMENTED, f"Compression algorithm {encoding!r} is not supported")
            return
        seconds = parse_timeout(timeout) if timeout else None
        if timeout and seconds is None:
            self._refuse(stream, INTERNAL, f"Error parsing 'grpc-timeout' ({timeout!r})")
            return
        stream.method = entry
        stream.context = Context(metadata, None if seconds is None else time.monotonic() + seconds)
        stream.encoding = encoding
        if entry.streaming:
            stream.messages = asyncio.Queue()
            stream.task = asyncio.get_running_loop().create_task(self._run_streaming(stream))
        if stream.ended:
            self._end(stream)

    def _data(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id == 0:
            raise _ConnectionError(PROTOCOL_ERROR, "DATA on stream 0")
        size = len(payload)  # padding counts against the window too
        self.unacked += size
        if self.unacked >= CONNECTION_WINDOW // 2:
            self.out.append(frame(WINDOW_UPDATE, 0, 0, U32.pack(self.unacked)))
            self.unacked = 0
        stream = self.streams.get(stream_id)
        if stream is None or stream.ended:
            return  # a stream already answered and closed, or reset
        data = payload
        if flags & PADDED:
            if not size or payload[0] >= size:
                raise _ConnectionError(PROTOCOL_ERROR, "padding longer than the frame")
            data = payload[1 : size - payload[0]]
        if not stream.failed:
            if not (flags & END_STREAM):
                stream.unacked += size
                if stream.unacked >= STREAM_WINDOW // 2:
                    self.out.append(frame(WINDOW_UPDATE, 0, stream_id, U32.pack(stream.unacked)))
                    stream.unacked = 0
            self._messages(stream, data)
        if flags & END_STREAM:
            self._end(stream)

    def _messages(self, stream: _Stream, data: bytes) -> None:
        """Split length-prefixed messages out of the stream's bytes."""
        body = stream.body
        if not body and len(data) >= 5 and U32.unpack_from(data, 1)[0] == len(data) - 5:
            self._message(stream, data[0], data[5:])  # the usual case: one whole message in one frame
            return
        body += data
        limit = self.server.max_message
        while len(body) >= 5 and not stream.failed:
            length = U32.unpack_from(body, 1)[0]
            if length > limit:
                self._refuse(
                    stream, RESOURCE_EXHAUSTED, f"Received message larger than max ({length} vs. {limit})"
                )
                return
            if len(body) < 5 + length:
                return
            compressed, message = body[0], bytes(body[5 : 5 + length])
            del body[: 5 + length]
            self._message(stream, compressed, message)

    def _message(self, stream: _Stream, compressed: int, message: bytes) -> None:
        if compressed:
            message = self._inflate(stream, message)
            if stream.failed:
                return
        if len(message) > self.server.max_message:
            self._refuse(
                stream,
                RESOURCE_EXHAUSTED,
                f"Received message larger than max ({len(message)} vs. {self.server.max_message})",
            )
        elif stream.messages is not None:
            stream.messages.put_nowait(message)
        elif stream.request is not None:
            self._refuse(stream, UNIMPLEMENTED, "a unary call sent more than one request message")
        else:
            stream.request = message

    def _inflate(self, stream: _Stream, message: bytes) -> bytes:
        if stream.encoding not in ("gzip", "deflate"):
            self._refuse(stream, INTERNAL, "a compressed message without grpc-encoding")
            return b""
        limit = self.server.max_message
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS if stream.encoding == "gzip" else zlib.MAX_WBITS)
        try:
            out = inflater.decompress(message, limit + 1)
        except zlib.error as e:
            self._refuse(stream, INTERNAL, f"cannot decompress the message ({stream.encoding}): {e}")
            return b""
        if len(out) > limit or inflater.unconsumed_tail:
            self._refuse(
                stream,
                RESOURCE_EXHAUSTED,
                f"Received message larger than max (more than {limit} decompressed)",
            )
            return b""
        if not inflater.eof or inflater.unused_data:  # cut short (no checksum seen) or bytes after its end
            self._refuse(stream, INTERNAL, f"Decompression failed: not one whole {stream.encoding} stream")
            return b""
        return out

    def _end(self, stream: _Stream) -> None:
        """The client's side is done: a unary call starts; a streaming call's iterator ends."""
        stream.ended = True
        if stream.failed:
            return
        if stream.messages is not None:
            stream.messages.put_nowait(None)
        elif stream.task is None and stream.method is not None:
            if stream.body or stream.request is None:
                self._refuse(stream, INTERNAL, "the call ended without a whole request message")
                return
            stream.task = asyncio.get_running_loop().create_task(self._run_unary(stream))

    # ---------------------------------------------------------------------------------- calls
    async def _run_unary(self, stream: _Stream) -> None:
        method, context = stream.method, stream.context
        assert method is not None and context is not None and stream.request is not None
        try:
            await self._unary_call(stream, method, context)
        finally:
            if context.after:  # after this loop step's write (answers or not)
                self.after_flush += context.after
                context.after = []
                self._flush_later()

    async def _unary_call(self, stream: _Stream, method: Method, context: Context) -> None:
        assert stream.request is not None
        try:
            try:
                request = method.deserialize(stream.request)
            except Exception:
                raise Abort(INTERNAL, "Exception deserializing request!") from None
            answer = method.serialize(await method.handler(request, context))
        except Abort as a:
            self._answer(stream, None, a.code, a.details, a.metadata)
            return
        except asyncio.CancelledError:
            return  # the client reset the call or left
        except Exception:
            log.exception("unhandled error in gRPC call")
            self._answer(stream, None, UNKNOWN, "Unexpected error in the handler", ())
            return
        self._answer(stream, answer, OK, None, context.trailing)

    async def _run_streaming(self, stream: _Stream) -> None:
        method, context, queue = stream.method, stream.context, stream.messages
        assert method is not None and context is not None and queue is not None

        async def requests() -> AsyncIterator[Any]:
            while (message := await queue.get()) is not None:
                try:
                    request = method.deserialize(message)
                except Exception:
                    raise Abort(INTERNAL, "Exception deserializing request!") from None
                yield request

        try:
            async for answer in method.handler(requests(), context):
                if self.closed or self.streams.get(stream.id) is not stream:
                    return
                self._send_head(stream)
                self._send_message(stream, method.serialize(answer))
                self._flush_later()
                while stream.pending and not self.closed and stream.writable is not None:
                    stream.writable.clear()
                    await stream.writable.wait()
        except Abort as a:
            self._answer(stream, None, a.code, a.details, a.metadata)
            return
        except asyncio.CancelledError:
            return
        except Exception:
            log.exception("unhandled error in gRPC stream")
            self._answer(stream, None, UNKNOWN, "Unexpected error in the handler", ())
            return
        self._answer(stream, None, OK, None, context.trailing)

    # ---------------------------------------------------------------------------------- frames out
    def _refuse(self, stream: _Stream, code: int, details: str) -> None:
        """Answer a call early (before or without its handler): trailers now, later DATA dropped."""
        stream.failed = True
        if stream.messages is not None:
            stream.messages.put_nowait(None)
        if stream.task is not None:
            stream.task.cancel()
        self._answer(stream, None, code, details, ())

    def _answer(
        self, stream: _Stream, message: bytes | None, code: int, details: str | None, metadata: Any
    ) -> None:
        """The rest of a call's answer: its message (unary), then the trailers; one write when windows allow."""
        if self.closed or self.streams.get(stream.id) is not stream:
            return
        trailers = STATUS_OK if code == OK else literal(b"grpc-status", b"%d" % code)
        if details:
            trailers += literal(b"grpc-message", percent_encode(details[:4096]))
        if metadata:
            trailers += metadata_block(metadata)
        if not stream.head_sent and message is None:  # trailers-only
            stream.head_sent = True
            stream.trailers = b""
            self.out.append(frame(HEADERS, END_HEADERS | END_STREAM, stream.id, RESPONSE_HEAD + trailers))
            self._done(stream)
        else:
            self._send_head(stream)
            if message is not None:
                self._send_message(stream, message)
            stream.trailers = trailers
            self._send_stream(stream)
        if self.streams:
            self._flush_later()  # other calls here may finish in this loop step: one write for all
        else:
            self._flush()  # the connection's only call (a client one call at a time): no one to wait for

    def _send_head(self, stream: _Stream) -> None:
        if not stream.head_sent:
            stream.head_sent = True
            self.out.append(frame(HEADERS, END_HEADERS, stream.id, RESPONSE_HEAD))

    def _send_message(self, stream: _Stream, message: bytes) -> None:
        stream.pending += b"\x00" + U32.pack(len(message)) + message
        if stream.writable is None:
            stream.writable = asyncio.Event()
        self._send_stream(stream)

    def _send_stream(self, stream: _Stream) -> None:
        """Send what the windows allow of a stream's pending DATA, then its trailers once nothing is left."""
        pending = stream.pending
        while pending:
            n = min(len(pending), stream.window, self.window, self.max_frame)
            if n <= 0:
                return
            self.out.append(frame(DATA, 0, stream.id, bytes(pending[:n])))
            del pending[:n]
            stream.window -= n
            self.window -= n
        if stream.writable is not None:
            stream.writable.set()
        if stream.trailers is not None:
            self.out.append(frame(HEADERS, END_HEADERS | END_STREAM, stream.id, stream.trailers))
            self._done(stream)

    def _send_pending(self) -> None:
        for stream in list(self.streams.values()):
            if stream.pending or stream.trailers is not None:
                self._send_stream(stream)

    def _done(self, stream: _Stream) -> None:
        """Our side is closed: if the client's is not, tell it to stop sending (RST_STREAM NO_ERROR)."""
        if not stream.ended:
            self.out.append(frame(RST_STREAM, 0, stream.id, U32.pack(NO_ERROR)))
        self.streams.pop(stream.id, None)
        if stream.messages is not None:
            stream.messages.put_nowait(None)
        self._maybe_close()

    def _maybe_close(self) -> None:
        if self.going_away and not self.streams:
            self._flush()
            self._close()


class Http2Server:
    """A listening socket whose connections speak gRPC to ``methods`` ({"/package.Service/Method": Method})."""

    def __init__(
        self,
        methods: dict[str, Method],
        max_message: int,
        max_header_bytes: int = 65536,
        preface_timeout_s: float = 10.0,
        max_connections: int = 1000,
        balancer: ConnectionBalancer | None = None,
    ) -> None:
        self.methods = methods
        self.balancer = balancer
        self.max_message = max_message
        self.max_header_bytes = max_header_bytes
        self.preface_timeout_s = preface_timeout_s
        self.max_connections = max_connections
        self.connections: set[Connection] = set()
        self.server: asyncio.Server | None = None
        self._adopting: set[asyncio.Task[Any]] = set()
        self.stopping = False

    async def start(self, host: str, port: int, reuse_port: bool) -> int:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: Connection(self),
            host=host.strip("[]"),
            port=port,
            reuse_port=reuse_port or None,
            backlog=2048,
        )
        if self.balancer is not None:
            self.balancer.start(self._adopt)
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self, grace_s: float) -> None:
        """Stop taking connections, GOAWAY to each, let calls in flight finish for up to ``grace_s``."""
        if self.server is None:
            return
        self.server.close()
        self.stopping = True
        if self.balancer is not None:
            self.balancer.stop()
        for connection in list(self.connections):
            connection.shutdown()
        deadline = time.monotonic() + grace_s
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for connection in list(self.connections):
            connection.connection_lost(None)
            connection._close()
        if self.balancer is not None:
            self.balancer.close()

    def _adopt(self, sock: socket.socket) -> None:
        """Serve a connection another worker accepted and handed over (service/transports/balance.py)."""
        loop = asyncio.get_running_loop()
        task = loop.create_task(loop.connect_accepted_socket(lambda: Connection(self, handed=True), sock))
        self._adopting.add(task)
        task.add_done_callback(lambda done: self._adopted(done, sock))

    def _adopted(self, task: asyncio.Task[Any], sock: socket.socket) -> None:
        self._adopting.discard(task)
        error = None if task.cancelled() else task.exception()
        if error is not None or task.cancelled():
            log.warning("a connection handed over by another worker was lost: %s", error or "cancelled")
            sock.close()
