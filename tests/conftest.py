"""Shared fixtures: a real modelserve process on 127.0.0.1, started and stopped by PID."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bench.harness import free_port  # never the same port twice in one run (HTTP and gRPC ports collided)

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
EXAMPLES = ROOT / "examples"


def require_programs(*programs: str) -> None:
    """Fail (never skip) when a program a test runs is not installed, saying how to get it: `make test`
    installs them from Debian (`make test-deps`, as root), so a missing one is a broken setup, not a pass."""
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        pytest.fail(
            f"\n\n{'!' * 100}\nTHIS TEST CANNOT RUN: {', '.join(missing)} not found on PATH.\n"
            "Install them with `make test-deps` (as root: Debian packages, listed in the Makefile's "
            "TEST_TOOLS).\nThis test fails rather than skips.\n"
            f"{'!' * 100}\n",
            pytrace=False,
        )


@dataclass
class Server:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    grpc_port: int = 0

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def run_server(
    models: Path | str,
    tmp_path: Path,
    env: dict[str, str] | None = None,
    wait_ready: bool = True,
    extra_args: tuple[str, ...] = (),
) -> Iterator[Server]:
    """`python -m service serve` on a free loopback port; waits (bounded) for readiness; kills by PID."""
    port, grpc_port = free_port(), free_port()
    log_path = tmp_path / f"server-{port}.log"
    # One process unless a test asks for more: the default ("auto", one per CPU) is tested on its own, and
    # the suite shares two cores. A free gRPC port each, so servers never meet on the default 8081.
    full_env = {
        **os.environ,
        "MODELSERVE_LOG_LEVEL": "warning",
        "MODELSERVE_WORKERS": "1",
        "MODELSERVE_GRPC_PORT": str(grpc_port),
        **(env or {}),
    }
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "service",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--models",
                str(models),
                *extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=ROOT,
        )
    server = Server(f"http://127.0.0.1:{port}", port, proc, log_path, int(full_env["MODELSERVE_GRPC_PORT"]))
    try:
        # Bounds for a busy machine: starting takes seconds there, and with several workers readiness
        # asks each of them (up to 2 s), so a probe must wait longer than that for its answer.
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}:\n{server.log()}")
            try:
                r = httpx.get(f"{server.url}/v2/health/{'ready' if wait_ready else 'live'}", timeout=10)
                if r.status_code == 200 or (not wait_ready and r.status_code < 500):
                    break
                if (
                    wait_ready
                    and r.status_code == 503
                    and "failed" in r.text
                    and '"error":"models failed' in r.text
                ):
                    break  # loaded, with failures: the test inspects them
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not ready in 180 s:\n{server.log()}")
            time.sleep(0.1)
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The shipped models, served once for the whole session."""
    with run_server(MODELS, tmp_path_factory.mktemp("server")) as s:
        yield s


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


@pytest.fixture
def digit_png() -> Callable[[int], bytes]:
    return lambda label: (EXAMPLES / "digits" / f"{label}.png").read_bytes()
