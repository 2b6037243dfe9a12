"""The playground's server side over HTTP: the page and its files, its headers, keys, the off switch, and
/predict?explain=1 (what the model saw), against a real server."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from service.kinds.image.preprocess import ImageSpec, decode_to_array
from service.kinds.text.preprocess import Tokenizer
from service.playground import STATIC
from tests.conftest import EXAMPLES, MODELS, run_server


def test_the_page_and_its_files_are_served_with_a_closed_csp(client: httpx.Client) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp and "script-src 'self'" in csp
    for name in sorted(p.name for p in STATIC.iterdir()):
        r = client.get(f"/playground/{name}")
        assert r.status_code == 200, name
        assert r.content == (STATIC / name).read_bytes()
        if name.endswith(".js"):
            assert r.headers["content-type"].startswith("text/javascript")
    assert client.get("/playground/../__init__.py").status_code == 404
    assert client.get("/playground/nothing.js").status_code == 404


def test_the_page_is_small_and_refers_only_to_its_own_server() -> None:
    files = [p for p in STATIC.iterdir() if p.is_file()]
    total = sum(p.stat().st_size for p in files)
    assert total < 100_000, f"the playground is {total} bytes; the budget is 100 KB"
    for path in files:
        text = path.read_text()
        assert "://" not in text, f"{path.name} names another host"
        assert "@import" not in text
    html = (STATIC / "index.html").read_text()
    for ref in re.findall(r'(?:src|href)="([^"]*)"', html):
        assert ref.startswith(("/", "#", "data:")), ref
    # Every module the page imports is one of its files.
    for path in STATIC.glob("*.js"):
        for module in re.findall(r'from "\./([^"]+)"|import "\./([^"]+)"', path.read_text()):
            assert (STATIC / (module[0] or module[1])).is_file(), (path.name, module)


def test_models_lists_the_test_accuracy_from_model_json(client: httpx.Client) -> None:
    listed = {m["name"]: m for m in client.get("/models").json()["models"]}
    for name, model in listed.items():
        meta = json.loads((MODELS / name / model["latest"] / "model.json").read_text())
        assert model["accuracy"] == meta["training"]["test"]["accuracy"]
        assert model["test_size"] == meta["training"]["test"]["n"]
        assert model["data"] == meta["training"]["data"]


def test_explain_returns_the_image_the_model_saw(client: httpx.Client) -> None:
    data = (EXAMPLES / "digits" / "7.png").read_bytes()
    big = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").resize((200, 150)).save(big, format="PNG")
    meta = json.loads((MODELS / "digits" / "1" / "model.json").read_text())
    spec = ImageSpec.from_preprocessing(meta["preprocessing"]["image"])
    r = client.post("/models/digits/predict?explain=1&top_k=3", files=[("a", data), ("b", big.getvalue())])
    assert r.status_code == 200, r.text
    for prediction, sent in zip(r.json()["predictions"], (data, big.getvalue()), strict=True):
        seen = prediction["input"]
        assert seen["shape"] == [spec.height, spec.width, spec.channels]
        head, b64 = seen["image"].split(",", 1)
        assert head == "data:image/png;base64"
        pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))))
        expected = decode_to_array(sent, spec, max_pixels=10**8)
        assert np.array_equal(pixels.reshape(expected.shape), expected)
    plain = client.post("/models/digits/predict", files={"a": data}).json()["predictions"][0]
    assert "input" not in plain


def test_explain_returns_the_words_the_model_read(client: httpx.Client) -> None:
    meta = json.loads((MODELS / "sentiment" / "1" / "model.json").read_text())
    r = client.post("/models/sentiment/predict?explain=true", json={"texts": ["I LOVED this flimxyz!", "ok"]})
    assert r.status_code == 200, r.text
    first, second = (p["input"] for p in r.json()["predictions"])
    tok = Tokenizer.from_preprocessing(meta["preprocessing"]["text"], model_dir=MODELS / "sentiment" / "1")
    assert first["tokens"] == tok.tokens("I LOVED this flimxyz!")
    assert "loved" in first["tokens"] and "flimxyz" in first["tokens"]
    assert first["known"][first["tokens"].index("loved")]
    assert not first["known"][first["tokens"].index("flimxyz")]
    assert first["ids"] == tok.encode("I LOVED this flimxyz!").tolist()
    assert second["tokens"] == ["ok"] and second["ids"] == tok.encode("ok").tolist()
    off = client.post("/predict?model=sentiment&explain=0", json={"text": "ok"}).json()
    assert "input" not in off["predictions"][0]


@pytest.mark.parametrize("path", ["/predict?model=digits", "/models/digits/predict"])
def test_explain_must_be_a_boolean(client: httpx.Client, path: str) -> None:
    data = (EXAMPLES / "digits" / "7.png").read_bytes()
    r = client.post(
        f"{path}&explain=maybe" if "?" in path else f"{path}?explain=maybe",
        content=data,
        headers={"Content-Type": "image/png"},
    )
    assert r.status_code == 422
    assert "explain" in r.json()["error"]


def test_the_page_is_public_but_its_api_calls_need_a_key(tmp_path: Path) -> None:
    with run_server(MODELS, tmp_path, env={"MODELSERVE_API_KEYS": "k1"}) as s:
        assert httpx.get(f"{s.url}/").status_code == 200
        assert httpx.get(f"{s.url}/playground/app.js").status_code == 200
        assert httpx.get(f"{s.url}/models").status_code == 401
        assert httpx.get(f"{s.url}/models", headers={"X-API-Key": "k1"}).status_code == 200


def test_playground_false_turns_it_off(tmp_path: Path) -> None:
    with run_server(
        MODELS, tmp_path, env={"MODELSERVE_PLAYGROUND": "false", "MODELSERVE_API_KEYS": "k1"}
    ) as s:
        for path in ("/", "/playground/app.js"):
            r = httpx.get(f"{s.url}{path}", headers={"X-API-Key": "k1"})
            assert r.status_code == 404, path
        # Off means not public either: without a key even the old page paths answer 401.
        assert httpx.get(f"{s.url}/").status_code == 401
