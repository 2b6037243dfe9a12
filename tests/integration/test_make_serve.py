"""The README's quickstart: `make serve`, then curl a digit PNG."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import httpx
import pytest

from tests.conftest import EXAMPLES, ROOT, free_port, require_programs

pytestmark = pytest.mark.slow


def test_make_serve_then_curl_a_digit() -> None:
    require_programs("make", "curl")
    port = free_port()
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "serve", f"PORT={port}"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "MODELSERVE_GRPC_PORT": str(free_port())},
    )
    try:
        deadline = time.monotonic() + 300  # a first run installs the service
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        for digit in (1, 7):
            out = subprocess.run(
                [
                    "curl",
                    "-s",
                    "-F",
                    f"file=@{EXAMPLES / 'digits' / f'{digit}.png'}",
                    f"http://127.0.0.1:{port}/predict?model=digits",
                ],
                capture_output=True,
                check=True,
                timeout=30,
            ).stdout
            assert json.loads(out)["predictions"][0]["label"] == str(digit)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
