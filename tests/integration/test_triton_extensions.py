"""Triton's extensions over HTTP as Triton's own client and perf_analyzer use them: model configuration,
statistics, compressed requests (gzip, deflate; bounded), and HEAD on the health routes."""

from __future__ import annotations

import gzip
import zlib

import httpx
import numpy as np
import orjson
import pytest
import tritonclient.grpc as tg
import tritonclient.http as th

from tests.conftest import MODELS, Server

TRITON_TO_NUMPY = {"TYPE_UINT8": np.uint8, "TYPE_INT64": np.int64, "TYPE_FP32": np.float32}


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_perf_analyzer_handshake(server: Server, protocol: str) -> None:
    """What perf_analyzer does before it measures (no registry package ships its binary, so its steps are
    replayed with tritonclient): read the config, build random inputs of max_batch_size rows from the dims
    without the batch axis, infer, and read the statistics back."""
    client: th.InferenceServerClient | tg.InferenceServerClient
    if protocol == "http":
        client, mod, as_json = th.InferenceServerClient(f"127.0.0.1:{server.port}"), th, {}
    else:
        client, mod, as_json = tg.InferenceServerClient(server.grpc_url), tg, {"as_json": True}
    for model in ("digits", "sentiment-lstm"):
        raw = client.get_model_config(model, **as_json)
        config = raw["config"] if protocol == "grpc" else raw
        batch = int(config["max_batch_size"])
        assert batch > 0
        before = client.get_inference_statistics(model, **as_json)["model_stats"][0]
        inputs = []
        rng = np.random.default_rng(0)
        for spec in config["input"]:
            dims = [int(d) if int(d) > 0 else 16 for d in spec["dims"]]  # perf_analyzer's --shape for -1
            dtype = TRITON_TO_NUMPY[spec["data_type"]]
            # Ids from 1: sentiment-lstm refuses its pad id 0 before a token (perf_analyzer's own random
            # INT64 values lie outside its vocabulary: it needs --input-data with real ids for that model).
            data = rng.integers(1, 50, size=[batch, *dims]).astype(dtype)
            inp = mod.InferInput(spec["name"], list(data.shape), spec["data_type"].removeprefix("TYPE_"))
            inp.set_data_from_numpy(data)
            inputs.append(inp)
        result = client.infer(model, inputs)
        for out in config["output"]:
            assert list(result.as_numpy(out["name"]).shape) == [batch, *[int(d) for d in out["dims"]]]
        after = client.get_inference_statistics(model, **as_json)["model_stats"][0]
        assert int(after["inference_count"]) - int(before.get("inference_count", 0)) == batch
        assert int(after["execution_count"]) > int(before.get("execution_count", 0))
        assert int(after["inference_stats"]["queue"]["ns"]) > 0


def test_model_config_and_stats_routes(client: httpx.Client) -> None:
    config = client.get("/v2/models/sentiment-lstm/versions/1/config").json()
    assert config["name"] == "sentiment-lstm" and config["backend"] == "onnxruntime"
    assert config["input"] == [{"name": "ids", "data_type": "TYPE_INT64", "dims": [-1]}]
    assert config["parameters"]["input_kind"] == {"string_value": "text"}
    policy = config["dynamic_batching"]["default_queue_policy"]
    assert policy["max_queue_size"] > 0 and policy["default_timeout_microseconds"] > 0
    assert "model_configuration" in client.get("/v2").json()["extensions"]
    every = client.get("/v2/models/stats").json()["model_stats"]
    assert {(m["name"], m["version"]) for m in every} == {
        (p.name, max((v.name for v in p.iterdir() if v.name.isdigit()), key=int))
        for p in MODELS.iterdir()
        if p.is_dir()
    }
    one = client.get("/v2/models/digits/stats").json()["model_stats"]
    assert [m["name"] for m in one] == ["digits"]
    stat = one[0]
    assert set(stat["inference_stats"]) >= {"success", "fail", "queue", "compute_input", "compute_infer"}
    for path in ("/v2/models/nope/config", "/v2/models/nope/stats", "/v2/models/digits/versions/3/stats"):
        r = client.get(path)
        assert r.status_code == 404 and r.json()["error"], path


def test_head_on_health_routes(client: httpx.Client) -> None:
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/digits/ready"):
        r = client.head(path)
        assert r.status_code == 200 and r.content == b"", path
    assert client.head("/v2/models/nope/ready").status_code == 404


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_tritonclient_compressed_requests(server: Server, algorithm: str) -> None:
    c = th.InferenceServerClient(f"127.0.0.1:{server.port}")
    x = np.full((3, 28, 28, 1), 7, np.uint8)
    for binary in (False, True):
        inp = th.InferInput("pixels", list(x.shape), "UINT8")
        inp.set_data_from_numpy(x, binary_data=binary)
        r = c.infer(
            "digits",
            [inp],
            request_compression_algorithm=algorithm,
            response_compression_algorithm=algorithm,
        )
        assert r.as_numpy("probabilities").shape == (3, 10)


def test_compressed_bodies_are_bounded(client: httpx.Client) -> None:
    body = orjson.dumps({"texts": ["I loved this film"]})
    headers = {"content-type": "application/json"}
    raw_deflate = zlib.compressobj(wbits=-15)
    raw = raw_deflate.compress(body) + raw_deflate.flush()
    for encoded, coding in (
        (gzip.compress(body), "gzip"),
        (zlib.compress(body), "deflate"),
        (raw, "deflate"),
    ):
        r = client.post(
            "/predict?model=sentiment", content=encoded, headers={**headers, "content-encoding": coding}
        )
        assert r.status_code == 200 and r.json()["predictions"][0]["label"] == "positive", r.text
    # 64 MiB of zeros in 65 KB: refused once inflating passes the 32 MiB body limit, never held whole.
    bomb = gzip.compress(b"\0" * (64 << 20), compresslevel=9)
    r = client.post("/v2/models/digits/infer", content=bomb, headers={**headers, "content-encoding": "gzip"})
    assert r.status_code == 413 and "decompressed" in r.json()["error"]
    for content, coding, status in (
        (b"not gzip", "gzip", 400),
        (gzip.compress(body)[:-12], "gzip", 400),
        (body, "br", 415),
    ):
        r = client.post(
            "/predict?model=sentiment", content=content, headers={**headers, "content-encoding": coding}
        )
        assert r.status_code == status and r.json()["error"], (coding, r.text)
