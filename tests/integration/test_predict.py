"""/predict over HTTP against a real server with the shipped models."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import Callable

import httpx
import numpy as np
from PIL import Image

from tests.conftest import Server

# The plain cases a new user tries first (issue 16), then longer ones from other domains than the
# Rotten Tomatoes training data.
SENTENCES = {
    "good": "positive",
    "Good movie.": "positive",
    "I loved this film": "positive",
    "not bad at all": "positive",
    "I hate it": "negative",
    "This is the worst product ever.": "negative",
    "terrible, a waste of money": "negative",
    "The acting was dull and the plot was boring.": "negative",
    "Honestly, a wonderful stay, highly recommended!": "positive",
}


def test_every_example_digit_is_recognised_from_a_multipart_upload(
    client: httpx.Client, digit_png: Callable[[int], bytes]
) -> None:
    for label in range(10):
        r = client.post(
            "/predict?model=digits", files={"file": (f"{label}.png", digit_png(label), "image/png")}
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["model"], body["version"]) == ("digits", "1")
        assert body["predictions"][0]["label"] == str(label)
        assert 0.5 < body["predictions"][0]["score"] <= 1.0


def test_many_files_in_one_request_answer_in_order(
    client: httpx.Client, digit_png: Callable[[int], bytes]
) -> None:
    labels = [3, 1, 4, 1, 5, 9, 2, 6]
    files = [("files", (f"{d}.png", digit_png(d), "image/png")) for d in labels]
    r = client.post("/models/digits/predict", files=files)
    assert r.status_code == 200, r.text
    assert [p["label"] for p in r.json()["predictions"]] == [str(d) for d in labels]


def test_raw_body_and_base64_json_images(client: httpx.Client, digit_png: Callable[[int], bytes]) -> None:
    r = client.post(
        "/models/digits/versions/1/predict", content=digit_png(7), headers={"content-type": "image/png"}
    )
    assert r.json()["predictions"][0]["label"] == "7"
    r = client.post(
        "/predict?model=digits", content=digit_png(2), headers={"content-type": "application/octet-stream"}
    )
    assert r.json()["predictions"][0]["label"] == "2"
    b64 = [base64.b64encode(digit_png(d)).decode() for d in (0, 8)]
    r = client.post("/predict?model=digits", json={"images": b64})
    assert [p["label"] for p in r.json()["predictions"]] == ["0", "8"]
    r = client.post("/predict?model=digits", json={"image": "data:image/png;base64," + b64[1]})
    assert r.json()["predictions"][0]["label"] == "8"


def test_default_model_is_chosen_by_input_kind(
    client: httpx.Client, digit_png: Callable[[int], bytes]
) -> None:
    assert client.post("/predict", json={"text": "great"}).json()["model"] == "sentiment"
    # Two shipped models take images (digits, fashion): an image must name one, and the answer says how.
    r = client.post("/predict", files={"f": ("5.png", digit_png(5), "image/png")})
    assert r.status_code == 400 and "?model=NAME" in r.json()["error"] and "fashion" in r.json()["error"]
    assert (
        client.post("/predict?model=digits", files={"f": ("5.png", digit_png(5), "image/png")}).json()[
            "model"
        ]
        == "digits"
    )


def test_texts_as_json_plain_text_and_form_fields(client: httpx.Client) -> None:
    r = client.post("/predict?model=sentiment", json={"texts": list(SENTENCES)})
    assert r.status_code == 200, r.text
    assert [p["label"] for p in r.json()["predictions"]] == list(SENTENCES.values())
    r = client.post(
        "/models/sentiment/predict",
        content=b"I loved this film",
        headers={"content-type": "text/plain; charset=utf-8"},
    )
    assert r.json()["predictions"][0]["label"] == "positive"
    r = client.post("/models/sentiment/predict", data={"text": "terrible, a waste of money"})
    # A urlencoded form is refused with a hint; multipart text fields work.
    assert r.status_code == 415 and "curl -d" in r.json()["error"]
    r = client.post("/models/sentiment/predict", files={"text": (None, "not bad at all")})
    assert r.json()["predictions"][0]["label"] == "positive"


def test_top_k_and_scores(client: httpx.Client, digit_png: Callable[[int], bytes]) -> None:
    r = client.post("/predict?model=digits&top_k=3", files={"f": ("4.png", digit_png(4), "image/png")})
    pred = r.json()["predictions"][0]
    assert len(pred["top_k"]) == 3
    scores = [t["score"] for t in pred["top_k"]]
    assert scores == sorted(scores, reverse=True)
    assert pred["top_k"][0] == {"label": pred["label"], "index": pred["index"], "score": pred["score"]}
    r = client.post("/predict?model=sentiment&top_k=50", json={"text": "fine"})
    top = r.json()["predictions"][0]["top_k"]
    assert len(top) == 2 and abs(sum(t["score"] for t in top) - 1) < 1e-5


def test_models_listing(client: httpx.Client) -> None:
    body = client.get("/models").json()
    by_name = {m["name"]: m for m in body["models"]}
    assert by_name["digits"]["input_kind"] == "image"
    assert by_name["digits"]["labels"] == [str(d) for d in range(10)]
    assert by_name["sentiment"]["input_kind"] == "subword"  # the transformer: texts, subword tokens
    assert by_name["sentiment"]["versions"] == ["2"]
    assert by_name["sentiment-lstm"]["input_kind"] == "text"
    assert by_name["sentiment-lstm"]["versions"] == ["1"]
    assert body["failed"] == {}


def test_64_concurrent_mixed_requests_match_one_at_a_time(
    server: Server, digit_png: Callable[[int], bytes]
) -> None:
    """Images and texts to two models, all at once: each answer equals the same input sent alone."""
    texts = [
        *SENTENCES,
        "i would never buy this again",
        "what a mess",
        "a real gem",
        "not good",
        "absolutely stunning soundtrack, i adored it",
    ]
    requests: list[tuple[str, dict[str, object]]] = []
    for i in range(64):
        if i % 2:
            requests.append(
                (
                    "/predict?model=digits&top_k=10",
                    {"files": {"f": ("d.png", digit_png(i % 10), "image/png")}},
                )
            )
        else:
            requests.append(
                ("/predict?model=sentiment&top_k=2", {"json": {"texts": texts[: 1 + i % len(texts)]}})
            )

    async def send_all(concurrent: bool) -> list[dict[str, object]]:
        async with httpx.AsyncClient(
            base_url=server.url, timeout=30, limits=httpx.Limits(max_connections=64)
        ) as ac:
            if concurrent:
                responses = await asyncio.gather(*(ac.post(url, **kw) for url, kw in requests))  # type: ignore[arg-type]
            else:
                responses = [await ac.post(url, **kw) for url, kw in requests]  # type: ignore[arg-type]
        assert all(r.status_code == 200 for r in responses), [
            r.text for r in responses if r.status_code != 200
        ]
        return [r.json() for r in responses]

    alone = asyncio.run(send_all(concurrent=False))
    together = asyncio.run(send_all(concurrent=True))
    for a, t in zip(alone, together, strict=True):
        assert [p["label"] for p in a["predictions"]] == [p["label"] for p in t["predictions"]]  # type: ignore[index]
        for pa, pt in zip(a["predictions"], t["predictions"], strict=True):  # type: ignore[arg-type]
            for sa, st in zip(pa["top_k"], pt["top_k"], strict=True):
                assert sa["index"] == st["index"] and abs(sa["score"] - st["score"]) < 1e-4


def test_response_is_json_with_content_type(client: httpx.Client) -> None:
    r = client.post("/predict?model=sentiment", json={"text": "lovely"})
    assert r.headers["content-type"] == "application/json"
    json.loads(r.content)


def test_a_lab_colour_image_is_read_not_a_500(
    client: httpx.Client, digit_png: Callable[[int], bytes]
) -> None:
    """A TIFF may hold CIE LAB pixels; Pillow cannot make grey of them directly (a 500 before): they are
    read through RGB, on /predict and in a V2 BYTES input."""
    buf = io.BytesIO()
    Image.open(io.BytesIO(digit_png(3))).convert("RGB").convert("LAB").save(buf, format="TIFF")
    tiff = buf.getvalue()
    r = client.post("/models/digits/predict", content=tiff, headers={"content-type": "image/tiff"})
    assert r.status_code == 200, r.text
    assert r.json()["predictions"][0]["label"] == "3"
    v2 = {
        "inputs": [
            {"name": "image", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(tiff).decode()]}
        ]
    }
    r = client.post("/v2/models/digits/infer", json=v2)
    assert r.status_code == 200, r.text
    assert int(np.argmax(r.json()["outputs"][1]["data"])) == 3
