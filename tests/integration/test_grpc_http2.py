"""The native gRPC server (service/transports/grpc/http2.py) on the wire: HTTP/2 frames written and read by
hand over a plain socket against a real server, for what a stock client never does on purpose (tiny flow
control windows, split frames and header blocks, oversized frames, bad prefaces, resets, compression
bombs); and the grpc.aio fallback (MODELSERVE_GRPC_ENGINE=grpcio) with Triton's client, so it stays tested.

Every read has a timeout and every loop a deadline: a server that stalls fails the test, never hangs it."""

from __future__ import annotations

import contextlib
import gzip
import queue
import socket
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hpack
import httpx
import numpy as np
import pytest
import tritonclient.grpc as tg
from tritonclient.utils import InferenceServerException

from service.protocol.oip import grpc_service_pb2 as pb
from service.transports.grpc.frames import (
    ACK,
    CANCEL,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    FRAME_SIZE_ERROR,
    GOAWAY,
    HEADERS,
    PADDED,
    PING,
    PREFACE,
    PRIORITY_FLAG,
    RST_STREAM,
    SETTINGS,
    WINDOW_UPDATE,
    frame,
)
from tests.conftest import Server, run_server
from tests.graphs import copy_shipped
from tests.integration.test_v2 import pixels

SERVICE = "/inference.GRPCInferenceService/"
INITIAL_WINDOW_SIZE = 4  # the SETTINGS id
TIMEOUT = 10.0  # seconds: any one wait for the server
U32 = struct.Struct(">I")
Extra = tuple[tuple[str | bytes, str | bytes], ...]  # more request headers (bytes: sent as they are)


# ---------------------------------------------------------------------------------------------- client
@dataclass
class Frame:
    type: int
    flags: int
    stream: int
    payload: bytes


@dataclass
class Call:
    """What the server sent on one stream: its header blocks (decoded, in order) and DATA bytes."""

    blocks: list[list[tuple[str, str]]] = field(default_factory=list)
    data: bytearray = field(default_factory=bytearray)
    data_frames: int = 0
    ended: bool = False  # END_STREAM seen
    reset: int | None = None  # RST_STREAM's error code

    @property
    def trailers(self) -> dict[str, str]:
        assert self.ended and self.blocks, "the call has not ended with trailers"
        return dict(self.blocks[-1])

    @property
    def status(self) -> int:
        return int(self.trailers["grpc-status"])

    def messages(self) -> list[bytes]:
        """The length-prefixed messages of the DATA bytes (uncompressed: we never ask for compression)."""
        out, data = list[bytes](), bytes(self.data)
        while data:
            assert len(data) >= 5 and data[0] == 0, data[:5]
            length = U32.unpack_from(data, 1)[0]
            assert len(data) >= 5 + length, "a truncated message"
            out.append(data[5 : 5 + length])
            data = data[5 + length :]
        return out

    def message(self) -> bytes:
        messages = self.messages()
        assert len(messages) == 1, len(messages)
        return messages[0]


def grpc_message(message: bytes, compressed: bool = False) -> bytes:
    return bytes((1 if compressed else 0,)) + U32.pack(len(message)) + message


class H2:
    """One HTTP/2 connection to the gRPC port, as a client: ACKs the server's SETTINGS, decodes every header
    block in order with one HPACK decoder, and keeps what came back per stream."""

    def __init__(
        self, port: int, settings: dict[int, int] | None = None, connection_window: int = 1 << 24
    ) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.buf = bytearray()
        self.block: tuple[int, int, bytearray] | None = None  # a header block waiting for CONTINUATION
        self.calls: dict[int, Call] = {}
        self.frames: list[Frame] = []  # every frame read, in order
        payload = b"".join(struct.pack(">HI", k, v) for k, v in (settings or {}).items())
        hello = PREFACE + frame(SETTINGS, 0, 0, payload)
        if connection_window > 65535:
            hello += frame(WINDOW_UPDATE, 0, 0, U32.pack(connection_window - 65535))
        self.sock.sendall(hello)

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    # ------------------------------------------------------------------------------------------ writing
    def block_for(self, method: str, extra: Extra = ()) -> bytes:
        """An encoded request header block: encode blocks in the order they are sent (the encoder's table)."""
        return self.encoder.encode(
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", SERVICE + method),
                (":authority", "127.0.0.1"),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
                *extra,
            ]
        )

    def request(
        self,
        stream_id: int,
        method: str,
        message: bytes,
        extra: Extra = (),
        compressed: bool = False,
    ) -> bytes:
        """HEADERS, then the message in one DATA frame with END_STREAM."""
        head = frame(HEADERS, END_HEADERS, stream_id, self.block_for(method, extra))
        return head + frame(DATA, END_STREAM, stream_id, grpc_message(message, compressed))

    def call(self, stream_id: int, method: str, message: bytes, **kwargs: Any) -> Call:
        self.send(self.request(stream_id, method, message, **kwargs))
        return self.wait(stream_id)[stream_id]

    # ------------------------------------------------------------------------------------------ reading
    def read(self, timeout: float = TIMEOUT) -> Frame | None:
        """The next frame, None once the server closed the connection; TimeoutError when none comes."""
        deadline = time.monotonic() + timeout
        while len(self.buf) < 9 or len(self.buf) < 9 + int.from_bytes(self.buf[:3], "big"):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no frame in {timeout} s")
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(65536)
            if not chunk:
                assert not self.buf, f"the connection closed inside a frame: {bytes(self.buf)!r}"
                return None
            self.buf += chunk
        length = int.from_bytes(self.buf[:3], "big")
        f = Frame(
            self.buf[3],
            self.buf[4],
            U32.unpack_from(self.buf, 5)[0] & 0x7FFFFFFF,
            bytes(self.buf[9 : 9 + length]),
        )
        del self.buf[: 9 + length]
        self.frames.append(f)
        self._take(f)
        return f

    def _take(self, f: Frame) -> None:
        if self.block is not None:
            assert f.type == CONTINUATION and f.stream == self.block[0], "a header block was interrupted"
        if f.type == SETTINGS and not f.flags & ACK:
            self.send(frame(SETTINGS, ACK, 0))
        elif f.type == DATA:
            call = self.calls.setdefault(f.stream, Call())
            assert not call.ended, f"DATA after END_STREAM on stream {f.stream}"
            data = f.payload[1 : len(f.payload) - f.payload[0]] if f.flags & PADDED else f.payload
            call.data += data
            call.data_frames += 1
            call.ended = bool(f.flags & END_STREAM)
        elif f.type == HEADERS:
            start, end = 0, len(f.payload)
            if f.flags & PADDED:
                start, end = 1, end - f.payload[0]
            if f.flags & PRIORITY_FLAG:
                start += 5
            self.block = (f.stream, f.flags, bytearray(f.payload[start:end]))
            if f.flags & END_HEADERS:
                self._end_block()
        elif f.type == CONTINUATION:
            assert self.block is not None, "CONTINUATION without HEADERS"
            self.block[2].extend(f.payload)
            if f.flags & END_HEADERS:
                self._end_block()
        elif f.type == RST_STREAM:
            self.calls.setdefault(f.stream, Call()).reset = U32.unpack(f.payload)[0]

    def _end_block(self) -> None:
        assert self.block is not None
        stream_id, flags, block = self.block
        self.block = None
        call = self.calls.setdefault(stream_id, Call())
        assert not call.ended, f"HEADERS after END_STREAM on stream {stream_id}"
        call.blocks.append([(str(k), str(v)) for k, v in self.decoder.decode(bytes(block))])
        call.ended = bool(flags & END_STREAM)

    def wait(self, *stream_ids: int, timeout: float = TIMEOUT) -> dict[int, Call]:
        """Read until every stream named has ended (END_STREAM) or was reset."""
        deadline = time.monotonic() + timeout

        def done(s: int) -> bool:
            call = self.calls.get(s)
            return call is not None and (call.ended or call.reset is not None)

        while not all(done(s) for s in stream_ids):
            remaining = deadline - time.monotonic()
            assert remaining > 0, (
                f"streams {[s for s in stream_ids if not done(s)]} not answered in {timeout} s"
            )
            assert self.read(remaining) is not None, "the server closed the connection"
        return {s: self.calls[s] for s in stream_ids}

    def wait_for(self, ftype: int, timeout: float = TIMEOUT) -> Frame:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no frame of type {ftype} in {timeout} s"
            f = self.read(remaining)
            assert f is not None, f"the server closed the connection before a frame of type {ftype}"
            if f.type == ftype:
                return f

    def quiet(self, seconds: float) -> list[Frame]:
        """Whatever frames arrive within ``seconds`` (the connection staying open)."""
        deadline, got = time.monotonic() + seconds, list[Frame]()
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                f = self.read(remaining)
            except TimeoutError:
                break
            assert f is not None, "the server closed the connection"
            got.append(f)
        return got

    def closed_by_server(self, timeout: float = TIMEOUT) -> list[Frame]:
        """Read until the server closes the connection (recv returns b""); the frames before it."""
        deadline, got = time.monotonic() + timeout, list[Frame]()
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"the server did not close the connection in {timeout} s"
            try:
                f = self.read(remaining)
            except ConnectionResetError:  # closed with bytes of ours unread: the kernel resets
                return got
            if f is None:
                return got
            got.append(f)


@contextmanager
def connect(server: Server, **kwargs: Any) -> Iterator[H2]:
    h2 = H2(server.grpc_port, **kwargs)
    try:
        yield h2
    finally:
        h2.close()


# ---------------------------------------------------------------------------------------------- messages
def infer_request(png: bytes, request_id: str = "") -> bytes:
    x = pixels(png)
    request = pb.ModelInferRequest(model_name="digits", id=request_id)
    request.inputs.add(name="pixels", datatype="UINT8", shape=list(x.shape))
    request.raw_input_contents.append(x.tobytes())
    request.outputs.add(name="probabilities")
    return request.SerializeToString()


def predicted(call: Call) -> int:
    assert call.status == 0, call.trailers
    response = pb.ModelInferResponse.FromString(call.message())
    assert [o.name for o in response.outputs] == ["probabilities"]
    return int(np.frombuffer(response.raw_output_contents[0], "<f4").argmax())


def metadata_request() -> bytes:
    return pb.ModelMetadataRequest(name="digits").SerializeToString()


def digits_stats(server: Server) -> dict[str, Any]:
    stats: dict[str, Any] = httpx.get(f"{server.url}/v2/models/digits/stats", timeout=30).json()
    return stats["model_stats"][0]


# ---------------------------------------------------------------------------------------------- tests
def test_answers_respect_the_client_flow_control_window(server: Server) -> None:
    """A stream window of 16 bytes: the answer stops at 16 DATA bytes until the client returns credit,
    goes on by exactly the credit given, and ends with the trailers once the whole message is out."""
    with connect(server, settings={INITIAL_WINDOW_SIZE: 16}, connection_window=65535) as h2:
        h2.send(h2.request(1, "ModelMetadata", metadata_request()))
        deadline = time.monotonic() + TIMEOUT
        while len(h2.calls.get(1, Call()).data) < 16:
            assert time.monotonic() < deadline, "the first 16 bytes of the answer never came"
            assert h2.read(deadline - time.monotonic()) is not None
        h2.quiet(0.5)
        call = h2.calls[1]
        assert len(call.data) == 16 and not call.ended, (len(call.data), call.ended)
        assert call.blocks and dict(call.blocks[0])[":status"] == "200"

        h2.send(frame(WINDOW_UPDATE, 0, 1, U32.pack(10)))
        deadline = time.monotonic() + TIMEOUT
        while len(call.data) < 26:
            assert time.monotonic() < deadline, "the credit of 10 bytes was not used"
            assert h2.read(deadline - time.monotonic()) is not None
        h2.quiet(0.5)
        assert len(call.data) == 26 and not call.ended, (len(call.data), call.ended)

        h2.send(frame(WINDOW_UPDATE, 0, 1, U32.pack(1 << 20)))
        h2.wait(1)
        assert call.status == 0, call.trailers
        answer = pb.ModelMetadataResponse.FromString(call.message())
        assert answer.name == "digits" and answer.inputs[0].name == "pixels"
        assert len(call.data) > 26  # the window really held part of the answer back


def test_ping_is_acknowledged_with_its_payload(server: Server) -> None:
    with connect(server) as h2:
        h2.send(frame(PING, 0, 0, b"\x01modelsv"))
        f = h2.wait_for(PING)
        assert f.flags & ACK and f.stream == 0 and f.payload == b"\x01modelsv"
        # An ACK from us is not answered; the connection goes on.
        h2.send(frame(PING, ACK, 0, b"12345678") + frame(PING, 0, 0, b"87654321"))
        f = h2.wait_for(PING)
        assert f.flags & ACK and f.payload == b"87654321"


@pytest.mark.parametrize("hello", [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"PRI * HTTP/1.1\r\n", b"\x00" * 24])
def test_a_wrong_preface_closes_the_connection(server: Server, hello: bytes) -> None:
    with socket.create_connection(("127.0.0.1", server.grpc_port), timeout=TIMEOUT) as sock:
        sock.sendall(hello)
        deadline = time.monotonic() + TIMEOUT
        while True:  # the server's SETTINGS may come first (it speaks as the connection opens)
            remaining = deadline - time.monotonic()
            assert remaining > 0, "the connection stayed open"
            sock.settimeout(remaining)
            if not sock.recv(65536):
                break


def test_an_unknown_method_is_answered_trailers_only(server: Server) -> None:
    with connect(server) as h2:
        call = h2.call(1, "NoSuchMethod", b"")
        assert len(call.blocks) == 1 and call.data_frames == 0, call
        head = dict(call.blocks[0])
        assert head[":status"] == "200" and head["content-type"] == "application/grpc"
        assert head["grpc-status"] == "12" and "NoSuchMethod" in head["grpc-message"]
        # The connection goes on: the next call is answered.
        live = h2.call(3, "ServerLive", b"")
        assert live.status == 0 and pb.ServerLiveResponse.FromString(live.message()).live


def test_split_messages_and_header_blocks(server: Server, digit_png: Callable[[int], bytes]) -> None:
    """A request message over four DATA frames (the 5-byte prefix itself split, one frame padded, the last
    one empty with END_STREAM), its header block over HEADERS (padded, with a priority) and two
    CONTINUATIONs; and two messages of a streaming call in one DATA frame."""
    with connect(server) as h2:
        block = h2.block_for("ModelInfer", (("x-request-id", "split-1"),))
        padded_head = bytes((3,)) + b"\x00\x00\x00\x00\x10" + block[:4] + b"\x00" * 3
        body = grpc_message(infer_request(digit_png(3), "split"))
        h2.send(
            frame(HEADERS, PADDED | PRIORITY_FLAG, 1, padded_head)
            + frame(CONTINUATION, 0, 1, block[4:9])
            + frame(CONTINUATION, END_HEADERS, 1, block[9:])
            + frame(DATA, 0, 1, body[:3])
            + frame(DATA, PADDED, 1, bytes((5,)) + body[3:100] + b"\x00" * 5)
            + frame(DATA, 0, 1, body[100:])
            + frame(DATA, END_STREAM, 1, b"")
        )
        call = h2.wait(1)[1]
        assert predicted(call) == 3
        assert pb.ModelInferResponse.FromString(call.message()).id == "split"
        assert call.trailers["x-request-id"] == "split-1"

        # Two messages of a streaming call in one frame, a third split over two: three answers.
        messages = [grpc_message(infer_request(digit_png(d), f"s{d}")) for d in (1, 4, 7)]
        h2.send(
            frame(HEADERS, END_HEADERS, 3, h2.block_for("ModelStreamInfer"))
            + frame(DATA, 0, 3, messages[0] + messages[1] + messages[2][:10])
            + frame(DATA, END_STREAM, 3, messages[2][10:])
        )
        call = h2.wait(3)[3]
        assert call.status == 0, call.trailers
        answers = [pb.ModelStreamInferResponse.FromString(m) for m in call.messages()]
        assert all(not a.error_message for a in answers), answers
        got = {
            a.infer_response.id: int(np.frombuffer(a.infer_response.raw_output_contents[0], "<f4").argmax())
            for a in answers
        }
        assert got == {"s1": 1, "s4": 4, "s7": 7}


@pytest.mark.parametrize("payload_sent", [0, 16385])
def test_a_frame_over_the_size_limit_is_a_connection_error(server: Server, payload_sent: int) -> None:
    """A DATA frame of 16385 bytes (we advertise no larger SETTINGS_MAX_FRAME_SIZE): GOAWAY with
    FRAME_SIZE_ERROR, then the server closes; whether the client sent the payload or only the header."""
    with connect(server) as h2:
        h2.send(h2.request(1, "ServerLive", b""))
        assert h2.wait(1)[1].status == 0
        h2.send(frame(HEADERS, END_HEADERS, 3, h2.block_for("ModelInfer")))
        h2.send(struct.pack(">IBI", 16385 << 8 | DATA, 0, 3) + b"\x00" * payload_sent)
        frames = h2.closed_by_server()
        goaway = [f for f in frames if f.type == GOAWAY]
        assert len(goaway) == 1, frames
        last_id, code = struct.unpack_from(">II", goaway[0].payload)
        assert code == FRAME_SIZE_ERROR and last_id == 3, (last_id, code)


def test_many_calls_multiplexed_on_one_connection_batch(
    server: Server, digit_png: Callable[[int], bytes]
) -> None:
    """32 ModelInfer calls in one write (streams 1, 3, ..., 63): all answered, right class each, in fewer
    than 32 batch runs. Two more calls are reset (CANCEL): one in the same write, never answered; one in a
    write of its own, while it may be queued or running. Neither takes anything from the others."""
    before = digits_stats(server)
    with connect(server) as h2:
        ids = [2 * i + 1 for i in range(32)]
        pngs = {d: digit_png(d) for d in range(10)}
        calls = b"".join(
            h2.request(s, "ModelInfer", infer_request(pngs[i % 10], str(s))) for i, s in enumerate(ids)
        )
        reset_at_once, reset_later, after = 65, 67, 69
        h2.send(
            calls
            + h2.request(reset_at_once, "ModelInfer", infer_request(pngs[8]))
            + frame(RST_STREAM, 0, reset_at_once, U32.pack(CANCEL))
            + h2.request(reset_later, "ModelInfer", infer_request(pngs[8]))
        )
        h2.send(frame(RST_STREAM, 0, reset_later, U32.pack(CANCEL)))
        answers = h2.wait(*ids, timeout=30)
        batched = digits_stats(server)
        for i, s in enumerate(ids):
            assert predicted(answers[s]) == i % 10, s
            assert pb.ModelInferResponse.FromString(answers[s].message()).id == str(s)
        # The connection and the batcher go on after the resets: one more call.
        assert predicted(h2.call(after, "ModelInfer", infer_request(pngs[6]))) == 6
        assert reset_at_once not in h2.calls, h2.calls[reset_at_once]
        late = h2.calls.get(reset_later)
        if late is not None:  # answered before its reset arrived: then answered well
            assert late.reset is None and predicted(late) == 8
    # Counted once the 32 were answered (the call reset later, if it ran, adds one row and at most one run).
    runs = batched["execution_count"] - before["execution_count"]
    rows = batched["inference_count"] - before["inference_count"]
    assert 32 <= rows <= 33, rows
    assert runs < 32, f"32 calls in one read made {runs} batch runs"


@pytest.fixture(scope="module")
def small_limit_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Digits only, messages up to 100000 bytes, the HTTP/2 preface due within 1 s, 4 connections."""
    root = tmp_path_factory.mktemp("small-limit")
    copy_shipped("digits", root / "models")
    env = {
        "MODELSERVE_MAX_BODY_BYTES": "100000",
        "MODELSERVE_HEADER_TIMEOUT_S": "1",
        "MODELSERVE_MAX_CONNECTIONS": "4",
    }
    with run_server(root / "models", root, env=env) as s:
        yield s


def test_a_silent_connection_is_closed_and_a_speaking_one_kept(small_limit_server: Server) -> None:
    """MODELSERVE_HEADER_TIMEOUT_S bounds the wait for the HTTP/2 preface (a connection that never speaks
    would hold a socket forever); once it is in, an idle connection stays (gRPC channels idle between calls)."""
    with socket.create_connection(("127.0.0.1", small_limit_server.grpc_port), timeout=TIMEOUT) as sock:
        opened = time.monotonic()
        while sock.recv(65536):  # the server's SETTINGS, then the close (the timeout bounds the wait)
            pass
        assert time.monotonic() - opened < TIMEOUT
    with connect(small_limit_server) as h2:
        time.sleep(2.0)
        assert h2.call(1, "ServerLive", b"").status == 0


def test_compressed_requests_and_the_message_limit(
    small_limit_server: Server, digit_png: Callable[[int], bytes]
) -> None:
    """gzip and deflate request messages are answered; a gzip bomb (160 bytes that inflate to 1 MB) and a
    plain message announced over the limit are refused with RESOURCE_EXHAUSTED, the connection going on."""
    with connect(small_limit_server) as h2:
        message = infer_request(digit_png(5))
        zipped = h2.call(
            1, "ModelInfer", gzip.compress(message), extra=(("grpc-encoding", "gzip"),), compressed=True
        )
        assert predicted(zipped) == 5
        deflated = h2.call(
            3, "ModelInfer", zlib.compress(message), extra=(("grpc-encoding", "deflate"),), compressed=True
        )
        assert predicted(deflated) == 5

        bomb = gzip.compress(b"\x00" * 1_000_000)
        assert len(bomb) < 2000
        refused = h2.call(5, "ModelInfer", bomb, extra=(("grpc-encoding", "gzip"),), compressed=True)
        assert refused.status == 8 and refused.data_frames == 0, refused.trailers
        assert "larger than max" in refused.trailers["grpc-message"]
        # It stopped inflating at the limit: it never learned the whole size.
        assert "1000000" not in refused.trailers["grpc-message"], refused.trailers

        # A plain message announced at 200000 bytes: refused from its prefix, before the rest is sent.
        h2.send(
            frame(HEADERS, END_HEADERS, 7, h2.block_for("ModelInfer"))
            + frame(DATA, 0, 7, b"\x00" + U32.pack(200_000) + b"\x00" * 1000)
        )
        early = h2.wait(7)[7]
        assert early.status == 8 and "200000" in early.trailers["grpc-message"], early.trailers

        # A compressed message without grpc-encoding cannot be read.
        unnamed = h2.call(9, "ModelInfer", gzip.compress(message), compressed=True)
        assert unnamed.status == 13, unnamed.trailers

        assert predicted(h2.call(11, "ModelInfer", message)) == 5


def test_grpcio_engine_still_serves(tmp_path: Path, digit_png: Callable[[int], bytes]) -> None:
    """MODELSERVE_GRPC_ENGINE=grpcio: the same handlers on grpc.aio, with Triton's client."""
    repo = tmp_path / "models"
    copy_shipped("digits", repo)
    env = {"MODELSERVE_GRPC_ENGINE": "grpcio", "MODELSERVE_LOG_LEVEL": "info"}
    with run_server(repo, tmp_path, env=env) as srv:
        c = tg.InferenceServerClient(srv.grpc_url)
        try:
            assert c.is_server_live() and c.is_model_ready("digits")
            inp = tg.InferInput("pixels", [1, 28, 28, 1], "UINT8")
            inp.set_data_from_numpy(pixels(digit_png(9)))
            assert c.infer("digits", [inp]).as_numpy("probabilities").argmax() == 9
            with pytest.raises(InferenceServerException, match="unknown model") as e:
                c.infer("nope", [inp])
            assert e.value.status() == "StatusCode.NOT_FOUND"

            answers: queue.Queue[tuple[Any, Any]] = queue.Queue()
            c.start_stream(callback=lambda result, error: answers.put((result, error)))
            try:
                for d in (0, 6):
                    inp = tg.InferInput("pixels", [1, 28, 28, 1], "UINT8")
                    inp.set_data_from_numpy(pixels(digit_png(d)))
                    c.async_stream_infer("digits", [inp], request_id=f"g{d}")
                got = {}
                for _ in range(2):
                    result, error = answers.get(timeout=30)
                    assert error is None, error
                    got[result.get_response().id] = int(result.as_numpy("probabilities").argmax())
            finally:
                c.stop_stream()
            assert got == {"g0": 0, "g6": 6}
        finally:
            c.close()
        log = srv.log()
    assert "gRPC (Open Inference Protocol, grpcio)" in log, log[-2000:]


# ---------------------------------------------------------------------------------------------- malformed input
# Each of these failed on the first version of http2.py (see the commit that fixed them).


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(
            (b"x-note", b"caf\xe9"),
            id="value-not-utf8",
        ),
        pytest.param(
            ("grpc-timeout", "\u00b2S"),
            id="timeout-superscript-two",
        ),
        pytest.param(
            (b"", b"x"),
            id="empty-name",
        ),
        pytest.param(("x-note", "plain"), id="control"),
    ],
)
def test_a_malformed_header_fails_only_its_own_call(
    server: Server, digit_png: Callable[[int], bytes], header: tuple[str | bytes, str | bytes]
) -> None:
    """One call's bad header (a value gRPC would not send, a timeout that is not ASCII digits, an empty
    name) makes that request malformed: a stream error at most (RFC 9113 8.1.1), never the end of the
    other calls on the connection. (HTTP/2 field values are octets: 8.2.1 forbids only NUL, CR, LF.)"""
    with connect(server) as h2:
        h2.send(
            h2.request(1, "ModelInfer", infer_request(digit_png(2)))
            + h2.request(3, "ServerLive", b"", extra=(header,))
        )
        answers = h2.wait(1, 3)
        assert predicted(answers[1]) == 2
        assert not [f for f in h2.frames if f.type == GOAWAY]
        assert h2.call(5, "ServerLive", b"").status == 0


def _cut_at_a_field_boundary(png: bytes) -> tuple[bytes, bytes]:
    """A request asking for one output (its last field) and a gzip stream of it that a sync flush ends
    just before that field: inflated without checking for the stream's end, it is a whole request that
    asks for every output."""
    request = pb.ModelInferRequest(model_name="digits")
    x = pixels(png)
    request.inputs.add(name="pixels", datatype="UINT8", shape=list(x.shape)).contents.uint_contents.extend(
        x.ravel().tolist()
    )
    head = request.SerializeToString()
    request.outputs.add(name="probabilities")
    whole = request.SerializeToString()
    assert whole.startswith(head)
    deflater = zlib.compressobj(wbits=31)  # gzip
    cut = deflater.compress(whole[: len(head)]) + deflater.flush(zlib.Z_SYNC_FLUSH)
    return whole, cut


def test_a_cut_or_padded_compressed_message_is_refused(
    server: Server, digit_png: Callable[[int], bytes]
) -> None:
    """grpc-core (and so the grpcio engine) answers 13 "Decompression failed" to each of these."""
    message = infer_request(digit_png(5))
    zipped = gzip.compress(message)
    whole, cut = _cut_at_a_field_boundary(digit_png(5))
    gz: Extra = (("grpc-encoding", "gzip"),)
    with connect(server) as h2:
        assert predicted(h2.call(1, "ModelInfer", zipped, extra=gz, compressed=True)) == 5
        assert h2.call(3, "ModelInfer", gzip.compress(whole), extra=gz, compressed=True).status == 0
        for stream_id, data in ((5, cut), (7, zipped[:-8]), (9, zipped + b"junk")):
            call = h2.call(stream_id, "ModelInfer", data, extra=gz, compressed=True)
            if call.status == 0:
                outputs = [o.name for o in pb.ModelInferResponse.FromString(call.message()).outputs]
                pytest.fail(f"stream {stream_id} was answered (outputs {outputs}), not refused")
            assert call.status == 13, (stream_id, call.trailers)


def test_a_stream_message_that_does_not_parse_is_reported(
    server: Server, digit_png: Callable[[int], bytes]
) -> None:
    with connect(server) as h2:
        good = grpc_message(infer_request(digit_png(4), "good"))
        h2.send(
            frame(HEADERS, END_HEADERS, 1, h2.block_for("ModelStreamInfer"))
            + frame(DATA, END_STREAM, 1, good + grpc_message(b"\xff\xff\xff"))
        )
        call = h2.wait(1)[1]
        answers = [pb.ModelStreamInferResponse.FromString(m) for m in call.messages()]
        errors = [a.error_message for a in answers if a.error_message]
        assert call.status != 0 or errors, (call.trailers, answers)
        assert [a.infer_response.id for a in answers if not a.error_message] == ["good"]


def test_past_the_connection_cap_a_connection_gets_goaway(small_limit_server: Server) -> None:
    """MODELSERVE_MAX_CONNECTIONS holds on the gRPC port too: the fifth connection is told why (GOAWAY,
    ENHANCE_YOUR_CALM) and closed; the four open ones still answer, and a slot freed is usable again."""
    with contextlib.ExitStack() as stack:
        open_ = [stack.enter_context(connect(small_limit_server)) for _ in range(4)]
        for i, h2 in enumerate(open_):
            assert h2.call(1, "ServerLive", b"").status == 0, i
        with socket.create_connection(("127.0.0.1", small_limit_server.grpc_port), timeout=TIMEOUT) as extra:
            data = b""
            while chunk := extra.recv(65536):  # what the server says before it closes (bounded by TIMEOUT)
                data += chunk
        frames = []
        while len(data) >= 9:
            length = int.from_bytes(data[:3], "big")
            frames.append((data[3], data[9 : 9 + length]))
            data = data[9 + length :]
        goaways = [payload for ftype, payload in frames if ftype == GOAWAY]
        assert len(goaways) == 1, frames
        assert int.from_bytes(goaways[0][4:8], "big") == 0xB
        assert b"too many open connections" in goaways[0][8:]
        assert open_[0].call(3, "ServerLive", b"").status == 0
        open_.pop().close()
    deadline = time.monotonic() + TIMEOUT  # all closed now: room again, once the server has seen them go
    while True:
        try:
            with connect(small_limit_server) as again:
                assert again.call(1, "ServerLive", b"").status == 0
                break
        except (OSError, AssertionError):
            assert time.monotonic() < deadline, "no room on the gRPC port after the connections closed"
            time.sleep(0.1)
