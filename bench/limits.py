"""The physical limit: raw in-process onnxruntime, items/s and latency per batch size, for each shipped model."""

from __future__ import annotations

import io
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from PIL import Image

from service.kinds.text.preprocess import Tokenizer, pad_batch

ROOT = Path(__file__).resolve().parent.parent


def digit_pixels(n: int) -> np.ndarray:
    """n real example digits, uint8 (n, 28, 28, 1)."""
    images = [
        np.asarray(Image.open(io.BytesIO((ROOT / "examples/digits" / f"{d}.png").read_bytes())).convert("L"))
        for d in range(10)
    ]
    return np.stack([images[i % 10] for i in range(n)])[..., None]


def sentences() -> list[str]:
    """Held-out Rotten Tomatoes snippets of mixed length (1 to about 50 words), plus some longer ones
    made of several."""
    import csv

    with (ROOT / "tests/data/rotten_tomatoes_test.csv").open(encoding="utf-8") as f:
        texts = [r["text"] for r in csv.DictReader(f)]
    longer = [" ".join(texts[i : i + 4]) for i in range(0, 80, 4)]
    return texts[:200] + longer


def text_ids(models: Path, n: int) -> np.ndarray:
    pre = json.loads((models / "sentiment/1/model.json").read_text())["preprocessing"]["text"]
    tok = Tokenizer.from_preprocessing(pre, model_dir=models / "sentiment/1")
    texts = sentences()
    return pad_batch([tok.encode(texts[i % len(texts)]) for i in range(n)], tok.pad_id)


def measure(
    models: Path, batch_sizes: tuple[int, ...] = (1, 8, 32, 64, 128), seconds: float = 1.0
) -> list[dict[str, Any]]:
    rows = []
    for name, make, input_name in (
        ("digits", digit_pixels, "pixels"),
        ("sentiment", lambda n: text_ids(models, n), "ids"),
    ):
        sess = ort.InferenceSession(
            str(models / name / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
        )
        for bs in batch_sizes:
            feeds = {input_name: make(bs)}
            for _ in range(3):
                sess.run(None, feeds)
            times = []
            deadline = time.perf_counter() + seconds
            while time.perf_counter() < deadline or len(times) < 5:
                t = time.perf_counter()
                sess.run(None, feeds)
                times.append(time.perf_counter() - t)
            rows.append(
                {
                    "model": name,
                    "batch_size": bs,
                    "items_per_s": round(bs * len(times) / sum(times), 1),
                    "latency_ms_p50": round(statistics.median(times) * 1000, 3),
                }
            )
    return rows


if __name__ == "__main__":
    for row in measure(ROOT / "models"):
        print(row)
