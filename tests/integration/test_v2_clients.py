"""Triton's own Python client, unchanged, against a real server; repository load/unload; hot reload."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.conftest import MODELS, Server, run_server
from tests.graphs import affine_model, copy_shipped
from tests.integration.test_v2 import pixels


def text(x: bytes | str) -> str:
    """tritonclient gives BYTES as bytes from binary data and as str from JSON."""
    return x.decode() if isinstance(x, bytes) else x


def test_tritonclient_metadata_and_readiness(server: Server) -> None:
    c = triton.InferenceServerClient(f"127.0.0.1:{server.port}")
    assert c.is_server_live() and c.is_server_ready()
    assert c.is_model_ready("digits") and c.is_model_ready("sentiment", "1")
    assert not c.is_model_ready("nope")
    assert c.get_server_metadata()["name"] == "modelserve"
    meta = c.get_model_metadata("digits")
    assert meta["inputs"][0]["datatype"] == "UINT8"
    index = c.get_model_repository_index()
    assert {(m["name"], m["state"]) for m in index} == {
        (p.name, "READY") for p in MODELS.iterdir() if p.is_dir()
    }
    with pytest.raises(InferenceServerException, match="unknown model"):
        c.get_model_metadata("nope")


@pytest.mark.parametrize("binary", [False, True])
def test_tritonclient_infer_json_and_binary(
    server: Server, binary: bool, digit_png: Callable[[int], bytes]
) -> None:
    c = triton.InferenceServerClient(f"127.0.0.1:{server.port}")
    batch = np.concatenate([pixels(digit_png(d)) for d in (1, 2, 3, 4, 5, 6, 7, 8)])
    inp = triton.InferInput("pixels", list(batch.shape), "UINT8")
    inp.set_data_from_numpy(batch, binary_data=binary)
    outputs = [
        triton.InferRequestedOutput("probabilities", binary_data=binary),
        triton.InferRequestedOutput("logits", binary_data=binary, class_count=3),
    ]
    result = c.infer("digits", [inp], outputs=outputs, request_id="abc")
    assert result.get_response()["id"] == "abc"
    assert result.as_numpy("probabilities").argmax(1).tolist() == [1, 2, 3, 4, 5, 6, 7, 8]
    top3 = result.as_numpy("logits")
    assert top3.shape == (8, 3)
    assert [text(row[0]).split(":")[2] for row in top3] == ["1", "2", "3", "4", "5", "6", "7", "8"]
    # No outputs named: tritonclient asks for every output in binary.
    everything = c.infer("digits", [inp])
    assert everything.as_numpy("logits").shape == (8, 10)


def test_tritonclient_sends_sentences_and_pngs_as_bytes(
    server: Server, digit_png: Callable[[int], bytes]
) -> None:
    c = triton.InferenceServerClient(f"127.0.0.1:{server.port}")
    texts = np.array([b"I loved this film", b"terrible, a waste of money"], dtype=np.object_)
    inp = triton.InferInput("text", [2], "BYTES")
    inp.set_data_from_numpy(texts)
    result = c.infer(
        "sentiment", [inp], outputs=[triton.InferRequestedOutput("probabilities", class_count=1)]
    )
    assert [text(r[0]).split(":")[2] for r in result.as_numpy("probabilities")] == ["positive", "negative"]
    png = np.array([digit_png(0)], dtype=np.object_)
    inp = triton.InferInput("image", [1], "BYTES")
    inp.set_data_from_numpy(png)
    assert c.infer("digits", [inp]).as_numpy("probabilities").argmax() == 0


def test_repository_load_unload(tmp_path: Path) -> None:
    repo = tmp_path / "models"
    copy_shipped("digits", repo)
    affine_model(repo / "affine" / "1")
    with run_server(repo, tmp_path) as srv:
        c = triton.InferenceServerClient(f"127.0.0.1:{srv.port}")
        c.unload_model("affine")
        assert not c.is_model_ready("affine")
        index = {m["name"]: m for m in c.get_model_repository_index()}
        assert index["affine"]["state"] == "UNAVAILABLE" and index["affine"]["reason"] == "unloaded"
        c.load_model("affine")
        assert c.is_model_ready("affine")
        with pytest.raises(InferenceServerException, match="no model folder"):
            c.load_model("nope")
        (repo / "broken" / "1").mkdir(parents=True)
        (repo / "broken" / "1" / "model.onnx").write_bytes(b"junk")
        with pytest.raises(InferenceServerException, match="failed to load 'broken'"):
            c.load_model("broken")
        r = httpx.post(f"{srv.url}/v2/repository/index", json={"ready": True})
        assert {m["name"] for m in r.json()} == {"digits", "affine"}
        for url, body in (
            ("/v2/repository/index", [1]),
            ("/v2/repository/models/affine/load", {"parameters": [1]}),
            ("/v2/repository/models/affine/load", "x"),
        ):
            r = httpx.post(f"{srv.url}{url}", json=body)
            assert r.status_code == 400 and r.json()["error"], (url, body, r.text)


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["1", "2"])
def test_hot_reload_under_load_fails_no_request(tmp_path: Path, workers: str) -> None:
    """32 requests stay in flight while version 2 is loaded (and version 1 retired): none fails, and the
    answers switch from version 1 (y = 2x + 1) to version 2 (y = 2x + 2). With 2 workers the 32
    connections are spread over both, and the load answers only once both have swapped."""
    repo = tmp_path / "models"
    affine_model(repo / "affine" / "1", shift=1.0)
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
    with run_server(repo, tmp_path, env={"MODELSERVE_WORKERS": workers}) as srv:

        async def main() -> list[tuple[float, str, float]]:
            results: list[tuple[float, str, float]] = []
            stop = asyncio.Event()

            async def worker(ac: httpx.AsyncClient) -> None:
                while not stop.is_set():
                    sent = (
                        time.monotonic()
                    )  # when it was asked, not answered: a busy machine is slow to answer
                    r = await ac.post("/v2/models/affine/infer", json=body)
                    assert r.status_code == 200, r.text
                    out = r.json()
                    results.append((sent, out["model_version"], out["outputs"][0]["data"][0]))

            async with httpx.AsyncClient(
                base_url=srv.url, timeout=30, limits=httpx.Limits(max_connections=32)
            ) as ac:

                async def answered(count: int) -> None:
                    # Counted, not timed: a loaded CI machine answers fewer requests per second.
                    deadline = time.monotonic() + 60
                    while len(results) < count and time.monotonic() < deadline:
                        await asyncio.sleep(0.02)

                tasks = [asyncio.create_task(worker(ac)) for _ in range(32)]
                await answered(100)
                affine_model(repo / "affine" / "2", shift=2.0)
                r = await ac.post("/v2/repository/models/affine/load")
                assert r.status_code == 200, r.text
                loaded_at = time.monotonic()  # the load has answered: every worker serves version 2
                await answered(len(results) + 150)
                shutil.rmtree(repo / "affine" / "1")
                stop.set()
                await asyncio.gather(*tasks)  # a failed request raises here
            results.append((loaded_at, "load", 0.0))
            return results

        results = asyncio.run(main())
    loaded_at = next(t for t, v, _ in results if v == "load")
    answers = [(t, v, y) for t, v, y in results if v != "load"]
    assert len(answers) > 100  # enough to see the switch, even on a busy machine
    assert {(v, y) for _, v, y in answers} == {("1", 3.0), ("2", 4.0)}  # each version answers its own way
    assert all(v == "2" for t, v, _ in answers if t > loaded_at)  # requests sent after the load: version 2
    assert any(v == "1" for _, v, _ in answers)
