"""gRPC next to HTTP on one modelserve process, and the same HTTP points on another checkout (before/after).

    python -m bench.protocols                         # this checkout: HTTP (wrk) and gRPC (grpc.aio)
    python -m bench.protocols --root /tmp/old --label before --no-grpc    # an older checkout, HTTP only

Workload: digits, one 28x28 UINT8 image per request, closed loop, keep-alive, one model process
(MODELSERVE_WORKERS=1, so the protocols share one event loop and one batcher). HTTP: V2 JSON and V2 binary
from wrk (C, one thread). gRPC: ModelInfer with raw_input_contents from N grpc.aio stubs in one Python
process (perf_analyzer is not in any registry package); and, for a like-for-like generator, HTTP V2 binary
from the same Python process with httpx. The generators share the machine's cores with the server.
Output: one JSON line per point, and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

from bench.harness import ROOT, free_port, variants, write_variants, wrk
from bench.limits import digit_pixels


class Served:
    """``modelserve serve`` from a checkout (``root``), HTTP and gRPC on free loopback ports."""

    def __init__(self, root: Path, grpc: bool) -> None:
        self.port, self.grpc_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "MODELSERVE_WORKERS": "1",
            "MODELSERVE_LOG_LEVEL": "info",  # as shipped: the access log is on
            "MODELSERVE_MODELS_DIR": str(root / "models"),
            "MODELSERVE_GRPC_PORT": str(self.grpc_port if grpc else 0),
        }
        argv = [sys.executable, "-m", "service", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        self.log = Path(tempfile.mkstemp(prefix="bench-protocols-", suffix=".log")[1])
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(argv, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(self.log.read_text()[-2000:])
            try:
                if httpx.get(self.url + "/v2/health/ready", timeout=0.5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError("server not ready in 60 s")

    def cpu_s(self) -> float:
        """CPU seconds the server process has used (every thread): per request, the figure that moves
        least when other work shares the machine."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.unlink(missing_ok=True)


def summary(latencies: list[float], seconds: float, errors: int) -> dict[str, Any]:
    lat = np.asarray(latencies) * 1000
    return {
        "rps": round(len(lat) / seconds, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 2) if len(lat) else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 2) if len(lat) else None,
        "errors": errors,
    }


async def closed_loop(call: Any, concurrency: int, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal errors
        while time.perf_counter() < stop:
            t = time.perf_counter()
            try:
                await call()
                latencies.append(time.perf_counter() - t)
            except Exception:
                errors += 1

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return summary(latencies, time.perf_counter() - start, errors)


def grpc_point(target: str, concurrency: int, seconds: float) -> dict[str, Any]:
    import grpc

    from service.protocol.oip import grpc_service_pb2 as pb

    px = digit_pixels(10)[3:4]
    request = pb.ModelInferRequest(model_name="digits")
    request.inputs.add(name="pixels", datatype="UINT8", shape=[1, 28, 28, 1])
    request.raw_input_contents.append(px.tobytes())
    request.outputs.add(name="probabilities")

    async def main() -> dict[str, Any]:
        async with grpc.aio.insecure_channel(target) as channel:
            infer = channel.unary_unary(
                "/inference.GRPCInferenceService/ModelInfer",
                request_serializer=pb.ModelInferRequest.SerializeToString,
                response_deserializer=pb.ModelInferResponse.FromString,
            )
            await closed_loop(lambda: infer(request), concurrency, 1.0)  # warm-up
            return await closed_loop(lambda: infer(request), concurrency, seconds)

    return asyncio.run(main())


def httpx_point(url: str, concurrency: int, seconds: float) -> dict[str, Any]:
    px = digit_pixels(10)[3:4]
    head = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "pixels",
                    "datatype": "UINT8",
                    "shape": [1, 28, 28, 1],
                    "parameters": {"binary_data_size": 784},
                }
            ],
            "outputs": [{"name": "probabilities"}],
        }
    )
    headers = {"Inference-Header-Content-Length": str(len(head)), "Content-Type": "application/octet-stream"}
    body = head + px.tobytes()

    async def main() -> dict[str, Any]:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:

            async def call() -> None:
                r = await client.post("/v2/models/digits/infer", content=body, headers=headers)
                r.raise_for_status()

            await closed_loop(call, concurrency, 1.0)
            return await closed_loop(call, concurrency, seconds)

    return asyncio.run(main())


def wrk_point(url: str, workload: str, concurrency: int, seconds: float, tmp: Path) -> dict[str, Any]:
    folder = tmp / workload
    if not folder.exists():
        write_variants(folder, variants(workload, "modelserve"))

    class Target:
        pass

    target = Target()
    target.url = url  # type: ignore[attr-defined]
    wrk(target, folder, concurrency, 1)  # type: ignore[arg-type]
    r = wrk(target, folder, concurrency, seconds)  # type: ignore[arg-type]
    return {
        "rps": round(r["requests"] / (r["duration_us"] / 1e6), 1),
        "p50_ms": r["p50_us"] / 1000,
        "p99_ms": r["p99_us"] / 1000,
        "errors": r["status_errors"] + r["socket_errors"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout whose server to run")
    parser.add_argument("--label", default="this checkout")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--no-grpc", action="store_true", help="HTTP only (a checkout without gRPC)")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    rows = []
    server = Served(args.root, grpc=not args.no_grpc)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for c in levels:
                points = {
                    "HTTP V2 JSON (wrk)": lambda c=c: wrk_point(
                        server.url, "digits-v2-uint8", c, args.seconds, Path(tmp)
                    ),
                    "HTTP V2 binary (wrk)": lambda c=c: wrk_point(
                        server.url, "digits-v2-binary", c, args.seconds, Path(tmp)
                    ),
                    "HTTP V2 binary (Python httpx)": lambda c=c: httpx_point(server.url, c, args.seconds),
                }
                if not args.no_grpc:
                    points["gRPC ModelInfer raw (Python grpc.aio)"] = lambda c=c: grpc_point(
                        f"127.0.0.1:{server.grpc_port}", c, args.seconds
                    )
                for name, run in points.items():
                    cpu = server.cpu_s()
                    row = {"label": args.label, "protocol": name, "concurrency": c, **run()}
                    used = server.cpu_s() - cpu  # warm-up included: per request of the whole point
                    served = row["rps"] * (args.seconds + 1.0)
                    row["server_cpu_ms_per_request"] = round(1000 * used / served, 3) if served else None
                    print(json.dumps(row), file=sys.stderr, flush=True)
                    rows.append(row)
    finally:
        server.stop()
    print(
        f"| {args.label} | c | req/s | p50 ms | p99 ms | server CPU ms/request | errors |\n"
        "|---|---|---|---|---|---|---|"
    )
    for r in rows:
        print(
            f"| {r['protocol']} | {r['concurrency']} | {r['rps']:,.0f} | {r['p50_ms']} | {r['p99_ms']} | "
            f"{r['server_cpu_ms_per_request']} | {r['errors']} |"
        )


if __name__ == "__main__":
    main()
