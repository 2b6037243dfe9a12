"""The one-pass decoder for plain V2 JSON requests (service/protocol/v2_plain.py) and the plain answer
(v2_encode.py), against the general decoder and encoder on the shipped models: the same feeds, rows, id
and answer bytes when it takes a request, and None (the general way, with its errors) for anything else."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from service.dataplane import DataPlane, RequestContext
from service.errors import BadRequest, ServiceError
from service.protocol.v2_codec import (
    RequestedOutput,
    V2Request,
    decode_request,
    may_hold_boolean,
    parse_header,
)
from service.protocol.v2_encode import HTTP, encode_response
from service.protocol.v2_feeds import tensor_feeds
from service.protocol.v2_plain import plain_request
from tests.unit.test_dataplane import with_plane

MAX_ROWS = 64
RNG = np.random.default_rng(7)


def tensor(name: str, datatype: str, shape: list[int], data: Any) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}


def ids(rows: int, length: int = 12) -> list[int]:
    return RNG.integers(1, 400, rows * length).tolist()


# (model, request document): requests the plain decoder takes.
PLAIN = [
    ("sentiment-lstm", {"inputs": [tensor("ids", "INT64", [1, 12], ids(1))]}),
    ("sentiment-lstm", {"inputs": [tensor("ids", "INT64", [3, 12], ids(3))], "id": "r-7"}),
    ("sentiment-lstm", {"inputs": [tensor("ids", "INT64", [2, 12], ids(2))], "id": 42}),
    (
        "sentiment",
        {
            "inputs": [
                tensor("input_ids", "INT64", [2, 8], ids(2, 8)),
                tensor("attention_mask", "INT64", [2, 8], [1] * 16),
            ]
        },
    ),
    ("churn", {"inputs": [tensor("features", "FP32", [2, 19], [float(i % 2) for i in range(38)])]}),
    ("letters", {"inputs": [tensor("features", "FP32", [1, 16], [3, 0.5] * 8)]}),  # ints as floats
    ("digits", {"inputs": [tensor("pixels", "UINT8", [1, 28, 28, 1], RNG.integers(0, 256, 784).tolist())]}),
]

# Requests it leaves to the general decoder, valid or not.
GENERAL = [
    (
        "sentiment-lstm",
        {"inputs": [tensor("ids", "INT64", [1, 12], ids(1))], "outputs": [{"name": "logits"}]},
    ),
    ("sentiment-lstm", {"inputs": [tensor("ids", "INT64", [1, 12], ids(1))], "parameters": {"a": 1}}),
    ("sentiment-lstm", {"inputs": [{**tensor("ids", "INT64", [1, 12], ids(1)), "parameters": {}}]}),
    ("sentiment-lstm", {"inputs": [tensor("ids", "int64", [1, 12], ids(1))]}),  # lower case
    ("sentiment-lstm", {"inputs": [tensor("ids", "INT32", [1, 12], ids(1))]}),  # another type
    ("sentiment-lstm", {"inputs": [tensor("ids", "INT64", [1, 12], [ids(1)])]}),  # nested
    ("sentiment-lstm", {"inputs": [tensor("ids", "INT64", [1, 12], ids(1)[:11])]}),  # short
    ("sentiment-lstm", {"inputs": [tensor("ids", "INT64", [1, 12], [1.5] * 12)]}),  # not integers
    ("sentiment-lstm", {"inputs": [tensor("ids", "INT64", [1, 12], [True] * 12)]}),
    ("sentiment-lstm", {"inputs": [tensor("ids", "INT64", [1, 12], ["1"] * 12)]}),
    ("sentiment-lstm", {"inputs": [tensor("ids", "INT64", [1, 12], [2**70] * 12)]}),
    ("sentiment-lstm", {"inputs": [tensor("ids", "INT64", [0, 12], [])]}),  # no rows
    ("sentiment-lstm", {"inputs": [tensor("ids", "INT64", [MAX_ROWS + 1, 1], [1] * (MAX_ROWS + 1))]}),
    ("sentiment-lstm", {"inputs": [tensor("ids", "INT64", [1, -12], ids(1))]}),
    ("sentiment-lstm", {"inputs": [tensor("ids", "INT64", [1, True], [1])]}),
    ("sentiment-lstm", {"inputs": [tensor("ids", "INT64", [12], ids(1))]}),  # rank
    ("sentiment-lstm", {"inputs": [tensor("text", "INT64", [1, 12], ids(1))]}),  # name
    ("sentiment-lstm", {"inputs": [tensor("ids", "BYTES", [1], ["a film"])]}),
    ("sentiment-lstm", {"inputs": []}),
    ("sentiment-lstm", {"inputs": {"ids": ids(1)}}),
    ("churn", {"inputs": [tensor("features", "FP32", [1, 18], [0.0] * 18)]}),  # the graph's 19
    ("churn", {"inputs": [tensor("features", "FP32", [1, 19], ["x"] * 19)]}),
    ("digits", {"inputs": [tensor("pixels", "UINT8", [1, 28, 28, 1], [256] * 784)]}),  # out of range
    ("digits", {"inputs": [tensor("pixels", "UINT8", [1, 28, 28, 1], [-1] * 784)]}),
    (
        "sentiment",  # the graph's inputs in another order
        {
            "inputs": [
                tensor("attention_mask", "INT64", [1, 4], [1] * 4),
                tensor("input_ids", "INT64", [1, 4], ids(1, 4)),
            ]
        },
    ),
    (
        "sentiment",  # rows that disagree
        {
            "inputs": [
                tensor("input_ids", "INT64", [2, 4], ids(2, 4)),
                tensor("attention_mask", "INT64", [1, 4], [1] * 4),
            ]
        },
    ),
]


def encode(doc: Any) -> bytes:
    return json.dumps(doc).encode()  # not orjson: it refuses integers past 64 bits, which a client may send


def run(body: Any) -> Any:
    return with_plane(body, max_items_per_request=MAX_ROWS)


def test_plain_requests_decode_as_the_general_decoder_decodes_them() -> None:
    async def body(plane: DataPlane) -> list[tuple[Any, ...]]:
        out = []
        for name, doc in PLAIN:
            mv = plane.resolve(name)
            raw = encode(doc)
            plain = plain_request(parse_header(raw), mv, MAX_ROWS)
            general = decode_request(raw, None)
            out.append((plain, general, tensor_feeds(mv, general, MAX_ROWS)))
        return out

    for (name, _), (plain, general, (feeds, rows)) in zip(PLAIN, run(body), strict=True):
        assert plain is not None, name
        request, plain_feeds, plain_rows = plain
        assert plain_rows == rows and request.id == general.id and request.outputs is None
        assert list(plain_feeds) == list(feeds)
        for key, arr in feeds.items():
            assert plain_feeds[key].dtype == arr.dtype and plain_feeds[key].shape == arr.shape
            np.testing.assert_array_equal(plain_feeds[key], arr)


class GeneralOnly:
    """The HTTP codec without its one-pass decoder: every request the general way."""

    encode = staticmethod(HTTP.encode)

    @staticmethod
    def read(mv: Any, payload: Any, max_rows: int) -> V2Request:
        return decode_request(*payload)


def parsed(raw: bytes) -> dict[str, Any] | None:
    """The request's JSON object as the codec parses it once; None when it never gets that far."""
    try:
        return parse_header(raw)
    except BadRequest:
        return None


async def answer(plane: DataPlane, name: str, raw: bytes, codec: Any) -> Any:
    try:
        return await plane.infer(name, None, (raw, None), codec, RequestContext("g"))
    except ServiceError as e:
        return e.status_code, e.message


def test_other_requests_go_the_general_way_and_get_its_answer() -> None:
    """None from the plain decoder; through the data plane, what the general way answers (or refuses)."""

    async def body(plane: DataPlane) -> list[tuple[Any, Any, Any]]:
        out = []
        for name, doc in GENERAL:
            raw = encode(doc)
            obj = parsed(raw)
            plain = None if obj is None else plain_request(obj, plane.resolve(name), MAX_ROWS)
            out.append(
                (plain, await answer(plane, name, raw, HTTP), await answer(plane, name, raw, GeneralOnly))
            )
        return out

    results = run(body)
    for (name, doc), (plain, got, expected) in zip(GENERAL, results, strict=True):
        assert plain is None, (name, doc)
        assert got == expected, (name, doc)
    # Valid ones answered: outputs or parameters named, lower case, INT32 ids, nested data, a text as BYTES
    # (the kind's own preprocessing), the inputs in another order; the rest refused, with the same error.
    answered = [isinstance(e[0], bytes) for _, _, e in results]
    assert answered == [True] * 6 + [False] * 11 + [True] + [False] * 6 + [True, False]
    # Empty, not JSON, or not an object: the general decoder's error, before the model is looked at.
    for raw in (b"", b"{", b"[1]", b'"x"'):
        with pytest.raises(BadRequest) as got_error:
            HTTP.read(None, (raw, None), MAX_ROWS)  # type: ignore[arg-type]
        with pytest.raises(BadRequest) as general_error:
            decode_request(raw, None)
        assert got_error.value.message == general_error.value.message


def test_the_plain_answer_is_byte_for_byte_the_general_one() -> None:
    """No outputs named: the same bytes as naming every output (the general encoder's way)."""

    async def body(plane: DataPlane) -> list[tuple[bytes, bytes]]:
        out = []
        for name, doc in PLAIN:
            mv = plane.resolve(name)
            plain = plain_request(parse_header(encode(doc)), mv, MAX_ROWS)
            assert plain is not None
            request, feeds, rows = plain
            outputs = await mv.batcher.submit(feeds, rows)
            fast, headers = encode_response(mv, request, outputs)
            every = V2Request([], [RequestedOutput(o.name) for o in mv.outputs], request.id)
            slow, slow_headers = encode_response(mv, every, outputs)
            assert headers == slow_headers == {"content-type": "application/json"}
            out.append((fast, slow))
        return out

    for fast, slow in run(body):
        assert fast == slow


@pytest.mark.parametrize("model", ["sentiment-lstm", "churn"])
def test_a_request_answers_the_same_either_way(model: str) -> None:
    """The whole data plane: a plain request and the same request made general (its outputs named)."""
    doc = next(d for n, d in PLAIN if n == model)

    async def body(plane: DataPlane) -> tuple[Any, Any]:
        mv = plane.resolve(model)
        named = {**doc, "outputs": [{"name": o.name} for o in mv.outputs]}
        a = await plane.infer(model, None, (encode(doc), None), HTTP, RequestContext("a"))
        b = await plane.infer(model, None, (encode(named), None), HTTP, RequestContext("b"))
        return a, b

    a, b = run(body)
    assert a == b


# Number tensors holding a JSON true or false (numpy would take them as 1 and 0), and valid requests whose
# text holds the words or their letters elsewhere.
BOOLEANS = [
    ("sentiment-lstm", {"inputs": [tensor("ids", "INT64", [1, 12], [*ids(1)[:11], True])]}),
    ("sentiment-lstm", {"inputs": [tensor("ids", "INT64", [2, 12], [ids(1), [*ids(1)[:11], False]])]}),
    ("churn", {"inputs": [tensor("features", "FP32", [1, 19], [0.5] * 18 + [False])]}),
    ("letters", {"inputs": [tensor("features", "FP64", [1, 16], [True] + [1.0] * 15)]}),
    ("digits", {"inputs": [tensor("pixels", "UINT8", [1, 28, 28, 1], [0] * 783 + [True])]}),
    ("digits", {"inputs": [tensor("pixels", "UINT8", [1, 28, 28, 1], True)]}),
]
WORDS = [
    ("sentiment-lstm", {"inputs": [tensor("ids", "INT64", [1, 12], ids(1))], "id": "a true story, or false"}),
    ("sentiment-lstm", {"inputs": [tensor("ids", "INT64", [1, 12], ids(1))], "parameters": {"raw": True}}),
    (
        "churn",
        {"inputs": [tensor("features", "FP32", [1, 19], [float(i % 2) for i in range(19)])], "id": "free"},
    ),
]


def test_booleans_in_number_tensors_are_refused_either_way() -> None:
    async def body(plane: DataPlane) -> list[tuple[Any, Any]]:
        return [
            (await answer(plane, n, encode(d), HTTP), await answer(plane, n, encode(d), GeneralOnly))
            for n, d in BOOLEANS + WORDS
        ]

    results = run(body)
    for (name, doc), (got, general) in zip(BOOLEANS, results, strict=False):
        assert got == general, (name, doc)
        assert got[0] == 422 and "holds true or false, which are not numbers" in got[1], (name, got)
    for (name, doc), (got, general) in zip(WORDS, results[len(BOOLEANS) :], strict=True):
        assert isinstance(got[0], bytes) and got == general, (name, doc, got)


def test_booleans_nested_past_the_shape_are_refused_without_recursion() -> None:
    """orjson parses up to 1,024 levels: a true that deep beside a number is a 422, not a RecursionError."""
    for depth in (3, 1000):
        raw = b'{"inputs": [{"name": "ids", "datatype": "INT64", "shape": [1, 2], "data": [1, %s]}]}' % (
            b"[" * depth + b"true" + b"]" * depth
        )
        with pytest.raises(ServiceError) as refused:
            HTTP.read(None, (raw, None), MAX_ROWS)  # type: ignore[arg-type]
        assert refused.value.status_code == 422 and "ragged nesting" in refused.value.message


def test_the_boolean_scan() -> None:
    for name, doc in PLAIN:
        assert not may_hold_boolean(encode(doc)), name  # no r, no f: two memchr scans
    for _, doc in BOOLEANS:
        assert may_hold_boolean(encode(doc))
    assert not may_hold_boolean(b'{"parameters": {"free": 1}, "inputs": []}')  # the letters, not the words
    assert may_hold_boolean(b'{"a":[1,true]}') and may_hold_boolean(b'{"a":[false]}')
