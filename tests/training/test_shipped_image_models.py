"""The shipped image models, re-checked from their ONNX files with onnxruntime (no torch):

- accuracy on the committed held-out samples (tests/data/, 500 test pictures each, source and licence in
  its README), both through the serving path (PNG -> decode -> the model's framing) and as stored (the V2
  tensor path);
- digits on printed digits (the DejaVu fonts matplotlib ships, 3 sizes, both polarities) and on mouse
  drawings on a canvas, the out-of-distribution sets of training/eval_digits.py (never trained on).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import matplotlib
import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from service.kinds.image.preprocess import ImageSpec, decode_to_array
from tests.conftest import MODELS
from training.eval_digits import canvas_cases, evaluate, font_cases

DATA = Path(__file__).resolve().parent.parent / "data"
# name -> (held-out sample, least accuracy through the framing, least as stored, the licence named)
IMAGE_MODELS = {
    "digits": ("mnist-test-500.npz", 0.985, 0.985, "CC BY-SA 3.0"),
    "fashion": ("fashion-mnist-test-500.npz", 0.89, 0.89, "MIT"),
}


def png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("name", sorted(IMAGE_MODELS))
def test_accuracy_on_the_held_out_sample(name: str) -> None:
    root = MODELS / name / "1"
    if not root.is_dir():
        pytest.skip(f"{name} is not shipped")
    sample_file, least_framed, least_stored, licence = IMAGE_MODELS[name]
    meta = json.loads((root / "model.json").read_text())
    spec = ImageSpec.from_preprocessing(meta["preprocessing"]["image"])
    assert spec.framing != "resize"  # a real picture is framed as the training data was
    assert licence in meta["training"]["data"]
    sample = np.load(DATA / sample_file)
    images, labels = sample["images"], sample["labels"]
    sess = ort.InferenceSession(str(root / "model.onnx"), providers=["CPUExecutionProvider"])

    def accuracy(pixels: np.ndarray) -> float:
        return float((sess.run(["probabilities"], {"pixels": pixels})[0].argmax(1) == labels).mean())

    framed = np.stack([decode_to_array(png(img), spec, max_pixels=10**6) for img in images])
    assert accuracy(framed) >= least_framed
    assert accuracy(images[..., None]) >= least_stored


def test_digits_reads_printed_and_drawn_digits() -> None:
    ttf = Path(matplotlib.__file__).parent / "mpl-data/fonts/ttf"
    fonts = sorted(p for p in ttf.glob("DejaVu*.ttf") if "Display" not in p.name)  # Display: no digits
    assert len(fonts) >= 10
    results = evaluate(MODELS / "digits/1", iter([*font_cases(fonts), *canvas_cases(20, seed=1)]))
    assert results["fonts"]["accuracy"] >= 0.95, results["fonts"]["misses"]
    assert results["canvas"]["accuracy"] >= 0.95, results["canvas"]["misses"]
