"""Server CPU per request by thread: the event loops against the rest (the batchers' inference threads),
and what onnxruntime itself takes of it, per row it ran.

    python -m bench.threads [--workloads lstm,cnn] [-c 64] [--seconds 6] [--rounds 2] [--root CHECKOUT]
                            [--env K=V,...]

One modelserve (workers auto, every feature on) on the bench repository's cnn and lstm graphs
(bench/triton.py) under wrk. Per round and workload: each thread's CPU time (``/proc/<pid>/task/*/stat``)
divided by the requests answered, summed into the workers' main threads (the event loops) and their
other threads (the inference threads, and a decoding pool's when one is busy). onnxruntime's own CPU is
timed by ``time.thread_time()`` around every ``InferenceSession.run`` in the server: a ``sitecustomize``
on the server's path (a temporary folder, nothing in the tree) wraps it and writes each process's totals
to a file every 50 runs, read before and after the load. Next to it the same graph in a tight loop here,
one thread, at the rows per run the server formed: what the graph costs without a server around it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from bench.cpu import counts
from bench.harness import CLK, ROOT, Server, write_variants, wrk
from bench.triton import bodies, build_repository

# Written into a temporary folder put on the server's PYTHONPATH: every process that imports onnxruntime
# times its runs (thread CPU, rows) and keeps the totals in OUT/ort.<pid>.
SITECUSTOMIZE = """
import os, time
try:
    import onnxruntime as _ort
except ImportError:
    _ort = None
if _ort is not None:
    _run = _ort.InferenceSession.run
    _totals = [0.0, 0, 0]  # thread CPU s, runs, rows

    def run(self, output_names, input_feed, run_options=None):
        start = time.thread_time()
        out = _run(self, output_names, input_feed, run_options)
        _totals[0] += time.thread_time() - start
        _totals[1] += 1
        _totals[2] += len(next(iter(input_feed.values())))
        if _totals[1] % 50 == 0:
            with open(os.path.join(OUT, "ort.%d" % os.getpid()), "w") as f:
                f.write("%r %d %d" % tuple(_totals))
        return out

    _ort.InferenceSession.run = run
"""


def thread_cpu(server: Server) -> dict[tuple[int, int], float]:
    """CPU seconds of every thread of the server's process tree, by (pid, tid)."""
    out = {}
    for pid in server.pids():
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            out[pid, int(task.name)] = (int(fields[11]) + int(fields[12])) / CLK
    return out


def ort_totals(folder: Path) -> tuple[float, int]:
    """onnxruntime's CPU seconds and rows so far, every process together."""
    seconds, rows = 0.0, 0
    for path in folder.glob("ort.*"):
        try:
            s, _, r = path.read_text().split()
        except (OSError, ValueError):
            continue
        seconds, rows = seconds + float(s), rows + int(r)
    return seconds, rows


def tight_loop_us(graph: Path, body: bytes, rows: int) -> float:
    """onnxruntime's CPU µs a row for ``rows`` copies of the body's input, one thread, in a tight loop."""
    import orjson

    tensor = orjson.loads(body)["inputs"][0]
    dtype = np.float32 if tensor["datatype"] == "FP32" else np.int64
    x = np.asarray(tensor["data"], dtype=dtype).reshape(tensor["shape"])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(graph), opts, providers=["CPUExecutionProvider"])
    feeds = {session.get_inputs()[0].name: np.concatenate([x] * max(rows, 1))}
    for _ in range(10):
        session.run(None, feeds)
    n = max(20, 2000 // max(rows, 1))
    start = time.thread_time()
    for _ in range(n):
        session.run(None, feeds)
    return 1e6 * (time.thread_time() - start) / (n * max(rows, 1))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workloads", default="lstm,cnn")
    parser.add_argument("-c", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout whose server to measure")
    parser.add_argument("--env", default="", help="KEY=VALUE[,KEY=VALUE] for the server")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-threads-"))
    repo = tmp / "repository"
    models = build_repository(repo)
    hook = tmp / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(f"OUT = {str(hook)!r}\n" + SITECUSTOMIZE)
    env = dict(kv.split("=", 1) for kv in args.env.split(",") if kv)
    server = Server(
        "modelserve",
        [sys.executable, "-m", "service", "serve", "--host", "127.0.0.1", "--port", "{port}"],
        {"MODELSERVE_MODELS_DIR": str(repo), "PYTHONPATH": f"{args.root}{os.pathsep}{hook}", **env},
        cwd=args.root,
    )
    rows: list[tuple[str, int, dict[str, float]]] = []
    try:
        for model in args.workloads.split(","):
            folder = tmp / model
            write_variants(folder, bodies(models, model))
            for r in range(args.rounds):
                wrk(server, folder, args.c, 1)  # warm-up
                before, (rows0, runs0), ort0 = thread_cpu(server), counts(server), ort_totals(hook)
                result = wrk(server, folder, args.c, args.seconds)
                after, (rows1, runs1), ort1 = thread_cpu(server), counts(server), ort_totals(hook)
                answered = result["requests"] - result["status_errors"]
                loops = others = 0.0
                for (pid, tid), cpu in after.items():
                    used = cpu - before.get((pid, tid), 0.0)
                    if pid == tid:
                        loops += used
                    else:
                        others += used
                per_run = (rows1 - rows0) / max(runs1 - runs0, 1)
                ort_rows = ort1[1] - ort0[1]
                point = {
                    "total": 1e6 * (loops + others) / answered,
                    "loops": 1e6 * loops / answered,
                    "others": 1e6 * others / answered,
                    "ort_row": 1e6 * (ort1[0] - ort0[0]) / ort_rows if ort_rows else float("nan"),
                    "rows_per_run": per_run,
                    "tight_row": tight_loop_us(
                        repo / model / "1" / "model.onnx", bodies(models, model)[0][2], round(per_run)
                    ),
                    "rps": result["requests"] / (result["duration_us"] / 1e6),
                }
                rows.append((model, r, point))
                print(model, r, {k: round(v, 1) for k, v in point.items()}, flush=True)
    finally:
        server.stop()
    print(
        f"\nMedians of {args.rounds} rounds, c={args.c}; µs of CPU a request, onnxruntime's a row.\n\n"
        "| workload | all threads | event loops | other threads | onnxruntime in the server, a row | "
        "the same graph in a tight loop, a row | rows per run | req/s |\n|---|---|---|---|---|---|---|---|"
    )
    for model in args.workloads.split(","):
        pts = [p for m, _, p in rows if m == model]

        def med(key: str, pts: list[dict[str, float]] = pts) -> float:
            return statistics.median(p[key] for p in pts)

        print(
            f"| {model} | {med('total'):.0f} | {med('loops'):.0f} | {med('others'):.0f} | "
            f"{med('ort_row'):.0f} | {med('tight_row'):.0f} | {med('rows_per_run'):.1f} | {med('rps'):.0f} |"
        )


if __name__ == "__main__":
    main()
