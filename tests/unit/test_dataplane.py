"""The data plane in-process, no server: the V2 lifecycle with the HTTP and the gRPC codecs over the
shipped models, statistics, the model configuration, and the pieces around it (request decompression,
API keys, the fast path's route matcher, gRPC status codes)."""

from __future__ import annotations

import asyncio
import gzip
import zlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
import numpy as np
import orjson
import pytest
from fastapi import APIRouter

from service.auth import ApiKeys
from service.config import Settings
from service.dataplane import DataPlane, PredictRequest, RequestContext
from service.errors import BadRequest, InvalidInput, NotFound, PayloadTooLarge, UnsupportedMediaType
from service.protocol.oip import grpc_service_pb2 as pb
from service.protocol.tensors import pack_bytes, unpack_bytes
from service.protocol.v2_encode import HTTP
from service.protocol.v2_grpc import GRPC, decode_infer_request
from service.stats import merge_stats
from service.transports.grpc.server import grpc_code
from service.transports.http import predict, v2
from service.transports.http.body import decompress
from service.transports.http.middleware import PathAccess
from service.transports.http.routes import ROUTES, RouteMatcher, register
from tests.conftest import EXAMPLES, MODELS

T = TypeVar("T")


def with_plane(body: Callable[[DataPlane], Awaitable[T]], **settings: Any) -> T:
    """Start a data plane over the shipped models, run ``body``, stop it (one event loop)."""

    async def main() -> T:
        plane = DataPlane(Settings(models_dir=MODELS, metrics=False, **settings))
        await plane.start()
        try:
            return await body(plane)
        finally:
            await plane.stop()

    return asyncio.run(main())


def digit_pixels(digit: int) -> np.ndarray:
    from PIL import Image

    image = Image.open(EXAMPLES / "digits" / f"{digit}.png").convert("L")
    return np.asarray(image, dtype=np.uint8)[None, :, :, None]


def test_http_and_grpc_codecs_share_one_lifecycle() -> None:
    """The same pixels through the JSON codec, the binary codec and the gRPC codec: same answer, and the
    statistics count all three."""
    x = np.concatenate([digit_pixels(d) for d in (3, 8)])
    doc = {
        "inputs": [
            {"name": "pixels", "datatype": "UINT8", "shape": list(x.shape), "data": x.ravel().tolist()}
        ]
    }
    grpc_request = pb.ModelInferRequest(model_name="digits", id="g")
    grpc_request.inputs.add(name="pixels", datatype="UINT8", shape=list(x.shape))
    grpc_request.raw_input_contents.append(x.tobytes())
    grpc_request.outputs.add(name="probabilities").parameters["classification"].int64_param = 2

    async def body(plane: DataPlane) -> tuple[Any, ...]:
        ctx = RequestContext("r1")
        json_answer = await plane.infer("digits", None, (orjson.dumps(doc), None), HTTP, ctx)
        grpc_answer = await plane.infer("digits", "1", grpc_request, GRPC, RequestContext("r2"))
        stats = await plane.model_stats("digits")
        return json_answer, grpc_answer, ctx, stats

    (content, headers), grpc_answer, ctx, stats = with_plane(body)
    assert headers["content-type"] == "application/json"
    answer = orjson.loads(content)
    probs = next(o for o in answer["outputs"] if o["name"] == "probabilities")
    assert np.asarray(probs["data"]).reshape(2, 10).argmax(1).tolist() == [3, 8]
    assert ctx.rows == 2 and ctx.batch_rows == 2 and ctx.mv.name == "digits"  # the trace the log reads
    assert grpc_answer.id == "g" and [o.name for o in grpc_answer.outputs] == ["probabilities"]
    labels = [s.split(b":")[2] for s in unpack_bytes(grpc_answer.raw_output_contents[0])]
    assert labels[::2] == [b"3", b"8"] and list(grpc_answer.outputs[0].shape) == [2, 2]
    [stat] = stats["model_stats"]
    assert stat["inference_count"] == 4 and stat["inference_stats"]["success"]["count"] == 2


def test_predict_recognises_the_kind_once_and_picks_the_model_for_it() -> None:
    """Raw inputs: with several models served and none named, the only model of the inputs' kind serves
    them; a model of another kind, named, answers 415 before anything is queued."""

    async def body(plane: DataPlane) -> tuple[Any, ...]:
        ctx = RequestContext("p1")
        text = await plane.predict(PredictRequest(None, None, "text/plain", b"a wonderful film"), ctx)
        form = PredictRequest("sentiment", None, "multipart/form-data", form=["dull", "great fun"], top_k=2)
        many = await plane.predict(form, RequestContext("p2"))
        with pytest.raises(UnsupportedMediaType, match="digits"):
            await plane.predict(PredictRequest("digits", None, "text/plain", b"seven"), RequestContext("p3"))
        return text, ctx, many

    text, ctx, many = with_plane(body)
    assert text["model"] == "sentiment" and text["predictions"][0]["label"] == "positive"
    assert ctx.mv.name == "sentiment" and ctx.rows == 1
    assert [len(p["top_k"]) for p in many["predictions"]] == [2, 2]


def test_errors_come_before_the_queue() -> None:
    """Unknown outputs, wrong shapes and unknown models fail before anything is queued (no run)."""
    x = digit_pixels(1)

    def request(**changes: Any) -> bytes:
        doc: dict[str, Any] = {
            "inputs": [
                {"name": "pixels", "datatype": "UINT8", "shape": list(x.shape), "data": x.ravel().tolist()}
            ]
        }
        doc.update(changes)
        return orjson.dumps(doc)

    async def body(plane: DataPlane) -> dict[str, Any]:
        async def infer(name: str, raw: bytes) -> Any:
            return await plane.infer(name, None, (raw, None), HTTP, RequestContext("x"))

        with pytest.raises(InvalidInput, match="no output 'nope'"):
            await infer("digits", request(outputs=[{"name": "nope"}]))
        with pytest.raises(InvalidInput, match="does not match"):
            await infer(
                "digits",
                request(inputs=[{"name": "pixels", "datatype": "UINT8", "shape": [1, 2], "data": [1, 2]}]),
            )
        with pytest.raises(NotFound):
            await infer("nope", request())
        return (await plane.model_stats("digits"))["model_stats"][0]

    stat = with_plane(body)
    assert stat["execution_count"] == 0 and stat["inference_stats"]["fail"]["count"] == 2


def test_grpc_decoding() -> None:
    req = pb.ModelInferRequest(model_name="m", id="i")
    t = req.inputs.add(name="a", datatype="INT32", shape=[2, 2])
    t.contents.int_contents.extend([1, -2, 3, 4])
    t = req.inputs.add(name="b", datatype="BYTES", shape=[2])
    t.contents.bytes_contents.extend([b"x", b"yz"])
    req.parameters["k"].string_param = "v"
    decoded = decode_infer_request(req)
    assert decoded.id == "i" and decoded.parameters == {"k": "v"}
    a, b = decoded.inputs
    assert a.value.dtype == np.int32 and a.value.tolist() == [1, -2, 3, 4] and b.value == [b"x", b"yz"]
    raw = pb.ModelInferRequest(model_name="m")
    raw.inputs.add(name="s", datatype="BYTES", shape=[2])
    raw.raw_input_contents.append(pack_bytes([b"ab", b""]))
    assert decode_infer_request(raw).inputs[0].value == [b"ab", b""]
    bad: list[tuple[pb.ModelInferRequest, type[Exception], str]] = []
    r = pb.ModelInferRequest(model_name="m")
    r.inputs.add(name="a", datatype="UINT8", shape=[1]).contents.uint_contents.extend([300])
    bad.append((r, InvalidInput, "out of range"))
    r = pb.ModelInferRequest(model_name="m")
    r.inputs.add(name="a", datatype="FP16", shape=[1])
    bad.append((r, BadRequest, "only as raw_input_contents"))
    r = pb.ModelInferRequest(model_name="m")
    r.inputs.add(name="a", datatype="FP32", shape=[2])
    r.raw_input_contents.append(b"\0" * 4)
    bad.append((r, InvalidInput, "needs 8 bytes"))
    r = pb.ModelInferRequest(model_name="m")
    r.inputs.add(name="a", datatype="FP32", shape=[1])
    r.inputs.add(name="b", datatype="FP32", shape=[1])
    r.raw_input_contents.append(b"\0" * 4)
    bad.append((r, BadRequest, "2 inputs"))
    bad.append((pb.ModelInferRequest(model_name="m"), BadRequest, "empty"))
    for message, error, text in bad:
        with pytest.raises(error, match=text):
            decode_infer_request(message)


def test_decompression_is_bounded() -> None:
    data = b"x" * 1000
    assert decompress(gzip.compress(data), "gzip", 1000) == data
    assert decompress(zlib.compress(data), "Deflate", 1000) == data
    raw = zlib.compressobj(wbits=-15)
    assert decompress(raw.compress(data) + raw.flush(), "deflate", 1000) == data
    with pytest.raises(PayloadTooLarge):
        decompress(gzip.compress(data), "gzip", 999)
    with pytest.raises(BadRequest):
        decompress(gzip.compress(data)[:-8], "gzip", 1000)
    with pytest.raises(BadRequest):
        decompress(gzip.compress(data) + b"junk", "gzip", 1000)
    with pytest.raises(UnsupportedMediaType):
        decompress(data, "br", 1000)


def test_api_keys() -> None:
    settings = Settings(api_keys=["k1", "k2"], admin_key="adm")
    keys, access = ApiKeys(settings), PathAccess(settings)

    def check(path: str, key: str | None) -> int:
        headers = {} if key is None else {b"authorization": f"Bearer {key}".encode()}
        error = keys.check(access(path), headers)
        return 200 if error is None else error.status_code

    assert check("/v2/health/ready", None) == 200  # health stays open
    assert check("/v2/models/digits/infer", None) == 401
    assert check("/v2/models/digits/infer", "k2") == 200
    assert check("/v2/models/digits/infer", "nope") == 401
    assert check("/v2/models/digits/infer", "adm") == 200
    assert check("/v2/repository/index", "k1") == 403
    assert check("/v2/repository/index", "adm") == 200
    assert keys.check("inference", {b"x-api-key": b"k1"}) is None
    # The result the transports record in the request context.
    assert keys.authenticate("inference", {b"x-api-key": b"k1"}) == ("key", None)
    assert keys.authenticate("inference", {b"x-api-key": b"adm"}) == ("admin", None)
    assert keys.authenticate("health", {}) == ("open", None)
    assert keys.authenticate("inference", {})[0] == "denied"
    assert ApiKeys(Settings()).authenticate("inference", {}) == ("off", None)
    assert ApiKeys(Settings(admin_key="adm")).authenticate("inference", {}) == ("off", None)
    assert ApiKeys(Settings(api_keys=["k1"], auth_health=True)).authenticate("health", {})[0] == "denied"
    assert [access(p) for p in ("/metrics", "/v2/health/live", "/v2/repository/index", "/predict")] == [
        "open",
        "health",
        "admin",
        "inference",
    ]


def test_route_matcher() -> None:
    """The fast path's matcher and FastAPI's registration read one table."""
    matcher = RouteMatcher()

    def match(path: str) -> tuple[Any, dict[str, Any]] | None:
        found = matcher.match(path)
        return None if found is None else (found[0].handler, {**found[0].defaults, **found[1]})

    assert match("/predict") == (predict.predict_any, {"version": None})
    assert match("/models/digits/predict") == (predict.predict_any, {"name": "digits", "version": None})
    assert match("/models/digits/versions/2/predict") == (
        predict.predict_any,
        {"name": "digits", "version": "2"},
    )
    assert match("/v2/models/digits/infer") == (v2.infer, {"name": "digits", "version": None})
    assert match("/v2/models/digits/versions/1/infer") == (v2.infer, {"name": "digits", "version": "1"})
    for other in (
        "/v2/models/digits",
        "/v2/models/digits/ready",
        "/models/x/y/predict",
        "/v2/infer",
        "/",
        "/v2/models//infer",
        "/v2/models/a%2Fb/infer",
    ):
        assert match(other) is None, other
    router = APIRouter()
    register(router)
    assert [(r.path, r.methods) for r in router.routes] == [(r.path, {"POST"}) for r in ROUTES]  # type: ignore[attr-defined]


def test_grpc_codes_and_stats_merge() -> None:
    assert grpc_code(404) == grpc.StatusCode.NOT_FOUND and grpc_code(422) == grpc.StatusCode.INVALID_ARGUMENT
    assert (
        grpc_code(503) == grpc.StatusCode.UNAVAILABLE and grpc_code(504) == grpc.StatusCode.DEADLINE_EXCEEDED
    )
    assert grpc_code(413) == grpc.StatusCode.RESOURCE_EXHAUSTED and grpc_code(500) == grpc.StatusCode.INTERNAL

    def stat(count: int, sizes: dict[int, int], last: int) -> dict[str, Any]:
        d = {"count": count, "ns": 10 * count}
        return {
            "name": "m",
            "version": "1",
            "last_inference": last,
            "inference_count": count,
            "execution_count": sum(sizes.values()),
            "inference_stats": {"success": d, "queue": d},
            "batch_stats": [
                {
                    "batch_size": s,
                    "compute_input": d,
                    "compute_infer": {"count": n, "ns": n},
                    "compute_output": d,
                }
                for s, n in sizes.items()
            ],
        }

    [merged] = merge_stats([stat(3, {1: 1, 2: 1}, 5), stat(4, {2: 2}, 9)])
    assert merged["inference_count"] == 7 and merged["execution_count"] == 4 and merged["last_inference"] == 9
    assert merged["inference_stats"]["success"] == {"count": 7, "ns": 70}
    assert [(b["batch_size"], b["compute_infer"]["count"]) for b in merged["batch_stats"]] == [(1, 1), (2, 3)]


def test_model_config_for_perf_analyzer() -> None:
    """config.json's knobs win over the settings: the configuration says what the batcher does."""

    async def body(plane: DataPlane) -> tuple[dict[str, Any], dict[str, Any]]:
        return plane.model_config("digits"), plane.model_config("sentiment-lstm", "1")

    digits, sentiment = with_plane(body, max_queue_delay_ms=2.5, max_queue_size=77, timeout_s=3)
    assert digits["max_batch_size"] == 64 and digits["input"][0]["dims"] == [28, 28, 1]
    batching = digits["dynamic_batching"]
    assert batching["max_queue_delay_microseconds"] == 0  # models/digits/config.json sets 0
    assert batching["default_queue_policy"] == {
        "timeout_action": "REJECT",
        "default_timeout_microseconds": 3_000_000,
        "max_queue_size": 77,
    }
    assert sentiment["input"][0]["data_type"] == "TYPE_INT64" and sentiment["input"][0]["dims"] == [-1]
