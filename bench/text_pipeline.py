"""The transformer `sentiment` row of `make bench`: modelserve's /predict against FastAPI + a `transformers`
pipeline (bench/pipeline_server.py) with the same workers, and in-process onnxruntime at the same batch
sizes (the limit).

    python -m bench.text_pipeline            # bench/results/<date>-text.{json,md}
    python -m bench.text_pipeline --quick    # 2 s points

Each request is one held-out Rotten Tomatoes snippet (bench.limits.sentences: 1 to ~50 words, some longer
ones made of four). Per point: requests/s, p50/p99 (wrk, closed loop), errors, and for modelserve the
batch sizes the batcher formed (the histogram of /metrics, over the point's requests).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.harness import RESULTS, ROOT, Server, platform_line, write_variants, wrk
from bench.limits import sentences

MODEL, VERSION = "sentiment", "2"
CONCURRENCY = (1, 16, 64)
BATCH_SIZES = (1, 4, 8, 16, 32, 64)
BUCKETS = re.compile(
    rf'^modelserve_batch_size_bucket{{le="([^"]+)",model="{MODEL}",version="{VERSION}"}} (\S+)$', re.M
)


class PipelineServer(Server):
    def _wait_ready(self) -> float:
        deadline = time.monotonic() + 180  # torch and transformers import slowly on a busy machine
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/ready", timeout=0.5).status_code == 200:
                    return time.perf_counter() - self.started
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready")


def _buckets(server: Server) -> dict[float, float]:
    text = httpx.get(server.url + "/metrics", timeout=5).text
    return {float(le): float(v) for le, v in BUCKETS.findall(text)}


def _formed(before: dict[float, float], after: dict[float, float]) -> dict[str, float]:
    """Batch runs per size range over a point, from the cumulative histogram: {"<=1": n, "2-4": n, ...}."""
    counts, low, prev = {}, 1.0, 0.0
    for le in sorted(after):
        total = after[le] - before.get(le, 0.0)
        if total - prev > 0:
            label = f"<={le:g}" if low >= le else f"{low:g}-{le:g}" if le != float("inf") else f">{low - 1:g}"
            counts[label] = total - prev
        prev, low = total, le + 1
    return counts


def point(server: Server, folder: Path, concurrency: int, seconds: float) -> dict[str, Any]:
    wrk(server, folder, concurrency, 1)  # warm-up at this concurrency
    ours = server.name == "modelserve"
    before = _buckets(server) if ours else {}
    r = wrk(server, folder, concurrency, seconds)
    after = _buckets(server) if ours else {}
    runs = after.get(float("inf"), 0) - before.get(float("inf"), 0)
    return {
        "server": server.name,
        "concurrency": concurrency,
        "rps": round(r["requests"] / (r["duration_us"] / 1e6), 1),
        "p50_ms": r["p50_us"] / 1000,
        "p99_ms": r["p99_us"] / 1000,
        "errors": r["status_errors"] + r["socket_errors"],
        "rows_per_batch": round(r["requests"] / runs, 2) if ours and runs else None,
        "batches_formed": _formed(before, after) if ours else None,
    }


def in_process(batch_sizes: tuple[int, ...], seconds: float) -> list[dict[str, Any]]:
    """onnxruntime on the shipped graph, batches of held-out snippets padded to their longest; the
    tokenizer's time (the same `tokenizers` call the service makes) apart."""
    import onnxruntime as ort

    from service.kinds.subword.preprocess import SubwordTokenizer

    folder = ROOT / "models" / MODEL / VERSION
    meta = json.loads((folder / "model.json").read_text())
    tok = SubwordTokenizer.from_preprocessing(meta["preprocessing"]["subword"], folder)
    sess = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    texts = sentences()
    rows = []
    for bs in batch_sizes:
        batches = [[texts[(i + j) % len(texts)] for j in range(bs)] for i in range(0, len(texts), bs)]
        encoded = [tok.encode(b) for b in batches]
        feeds = [{"input_ids": e.input_ids, "attention_mask": e.attention_mask} for e in encoded]
        sess.run(None, feeds[0])
        times, tok_times, n = [], [], 0
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline or len(times) < 5:
            i = n % len(batches)
            t = time.perf_counter()
            tok.encode(batches[i])
            tok_times.append(time.perf_counter() - t)
            t = time.perf_counter()
            sess.run(["probabilities"], feeds[i])
            times.append(time.perf_counter() - t)
            n += 1
        rows.append(
            {
                "batch_size": bs,
                "texts_per_s": round(bs * len(times) / sum(times), 1),
                "run_ms_p50": round(statistics.median(times) * 1000, 2),
                "tokenize_us_per_text": round(statistics.median(tok_times) / bs * 1e6, 1),
            }
        )
    return rows


def run_text(seconds: float, tmp: Path, date: str, workers: int = 2) -> dict[str, Any]:
    """Both servers at c=1, 16, 64 and the in-process limit; writes bench/results/<date>-text.*."""
    folder = tmp / "text-sentiment"
    write_variants(
        folder,
        [
            ("/predict", {"Content-Type": "application/json"}, orjson.dumps({"texts": [t]}))
            for t in sentences()
        ],
    )
    load = os.getloadavg()[0]
    points = []
    ours = Server(
        "modelserve",
        [sys.executable, "-m", "service", "serve", "--host", "127.0.0.1", "--port", "{port}"],
        {"MODELSERVE_WORKERS": str(workers), "MODELSERVE_DEFAULT_MODEL": MODEL},
    )
    try:
        for c in CONCURRENCY:
            points.append(point(ours, folder, c, seconds))
            print(points[-1], flush=True)
    finally:
        ours.stop()
    pipe = PipelineServer(
        "fastapi+transformers",
        [sys.executable, "-m", "bench.pipeline_server", "--port", "{port}", "--workers", str(workers)],
        {"HF_HUB_OFFLINE": "1"},
    )
    try:
        for c in CONCURRENCY:
            points.append(point(pipe, folder, c, seconds))
            print(points[-1], flush=True)
    finally:
        pipe.stop()
    formed = sorted({round(p["rows_per_batch"]) for p in points if p["rows_per_batch"]})
    limit = in_process(tuple(sorted({*BATCH_SIZES, *formed})), min(seconds, 2.0))
    result = {
        "date": date,
        "machine": f"{os.cpu_count()} cores, {platform_line()}; load average {load:.1f} at the start; "
        f"{workers} workers each; wrk -t1 on the same machine; {seconds:g} s per point",
        "model": f"{MODEL} v{VERSION}",
        "points": points,
        "in_process": limit,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"{date}-text"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    stem.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return result


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# Transformer text classification ({result['model']}), {result['date']}",
        "",
        result["machine"],
        "",
        "| server | c | req/s | p50 ms | p99 ms | errors | texts per batch | batches formed (size: runs) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in result["points"]:
        formed = ", ".join(f"{k}: {v:g}" for k, v in (p["batches_formed"] or {}).items()) or "-"
        lines.append(
            f"| {p['server']} | {p['concurrency']} | {p['rps']} | {p['p50_ms']:.1f} | {p['p99_ms']:.1f} | "
            f"{p['errors']} | {p['rows_per_batch'] or '-'} | {formed} |"
        )
    lines += [
        "",
        "In-process onnxruntime (the limit):",
        "",
        "| batch | texts/s | run ms p50 | tokenize µs/text |",
    ]
    lines.append("|---|---|---|---|")
    for r in result["in_process"]:
        lines.append(
            f"| {r['batch_size']} | {r['texts_per_s']} | {r['run_ms_p50']} | {r['tokenize_us_per_text']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="2 s points instead of 5 s")
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    seconds = args.seconds or (2.0 if args.quick else 5.0)
    tmp = Path(tempfile.mkdtemp(prefix="bench-text-"))
    run_text(seconds, tmp, datetime.now(UTC).strftime("%Y-%m-%d"), args.workers)


if __name__ == "__main__":
    main()
