"""The wire pieces of gRPC over HTTP/2 (RFC 9113, RFC 7541, gRPC's PROTOCOL-HTTP2.md): frame types, flags and
error codes, our SETTINGS, header fields as HPACK literals, grpc-timeout, grpc-message and ``-bin`` metadata.
Pure functions of bytes and strings: the connection (http2.py) reads and writes with them.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = (
    range(10)
)
END_STREAM = ACK = 0x1
END_HEADERS, PADDED, PRIORITY_FLAG = 0x4, 0x8, 0x20
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR = 0x0, 0x1, 0x2, 0x3
FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR = 0x6, 0x7, 0x8, 0x9
ENHANCE_YOUR_CALM = 0xB

MAX_FRAME = 16384  # the largest frame we accept (the protocol's default; we do not advertise more)
STREAM_WINDOW = 1 << 20  # what one stream may send before we return credit (SETTINGS_INITIAL_WINDOW_SIZE)
CONNECTION_WINDOW = 1 << 24  # the same for the whole connection
MAX_STREAMS = 1024  # concurrent calls per connection (SETTINGS_MAX_CONCURRENT_STREAMS)
MAX_WINDOW = (1 << 31) - 1

# gRPC status codes used here (the handlers pass grpc.StatusCode; these are the wire numbers)
OK, CANCELLED, UNKNOWN, INTERNAL, UNIMPLEMENTED, RESOURCE_EXHAUSTED = 0, 1, 2, 13, 12, 8

HEAD = struct.Struct(">IBI")  # length (24 bits) << 8 | type, flags, stream id
U32 = struct.Struct(">I")
_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


def frame(ftype: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return HEAD.pack(len(payload) << 8 | ftype, flags, stream_id) + payload


def _length(n: int) -> bytes:
    """HPACK's integer with a 7-bit prefix (string lengths, Huffman bit clear)."""
    if n < 127:
        return bytes((n,))
    out = bytearray((127,))
    n -= 127
    while n >= 128:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def literal(name: bytes, value: bytes) -> bytes:
    """A header field as an HPACK literal without indexing: it leaves the peer's dynamic table as it is, so
    our answers need no encoder state at all."""
    return b"\x00" + _length(len(name)) + name + _length(len(value)) + value


RESPONSE_HEAD = b"\x88" + literal(b"content-type", b"application/grpc")  # 0x88: ":status: 200", indexed
STATUS_OK = literal(b"grpc-status", b"0")


def percent_encode(text: str) -> bytes:
    """grpc-message: UTF-8, every byte outside printable ASCII (and '%') as %XX."""
    raw = text.encode("utf-8", "replace")
    if all(0x20 <= b <= 0x7E and b != 0x25 for b in raw):
        return raw
    return b"".join(bytes((b,)) if 0x20 <= b <= 0x7E and b != 0x25 else b"%%%02X" % b for b in raw)


def parse_timeout(value: str) -> float | None:
    """grpc-timeout ("100m", "5S", ...: 1-8 ASCII digits and a unit) in seconds; None when malformed."""
    unit = _TIMEOUT_UNITS.get(value[-1:])
    digits = value[:-1]
    if unit is None or not (digits.isascii() and digits.isdigit()) or len(digits) > 8:
        return None
    return int(digits) * unit


def metadata_block(metadata: Any) -> bytes:
    """Metadata pairs as header literals; ``-bin`` values base64 without padding."""
    out = b""
    for key, value in metadata:
        name = key.lower().encode("ascii")
        if key.endswith("-bin"):
            raw = value if isinstance(value, bytes) else str(value).encode()
            out += literal(name, base64.b64encode(raw).rstrip(b"="))
        else:
            out += literal(name, value if isinstance(value, bytes) else str(value).encode("latin-1"))
    return out


def unbase64(value: str) -> bytes:
    """A ``-bin`` metadata value: base64 with or without padding (garbage is kept as its text)."""
    try:
        return base64.b64decode(value + "=" * (-len(value) % 4))
    except ValueError:
        return value.encode("latin-1", "replace")
