"""The scaling table: modelserve with 1, 2 and "auto" workers beside the naive server with as many uvicorn
workers, digits V2 JSON (UINT8 body), concurrency 1, 64 and 256, each pair measured back to back while both
servers are up (so they share the machine's background load), ratios within the pair.

    python -m bench.run --scaling-only [--seconds S]     # writes bench/results/<date>-scaling.{json,md}

A point whose load generator (wrk, one thread, same machine) used more than half a core is flagged: the
generator then competes with the servers for the cores, and their numbers are a floor.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import Server, variants, write_variants, wrk
from service.process.cpus import plan

WORKLOAD = "digits-v2-uint8"
WORKERS = ("1", "2", "auto")
CONCURRENCY = (1, 64, 256)
TAIL_RUNS = 3  # c=256 is measured this many times on modelserve: the tail target must hold in each run
GENERATOR_LIMIT = 0.5  # cores
ACCESS = re.compile(r" 200 ([0-9.]+)ms")


def _access_latencies(server: Server, start: int) -> list[float]:
    """Server-side latencies (ms) of the 200s in modelserve's access log from byte ``start`` on."""
    with server.log_path.open("rb") as f:
        f.seek(start)
        text = f.read().decode(errors="replace")
    return [float(m.group(1)) for m in ACCESS.finditer(text)]


def _point(server: Server, folder: Path, c: int, seconds: float) -> dict[str, Any]:
    wrk(server, folder, c, 1)  # warm-up at this concurrency
    time.sleep(0.5)  # the warm-up's last answers reach the log
    log_start = server.log_path.stat().st_size
    cpu0, t0 = server.cpu_s(), time.perf_counter()
    r = wrk(server, folder, c, seconds)
    cpu = (server.cpu_s() - cpu0) / (time.perf_counter() - t0)
    inside = _access_latencies(server, log_start) if server.name == "modelserve" else []
    return {
        # From the access log: the time inside the app (first byte read to answer sent), without the
        # socket queues and the load generator's own delays that wrk's numbers include.
        "server_p50_ms": round(float(np.percentile(inside, 50)), 2) if inside else None,
        "server_p99_ms": round(float(np.percentile(inside, 99)), 2) if inside else None,
        "rps": round(r["requests"] / (r["duration_us"] / 1e6), 1),
        "p50_ms": r["p50_us"] / 1000,
        "p99_ms": r["p99_us"] / 1000,
        "errors": r["status_errors"] + r["socket_errors"],
        "server_cpu": round(cpu, 2),
        "wrk_cpu": r["wrk_cpu"],
    }


def scaling(seconds: float, tmp: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    measured: dict[int, list[dict[str, Any]]] = {}
    for workers in WORKERS:
        p = plan(workers, 0)
        if p.workers in measured:  # "auto" resolved to a count already measured: say so, do not repeat
            rows += [
                {**r, "workers": workers, "resolved": p.workers, "same_as": str(p.workers)}
                for r in measured[p.workers]
            ]
            continue
        ours = Server(
            "modelserve",
            [sys.executable, "-m", "service", "serve", "--host", "127.0.0.1", "--port", "{port}"],
            {"MODELSERVE_WORKERS": workers},
        )
        naive = Server(
            "naive",
            [sys.executable, "-m", "bench.naive_server", "--port", "{port}", "--workers", str(p.workers)],
        )
        batch: list[dict[str, Any]] = []
        try:
            for c in CONCURRENCY:
                pair = {}
                for server in (ours, naive):
                    folder = tmp / f"scaling-{server.name}"
                    if not folder.exists():
                        write_variants(folder, variants(WORKLOAD, server.name))
                    pair[server.name] = _point(server, folder, c, seconds)
                row = {
                    "workers": workers,
                    "resolved": p.workers,
                    "threads": p.intra_op_threads,
                    "concurrency": c,
                    "modelserve": pair["modelserve"],
                    "naive": pair["naive"],
                    "rps_ratio": round(pair["modelserve"]["rps"] / pair["naive"]["rps"], 2),
                    "p50_ratio": round(pair["modelserve"]["p50_ms"] / pair["naive"]["p50_ms"], 2),
                    "p99_over_p50": round(pair["modelserve"]["p99_ms"] / pair["modelserve"]["p50_ms"], 1),
                    # Requests per CPU-second of each server: on a shared machine the scheduler hands each
                    # server a share of the cores by its runnable threads, so raw req/s ratios drift.
                    "per_cpu_ratio": round(
                        (pair["modelserve"]["rps"] / max(pair["modelserve"]["server_cpu"], 0.01))
                        / (pair["naive"]["rps"] / max(pair["naive"]["server_cpu"], 0.01)),
                        2,
                    ),
                    "generator_floor": max(pair["modelserve"]["wrk_cpu"], pair["naive"]["wrk_cpu"])
                    > GENERATOR_LIMIT,
                }
                if c == max(CONCURRENCY):
                    folder = tmp / "scaling-modelserve"
                    again = [_point(ours, folder, c, seconds) for _ in range(TAIL_RUNS - 1)]
                    row["tail_runs"] = [
                        row["p99_over_p50"],
                        *(round(a["p99_ms"] / a["p50_ms"], 1) for a in again),
                    ]
                batch.append(row)
                print(row, flush=True)
        finally:
            ours.stop()
            naive.stop()
        measured[p.workers] = batch
        rows += batch
    return rows


def targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets on a 2-core machine, 2 workers on each side."""

    def at(c: int) -> dict[str, Any] | None:
        return next((r for r in rows if r["workers"] == "2" and r["concurrency"] == c), None)

    checks = [
        ("2 workers, c=64: req/s vs naive (2 workers)", (at(64) or {}).get("rps_ratio"), ">=", 4.0),
        ("2 workers, c=1: p50 vs naive (2 workers)", (at(1) or {}).get("p50_ratio"), "<=", 0.8),
        (
            f"2 workers, c=256: modelserve p99 / p50, worst of {TAIL_RUNS} runs",
            max((at(256) or {}).get("tail_runs") or [(at(256) or {}).get("p99_over_p50") or float("inf")]),
            "<=",
            3.0,
        ),
    ]
    return [
        {
            "target": name,
            "value": v,
            "goal": f"{op} {goal}",
            "met": v is not None and (v >= goal if op == ">=" else v <= goal),
        }
        for name, v, op, goal in checks
    ]


def markdown(rows: list[dict[str, Any]], conditions: str) -> str:
    lines = [
        "## Scaling (digits V2 JSON UINT8; modelserve vs naive with the same worker count)",
        "",
        conditions,
        "",
        "modelserve: N workers x onnxruntime intra-op threads (CPUs / workers), batching, access log on. "
        "naive: `uvicorn --workers N`, onnxruntime's default threads (intra_op_num_threads=0: one per "
        "physical core, in every worker), no batching. Per CPU-s ratio: requests per CPU-second of "
        "modelserve over naive's (on a shared machine raw req/s follow the CPU share each server gets). "
        "In-app: modelserve's access-log latencies (first byte read to answer sent), without the socket "
        "queues and the load generator's own scheduling delays that wrk's numbers include. "
        "Floor: the load generator used more than half a core, so both numbers are lower bounds.",
        "",
        "| workers | threads | c | modelserve req/s | naive req/s | ratio | per CPU-s ratio | modelserve p50 ms "
        "| naive p50 ms | p50 ratio | modelserve p99 ms | p99/p50 | naive p99 ms | server CPU (ms/naive) "
        "| in-app p50 / p99 ms | wrk CPU | floor |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        m, n = r["modelserve"], r["naive"]
        label = r["workers"] + (f" (= {r['resolved']})" if r["workers"] == "auto" else "")
        if r.get("same_as"):
            label += ", same run as above"
        lines.append(
            f"| {label} | {r.get('threads', '')} | {r['concurrency']} | {m['rps']:.0f} | {n['rps']:.0f} | "
            f"{r['rps_ratio']} | {r['per_cpu_ratio']} | {m['p50_ms']:.2f} | {n['p50_ms']:.2f} | {r['p50_ratio']} | {m['p99_ms']:.1f} | "
            f"{r['p99_over_p50']} | {n['p99_ms']:.1f} | {m['server_cpu']}/{n['server_cpu']} | "
            f"{m['server_p50_ms']} / {m['server_p99_ms']} | "
            f"{max(m['wrk_cpu'], n['wrk_cpu'])} | {'**floor**' if r['generator_floor'] else ''} |"
        )
    for r in rows:
        if r.get("tail_runs") and not r.get("same_as"):
            runs = ", ".join(str(x) for x in r["tail_runs"])
            lines.append(
                f"\nc={r['concurrency']}, {r['workers']} workers: modelserve p99/p50 in {len(r['tail_runs'])} runs: {runs}"
            )
    lines += ["", "| target | value | goal | met |", "|---|---|---|---|"]
    lines += [
        f"| {t['target']} | {t['value']} | {t['goal']} | {'yes' if t['met'] else '**no**'} |"
        for t in targets(rows)
    ]
    return "\n".join(lines) + "\n"
