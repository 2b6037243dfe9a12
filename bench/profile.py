"""Where one request's CPU goes: modelserve under a closed-loop load, sampled by py-spy, every sample
charged to one step of the request's way (parse, route, context, auth, decode, queue hand-off, batch
assembly, model, encode, access log, metrics, statistics, ...), in microseconds per request.

    python -m bench.profile [--workload v2-json|v2-binary|predict|grpc|lstm-json] [-c 64] [--seconds 8]
                            [--root CHECKOUT] [--workers auto]

py-spy (``pip install py-spy``; found on PATH or as $PY_SPY) samples every thread of the server and its
workers that is running (not idle) at --rate Hz. A step's share of the samples times the server's measured
CPU time per request (its process tree's CPU seconds / requests answered) is the step's microseconds.
The sampler itself runs beside the server (--nonblocking: it never stops it), so it costs the machine
a little, not the server. Load: wrk for HTTP, perf_analyzer (or grpc.aio) for gRPC, on the bench's cnn
graph (bench/triton.py), or digits PNGs for /predict.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.harness import ROOT, Server, variants, write_variants, wrk
from bench.triton import bodies, build_repository, perf_analyzer

# (step, substrings of a frame "function (file)"), checked from the innermost frame outwards: the first
# frame that matches names the step. Order matters where a step calls another (metrics inside the log).
STEPS: list[tuple[str, tuple[str, ...]]] = [
    (
        "access log",
        ("log_access", "logging/__init__", "logs.py", "access_log.py", "transports/http/middleware"),
    ),
    ("metrics", ("prometheus_client", "metrics.py")),
    ("statistics", ("stats.py",)),
    ("model", ("onnxruntime", "runtime.py", "OnnxModel")),
    ("batch assembly", ("collate.py",)),
    (
        "encode",
        (
            "encode_response",
            "encode_infer_response",
            "output_tensors",
            "top_k",
            "json_response",
            "starlette/responses",
            "orjson",
        ),
    ),
    (
        "decode",
        (
            "decode_request",
            "decode_infer_request",
            "tensor_feeds",
            "_from_json",
            "from_binary",
            "kinds/",
            "preprocess/",
            "multipart",
            "check_outputs",
            "_v2_feeds",
            "FromString",
        ),
    ),
    ("auth", ("authenticate", "ApiKeys")),
    ("context", ("RequestContext", "valid_request_id", "uuid", "request_context", "_Call")),
    (
        "queue hand-off",
        (
            "batching.py",
            "await_unless_disconnected",
            "_until_disconnect",
            "futures",
            "call_soon_threadsafe",
            "_settle",
            "tasks.py",
            "queue.py",
        ),
    ),
    ("body read", ("read_body", "_read_raw", "http.py")),
    ("route", ("fastpath.py", "routes.py", "starlette/requests", "transports/grpc_server")),
    ("data plane", ("dataplane.py", "repository.py")),
    ("send (socket write)", ("RequestResponseCycle.send", "transport.write", "_CycleTransport")),
    ("parse (uvicorn/httptools)", ("uvicorn/", "httptools", "h11", "limits.py")),
    ("grpc", ("grpc/", "grpc_aio", "_server.py", "cygrpc")),
    ("event loop", ("uvloop", "asyncio/", "base_events", "selector")),
]


def step_of(stack: str) -> str | None:
    """The step a sample belongs to; None for the supervisor process (no request passes through it;
    py-spy --nonblocking sometimes samples its sleeping watch loop as running)."""
    if "Supervisor._watch" in stack:
        return None
    frames = stack.split(";")
    for frame in reversed(frames):
        for step, needles in STEPS:
            if any(n in frame for n in needles):
                return step
    return "other"


def py_spy() -> str:
    found = os.environ.get("PY_SPY") or shutil.which("py-spy")
    if not found:
        sys.exit("bench.profile needs py-spy: pip install py-spy (or PY_SPY=/path/to/py-spy)")
    return found


def load(kind: str, server: Server, c: int, seconds: float, tmp: Path, models: dict[str, Any]) -> int:
    """Run the load; the requests answered."""
    if kind == "grpc":
        command = perf_analyzer()
        if command is None:
            sys.exit("the gRPC profile needs perf_analyzer (bench/triton.py)")
        with tempfile.NamedTemporaryFile(suffix=".csv") as csv:
            argv = [
                *command,
                "-m",
                "cnn",
                "-u",
                f"127.0.0.1:{server.grpc_port}",
                "-i",
                "grpc",
                "--concurrency-range",
                f"{c}:{c}",
                "--measurement-interval",
                str(int(seconds * 1000)),
                "--max-trials",
                "3",
                "--stability-percentage",
                "1000",
                "-f",
                csv.name,
            ]
            subprocess.run(argv, capture_output=True, check=True, timeout=seconds * 10 + 60)
            head, values = csv.read().decode().splitlines()[:2]
        row = dict(zip(head.split(","), values.split(","), strict=False))
        return int(float(row["Inferences/Second"]) * seconds)
    folder = tmp / kind
    if not folder.exists():
        if kind == "predict":
            write_variants(folder, variants("digits-predict-png", "modelserve"))
        elif kind == "v2-binary":
            items = []
            for path, _, body in bodies(models, "cnn"):
                doc = orjson.loads(body)
                tensor = doc["inputs"][0]
                import numpy as np

                raw = np.asarray(tensor.pop("data"), dtype=np.float32).tobytes()
                tensor["parameters"] = {"binary_data_size": len(raw)}
                head = orjson.dumps(doc)
                items.append(
                    (
                        path,
                        {
                            "Inference-Header-Content-Length": str(len(head)),
                            "Content-Type": "application/octet-stream",
                        },
                        head + raw,
                    )
                )
            write_variants(folder, items)
        else:
            write_variants(folder, bodies(models, "lstm" if kind == "lstm-json" else "cnn"))
    r = wrk(server, folder, c, seconds)
    return int(r["requests"] - r["status_errors"])


def answered_so_far(server: Server) -> int:
    """Requests answered successfully, every model and worker (the statistics extension)."""
    stats = httpx.get(server.url + "/v2/models/stats", timeout=10).json()["model_stats"]
    return sum(int(m["inference_stats"]["success"]["count"]) for m in stats)


def profile(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    repo = tmp / "repository"
    models = build_repository(repo)
    # /predict needs a model with its model.json (digits); the tensor graphs serve V2.
    if args.workload == "predict":
        shutil.copytree(args.root / "models" / "digits", repo / "digits")
    env = {
        "MODELSERVE_MODELS_DIR": str(repo),
        "MODELSERVE_WORKERS": args.workers,
        "PYTHONPATH": str(args.root),
    }
    server = Server(
        "modelserve",
        [sys.executable, "-m", "service", "serve", "--host", "127.0.0.1", "--port", "{port}"],
        env,
        cwd=args.root,
    )
    try:
        load(args.workload, server, args.c, 2, tmp, models)  # warm-up
        out = tmp / "profile.txt"
        spy = subprocess.Popen(
            [
                py_spy(),
                "record",
                "--pid",
                str(server.proc.pid),
                "--subprocesses",
                "--nonblocking",
                "--rate",
                str(args.rate),
                "--duration",
                str(int(args.seconds) + 1),
                "--format",
                "raw",
                "--output",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)  # py-spy attached
        cpu0, done0 = server.cpu_s(), answered_so_far(server)
        load(args.workload, server, args.c, args.seconds, tmp, models)
        cpu, answered = server.cpu_s() - cpu0, answered_so_far(server) - done0
        spy.wait(timeout=120)
    finally:
        server.stop()
    samples: Counter[str] = Counter()
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        step = step_of(stack) if stack else None
        if step is not None:
            samples[step] += int(count)
    total = sum(samples.values())
    per_request_us = 1e6 * cpu / answered
    if args.keep:
        shutil.copy(out, args.keep)
    shutil.rmtree(tmp, ignore_errors=True)
    return {
        "workload": args.workload,
        "concurrency": args.c,
        "workers": args.workers,
        "root": str(args.root),
        "answered": answered,
        "cpu_us_per_request": round(per_request_us, 1),
        "steps_us": {k: round(per_request_us * v / total, 1) for k, v in samples.most_common()},
        "samples": total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--workload", default="v2-json", choices=["v2-json", "v2-binary", "predict", "grpc", "lstm-json"]
    )
    parser.add_argument("-c", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--workers", default="auto")
    parser.add_argument("--keep", type=Path, help="keep py-spy's raw stacks in this file")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout whose server to profile")
    args = parser.parse_args()
    result = profile(args)
    print(orjson.dumps(result).decode())
    print(
        f"\n{args.workload} c={args.c}: {result['cpu_us_per_request']} µs CPU per request ({result['answered']} answered)"
    )
    for step, us in result["steps_us"].items():
        print(f"  {step:34s} {us:8.1f} µs")


if __name__ == "__main__":
    main()
