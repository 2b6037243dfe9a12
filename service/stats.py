"""Triton's statistics extension: cumulative per-version counts and durations, always on (even without
Prometheus), fed by the batcher's observer hooks and the data plane. Everything runs on the event loop.

What each duration means here (Triton's names, modelserve's pipeline):
- queue: from entering the model's queue to the start of its batch run;
- compute_input: decoding and validating the request (JSON or protobuf tensors, image decoding,
  tokenising), before it is queued;
- compute_infer: the batch run that held the request (collate, onnxruntime, split), once per request;
- compute_output: encoding the answer.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from service.batching import BatchObserver


@dataclass(slots=True)
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, seconds: float, count: int = 1) -> None:
        self.count += count
        self.ns += int(seconds * 1e9)

    def add_each(self, seconds: list[float]) -> None:
        """One count per value (each rounded to ns as ``add`` rounds it)."""
        self.count += len(seconds)
        self.ns += sum(int(s * 1e9) for s in seconds)

    def as_dict(self) -> dict[str, int]:
        return {"count": self.count, "ns": self.ns}


class ModelStats(BatchObserver):
    """One model version's statistics, as Triton's ModelStatistics message holds them."""

    def __init__(self, name: str, version: int) -> None:
        self.name = name
        self.version = str(version)
        self.last_inference_ms = 0  # wall-clock milliseconds since the epoch, as Triton reports it
        self.inference_count = 0  # rows answered successfully
        self.execution_count = 0  # batch runs
        self.success = Duration()
        self.fail = Duration()
        self.queue = Duration()
        self.compute_input = Duration()
        self.compute_infer = Duration()
        self.compute_output = Duration()
        self._by_batch_size: dict[int, Duration] = {}

    # The batcher's hooks.
    def on_queue_waits(self, waits_s: list[float]) -> None:
        self.queue.add_each(waits_s)

    def on_batch(self, rows: int, requests: int, run_s: float) -> None:
        self.execution_count += 1
        # The time now, the count with the request's answer (on_request): compute_input, compute_infer and
        # compute_output counts then move together, as perf_analyzer requires of any two snapshots (it
        # aborts on "compute counts must be the same" when a snapshot falls between a run and its answers).
        self.compute_infer.ns += int(run_s * requests * 1e9)
        per_size = self._by_batch_size.get(rows)
        if per_size is None:
            per_size = self._by_batch_size[rows] = Duration()
        per_size.add(run_s)

    # The data plane's.
    def on_request(self, ok: bool, rows: int, total_s: float, input_s: float, output_s: float) -> None:
        if ok:
            self.success.add(total_s)
            self.inference_count += rows
            self.compute_input.add(input_s)
            self.compute_infer.count += 1
            self.compute_output.add(output_s)
        else:
            self.fail.add(total_s)
        self.last_inference_ms = int(time.time() * 1000)

    def as_dict(self) -> dict[str, Any]:
        """The statistics extension's $model_stat object (also parsed into the gRPC message)."""
        zero = Duration().as_dict()
        return {
            "name": self.name,
            "version": self.version,
            "last_inference": self.last_inference_ms,
            "inference_count": self.inference_count,
            "execution_count": self.execution_count,
            "inference_stats": {
                "success": self.success.as_dict(),
                "fail": self.fail.as_dict(),
                "queue": self.queue.as_dict(),
                "compute_input": self.compute_input.as_dict(),
                "compute_infer": self.compute_infer.as_dict(),
                "compute_output": self.compute_output.as_dict(),
                "cache_hit": zero,
                "cache_miss": zero,
            },
            "batch_stats": [
                {
                    "batch_size": size,
                    "compute_input": {"count": d.count, "ns": 0},
                    "compute_infer": d.as_dict(),
                    "compute_output": {"count": d.count, "ns": 0},
                }
                for size, d in sorted(self._by_batch_size.items())
            ],
            "memory_usage": [],
        }


class FanOut(BatchObserver):
    """Several observers behind the batcher's one hook (statistics, and Prometheus when it is on)."""

    def __init__(self, *observers: BatchObserver | None) -> None:
        self._observers = [o for o in observers if o is not None]

    def on_queue_waits(self, waits_s: list[float]) -> None:
        for o in self._observers:
            o.on_queue_waits(waits_s)

    def on_batch(self, rows: int, requests: int, run_s: float) -> None:
        for o in self._observers:
            o.on_batch(rows, requests, run_s)

    def on_depth(self, queued: int, in_flight: int) -> None:
        for o in self._observers:
            o.on_depth(queued, in_flight)


def merge_stats(stats: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Several workers' ``ModelStats.as_dict()`` of the same versions, summed per (name, version)."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for s in stats:
        key = (s["name"], s["version"])
        total = merged.get(key)
        if total is None:
            merged[key] = {
                **s,
                "inference_stats": dict(s["inference_stats"]),
                "batch_stats": list(s["batch_stats"]),
            }
            continue
        total["last_inference"] = max(total["last_inference"], s["last_inference"])
        total["inference_count"] += s["inference_count"]
        total["execution_count"] += s["execution_count"]
        total["inference_stats"] = {
            k: _add(total["inference_stats"][k], d) for k, d in s["inference_stats"].items()
        }
        sizes = {b["batch_size"]: b for b in total["batch_stats"]}
        for b in s["batch_stats"]:
            have = sizes.get(b["batch_size"])
            sizes[b["batch_size"]] = (
                b
                if have is None
                else {
                    "batch_size": b["batch_size"],
                    **{k: _add(have[k], b[k]) for k in ("compute_input", "compute_infer", "compute_output")},
                }
            )
        total["batch_stats"] = [sizes[k] for k in sorted(sizes)]
    return [merged[k] for k in sorted(merged)]


def _add(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {"count": a["count"] + b["count"], "ns": a["ns"] + b["ns"]}
