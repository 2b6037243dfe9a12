"""Server CPU per request, before/after, side by side: the measure that holds on a shared machine.

    python -m bench.cpu --before /tmp/base [--workloads cnn,lstm] [-c 64] [--rounds 3] [--seconds 5]
    python -m bench.cpu --env MODELSERVE_ACCESS_LOG=false ...     # a setting against the default
    python -m bench.cpu --floor --floor=--thread ...   # beside bench/floor_server.py: what any Python server pays

Each variant (this checkout; --before CHECKOUT; --env settings) is one modelserve (workers auto, every
feature on unless --env says otherwise) on the bench repository's cnn and lstm graphs (bench/triton.py).
All are up at once and take turns: each round runs every workload on every variant, so background load
falls on all of them alike. Per point: the server's process-tree CPU seconds / requests answered (wrk's
count less its errors), in microseconds; the median over rounds is reported, with the ratio to the first
variant. Also the mean rows per batch (the statistics extension's inference and execution counts).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.harness import ROOT, Server, write_variants, wrk
from bench.triton import bodies, build_repository


def counts(server: Server) -> tuple[int, int]:
    """(rows answered, batch runs), every model and worker."""
    if server.name == "floor":
        return 0, 0
    stats = httpx.get(server.url + "/v2/models/stats", timeout=10).json()["model_stats"]
    return sum(int(m["inference_count"]) for m in stats), sum(int(m["execution_count"]) for m in stats)


def batch_sizes(server: Server) -> dict[str, float]:
    """Cumulative batch runs by rows (the ``le`` buckets of modelserve_batch_size), every model."""
    out: dict[str, float] = {}
    if server.name == "floor":
        return out
    for line in httpx.get(server.url + "/metrics", timeout=10).text.splitlines():
        if line.startswith("modelserve_batch_size_bucket{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            out[le] = out.get(le, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def histogram(before: dict[str, float], after: dict[str, float]) -> str:
    """Share of runs per rows bucket between two readings, e.g. ``1:40% 2:20% ...``."""
    total = after.get("+Inf", 0.0) - before.get("+Inf", 0.0)
    if not total:
        return ""
    parts, below = [], 0.0
    for le in sorted(after, key=lambda k: float(k)):
        n = after[le] - before.get(le, 0.0) - below
        below += n
        if n:
            parts.append(f"{le.removesuffix('.0')}:{100 * n / total:.0f}%")
    return " ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--before", type=Path, action="append", default=[], help="another checkout")
    parser.add_argument(
        "--env", action="append", default=[], help="KEY=VALUE[,KEY=VALUE] for one more variant"
    )
    parser.add_argument("--workloads", default="cnn,lstm")
    parser.add_argument("-c", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--workers", default="auto")
    parser.add_argument(
        "--floor",
        action="append",
        nargs="?",
        const="",
        default=[],
        help="one more variant: bench/floor_server.py (no features), with its flags: --floor=--thread,--tasks",
    )
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-cpu-"))
    repo = tmp / "repository"
    models = build_repository(repo)
    folders = {}
    for model in args.workloads.split(","):
        folders[model] = tmp / model
        write_variants(folders[model], bodies(models, model))
    variants: list[tuple[str, Path, dict[str, str]]] = [("this checkout", ROOT, {})]
    variants += [(f"before: {p}", p, {}) for p in args.before]
    variants += [(f"env {e}", ROOT, dict(kv.split("=", 1) for kv in e.split(","))) for e in args.env]
    servers = []
    try:
        for _label, root, env in variants:
            servers.append(
                Server(
                    "modelserve",
                    [sys.executable, "-m", "service", "serve", "--host", "127.0.0.1", "--port", "{port}"],
                    {
                        "MODELSERVE_MODELS_DIR": str(repo),
                        "MODELSERVE_WORKERS": args.workers,
                        "PYTHONPATH": str(root),
                        **env,
                    },
                    cwd=root,
                )
            )
        for flags in args.floor:
            extra = [f for f in flags.split(",") if f]
            variants.append((f"floor {' '.join(extra) or '(inline)'}", ROOT, {}))
            servers.append(
                Server(
                    "floor",
                    [
                        sys.executable,
                        "-m",
                        "bench.floor_server",
                        "--port",
                        "{port}",
                        "--repository",
                        str(repo),
                        *extra,
                    ],
                )
            )
        results: dict[tuple[int, str], list[dict[str, float]]] = {}
        hists: dict[tuple[int, str], list[str]] = {}
        for _ in range(args.rounds):
            for model, folder in folders.items():
                for i, server in enumerate(servers):
                    wrk(server, folder, args.c, 1)  # warm-up
                    hist0 = batch_sizes(server)
                    cpu0, (rows0, runs0), t0 = server.cpu_s(), counts(server), time.perf_counter()
                    r = wrk(server, folder, args.c, args.seconds)
                    cpu, elapsed = server.cpu_s() - cpu0, time.perf_counter() - t0
                    rows1, runs1 = counts(server)
                    hists.setdefault((i, model), []).append(histogram(hist0, batch_sizes(server)))
                    answered = r["requests"] - r["status_errors"]
                    results.setdefault((i, model), []).append(
                        {
                            "cpu_us": 1e6 * cpu / answered,
                            "rps": r["requests"] / (r["duration_us"] / 1e6),
                            "cores": cpu / elapsed,
                            "rows_per_batch": (rows1 - rows0) / max(runs1 - runs0, 1),
                            "errors": r["status_errors"] + r["socket_errors"],
                            "p50_ms": r["p50_us"] / 1000,
                        }
                    )
                    print(
                        variants[i][0],
                        model,
                        {k: round(v, 1) for k, v in results[i, model][-1].items()},
                        hists[i, model][-1],
                        flush=True,
                    )
    finally:
        for server in servers:
            server.stop()
    # Paired: each round's points ran back to back, so the ratio within a round cancels most of the
    # machine's drift; its median over rounds is the figure to quote.
    print(
        f"\n| workload | variant | CPU µs/request (median of {args.rounds}) | paired ratio to the first "
        "(median) | per round | req/s | p50 ms | rows/batch | runs by rows (last round; bucket upper bound) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for model in folders:
        base = results[0, model]
        for i, (label, _, _) in enumerate(variants):
            pts = results[i, model]
            med = statistics.median(p["cpu_us"] for p in pts)
            ratio = statistics.median(p["cpu_us"] / b["cpu_us"] for p, b in zip(pts, base, strict=True))
            each = ", ".join(f"{p['cpu_us']:.0f}" for p in pts)
            print(
                f"| {model} c={args.c} | {label} | {med:.0f} | {ratio:.2f} | "
                f"{each} | {statistics.median(p['rps'] for p in pts):.0f} | "
                f"{statistics.median(p['p50_ms'] for p in pts):.2f} | "
                f"{statistics.median(p['rows_per_batch'] for p in pts):.1f} | {hists[i, model][-1]} |"
            )


if __name__ == "__main__":
    main()
