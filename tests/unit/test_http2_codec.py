"""The native gRPC server's pure helpers (service/transports/grpc/frames.py): grpc-message percent-encoding,
grpc-timeout parsing, the HPACK literals our answers are made of (read back by the hpack library, as a
client would), and the 9-byte frame header."""

from __future__ import annotations

import struct

import hpack
import pytest

from service.transports.grpc.frames import (
    DATA,
    END_HEADERS,
    END_STREAM,
    GOAWAY,
    HEADERS,
    RESPONSE_HEAD,
    STATUS_OK,
    frame,
    literal,
    parse_timeout,
    percent_encode,
)


def test_percent_encode_passes_printable_ascii_through() -> None:
    text = "model digits: no input 'x' (expected [1, 28, 28, 1]) ~ ok!"
    assert percent_encode(text) == text.encode()
    assert percent_encode("") == b""
    assert percent_encode(" ~") == b" ~"  # both ends of the printable range


@pytest.mark.parametrize(
    ("text", "encoded"),
    [
        ("100%", b"100%25"),
        ("%%", b"%25%25"),
        ("café", b"caf%C3%A9"),
        ("日本", b"%E6%97%A5%E6%9C%AC"),
        ("a\nb\tc\r", b"a%0Ab%09c%0D"),
        ("\x00\x1f\x7f", b"%00%1F%7F"),
        ("\U0001f600", b"%F0%9F%98%80"),
    ],
)
def test_percent_encode_escapes_percent_and_non_ascii(text: str, encoded: bytes) -> None:
    assert percent_encode(text) == encoded
    # What a client does with it: percent-decode, then UTF-8.
    raw, out, i = encoded, bytearray(), 0
    while i < len(raw):
        if raw[i] == 0x25:
            out.append(int(raw[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(raw[i])
            i += 1
    assert out.decode() == text


def test_percent_encode_survives_lone_surrogates() -> None:
    assert percent_encode("a\ud800b") == b"a?b"  # encoded with "replace": never raises


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("100m", 0.1),
        ("5S", 5.0),
        ("1H", 3600.0),
        ("2M", 120.0),
        ("250u", 250e-6),
        ("7n", 7e-9),
        ("0S", 0.0),
        ("99999999S", 99999999.0),  # eight digits: the most gRPC allows
    ],
)
def test_parse_timeout(value: str, seconds: float) -> None:
    assert parse_timeout(value) == pytest.approx(seconds, rel=1e-12, abs=0)


@pytest.mark.parametrize(
    "value",
    ["", "S", "5", "5s", "5h", "5x", "-5S", "+5S", "1.5S", " 5S", "5S ", "123456789S", "5SS", "0x5S", "5_0S"],
)
def test_parse_timeout_rejects_malformed_values(value: str) -> None:
    assert parse_timeout(value) is None


@pytest.mark.parametrize("value", ["\u00b2S", "\u00b9\u00b2m", "\u0665S", "\uff15S"])
def test_parse_timeout_takes_only_ascii_digits(value: str) -> None:
    assert parse_timeout(value) is None


@pytest.mark.parametrize("size", [0, 1, 126, 127, 128, 200, 254, 255, 256, 16383, 16384, 70000])
def test_literal_round_trips_through_hpack(size: int) -> None:
    """Lengths on both sides of the 7-bit prefix (127) and of each continuation byte (128, 16384)."""
    value = bytes(range(32, 127)) * (size // 95 + 1)
    value = value[:size]
    name = b"x-" + b"n" * (size % 300)
    decoder = hpack.Decoder()
    decoder.max_header_list_size = 1 << 20
    assert decoder.decode(literal(name, value), raw=True) == [(name, value)]
    assert not decoder.header_table.dynamic_entries  # without indexing: the client's table is untouched


def test_literals_of_an_answer_decode_in_one_block() -> None:
    decoder = hpack.Decoder()
    block = RESPONSE_HEAD + STATUS_OK + literal(b"grpc-message", b"x" * 300) + literal(b"x-request-id", b"r1")
    assert decoder.decode(block) == [
        (":status", "200"),
        ("content-type", "application/grpc"),
        ("grpc-status", "0"),
        ("grpc-message", "x" * 300),
        ("x-request-id", "r1"),
    ]
    # A second decoder call on the same connection reads the same: no state was carried over.
    assert decoder.decode(RESPONSE_HEAD) == [(":status", "200"), ("content-type", "application/grpc")]
    assert not decoder.header_table.dynamic_entries


def test_literal_length_encoding_bytes() -> None:
    """RFC 7541 5.1: a 7-bit prefix, then 7 bits a byte, low bits first (Huffman flag clear)."""
    assert literal(b"a", b"") == b"\x00\x01a\x00"
    assert literal(b"a", b"v" * 126)[3:4] == b"\x7e"
    assert literal(b"a", b"v" * 127)[3:5] == b"\x7f\x00"
    assert literal(b"a", b"v" * 128)[3:5] == b"\x7f\x01"
    assert literal(b"a", b"v" * 1337)[3:6] == b"\x7f\xba\x09"  # RFC 7541 C.1.2's 1337, 7-bit prefix


def test_frame_header_layout() -> None:
    assert frame(DATA, END_STREAM, 5, b"abc") == b"\x00\x00\x03\x00\x01\x00\x00\x00\x05abc"
    assert frame(HEADERS, END_HEADERS | END_STREAM, 1) == b"\x00\x00\x00\x01\x05\x00\x00\x00\x01"
    big = frame(DATA, 0, (1 << 31) - 1, b"\x00" * 70000)
    assert big[:3] == (70000).to_bytes(3, "big") and len(big) == 9 + 70000
    assert big[3] == DATA and big[4] == 0 and big[5:9] == b"\x7f\xff\xff\xff"
    goaway = frame(GOAWAY, 0, 0, struct.pack(">II", 7, 6) + b"why")
    length_type, flags, stream_id = struct.unpack(">IBI", goaway[:9])
    assert (length_type >> 8, length_type & 0xFF, flags, stream_id) == (11, GOAWAY, 0, 0)
    assert goaway[9:] == b"\x00\x00\x00\x07\x00\x00\x00\x06why"


def test_health_check_requests_are_read() -> None:
    """grpc.health.v1.HealthCheckRequest {string service = 1}, read as protobuf's StringValue (the same
    wire format; no package here ships its generated code): unknown fields skipped; anything else is not
    such a message (answered as any undecodable request)."""
    from service.transports.grpc.server import health_request

    assert health_request(b"") == ""
    assert health_request(b"\x0a\x03abc") == "abc"
    assert health_request(b"\x10\x05\x0a\x01x\x1d\x00\x00\x00\x00") == "x"  # a varint and a fixed32 skipped
    for bad in (b"\x0a\x05ab", b"\xff", b"\x0b", b"\x0a\x02\xff\xfe"):
        with pytest.raises(ValueError):
            health_request(bad)
