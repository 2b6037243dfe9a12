"""Benchmarks, side by side in one run: modelserve vs raw onnxruntime (the physical limit), vs the HTTP
ceiling of its own stack (a route that does no work), and vs a naive FastAPI server.

    make bench                       # full run: bench/results/<date>.{json,md} and plots
    python -m bench.run --quick      # shorter points, for a look

Load comes from wrk (closed loop, keep-alive, one thread) with bench/load.lua cycling through request
variants. Per point: requests/s, p50/p90/p99, errors, mean rows per batch (from /metrics), server CPU and RSS.
"""

from __future__ import annotations

import argparse
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

from bench.limits import digit_pixels, measure, sentences

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CONCURRENCY = (1, 8, 32, 64, 128)
CLK = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------------------------------- requests
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
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
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
            self.proc = subprocess.Popen(argv, cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT)
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


def point(server: Server, workload: str, concurrency: int, seconds: float, tmp: Path) -> dict[str, Any]:
    folder = tmp / f"{server.name}-{workload}"
    if not folder.exists():
        write_variants(folder, variants(workload, server.name))
    model = "digits" if workload.startswith("digits") else "sentiment-lstm"
    wrk(server, folder, concurrency, 1)  # warm-up at this concurrency
    before_rows, before_runs = server.batch_totals(model)
    cpu0, t0 = server.cpu_s(), time.perf_counter()
    r = wrk(server, folder, concurrency, seconds)
    cpu1, t1 = server.cpu_s(), time.perf_counter()
    after_rows, after_runs = server.batch_totals(model)
    runs = after_runs - before_runs
    return {
        "server": server.name,
        "workload": workload,
        "concurrency": concurrency,
        "rps": round(r["requests"] / (r["duration_us"] / 1e6), 1),
        "p50_ms": r["p50_us"] / 1000,
        "p90_ms": r["p90_us"] / 1000,
        "p99_ms": r["p99_us"] / 1000,
        "errors": r["status_errors"] + r["socket_errors"],
        "rows_per_batch": round((after_rows - before_rows) / runs, 2) if runs else None,
        "cpu_pct": round(100 * (cpu1 - cpu0) / (t1 - t0), 1),
        "rss_mb": server.rss_mb(),
    }


# ------------------------------------------------------------------------------------------- report
def find(points: list[dict[str, Any]], server: str, workload: str, c: int) -> dict[str, Any] | None:
    return next(
        (p for p in points if p["server"] == server and p["workload"] == workload and p["concurrency"] == c),
        None,
    )


def targets(points: list[dict[str, Any]], idle_rss: float, ready_s: float) -> list[dict[str, Any]]:
    def ratio(
        workload: str, c: int, key: str, other: str = "naive", other_workload: str | None = None
    ) -> float | None:
        a, b = find(points, "modelserve", workload, c), find(points, other, other_workload or workload, c)
        return round(a[key] / b[key], 2) if a and b and b[key] else None

    rows = [
        ("digits V2 JSON c=64 req/s vs naive", ratio("digits-v2-fp32", 64, "rps"), ">=", 5.0),
        ("sentiment /predict c=64 req/s vs naive", ratio("sentiment-predict", 64, "rps"), ">=", 5.0),
        ("digits V2 JSON c=1 p50 vs naive", ratio("digits-v2-fp32", 1, "p50_ms"), "<=", 0.6),
        (
            "V2 binary c=64 req/s vs HTTP ceiling",
            ratio("digits-v2-binary", 64, "rps", "modelserve-null", "null"),
            ">=",
            0.6,
        ),
        (
            "mean rows per batch, digits V2 JSON c=64",
            (find(points, "modelserve", "digits-v2-fp32", 64) or {}).get("rows_per_batch"),
            ">=",
            16,
        ),
        ("idle RSS, both models (MB)", idle_rss, "<=", 150),
        ("process start to ready (s)", round(ready_s, 2), "<=", 2.0),
    ]
    return [
        {
            "target": name,
            "value": v,
            "goal": f"{op} {goal}",
            "met": v is not None and (v >= goal if op == ">=" else v <= goal),
        }
        for name, v, op, goal in rows
    ]


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# Benchmark {result['date']}",
        "",
        result["machine"],
        "",
        "## Targets",
        "",
        "| target | value | goal | met |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {t['target']} | {t['value']} | {t['goal']} | {'yes' if t['met'] else '**no**'} |"
        for t in result["targets"]
    ]
    lines += [
        "",
        "## Raw onnxruntime (the physical limit)",
        "",
        "| model | batch | items/s | p50 ms |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r['model']} | {r['batch_size']} | {r['items_per_s']:.0f} | {r['latency_ms_p50']} |"
        for r in result["limits"]
    ]
    lines += [
        "",
        "## Servers",
        "",
        "| workload | server | c | req/s | p50 ms | p90 ms | p99 ms | errors | rows/batch | CPU % | RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in result["points"]:
        lines.append(
            f"| {p['workload']} | {p['server']} | {p['concurrency']} | {p['rps']:.0f} | {p['p50_ms']:.2f} | "
            f"{p['p90_ms']:.2f} | {p['p99_ms']:.2f} | {p['errors']} | {p['rows_per_batch'] or ''} | "
            f"{p['cpu_pct']} | {p['rss_mb']} |"
        )
    if result.get("tuning"):
        lines += [
            "",
            "## Tuning (digits V2 JSON)",
            "",
            "| variant | c | req/s | p50 ms | p99 ms | rows/batch |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {p['variant']} | {p['concurrency']} | {p['rps']:.0f} | {p['p50_ms']:.2f} | {p['p99_ms']:.2f} | "
            f"{p['rows_per_batch'] or ''} |"
            for p in result["tuning"]
        ]
    return "\n".join(lines) + "\n"


def plots(result: dict[str, Any], stem: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = sorted({p["workload"] for p in result["points"]} - {"null"})
    for key, label, name in (("rps", "requests/s", "throughput"), ("p99_ms", "p99 latency (ms)", "p99")):
        fig, axes = plt.subplots(1, len(workloads), figsize=(4 * len(workloads), 3.6), squeeze=False)
        for ax, workload in zip(axes[0], workloads, strict=True):
            for server in ("modelserve", "naive"):
                pts = [p for p in result["points"] if p["server"] == server and p["workload"] == workload]
                if pts:
                    ax.plot([p["concurrency"] for p in pts], [p[key] for p in pts], marker="o", label=server)
            ceiling = [p for p in result["points"] if p["workload"] == "null"]
            if key == "rps" and ceiling:
                ax.plot(
                    [p["concurrency"] for p in ceiling],
                    [p["rps"] for p in ceiling],
                    ls="--",
                    c="grey",
                    label="HTTP ceiling (no work)",
                )
            ax.set_xscale("log", base=2)
            ax.set_title(workload, fontsize=9)
            ax.set_xlabel("concurrency")
            ax.set_ylabel(label)
            if key == "p99_ms":
                ax.set_yscale("log")
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(f"{stem}-{name}.png", dpi=90)
        plt.close(fig)


# ----------------------------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="2 s points instead of 5 s")
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--no-tuning", action="store_true")
    parser.add_argument("--no-scaling", action="store_true", help="skip the workers scaling table")
    parser.add_argument("--scaling-only", action="store_true", help="only the workers scaling table")
    parser.add_argument(
        "--no-text", action="store_true", help="skip the transformer text row (text_pipeline.py)"
    )
    parser.add_argument(
        "--workloads",
        default="digits-v2-fp32,digits-v2-uint8,digits-v2-binary,digits-predict-png,sentiment-predict",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench needs wrk: apt-get install wrk")
    seconds = args.seconds or (2.0 if args.quick else 5.0)
    workloads = args.workloads.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="bench-"))
    date = datetime.now(UTC).strftime("%Y-%m-%d")
    if args.scaling_only:
        run_scaling(seconds, tmp, date)
        return
    print("raw onnxruntime ...", flush=True)
    limits = measure(ROOT / "models", seconds=min(seconds, 1.0))
    points: list[dict[str, Any]] = []

    server = ours()
    ready_s = server.ready_s
    time.sleep(1.0)
    idle_rss = server.rss_mb()
    try:
        for workload in workloads:
            for c in CONCURRENCY:
                points.append(point(server, workload, c, seconds, tmp))
                print(points[-1], flush=True)
    finally:
        server.stop()
    null = Server(
        "modelserve-null",
        [sys.executable, "-m", "bench.null_app", "--port", "{port}"],
    )
    try:
        for c in CONCURRENCY:
            points.append(point(null, "null", c, seconds, tmp))
            print(points[-1], flush=True)
    finally:
        null.stop()
    naive = Server("naive", [sys.executable, "-m", "bench.naive_server", "--port", "{port}"])
    try:
        for workload in workloads:
            if workload == "digits-v2-binary":
                continue  # the naive server speaks JSON only
            for c in CONCURRENCY:
                points.append(point(naive, workload, c, seconds, tmp))
                print(points[-1], flush=True)
    finally:
        naive.stop()

    tuning = [] if args.no_tuning else run_tuning(seconds, tmp)
    if not args.no_scaling:
        run_scaling(seconds, tmp, date)
    result = {
        "date": date,
        "machine": f"{os.cpu_count()} cores, {platform_line()}; wrk -t1 on the same machine; {seconds:g} s per point",
        "limits": limits,
        "points": points,
        "tuning": tuning,
        "idle_rss_mb": idle_rss,
        "start_to_ready_s": round(ready_s, 3),
        "targets": targets(points, idle_rss, ready_s),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / date
    (stem.with_suffix(".json")).write_text(json.dumps(result, indent=1) + "\n")
    (stem.with_suffix(".md")).write_text(markdown(result))
    plots(result, stem)
    print(markdown(result))
    if not args.no_text:  # the transformer sentiment vs FastAPI + transformers: bench/text_pipeline.py
        from bench.text_pipeline import run_text

        run_text(seconds, tmp, date)
    shutil.rmtree(tmp, ignore_errors=True)


TUNING = {
    "default (workers auto, intra-op CPUs/workers, 1 instance)": {},
    "MODELSERVE_WORKERS=1": {"MODELSERVE_WORKERS": "1"},
    "2 instances x 1 intra-op thread": {"MODELSERVE_INSTANCES": "2", "MODELSERVE_INTRA_OP_THREADS": "1"},
    "1 instance x 1 intra-op thread": {"MODELSERVE_INTRA_OP_THREADS": "1"},
    "max_queue_delay_ms=2": {"MODELSERVE_MAX_QUEUE_DELAY_MS": "2"},
    "metrics off": {"MODELSERVE_METRICS": "false"},
    "access log off": {"MODELSERVE_ACCESS_LOG": "false"},
}


def run_tuning(seconds: float, tmp: Path) -> list[dict[str, Any]]:
    rows = []
    for variant, env in TUNING.items():
        server = ours(env)
        try:
            for c in (1, 64):
                p = point(server, "digits-v2-fp32", c, seconds, tmp)
                rows.append({"variant": variant, **p})
                print(rows[-1], flush=True)
        finally:
            server.stop()
    return rows


def run_scaling(seconds: float, tmp: Path, date: str) -> None:
    """bench/scaling.py's table, in its own files (it is often rerun alone when the machine is quieter)."""
    from bench import scaling

    load_before = os.getloadavg()
    rows = scaling.scaling(seconds, tmp)
    load_after = os.getloadavg()
    conditions = (
        f"{os.cpu_count()} cores, {platform_line()}; wrk -t1 on the same machine; {seconds:g} s per point; "
        f"load average (1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after the run."
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"{date}-scaling"
    result = {"date": date, "conditions": conditions, "rows": rows, "targets": scaling.targets(rows)}
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    stem.with_suffix(".md").write_text(f"# Scaling {date}\n\n" + scaling.markdown(rows, conditions))
    print(scaling.markdown(rows, conditions))


def platform_line() -> str:
    import platform

    return f"Python {platform.python_version()}, {platform.machine()}"


if __name__ == "__main__":
    main()
