"""The example pictures under examples/, posted to a real server as users post them, answer right;
a blank picture answers 422; the V2 tensor path still takes MNIST-framed pixels as they are."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.conftest import EXAMPLES, MODELS

FASHION_LABELS = {"ankle-boot": "Ankle boot", "trouser": "Trouser", "bag": "Bag"}


def expected_label(path: Path) -> str:
    """The label a file's name states: 7.png, photo-3.jpg, ankle-boot.png, trouser-photo.jpg."""
    if path.parent.name == "digits":
        match = re.search(r"(\d)$", path.stem)
        assert match, path
        return match.group(1)
    return next(label for prefix, label in FASHION_LABELS.items() if path.stem.startswith(prefix))


def example_files() -> list[Path]:
    return sorted(
        p
        for folder in ("digits", "fashion")
        if (MODELS / folder).is_dir()
        for p in (EXAMPLES / folder).iterdir()
        if p.suffix in (".png", ".jpg")
    )


@pytest.mark.parametrize("path", example_files(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_example_answers_right_in_every_envelope(client: httpx.Client, path: Path) -> None:
    model, data = path.parent.name, path.read_bytes()
    media = "image/jpeg" if path.suffix == ".jpg" else "image/png"
    answers = [
        client.post(f"/predict?model={model}", files={"file": (path.name, data, media)}),
        client.post(f"/models/{model}/predict", content=data, headers={"content-type": media}),
        client.post(f"/predict?model={model}", json={"image": base64.b64encode(data).decode()}),
    ]
    for r in answers:
        assert r.status_code == 200, r.text
        assert r.json()["predictions"][0]["label"] == expected_label(path)


@pytest.mark.parametrize("model", ["digits", "fashion"])
def test_blank_picture_is_422_not_a_guess(client: httpx.Client, model: str) -> None:
    if not (MODELS / model).is_dir():
        pytest.skip(f"{model} is not shipped")
    buf = io.BytesIO()
    Image.new("RGBA", (280, 280), (0, 0, 0, 0)).save(buf, "PNG")  # an empty canvas
    r = client.post(f"/predict?model={model}", files={"file": ("blank.png", buf.getvalue(), "image/png")})
    assert r.status_code == 422, r.text
    assert "blank" in r.json()["error"]


def test_v2_tensor_path_takes_mnist_pixels_unframed(client: httpx.Client) -> None:
    sample = np.load(Path(__file__).resolve().parent.parent / "data" / "mnist-test-500.npz")
    pixels, labels = sample["images"][:64], sample["labels"][:64]
    body = {
        "inputs": [
            {"name": "pixels", "shape": [64, 28, 28, 1], "datatype": "UINT8", "data": pixels.ravel().tolist()}
        ]
    }
    r = client.post("/v2/models/digits/infer", json=body)
    assert r.status_code == 200, r.text
    probs = next(o for o in r.json()["outputs"] if o["name"] == "probabilities")
    predicted = np.asarray(probs["data"]).reshape(64, 10).argmax(1)
    assert (predicted == labels).mean() >= 62 / 64
