"""bench/floor_server.py, the featureless server bench.cpu --floor measures against, answers what the graph
computes: a floor that answered wrong would be no floor. Every mode (inline, a worker thread, a task per
request) is checked against onnxruntime run here on the same bodies."""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import orjson
import pytest

from bench.harness import free_port
from bench.triton import bodies, build_repository
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    repo = tmp_path_factory.mktemp("floor") / "repo"
    return repo, build_repository(repo)


@pytest.mark.parametrize("flags", [[], ["--thread", "--tasks"]], ids=["inline", "thread+tasks"])
def test_the_floor_server_answers_what_the_graph_computes(
    repository: tuple[Path, dict], flags: list[str]
) -> None:
    repo, models = repository
    port = free_port()
    argv = [sys.executable, "-m", "bench.floor_server", "--port", str(port), "--repository", str(repo)]
    proc = subprocess.Popen([*argv, "--workers", "1", *flags], cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, "the floor server exited"
            try:
                httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the floor server did not start"
                time.sleep(0.1)
        cases = []  # (path, headers, body, output names, expected outputs)
        for model in ("cnn", "lstm"):
            session = ort.InferenceSession(str(repo / model / "1" / "model.onnx"))
            name = session.get_inputs()[0].name
            names = [o.name for o in session.get_outputs()]
            for path, headers, body in bodies(models, model):
                tensor = orjson.loads(body)["inputs"][0]
                dtype = np.float32 if tensor["datatype"] == "FP32" else np.int64
                x = np.asarray(tensor["data"], dtype=dtype).reshape(tensor["shape"])
                cases.append((path, headers, body, names, session.run(None, {name: x})))

        def check(case: tuple) -> None:
            path, headers, body, names, expected = case
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                r = client.post(path, content=body, headers=headers)
            assert r.status_code == 200, r.text
            outputs = r.json()["outputs"]
            assert [o["name"] for o in outputs] == names
            for out, want in zip(outputs, expected, strict=True):
                assert out["shape"] == list(want.shape)
                np.testing.assert_allclose(out["data"], want.ravel(), rtol=1e-5, atol=1e-5)

        # 16 at once, so that requests share batches and each answer must be its own slice of one.
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(check, cases * 4))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
