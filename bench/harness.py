"""What every benchmark script stands on: request variants per workload, a server process to measure
(its CPU and RSS), and wrk to load it. bench/run.py, scaling.py and protocols.py import it; it imports none
of them."""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

from bench.limits import digit_pixels, sentences

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CLK = os.sysconf("SC_CLK_TCK")


def variants(workload: str, server: str) -> list[tuple[str, dict[str, str], bytes]]:
    """(path, headers, body) variants for a workload, as this server takes it."""
    out = []
    if workload.startswith("digits-v2"):
        for d in range(10):
            px = digit_pixels(10)[d : d + 1]
            if workload == "digits-v2-binary":
                head = orjson.dumps(
                    {
                        "inputs": [
                            {
                                "name": "pixels",
                                "datatype": "UINT8",
                                "shape": [1, 28, 28, 1],
                                "parameters": {"binary_data_size": px.size},
                            }
                        ],
                        "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}],
                    }
                )
                out.append(
                    (
                        "/v2/models/digits/infer",
                        {
                            "Inference-Header-Content-Length": str(len(head)),
                            "Content-Type": "application/octet-stream",
                        },
                        head + px.tobytes(),
                    )
                )
                continue
            dtype = "FP32" if workload == "digits-v2-fp32" else "UINT8"
            data = px.astype(np.float32).ravel().tolist() if dtype == "FP32" else px.ravel().tolist()
            body = orjson.dumps(
                {"inputs": [{"name": "pixels", "datatype": dtype, "shape": [1, 28, 28, 1], "data": data}]}
            )
            out.append(("/v2/models/digits/infer", {"Content-Type": "application/json"}, body))
    elif workload == "digits-predict-png":
        boundary = "benchboundary7MA4YWxk"
        for d in range(10):
            png = (ROOT / "examples/digits" / f"{d}.png").read_bytes()
            body = (
                (
                    f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{d}.png"\r\n'
                    f"Content-Type: image/png\r\n\r\n"
                ).encode()
                + png
                + f"\r\n--{boundary}--\r\n".encode()
            )
            path = "/predict?model=digits" if server != "naive" else "/predict/image"
            out.append((path, {"Content-Type": f"multipart/form-data; boundary={boundary}"}, body))
    elif workload == "sentiment-predict":
        path = "/predict?model=sentiment-lstm" if server != "naive" else "/predict/text"
        for text in sentences()[::4]:
            out.append((path, {"Content-Type": "application/json"}, orjson.dumps({"texts": [text]})))
    elif workload == "null":
        px = digit_pixels(1)
        body = orjson.dumps(
            {
                "inputs": [
                    {
                        "name": "pixels",
                        "datatype": "UINT8",
                        "shape": [1, 28, 28, 1],
                        "data": px.ravel().tolist(),
                    }
                ]
            }
        )
        out.append(("/bench/null", {"Content-Type": "application/json"}, body))
    return out


def write_variants(folder: Path, items: list[tuple[str, dict[str, str], bytes]]) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for i, (path, headers, body) in enumerate(items, 1):
        (folder / f"{i}.path").write_text(path)
        (folder / f"{i}.headers").write_text("".join(f"{k}: {v}\n" for k, v in headers.items()))
        (folder / f"{i}.body").write_bytes(body)


# -------------------------------------------------------------------------------------------- servers
_PORTS_GIVEN: set[int] = set()


def free_port() -> int:
    """A free loopback port, never one handed out before in this run (the kernel may repeat a closed one)."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _PORTS_GIVEN:
            _PORTS_GIVEN.add(port)
            return port
    raise RuntimeError("no fresh loopback port in 100 tries")


class Server:
    def __init__(
        self, name: str, argv: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT
    ) -> None:
        """``cwd``: the checkout whose code ``python -m`` runs (the working folder comes first on
        sys.path, before PYTHONPATH: a checkout named only in PYTHONPATH would run this one's code)."""
        self.name = name
        self.port = free_port()
        self.grpc_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {
            **os.environ,
            "MODELSERVE_LOG_LEVEL": "info",  # as shipped: the access log is on
            "MODELSERVE_MODELS_DIR": str(ROOT / "models"),
            "MODELSERVE_GRPC_PORT": str(self.grpc_port),
            **(env or {}),
        }
        argv = [a.replace("{port}", str(self.port)) for a in argv]
        self.started = time.perf_counter()
        # Logs go to a file: a pipe nobody reads would fill and stall the server.
        self.log_path = Path(tempfile.mkstemp(prefix=f"bench-{name}-", suffix=".log")[1])
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(argv, cwd=cwd, env=full_env, stdout=log, stderr=subprocess.STDOUT)
        self.ready_s = self._wait_ready()

    def _wait_ready(self) -> float:
        path = "/v2/health/ready" if self.name != "naive" else "/docs"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + path, timeout=0.5).status_code == 200:
                    return time.perf_counter() - self.started
            except httpx.TransportError:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"{self.name} not ready")

    def pids(self) -> list[int]:
        pids, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            pids.append(pid)
            for task in Path(f"/proc/{pid}/task").glob("*/children"):
                todo += [int(c) for c in task.read_text().split()]
        return pids

    def cpu_s(self) -> float:
        total = 0.0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / CLK
            except OSError:
                pass
        return total

    def rss_mb(self) -> float:
        total = 0
        for pid in self.pids():
            try:
                m = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
                total += int(m.group(1)) if m else 0
            except OSError:
                pass
        return round(total / 1024, 1)

    def batch_totals(self, model: str) -> tuple[float, float]:
        if self.name == "naive":
            return 0.0, 0.0
        text = httpx.get(self.url + "/metrics", timeout=5).text
        values = {}
        for kind in ("sum", "count"):
            m = re.search(rf'^modelserve_batch_size_{kind}{{model="{model}",version="1"}} (\S+)$', text, re.M)
            values[kind] = float(m.group(1)) if m else 0.0
        return values["sum"], values["count"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log_path.unlink(missing_ok=True)


def ours(env: dict[str, str] | None = None) -> Server:
    return Server(
        "modelserve",
        [sys.executable, "-m", "service", "serve", "--host", "127.0.0.1", "--port", "{port}"],
        env,
    )


# ---------------------------------------------------------------------------------------------- load
def wrk(server: Server, folder: Path, concurrency: int, seconds: float) -> dict[str, Any]:
    argv = [
        "wrk",
        "-t1",
        f"-c{concurrency}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(ROOT / "bench/load.lua"),
        server.url,
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        env={**os.environ, "WRK_VARIANTS": str(folder)},
        check=True,
        timeout=seconds + 60,
    ).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    result["wrk_cpu"] = round(used / (time.perf_counter() - t0), 2)  # cores the load generator used
    return result


def platform_line() -> str:
    """The interpreter and machine a result was measured with."""
    import platform

    return f"Python {platform.python_version()}, {platform.machine()}"
