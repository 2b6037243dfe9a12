"""The Open Inference Protocol over gRPC, with Triton's own client (sync, asyncio, streaming) unchanged
against a real server: health, metadata, config, statistics, raw and typed contents, BYTES, errors."""

from __future__ import annotations

import asyncio
import queue
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as tg
import tritonclient.grpc.aio as tga
from google.rpc import error_details_pb2, status_pb2
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from tests.conftest import Server, run_server
from tests.graphs import affine_model, copy_shipped, slow_model, write_config
from tests.integration.test_operations import in_the_batcher, metric
from tests.integration.test_v2 import pixels

DIGITS = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9)


def text(x: bytes | str) -> str:
    return x.decode() if isinstance(x, bytes) else x


def digit_batch(digit_png: Callable[[int], bytes]) -> np.ndarray:
    return np.concatenate([pixels(digit_png(d)) for d in DIGITS])


def test_health_metadata_and_config(server: Server) -> None:
    c = tg.InferenceServerClient(server.grpc_url)
    assert c.is_server_live() and c.is_server_ready()
    assert c.is_model_ready("digits") and c.is_model_ready("sentiment", "2")
    assert not c.is_model_ready("nope") and not c.is_model_ready("digits", "9")
    meta = c.get_server_metadata(as_json=True)
    assert meta["name"] == "modelserve"
    assert {"model_configuration", "statistics", "classification"} <= set(meta["extensions"])
    m = c.get_model_metadata("digits", as_json=True)
    assert m["platform"] == "onnxruntime_onnx" and m["versions"] == ["1"]
    assert m["inputs"] == [{"name": "pixels", "datatype": "UINT8", "shape": ["-1", "28", "28", "1"]}]
    # The configuration perf_analyzer reads: dims without the batch axis, the batcher's knobs.
    config = c.get_model_config("digits", as_json=True)["config"]
    assert config["max_batch_size"] == 64 and config["platform"] == "onnxruntime_onnx"
    assert config["input"] == [{"name": "pixels", "data_type": "TYPE_UINT8", "dims": ["28", "28", "1"]}]
    assert [o["dims"] for o in config["output"]] == [["10"], ["10"]]
    assert "dynamic_batching" in config
    http = httpx.get(f"{server.url}/v2/models/digits/config").json()
    assert http["input"][0]["dims"] == [28, 28, 1] and http["max_batch_size"] == config["max_batch_size"]
    with pytest.raises(InferenceServerException, match="unknown model") as e:
        c.get_model_metadata("nope")
    assert e.value.status() == "StatusCode.NOT_FOUND"


def test_infer_raw_contents_and_classification(server: Server, digit_png: Callable[[int], bytes]) -> None:
    c = tg.InferenceServerClient(server.grpc_url)
    batch = digit_batch(digit_png)
    inp = tg.InferInput("pixels", list(batch.shape), "UINT8")
    inp.set_data_from_numpy(batch)
    outputs = [tg.InferRequestedOutput("probabilities"), tg.InferRequestedOutput("logits", class_count=3)]
    result = c.infer("digits", [inp], outputs=outputs, request_id="r-1", parameters={"trace": "x"})
    assert result.get_response().id == "r-1" and result.get_response().model_version == "1"
    assert result.as_numpy("probabilities").argmax(1).tolist() == list(DIGITS)
    top3 = result.as_numpy("logits")
    assert top3.shape == (10, 3)
    assert [text(row[0]).split(":")[2] for row in top3] == [str(d) for d in DIGITS]
    # The same pixels over HTTP answer the same probabilities (one pipeline).
    body = {
        "inputs": [
            {
                "name": "pixels",
                "datatype": "UINT8",
                "shape": list(batch.shape),
                "data": batch.ravel().tolist(),
            }
        ]
    }
    http = httpx.post(f"{server.url}/v2/models/digits/infer", json=body).json()
    probs = next(o for o in http["outputs"] if o["name"] == "probabilities")["data"]
    np.testing.assert_allclose(result.as_numpy("probabilities").ravel(), probs, rtol=1e-5)


def test_typed_contents_and_bytes(server: Server, digit_png: Callable[[int], bytes]) -> None:
    """Typed ``contents`` instead of raw (what other OIP clients send), and BYTES inputs: sentences and
    encoded PNGs for the models' own preprocessing."""
    with grpc.insecure_channel(server.grpc_url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        req = service_pb2.ModelInferRequest(model_name="digits", id="typed")
        batch = pixels(digit_png(7))
        t = req.inputs.add(name="pixels", datatype="UINT8", shape=list(batch.shape))
        t.contents.uint_contents.extend(batch.ravel().tolist())
        req.outputs.add(name="probabilities")
        resp = stub.ModelInfer(req)
        assert resp.id == "typed" and [o.name for o in resp.outputs] == ["probabilities"]
        probs = np.frombuffer(resp.raw_output_contents[0], dtype="<f4").reshape(list(resp.outputs[0].shape))
        assert probs.argmax() == 7
        sent = service_pb2.ModelInferRequest(model_name="sentiment")
        t = sent.inputs.add(name="text", datatype="BYTES", shape=[2])
        t.contents.bytes_contents.extend([b"I loved this film", b"terrible, a waste of money"])
        out = sent.outputs.add(name="probabilities")
        out.parameters["classification"].int64_param = 1
        resp = stub.ModelInfer(sent)
        labels = [x.split(b":")[2] for x in _unpack(resp.raw_output_contents[0])]
        assert labels == [b"positive", b"negative"]
        wrong = service_pb2.ModelInferRequest(model_name="digits")
        wrong.inputs.add(name="pixels", datatype="UINT8", shape=[1, 28, 28, 1]).contents.uint_contents.extend(
            [1, 2]
        )
        with pytest.raises(grpc.RpcError) as e:
            stub.ModelInfer(wrong)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "784 elements" in e.value.details()
    c = tg.InferenceServerClient(server.grpc_url)
    png = tg.InferInput("image", [1], "BYTES")
    png.set_data_from_numpy(np.array([digit_png(3)], dtype=np.object_))
    assert c.infer("digits", [png]).as_numpy("probabilities").argmax() == 3


def _unpack(raw: bytes) -> list[bytes]:
    from service.protocol.tensors import unpack_bytes

    return unpack_bytes(raw)


def test_errors_map_to_grpc_codes(server: Server) -> None:
    c = tg.InferenceServerClient(server.grpc_url)
    x = np.zeros((1, 28, 28, 1), np.uint8)
    inp = tg.InferInput("pixels", [1, 28, 28, 1], "UINT8")
    inp.set_data_from_numpy(x)
    cases: list[tuple[Callable[[], Any], str, str]] = [
        (lambda: c.infer("nope", [inp]), "NOT_FOUND", "unknown model"),
        (lambda: c.infer("digits", [inp], model_version="7"), "NOT_FOUND", "no loaded version 7"),
        (
            lambda: c.infer("digits", [inp], outputs=[tg.InferRequestedOutput("nope")]),
            "INVALID_ARGUMENT",
            "has no output 'nope'",
        ),
        (lambda: c.get_model_config("nope"), "NOT_FOUND", "unknown model"),
        (lambda: c.get_inference_statistics("nope"), "NOT_FOUND", "unknown model"),
    ]
    bad = tg.InferInput("pixels", [1, 28, 28], "UINT8")
    bad.set_data_from_numpy(np.zeros((1, 28, 28), np.uint8))
    cases.append((lambda: c.infer("digits", [bad]), "INVALID_ARGUMENT", "does not match"))
    floats = tg.InferInput("pixels", [1, 28, 28, 1], "FP32")
    floats.set_data_from_numpy(np.full((1, 28, 28, 1), 0.5, np.float32))
    cases.append((lambda: c.infer("digits", [floats]), "INVALID_ARGUMENT", "do not convert exactly"))
    for call, code, message in cases:
        with pytest.raises(InferenceServerException) as e:
            call()
        assert e.value.status() == f"StatusCode.{code}", (code, e.value.message())
        assert message in (e.value.message() or "")


def test_a_shape_no_array_can_have_is_invalid_argument(server: Server) -> None:
    """[0, 2**62, 28, 1] holds no element, so its raw contents (none) match it; numpy then refused the
    huge dimension (INTERNAL before)."""
    request = service_pb2.ModelInferRequest(model_name="digits")
    request.inputs.add(name="pixels", datatype="UINT8", shape=[0, 2**62, 28, 1])
    request.raw_input_contents.append(b"")
    with grpc.insecure_channel(server.grpc_url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as e:
            stub.ModelInfer(request, timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "is too large" in (e.value.details() or "")


def test_asyncio_client_and_statistics(tmp_path: Path, digit_png: Callable[[int], bytes]) -> None:
    """tritonclient's grpc.aio client, many requests at once: they batch together with HTTP ones, and the
    statistics extension (gRPC and HTTP) and the Prometheus metrics count the same traffic."""
    repo = tmp_path / "models"
    copy_shipped("digits", repo)
    with run_server(repo, tmp_path) as srv:
        one = pixels(digit_png(4))

        async def main() -> list[int]:
            async with tga.InferenceServerClient(srv.grpc_url) as c:
                assert await c.is_server_ready()

                async def call(i: int) -> int:
                    inp = tga.InferInput("pixels", list(one.shape), "UINT8")
                    inp.set_data_from_numpy(one)
                    r = await c.infer("digits", [inp], request_id=str(i))
                    return int(r.as_numpy("probabilities").argmax())

                async with httpx.AsyncClient(base_url=srv.url) as h:
                    body = {
                        "inputs": [
                            {
                                "name": "pixels",
                                "datatype": "UINT8",
                                "shape": [1, 28, 28, 1],
                                "data": one.ravel().tolist(),
                            }
                        ]
                    }
                    posts = [h.post("/v2/models/digits/infer", json=body) for _ in range(8)]
                    answers = await asyncio.gather(*(call(i) for i in range(32)), *posts)
                assert all(r.status_code == 200 for r in answers[32:])
                return [a for a in answers[:32] if isinstance(a, int)]

        assert asyncio.run(main()) == [4] * 32
        c = tg.InferenceServerClient(srv.grpc_url)
        stats = c.get_inference_statistics("digits", as_json=True)["model_stats"][0]
        assert int(stats["inference_count"]) == 40
        assert int(stats["inference_stats"]["success"]["count"]) == 40
        runs = int(stats["execution_count"])
        assert 1 <= runs <= 40
        assert sum(int(b["compute_infer"]["count"]) for b in stats["batch_stats"]) == runs
        assert (
            sum(int(b["batch_size"]) * int(b["compute_infer"]["count"]) for b in stats["batch_stats"]) == 40
        )
        http = httpx.get(f"{srv.url}/v2/models/stats").json()["model_stats"][0]
        assert http["inference_count"] == 40 and http["execution_count"] == runs
        assert (
            httpx.get(f"{srv.url}/v2/models/digits/versions/1/stats").json()["model_stats"][0]["name"]
            == "digits"
        )
        scrape = httpx.get(f"{srv.url}/metrics").text
    labels = {"model": "digits", "version": "1", "outcome": "success"}
    assert metric(scrape, "modelserve_requests_total", protocol="grpc", **labels) == 32
    assert metric(scrape, "modelserve_requests_total", protocol="http", **labels) == 8
    assert metric(scrape, "modelserve_batch_runs_total", model="digits", version="1") == runs


def test_streaming(server: Server, digit_png: Callable[[int], bytes]) -> None:
    """ModelStreamInfer: answers come back per request id; a bad request errors alone, the stream goes on."""
    answers: queue.Queue[tuple[Any, Any]] = queue.Queue()
    c = tg.InferenceServerClient(server.grpc_url)
    c.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        for d in (2, 5, 9):
            inp = tg.InferInput("pixels", [1, 28, 28, 1], "UINT8")
            inp.set_data_from_numpy(pixels(digit_png(d)))
            c.async_stream_infer("digits", [inp], request_id=f"d{d}")
        bad = tg.InferInput("pixels", [1, 2], "UINT8")
        bad.set_data_from_numpy(np.zeros((1, 2), np.uint8))
        c.async_stream_infer("digits", [bad], request_id="bad")
        got, errors = {}, []
        for _ in range(4):
            result, error = answers.get(timeout=30)
            if error is not None:
                errors.append(str(error))
            else:
                got[result.get_response().id] = int(result.as_numpy("probabilities").argmax())
    finally:
        c.stop_stream()
    assert got == {"d2": 2, "d5": 5, "d9": 9}
    assert len(errors) == 1 and "does not match" in errors[0]


@pytest.mark.slow
def test_deadline_overload_keys_and_message_size(tmp_path: Path) -> None:
    """A client deadline bounds the queue wait (DEADLINE_EXCEEDED, never run); a full queue answers
    UNAVAILABLE with RetryInfo; API keys travel as metadata; the body limit bounds messages."""
    repo = tmp_path / "models"
    # About 0.7 s a run on a quiet machine (more when loaded): the short deadline below (0.3 s, sent 0.1 s
    # after the first request) always expires while it is still queued. At 0.23 s a run a quiet CI machine
    # started it in time, and the client's deadline expired during its run instead.
    slow_model(repo / "slow" / "1", matmuls=48, size=1024)
    # The queue's own limit out of the way: on a busy machine two 0.7 s runs can stretch past 30 s.
    write_config(repo / "slow", max_batch_size=1, max_queue_size=2, timeout_s=280)
    env = {"MODELSERVE_API_KEYS": "k1", "MODELSERVE_MAX_BODY_BYTES": "100000", "MODELSERVE_LOG_LEVEL": "info"}
    with run_server(repo, tmp_path, env=env) as srv:
        auth = [("authorization", "Bearer k1")]
        with grpc.insecure_channel(srv.grpc_url) as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            assert stub.ServerLive(service_pb2.ServerLiveRequest()).live  # health stays open
            req = service_pb2.ModelInferRequest(model_name="slow")
            req.inputs.add(name="x", datatype="FP32", shape=[1, 4])
            req.raw_input_contents.append(np.ones((1, 4), np.float32).tobytes())
            with pytest.raises(grpc.RpcError) as e:
                stub.ModelInfer(req)
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.RpcError) as e:
                stub.ModelInfer(req, metadata=[("authorization", "Bearer wrong")])
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert stub.ModelInfer(req, metadata=auth).model_name == "slow"
            big = service_pb2.ModelInferRequest(model_name="slow")
            big.inputs.add(name="x", datatype="FP32", shape=[50_000, 4])
            big.raw_input_contents.append(np.ones((50_000, 4), np.float32).tobytes())
            with pytest.raises(grpc.RpcError) as e:
                stub.ModelInfer(big, metadata=auth)
            assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

            # One runs; a request with a short deadline waits behind it and expires in the queue; one
            # more waits (the queue holds two); the rest are refused at once.
            futures = [stub.ModelInfer.future(req, metadata=auth)]
            time.sleep(0.1)
            short = stub.ModelInfer.future(req, metadata=auth, timeout=0.3)
            time.sleep(0.1)
            futures += [stub.ModelInfer.future(req, metadata=auth) for _ in range(5)]
            codes = []
            for f in futures:
                try:
                    f.result()
                    codes.append(grpc.StatusCode.OK)
                except grpc.RpcError as err:
                    codes.append(err.code())
                    if err.code() == grpc.StatusCode.UNAVAILABLE:
                        trailers = dict(err.trailing_metadata() or ())
                        assert trailers["retry-after"] == "1"
                        status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
                        retry = error_details_pb2.RetryInfo()
                        assert status.details[0].Unpack(retry) and retry.retry_delay.seconds == 1
            assert codes.count(grpc.StatusCode.UNAVAILABLE) >= 1 and grpc.StatusCode.OK in codes
            with pytest.raises(grpc.RpcError) as e:
                short.result()
            assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            stats = stub.ModelStatistics(service_pb2.ModelStatisticsRequest(name="slow"), metadata=auth)
            # Every run answered someone: the expired request never ran.
            assert stats.model_stats[0].execution_count == 1 + codes.count(grpc.StatusCode.OK)
        log = srv.log()
    assert "GRPC ModelInfer 200" in log and "GRPC ModelInfer 503" in log and "model=slow:1" in log


def test_repository_over_grpc(tmp_path: Path) -> None:
    repo = tmp_path / "models"
    affine_model(repo / "affine" / "1")
    with run_server(repo, tmp_path, env={"MODELSERVE_ADMIN_KEY": "adm"}) as srv:
        c = tg.InferenceServerClient(srv.grpc_url)
        admin = {"authorization": "Bearer adm"}
        with pytest.raises(InferenceServerException) as e:
            c.unload_model("affine")
        assert e.value.status() == "StatusCode.UNAUTHENTICATED"
        c.unload_model("affine", headers=admin)
        assert not c.is_model_ready("affine", headers=admin)
        index = c.get_model_repository_index(headers=admin, as_json=True)["models"]
        assert index == [{"name": "affine", "state": "UNAVAILABLE", "reason": "unloaded"}]
        c.load_model("affine", headers=admin)
        assert c.is_model_ready("affine", headers=admin)
        with pytest.raises(InferenceServerException, match="no model folder") as e:
            c.load_model("nope", headers=admin)
        assert e.value.status() == "StatusCode.NOT_FOUND"


# KServe's client in a child process: its .proto and Triton's (imported above) define the same
# message names, which one protobuf descriptor pool cannot hold twice.
KSERVE_SCRIPT = r"""
import asyncio, json, sys
import numpy as np
from PIL import Image
from kserve import InferenceGRPCClient, InferInput, InferRequest
from kserve.protocol.infer_type import RequestedOutput
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb, grpc_predict_v2_pb2_grpc as pbg
import grpc

url, png_path = sys.argv[1], sys.argv[2]
pixels = np.asarray(Image.open(png_path).convert("L"), dtype=np.uint8)[None, :, :, None]

async def main():
    out = {}
    client = InferenceGRPCClient(url, retries=0)
    out["live"] = await client.is_server_live()
    out["ready"] = await client.is_server_ready()
    out["model_ready"] = await client.is_model_ready("digits")
    inp = InferInput(name="pixels", shape=list(pixels.shape), datatype="UINT8")
    inp.set_data_from_numpy(pixels, binary_data=True)
    res = await client.infer(InferRequest(model_name="digits", infer_inputs=[inp], request_id="k-1"))
    out["id"] = res.id
    out["argmax"] = {o.name: int(o.as_numpy().argmax()) for o in res.outputs}
    typed = InferInput(name="pixels", shape=list(pixels.shape), datatype="UINT8")
    typed.set_data_from_numpy(pixels, binary_data=False)
    res = await client.infer(
        InferRequest(model_name="digits", infer_inputs=[typed],
                     request_outputs=[RequestedOutput("probabilities", parameters={"classification": 2})])
    )
    out["classification"] = [x.decode() if isinstance(x, bytes) else x for x in res.outputs[0].as_numpy().ravel()]
    try:
        await client.infer(InferRequest(model_name="nope", infer_inputs=[inp]))
    except grpc.RpcError as e:
        out["error"] = [e.code().name, e.details()]
    except Exception as e:
        out["error"] = [type(e).__name__, str(e)]
    await client.close()
    async with grpc.aio.insecure_channel(url) as channel:
        stub = pbg.GRPCInferenceServiceStub(channel)
        unloaded = await stub.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name="digits"))
        out["unloaded"] = [unloaded.model_name, unloaded.isUnloaded]
        out["ready_after_unload"] = (await stub.ModelReady(pb.ModelReadyRequest(name="digits"))).ready
        loaded = await stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="digits"))
        out["loaded"] = [loaded.model_name, loaded.isLoaded]
    print(json.dumps(out))

asyncio.run(main())
"""


@pytest.mark.slow
def test_kserve_grpc_client(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    from tests.conftest import EXAMPLES, ROOT

    repo = tmp_path / "models"
    copy_shipped("digits", repo)
    with run_server(repo, tmp_path) as srv:
        done = subprocess.run(
            [sys.executable, "-c", KSERVE_SCRIPT, srv.grpc_url, str(EXAMPLES / "digits" / "6.png")],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )
        assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["live"] and out["ready"] and out["model_ready"]
    assert out["id"] == "k-1" and out["argmax"] == {"logits": 6, "probabilities": 6}
    assert len(out["classification"]) == 2 and out["classification"][0].endswith(":6:6")
    assert out["error"][0] == "NOT_FOUND" or "unknown model" in out["error"][1], out["error"]
    assert out["unloaded"] == ["digits", True] and out["ready_after_unload"] is False
    assert out["loaded"] == ["digits", True]


@pytest.mark.parametrize("engine", ["native", "grpcio"])
def test_sigterm_answers_grpc_calls_in_flight_and_exits_0(tmp_path: Path, engine: str) -> None:
    """Calls multiplexed on one connection and still queued at SIGTERM are answered; then the server exits 0
    (the native server sends GOAWAY and waits for its calls, as grpc.aio's stop does)."""
    repo = tmp_path / "models"
    slow_model(repo / "slow" / "1", matmuls=16)  # ~0.1 s a run on a quiet machine, one row at a time
    write_config(repo / "slow", max_batch_size=1, timeout_s=280)
    env = {"MODELSERVE_GRPC_ENGINE": engine, "MODELSERVE_DRAIN_TIMEOUT_S": "120"}
    with run_server(repo, tmp_path, env=env) as srv:

        async def main() -> list[Any]:
            async with grpc.aio.insecure_channel(srv.grpc_url) as channel:
                stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
                calls = []
                for i in range(6):
                    req = service_pb2.ModelInferRequest(model_name="slow", id=f"r{i}")
                    req.inputs.add(name="x", datatype="FP32", shape=[1, 4])
                    req.raw_input_contents.append(np.full((1, 4), i, np.float32).tobytes())
                    calls.append(asyncio.ensure_future(stub.ModelInfer(req, timeout=120)))
                for _ in range(3000):  # all six taken in (bounded: 60 s)
                    if in_the_batcher(srv.url, "slow")[1] >= 6:
                        break
                    await asyncio.sleep(0.02)
                srv.process.send_signal(signal.SIGTERM)
                return await asyncio.gather(*calls)

        answers = asyncio.run(main())
        assert srv.process.wait(timeout=120) == 0
    assert sorted(a.id for a in answers) == [f"r{i}" for i in range(6)]
    assert "Traceback" not in srv.log()


@pytest.mark.slow
def test_grpc_with_workers(tmp_path: Path) -> None:
    """Two workers share the gRPC port: statistics sum both, a repository call over gRPC reaches both."""
    repo = tmp_path / "models"
    affine_model(repo / "affine" / "1")
    with run_server(repo, tmp_path, env={"MODELSERVE_WORKERS": "2"}) as srv:
        x = np.ones((2, 4), np.float32)
        for _ in range(12):  # a fresh channel each: the kernel spreads connections over the workers
            c = tg.InferenceServerClient(srv.grpc_url)
            inp = tg.InferInput("x", [2, 4], "FP32")
            inp.set_data_from_numpy(x)
            assert c.infer("affine", [inp]).as_numpy("y").tolist() == [[3.0] * 4] * 2
            c.close()
        c = tg.InferenceServerClient(srv.grpc_url)
        assert c.is_server_ready()
        stats = c.get_inference_statistics("affine", as_json=True)["model_stats"][0]
        assert int(stats["inference_count"]) == 24 and int(stats["inference_stats"]["success"]["count"]) == 12
        assert (
            httpx.get(f"{srv.url}/v2/models/affine/stats").json()["model_stats"][0]["inference_count"] == 24
        )
        c.unload_model("affine")
        for _ in range(4):  # every worker unloaded it
            fresh = tg.InferenceServerClient(srv.grpc_url)
            assert not fresh.is_model_ready("affine")
            fresh.close()
        c.load_model("affine")
        assert c.is_model_ready("affine")


@pytest.mark.slow
def test_one_batch_mixes_http_and_grpc(tmp_path: Path) -> None:
    """One gRPC and one HTTP request make one batch: the batcher holds the first until a second row
    arrives (a queue delay far longer than any test), whichever transport each came by. Counted, not timed:
    a busy machine cannot split them."""
    repo = tmp_path / "models"
    affine_model(repo / "affine" / "1")
    write_config(repo / "affine", max_batch_size=2, max_queue_delay_ms=120_000, timeout_s=120)
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
    with run_server(repo, tmp_path) as srv:
        req = service_pb2.ModelInferRequest(model_name="affine", id="g")
        req.inputs.add(name="x", datatype="FP32", shape=[1, 4])
        req.raw_input_contents.append(np.array([[1, 2, 3, 4]], np.float32).tobytes())

        async def main() -> tuple[httpx.Response, service_pb2.ModelInferResponse]:
            async with (
                httpx.AsyncClient(base_url=srv.url, timeout=150) as h,
                grpc.aio.insecure_channel(srv.grpc_url) as channel,
            ):
                stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
                return await asyncio.gather(
                    h.post("/v2/models/affine/infer", json=body), stub.ModelInfer(req, timeout=150)
                )

        http, answer = asyncio.run(main())
        assert http.status_code == 200 and http.json()["outputs"][0]["data"] == [3.0, 5.0, 7.0, 9.0]
        assert answer.id == "g"
        assert np.frombuffer(answer.raw_output_contents[0], np.float32).tolist() == [3.0, 5.0, 7.0, 9.0]
        stats = httpx.get(f"{srv.url}/v2/models/affine/stats").json()["model_stats"][0]
    sizes = {b["batch_size"]: b["compute_infer"]["count"] for b in stats["batch_stats"]}
    assert sizes == {2: 1}, sizes  # one run took both


@pytest.mark.parametrize("engine", ["native", "grpcio"])
def test_the_standard_health_check(tmp_path: Path, engine: str) -> None:
    """grpc.health.v1.Health/Check, what Kubernetes' gRPC probes and grpc_health_probe call (it answered
    UNIMPLEMENTED): SERVING when ready, for the server ('') or the inference service by name; another
    service NOT_FOUND; NOT_SERVING while the server is not ready (a model failed to load)."""
    env = {"MODELSERVE_GRPC_ENGINE": engine}

    def check(url: str, service: str) -> bytes:
        request = b"\x0a" + bytes([len(service)]) + service.encode() if service else b""
        with grpc.insecure_channel(url) as channel:
            call = channel.unary_unary(
                "/grpc.health.v1.Health/Check",
                request_serializer=lambda b: b,
                response_deserializer=lambda b: b,
            )
            return call(request, timeout=10)

    copy_shipped("digits", tmp_path / "models")
    with run_server(tmp_path / "models", tmp_path, env=env) as srv:
        assert check(srv.grpc_url, "") == b"\x08\x01"  # SERVING
        assert check(srv.grpc_url, "inference.GRPCInferenceService") == b"\x08\x01"
        with pytest.raises(grpc.RpcError) as e:
            check(srv.grpc_url, "nope")
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
    bad = copy_shipped("digits", tmp_path / "broken")
    (bad / "model.onnx").write_bytes(b"not a graph")
    with run_server(tmp_path / "broken", tmp_path, env=env, wait_ready=False) as srv:
        deadline = time.monotonic() + 60
        while True:
            try:
                answer = check(srv.grpc_url, "")
                break
            except grpc.RpcError:
                assert time.monotonic() < deadline, "the gRPC port never answered"
                time.sleep(0.2)
        assert answer == b"\x08\x02"  # NOT_SERVING: its one model failed to load
