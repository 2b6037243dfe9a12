"""A second server on a gRPC port already in use fails at once and loudly, as on a used HTTP port, with one
worker or several on either side; the first keeps every gRPC connection (grpc binds with SO_REUSEPORT for
workers, which alone would let the second share the port: 7 of 20 connections went to it on 2849b2b)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as tg

from tests.conftest import ROOT, free_port, run_server
from tests.graphs import affine_model

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(("first", "second"), [("2", "2"), ("1", "2"), ("2", "1")])
def test_a_second_server_on_a_used_grpc_port_fails_loudly(tmp_path: Path, first: str, second: str) -> None:
    repo = tmp_path / "models"
    affine_model(repo / "affine" / "1")
    other_repo = tmp_path / "other"
    affine_model(other_repo / "other" / "1")
    with run_server(repo, tmp_path, env={"MODELSERVE_WORKERS": first}) as srv:
        env = {
            **os.environ,
            "MODELSERVE_WORKERS": second,
            "MODELSERVE_GRPC_PORT": str(srv.grpc_port),
            "MODELSERVE_LOG_LEVEL": "warning",
        }
        command = [sys.executable, "-m", "service", "serve", "--host", "127.0.0.1"]
        command += ["--port", str(free_port()), "--models", str(other_repo)]
        try:
            # A bound for a broken server: one that shares the port serves until killed.
            done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
        except subprocess.TimeoutExpired as e:
            pytest.fail(f"the second server is serving on a used gRPC port: {e.stderr!r}")
        assert done.returncode == 1, done.stderr
        assert f"cannot listen on 127.0.0.1:{srv.grpc_port} for gRPC" in done.stderr, done.stderr
        assert "already in use" in done.stderr, done.stderr
        x = np.ones((1, 4), np.float32)
        for _ in range(20):  # a fresh channel each: every one reaches the first server
            client = tg.InferenceServerClient(srv.grpc_url)
            assert client.is_model_ready("affine") and not client.is_model_ready("other")
            inp = tg.InferInput("x", [1, 4], "FP32")
            inp.set_data_from_numpy(x)
            assert client.infer("affine", [inp]).as_numpy("y").tolist() == [[3.0] * 4]
            client.close()
