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
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.harness import RESULTS, ROOT, Server, ours, platform_line, variants, write_variants, wrk
from bench.limits import measure

CONCURRENCY = (1, 8, 32, 64, 128)


# ------------------------------------------------------------------------------------------- requests
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


if __name__ == "__main__":
    main()
