"""NVIDIA Triton as a peer: the same ONNX graphs, the same V2 JSON bodies, the same wrk load, one server at
a time; modelserve (workers auto), Triton's python backend (a model.py that runs onnxruntime on the batch)
and the naive server side by side, and gRPC next to HTTP on modelserve with Triton's own perf_analyzer.

    python -m bench.triton [--seconds S] [--rounds N]   # bench/results/<date>-triton.{json,md}; make bench runs it

Triton comes from PyPI's `nvidia-pytriton` wheel, which ships the `tritonserver` binary and its python
backend (not the onnxruntime backend). It is installed into a virtualenv of its own under
``$MODELSERVE_BENCH_CACHE`` (default ~/.cache/modelserve-bench): a benchmark peer, never a dependency of the
service. The backend folder holds the backend's .so and .py and the stub built for this Python; the stub
finds libpython through LD_LIBRARY_PATH and numpy/onnxruntime through PYTHONPATH.

The graphs (copied into a bench repository that both servers load, so neither depends on a model's name):
- cnn: the image CNN found in models/ (a Conv graph with one UINT8 [N, 28, 28, 1] input), taking FP32
  [N, 1, 28, 28] instead (an MNIST-shaped input: a Transpose and a Cast put in front of the graph);
- lstm: the text LSTM found in models/ (an LSTM graph with one INT64 [N, T] input), fed [1, 64] token ids.

perf_analyzer (Triton's load generator) is found as ``$PERF_ANALYZER``, on PATH, or as the shared
``tools/perf_analyzer/pa.sh`` (README there; its ``setup.sh`` installs it privately); without it that table
is skipped with a note.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from bench.harness import RESULTS, ROOT, Server, free_port, platform_line, write_variants, wrk
from bench.limits import digit_pixels
from service.process.cpus import plan

PYTRITON = "nvidia-pytriton==0.7.0"
CONCURRENCY = (1, 16, 64)
SEQUENCE = 64
CACHE = Path(os.environ.get("MODELSERVE_BENCH_CACHE", Path.home() / ".cache" / "modelserve-bench"))


# ------------------------------------------------------------------------------------------- graphs
def _graphs() -> dict[str, Path]:
    """The latest model.onnx of each model in models/, by name."""
    found = {}
    for folder in sorted((ROOT / "models").iterdir()):
        versions = (
            sorted(
                (int(v.name), v / "model.onnx")
                for v in folder.iterdir()
                if v.name.isdigit() and (v / "model.onnx").exists()
            )
            if folder.is_dir()
            else []
        )
        if versions:
            found[folder.name] = versions[-1][1]
    return found


def _pick(kind: str) -> Path:
    """The shipped graph of the shape the table needs (by its ops and input, not by a model's name)."""
    import onnx

    preferred = "digits" if kind == "cnn" else ""
    for _name, path in sorted(_graphs().items(), key=lambda kv: kv[0] != preferred):
        graph = onnx.load(str(path), load_external_data=False).graph
        ops = {n.op_type for n in graph.node}
        inputs = [i for i in graph.input if i.name not in {t.name for t in graph.initializer}]
        if len(inputs) != 1:
            continue
        t = inputs[0].type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
        if (
            kind == "cnn"
            and "Conv" in ops
            and t.elem_type == onnx.TensorProto.UINT8
            and dims[1:] == [28, 28, 1]
        ):
            return path
        if kind == "lstm" and "LSTM" in ops and t.elem_type == onnx.TensorProto.INT64 and len(dims) == 2:
            return path
    raise SystemExit(f"bench.triton: no {kind} graph in models/ (make models)")


def build_repository(dest: Path) -> dict[str, Any]:
    """cnn/ and lstm/ under ``dest`` (model.onnx in version 1, modelserve's config.json); their I/O."""
    import onnx
    from onnx import TensorProto, helper

    shutil.rmtree(dest, ignore_errors=True)
    models: dict[str, Any] = {}
    # cnn: FP32 [N, 1, 28, 28] -> Transpose to NHWC -> Cast to UINT8 -> the shipped graph.
    source = _pick("cnn")
    m = onnx.load(str(source))
    old = m.graph.input[0].name
    inner = old + "_u8"
    for node in m.graph.node:
        node.input[:] = [inner if i == old else i for i in node.input]
    m.graph.node.insert(0, helper.make_node("Cast", ["input_nhwc"], [inner], to=TensorProto.UINT8))
    m.graph.node.insert(0, helper.make_node("Transpose", ["input"], ["input_nhwc"], perm=[0, 2, 3, 1]))
    m.graph.input.remove(m.graph.input[0])
    m.graph.input.insert(0, helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 28, 28]))
    onnx.checker.check_model(m)
    (dest / "cnn" / "1").mkdir(parents=True)
    onnx.save(m, str(dest / "cnn" / "1" / "model.onnx"))
    models["cnn"] = {
        "source": str(source.relative_to(ROOT)),
        "input": "input",
        "dtype": "FP32",
        "dims": [1, 28, 28],
    }
    # lstm: the shipped graph as it is.
    source = _pick("lstm")
    (dest / "lstm" / "1").mkdir(parents=True)
    shutil.copy(source, dest / "lstm" / "1" / "model.onnx")
    name = onnx.load(str(source), load_external_data=False).graph.input[0].name
    models["lstm"] = {
        "source": str(source.relative_to(ROOT)),
        "input": name,
        "dtype": "INT64",
        "dims": [SEQUENCE],
    }
    for model in models:
        (dest / model / "config.json").write_text(json.dumps({"max_batch_size": 64, "max_queue_delay_ms": 0}))
    return models


def _outputs(path: Path) -> list[tuple[str, str, list[int]]]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    types = {"tensor(float)": "TYPE_FP32", "tensor(int64)": "TYPE_INT64"}
    return [(o.name, types[o.type], [int(d) for d in o.shape[1:]]) for o in session.get_outputs()]


def bodies(models: dict[str, Any], model: str) -> list[tuple[str, dict[str, str], bytes]]:
    """Ten V2 JSON bodies per model: real digits (FP32 0..255), or token ids of length 64."""
    spec = models[model]
    out = []
    rng = np.random.default_rng(0)
    for d in range(10):
        if model == "cnn":
            data = digit_pixels(10)[d].astype(np.float32).transpose(2, 0, 1).ravel().tolist()
        else:
            data = rng.integers(1, 1000, SEQUENCE).tolist()  # ids in every GloVe-sized vocabulary
        body = orjson.dumps(
            {
                "inputs": [
                    {
                        "name": spec["input"],
                        "datatype": spec["dtype"],
                        "shape": [1, *spec["dims"]],
                        "data": data,
                    }
                ]
            }
        )
        out.append((f"/v2/models/{model}/infer", {"Content-Type": "application/json"}, body))
    return out


# ------------------------------------------------------------------------------------------- Triton
# The stub's embedded interpreter ignores PYTHONPATH and sees only the base interpreter's site-packages:
# the model puts the Triton venv's in front, so it runs that venv's numpy and onnxruntime.
MODEL_PY = '''"""Triton python backend: onnxruntime on the whole batch Triton formed (one run, split back)."""
import sys

sys.path.insert(0, SITE_PACKAGES)
import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        folder = f"{args['model_repository']}/{args['model_version']}"
        self.session = ort.InferenceSession(f"{folder}/model.onnx", providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.outputs = [o.name for o in self.session.get_outputs()]

    def execute(self, requests):
        arrays = [pb_utils.get_input_tensor_by_name(r, self.input).as_numpy() for r in requests]
        results = self.session.run(None, {self.input: np.concatenate(arrays)})
        responses, start = [], 0
        for a in arrays:
            end = start + a.shape[0]
            tensors = [pb_utils.Tensor(n, v[start:end]) for n, v in zip(self.outputs, results)]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start = end
        return responses
'''


def triton_venv() -> Path:
    """A virtualenv of its own with nvidia-pytriton and onnxruntime (the service's version); made once."""
    import onnxruntime

    venv = CACHE / "triton-venv"
    stamp = venv / f".{PYTRITON}-ort{onnxruntime.__version__}"
    if not stamp.exists():
        print(f"installing {PYTRITON} into {venv} (once) ...", flush=True)
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [
                str(venv / "bin/pip"),
                "install",
                "--quiet",
                "--disable-pip-version-check",
                PYTRITON,
                f"onnxruntime=={onnxruntime.__version__}",
                "numpy",
            ],
            check=True,
        )
        stamp.touch()
    return venv


def triton_repository(dest: Path, models: dict[str, Any], repo: Path, delay_us: int, venv: Path) -> None:
    """Triton's repository: config.pbtxt (max_batch_size 64, the queue delay, one CPU instance) + model.py."""
    shutil.rmtree(dest, ignore_errors=True)
    for model, spec in models.items():
        (dest / model / "1").mkdir(parents=True)
        onnx_path = dest / model / "1" / "model.onnx"
        shutil.copy(repo / model / "1" / "model.onnx", onnx_path)
        (dest / model / "1" / "model.py").write_text(
            MODEL_PY.replace("SITE_PACKAGES", repr(str(site_packages(venv))))
        )
        outputs = "\n".join(
            f'  {{ name: "{n}" data_type: {t} dims: {d} }},' for n, t, d in _outputs(onnx_path)
        ).rstrip(",")
        dtype = {"FP32": "TYPE_FP32", "INT64": "TYPE_INT64"}[spec["dtype"]]
        (dest / model / "config.pbtxt").write_text(
            f'name: "{model}"\nbackend: "python"\nmax_batch_size: 64\n'
            f'input [\n  {{ name: "{spec["input"]}" data_type: {dtype} dims: {spec["dims"]} }}\n]\n'
            f"output [\n{outputs}\n]\n"
            f"dynamic_batching {{ max_queue_delay_microseconds: {delay_us} }}\n"
            "instance_group [ { count: 1 kind: KIND_CPU } ]\n"
        )


def site_packages(venv: Path) -> Path:
    return next(venv.glob("lib/python3*/site-packages"))


class Triton(Server):
    """tritonserver from the pytriton wheel on 127.0.0.1 ports of its own (HTTP, gRPC, metrics)."""

    def __init__(self, name: str, repository: Path, venv: Path) -> None:
        site = site_packages(venv)
        pyver = f"{sys.version_info.major}.{sys.version_info.minor}"
        home = site / "pytriton" / "tritonserver"
        backends = repository.parent / f"{repository.name}-backends"
        shutil.rmtree(backends, ignore_errors=True)
        shutil.copytree(home / "backends" / "python", backends / "python")
        shutil.copy(home / "python_backend_stubs" / pyver / "triton_python_backend_stub", backends / "python")
        libpython = sysconfig.get_config_var("LIBDIR")
        grpc_port, metrics_port = free_port(), free_port()
        env = {"LD_LIBRARY_PATH": f"{site / 'nvidia_pytriton.libs'}:{libpython}"}
        argv = [
            str(home / "bin" / "tritonserver"),
            f"--model-repository={repository}",
            f"--backend-directory={backends}",
            "--http-address=127.0.0.1",
            "--http-port={port}",
            "--allow-grpc=true",
            "--grpc-address=127.0.0.1",
            f"--grpc-port={grpc_port}",
            "--allow-metrics=true",
            "--allow-gpu-metrics=false",
            f"--metrics-port={metrics_port}",
            "--log-verbose=0",
        ]
        super().__init__(name, argv, env)
        self.grpc_port = grpc_port

    def _wait_ready(self) -> float:
        import httpx

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/v2/health/ready", timeout=0.5).status_code == 200:
                    return time.perf_counter() - self.started
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready: {self.log_path.read_text()[-3000:]}")

    def batch_totals(self, model: str) -> tuple[float, float]:
        return 0.0, 0.0


# ------------------------------------------------------------------------------------------- load
def wrk_point(server: Server, folder: Path, c: int, seconds: float) -> dict[str, Any]:
    wrk(server, folder, c, 1)  # warm-up at this concurrency
    cpu0, t0 = server.cpu_s(), time.perf_counter()
    r = wrk(server, folder, c, seconds)
    cpu = server.cpu_s() - cpu0
    elapsed = time.perf_counter() - t0
    answered = r["requests"] - r["status_errors"]
    return {
        "rps": round(r["requests"] / (r["duration_us"] / 1e6), 1),
        "p50_ms": r["p50_us"] / 1000,
        "p99_ms": r["p99_us"] / 1000,
        "errors": r["status_errors"] + r["socket_errors"],
        "cpu_cores": round(cpu / elapsed, 2),
        "per_cpu_s": round(answered / cpu, 0) if cpu else None,
        "cpu_us_per_request": round(1e6 * cpu / answered, 1) if answered else None,
        "wrk_cpu": r["wrk_cpu"],
    }


def perf_analyzer() -> list[str] | None:
    """The command that runs perf_analyzer here, or None."""
    given = os.environ.get("PERF_ANALYZER") or shutil.which("perf_analyzer")
    if given:
        return ["bash", given] if given.endswith(".sh") else [given]
    for root in (ROOT.parent, ROOT.parent.parent):
        script = root / "shared" / "tools" / "perf_analyzer" / "pa.sh"
        home = Path(os.environ.get("PA_HOME", Path.home() / ".cache" / "perf_analyzer"))
        if script.exists() and (home / ".venv").exists():
            return ["bash", str(script)]
    return None


def pa_point(
    command: list[str], url: str, protocol: str, model: str, c: int, seconds: float
) -> dict[str, Any]:
    """One perf_analyzer point. Its stability rule (the last 3 windows within 10%) rarely holds on a shared
    machine: 25% is asked, and when that fails too the point is measured once more accepting any spread
    and marked unstable."""
    for stability in (25, 1000):
        with tempfile.NamedTemporaryFile(suffix=".csv") as csv:
            argv = [
                *command,
                "-m",
                model,
                "-u",
                url,
                "-i",
                protocol,
                "--concurrency-range",
                f"{c}:{c}",
                "--measurement-interval",
                str(int(seconds * 1000)),
                "--max-trials",
                "6",
                "--stability-percentage",
                str(stability),
                "-f",
                csv.name,
            ]
            out = subprocess.run(argv, capture_output=True, text=True, timeout=300)
            if out.returncode == 0:
                head, values = csv.read().decode().splitlines()[:2]
                row = dict(zip(head.split(","), values.split(","), strict=False))
                return {
                    "rps": round(float(row["Inferences/Second"]), 1),
                    "p50_ms": round(float(row["p50 latency"]) / 1000, 3),
                    "p99_ms": round(float(row["p99 latency"]) / 1000, 3),
                    "unstable": stability > 100,
                }
    return {"error": (out.stdout + out.stderr)[-300:]}


# ------------------------------------------------------------------------------------------- tables
def peers(seconds: float, tmp: Path, rounds: int) -> dict[str, Any]:
    """Every server's points, ``rounds`` times over: in each round each server in turn is started, measured
    at every point and stopped (one server at a time). A machine whose speed drifts over minutes (a shared
    VM does, by 30% and more) then shifts all servers alike across rounds, and each round's ratio pairs
    points taken minutes apart, not tens of minutes; the tables report medians over rounds."""
    repo = tmp / "repository"
    models = build_repository(repo)
    venv = triton_venv()
    workloads = {}
    for model in models:
        folder = tmp / f"variants-{model}"
        write_variants(folder, bodies(models, model))
        workloads[model] = folder
    rows: list[dict[str, Any]] = []

    def measure(server: Server, label: str, levels: tuple[int, ...], round_: int) -> None:
        try:
            for model, folder in workloads.items():
                for c in levels:
                    row = {
                        "server": label,
                        "model": model,
                        "concurrency": c,
                        "round": round_,
                        **wrk_point(server, folder, c, seconds),
                    }
                    rows.append(row)
                    print(row, flush=True)
        finally:
            server.stop()

    workers = plan("auto", 0)
    triton_repository(tmp / "triton-2ms", models, repo, 2000, venv)
    triton_repository(tmp / "triton-0ms", models, repo, 0, venv)
    servers: list[tuple[Callable[[], Server], str, tuple[int, ...]]] = [
        (
            lambda: Server(
                "modelserve",
                [sys.executable, "-m", "service", "serve", "--host", "127.0.0.1", "--port", "{port}"],
                {"MODELSERVE_MODELS_DIR": str(repo), "MODELSERVE_WORKERS": "auto"},
            ),
            f"modelserve (workers auto = {workers.workers})",
            CONCURRENCY,
        ),
        (
            lambda: Triton("triton", tmp / "triton-2ms", venv),
            "Triton python backend (2 ms delay)",
            CONCURRENCY,
        ),
        (lambda: Triton("triton", tmp / "triton-0ms", venv), "Triton python backend (delay 0)", (1,)),
        (
            lambda: Server(
                "naive",
                [
                    sys.executable,
                    "-m",
                    "bench.naive_server",
                    "--port",
                    "{port}",
                    "--models",
                    str(repo),
                    "--workers",
                    str(workers.workers),
                ],
            ),
            f"naive (uvicorn --workers {workers.workers})",
            CONCURRENCY,
        ),
    ]
    for round_ in range(rounds):
        for start, label, levels in servers:
            measure(start(), label, levels, round_)
    return {"models": models, "rows": rows}


def medians(rows: list[dict[str, Any]], key: tuple[str, ...]) -> list[dict[str, Any]]:
    """One row per ``key`` (e.g. server, model, concurrency): each figure's median over the rounds, errors
    summed, and the rounds' req/s in ``rps_rounds``."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in rows:
        if "rps" in r:
            groups.setdefault(tuple(r[k] for k in key), []).append(r)
    out = []
    for values, group in groups.items():
        row: dict[str, Any] = dict(zip(key, values, strict=True))
        for field in ("rps", "p50_ms", "p99_ms", "cpu_cores", "per_cpu_s", "cpu_us_per_request"):
            numbers = [r[field] for r in group if r.get(field) is not None]
            if numbers:
                row[field] = statistics.median(numbers)
        row["errors"] = sum(r.get("errors", 0) for r in group)
        row["rps_rounds"] = [r["rps"] for r in group]
        row["unstable"] = any(r.get("unstable") for r in group)
        out.append(row)
    return out


def paired(rows: list[dict[str, Any]], a: dict[str, Any], b: dict[str, Any], field: str) -> float | None:
    """The median over rounds of (the row matching ``a``)[field] / (the row matching ``b``)[field], each
    round's two points paired (rows without a round, as in older results, are round 0)."""

    def by_round(match: dict[str, Any]) -> dict[int, float]:
        return {
            r.get("round", 0): r[field]
            for r in rows
            if r.get(field)
            and all(
                r.get(k) == v if k != "server" else str(r.get(k, "")).startswith(v) for k, v in match.items()
            )
        }

    num, den = by_round(a), by_round(b)
    ratios = [num[k] / den[k] for k in num if k in den]
    return round(statistics.median(ratios), 2) if ratios else None


def protocols(seconds: float, tmp: Path, rounds: int) -> dict[str, Any]:
    """gRPC next to HTTP on modelserve (workers auto, the bench's cnn), perf_analyzer over both protocols
    (its own random FP32 data, batch 1, synchronous calls); a fresh server each round. perf_analyzer opens
    few HTTP/2 connections (1, 3 and 11 at c=1/16/64), each served by one worker: how they fall between
    the workers moves gRPC's figure from run to run, which the rounds' median evens out."""
    command = perf_analyzer()
    if command is None:
        return {"skipped": "perf_analyzer not found (PERF_ANALYZER, PATH, or shared/tools/perf_analyzer)"}
    repo = tmp / "repository"
    rows: list[dict[str, Any]] = []
    for round_ in range(rounds):
        ours = Server(
            "modelserve",
            [sys.executable, "-m", "service", "serve", "--host", "127.0.0.1", "--port", "{port}"],
            {"MODELSERVE_MODELS_DIR": str(repo), "MODELSERVE_WORKERS": "auto"},
        )
        try:
            for c in CONCURRENCY:
                for protocol, port in (("http", ours.port), ("grpc", ours.grpc_port)):
                    cpu0 = ours.cpu_s()
                    row = {
                        "server": "modelserve",
                        "model": "cnn",
                        "protocol": protocol,
                        "concurrency": c,
                        "round": round_,
                    }
                    row.update(pa_point(command, f"127.0.0.1:{port}", protocol, "cnn", c, seconds))
                    row["server_cpu_s"] = round(ours.cpu_s() - cpu0, 2)
                    rows.append(row)
                    print(row, flush=True)
        finally:
            ours.stop()
    return {"rows": rows}


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets: ahead of Triton's python backend at c=16/64 (req/s, and per CPU-second, the
    steadier figure on a shared machine), c=1 p50 no higher than Triton's with no delay, gRPC near HTTP."""
    rows = result["peers"]["rows"]

    checks: list[tuple[str, float | None, str, float]] = []
    for model in ("cnn", "lstm"):
        for c in (16, 64):
            ours = {"server": "modelserve", "model": model, "concurrency": c}
            triton = {"server": "Triton python backend (2", "model": model, "concurrency": c}
            for key, label in (("rps", "req/s"), ("per_cpu_s", "req per CPU-s")):
                value = paired(rows, ours, triton, key)
                checks.append((f"{model} c={c}: modelserve / Triton python, {label}", value, ">=", 1.2))
        ours = {"server": "modelserve", "model": model, "concurrency": 1}
        triton = {"server": "Triton python backend (delay 0", "model": model, "concurrency": 1}
        value = paired(rows, ours, triton, "p50_ms")
        checks.append((f"{model} c=1: modelserve p50 / Triton python (delay 0) p50", value, "<=", 1.0))
    proto = result["protocols"].get("rows", [])
    for c in CONCURRENCY:
        grpc_, http = {"protocol": "grpc", "concurrency": c}, {"protocol": "http", "concurrency": c}
        checks.append(
            (f"perf_analyzer c={c}: gRPC / HTTP infer/s", paired(proto, grpc_, http, "rps"), ">=", 0.8)
        )
        if c == 1:
            value = paired(proto, grpc_, http, "p50_ms")
            checks.append(("perf_analyzer c=1: gRPC p50 / HTTP p50", value, "<=", 1.2))
    return [
        {
            "target": name,
            "value": v,
            "goal": f"{op} {goal}",
            "met": v is not None and (v >= goal if op == ">=" else v <= goal),
        }
        for name, v, op, goal in checks
    ]


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# modelserve vs NVIDIA Triton {result['date']}",
        "",
        result["conditions"],
        "",
        "## Peers (V2 JSON over HTTP, wrk -t1, closed loop)",
        "",
        "Graphs: "
        + "; ".join(
            f"{m}: {s['source']} ({s['dtype']} [1, {', '.join(map(str, s['dims']))}])"
            for m, s in result["peers"]["models"].items()
        )
        + ". "
        "Req per CPU-s: requests answered per second of the server's CPU time (every process and thread).",
        "",
        "Each figure is the median over the rounds; the rounds' req/s are listed (a round runs every server in "
        "turn, one at a time). The targets below are medians of each round's paired ratio.",
        "",
        "| model | c | server | req/s | p50 ms | p99 ms | req per CPU-s | server cores | errors | req/s by round |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    peer_rows = medians(result["peers"]["rows"], ("server", "model", "concurrency"))
    order = {r["server"]: i for i, r in enumerate(peer_rows)}
    for r in sorted(peer_rows, key=lambda r: (r["model"], r["concurrency"], order[r["server"]])):
        lines.append(
            f"| {r['model']} | {r['concurrency']} | {r['server']} | {r['rps']:,.0f} | {r['p50_ms']:.2f} | "
            f"{r['p99_ms']:.2f} | {r.get('per_cpu_s') or 0:,.0f} | {r['cpu_cores']:.2f} | {r['errors']} | "
            f"{', '.join(f'{x:,.0f}' for x in r['rps_rounds'])} |"
        )
    proto = result["protocols"]
    lines += ["", "## gRPC vs HTTP on modelserve (perf_analyzer, cnn)", ""]
    if "skipped" in proto:
        lines.append(proto["skipped"])
    else:
        lines += [
            "Medians over the rounds (a fresh server each); the ratios are medians of each round's paired ratio.",
            "",
            "| c | HTTP infer/s | gRPC infer/s | gRPC / HTTP | HTTP p50 ms | gRPC p50 ms | p50 gRPC / HTTP | "
            "gRPC infer/s by round |",
            "|---|---|---|---|---|---|---|---|",
        ]
        by = {
            (r["protocol"], r["concurrency"]): r for r in medians(proto["rows"], ("protocol", "concurrency"))
        }
        for c in CONCURRENCY:
            h, g = by.get(("http", c), {}), by.get(("grpc", c), {})
            if "rps" not in h or "rps" not in g:
                errors = [
                    r.get("error", "") for r in proto["rows"] if r["concurrency"] == c and "rps" not in r
                ]
                lines.append(f"| {c} | {'; '.join(errors)} | | | | | | |")
                continue
            grpc_, http = {"protocol": "grpc", "concurrency": c}, {"protocol": "http", "concurrency": c}
            lines.append(
                f"| {c} | {h['rps']:,.0f} | {g['rps']:,.0f} | {paired(proto['rows'], grpc_, http, 'rps')} | "
                f"{h['p50_ms']:.2f} | {g['p50_ms']:.2f} | {paired(proto['rows'], grpc_, http, 'p50_ms')} | "
                f"{', '.join(f'{x:,.0f}' for x in g['rps_rounds'])} |"
                + (" (unstable)" if h.get("unstable") or g.get("unstable") else "")
            )
    lines += ["", "## Targets", "", "| target | value | goal | met |", "|---|---|---|---|"]
    lines += [
        f"| {t['target']} | {t['value']} | {t['goal']} | {'yes' if t['met'] else '**no**'} |"
        for t in targets(result)
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3, help="every server's points, this many times over")
    parser.add_argument("--no-protocols", action="store_true", help="skip the perf_analyzer table")
    args = parser.parse_args()
    date = datetime.now(UTC).strftime("%Y-%m-%d")
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-triton-") as t:
        tmp = Path(t)
        result: dict[str, Any] = {"date": date, "peers": peers(args.seconds, tmp, args.rounds)}
        result["protocols"] = (
            {"skipped": "--no-protocols"} if args.no_protocols else protocols(args.seconds, tmp, args.rounds)
        )
    result["conditions"] = (
        f"{os.cpu_count()} cores, {platform_line()}; load generator on the same machine; {args.seconds:g} s per "
        f"point, {args.rounds} rounds; load average (1 min) {load_before:.1f} before, {os.getloadavg()[0]:.1f} after."
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"{date}-triton"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    text = markdown(result)
    stem.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
