"""The transformer `sentiment` (the subword text kind) served for real: /predict, V2 BYTES and V2 ids+mask
tensors agree, long texts are cut and flagged, explain shows the subword tokens, batches of mixed lengths
answer as single texts do, bad inputs answer 4xx."""

from __future__ import annotations

import asyncio
import json

import httpx
import numpy as np
import pytest
from tokenizers import Tokenizer

from tests.conftest import MODELS, Server

ROOT = MODELS / "sentiment" / "2"
FIRST_DAY = {
    "Terrible app, crashes every time I open it": "negative",
    "Works exactly as described, would buy again.": "positive",
}
# What the shipped model (two epochs) answers today (docs/training.md): the second sentence is read wrong.
WRONG_TODAY = {"Works exactly as described, would buy again."}
MIXED = [
    "Unbelievably underwhelming.",
    "A gorgeous, witty, seductive movie that never once loses its nerve, and the cast is superb.",
    "meh",
    "The plot twists arrive on schedule, the jokes mostly land, and yet nothing here feels alive; "
    "by the final act I had stopped caring who betrayed whom or why anyone bothered.",
    "I loved it",
]


def _max_length() -> int:
    return int(json.loads((ROOT / "model.json").read_text())["preprocessing"]["subword"]["max_length"])


def _tokenizer() -> Tokenizer:
    """The shipped tokenizer.json, as any client would load it (padding off, truncation at the cap)."""
    return Tokenizer.from_file(str(ROOT / "tokenizer.json"))


def _probabilities(body: dict) -> list[list[float]]:
    return [[t["score"] for t in sorted(p["top_k"], key=lambda t: t["index"])] for p in body["predictions"]]


def _predict(client: httpx.Client, texts: list[str], query: str = "") -> dict:
    r = client.post(f"/predict?top_k=2{query}", json={"texts": texts})
    assert r.status_code == 200, r.text
    return r.json()


def test_first_day_sentences_go_to_the_transformer_and_read_right(client: httpx.Client) -> None:
    for text, label in FIRST_DAY.items():
        r = client.post("/predict", json={"text": text})  # no model named: the text default
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["model"], body["version"]) == ("sentiment", "2")
        if text not in WRONG_TODAY:
            assert body["predictions"][0]["label"] == label, (text, body)
    plain = client.post(
        "/predict",
        content=b"Terrible app, crashes every time I open it",
        headers={"content-type": "text/plain; charset=utf-8"},
    )
    assert plain.json()["predictions"][0]["label"] == "negative"


@pytest.mark.xfail(
    strict=True, reason="issue 19: the shipped two-epoch model reads it negative (0.60); see docs/training.md"
)
def test_the_second_first_day_sentence_reads_positive(client: httpx.Client) -> None:
    r = client.post("/predict", json={"text": "Works exactly as described, would buy again."})
    assert r.json()["predictions"][0]["label"] == "positive"


def test_v2_bytes_and_v2_ids_with_mask_answer_as_predict(client: httpx.Client) -> None:
    texts = list(FIRST_DAY)
    expected = np.asarray(_probabilities(_predict(client, texts)))
    r = client.post(
        "/v2/models/sentiment/infer",
        json={"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": texts}]},
    )
    assert r.status_code == 200, r.text
    probs = next(o for o in r.json()["outputs"] if o["name"] == "probabilities")
    assert np.allclose(np.asarray(probs["data"]).reshape(2, 2), expected, atol=1e-5)
    # The same texts as tensors a client tokenised itself, right-padded in one request.
    tok = _tokenizer()
    encs = tok.encode_batch(texts)
    width = max(len(e.ids) for e in encs)
    ids = [e.ids + [0] * (width - len(e.ids)) for e in encs]
    mask = [[1] * len(e.ids) + [0] * (width - len(e.ids)) for e in encs]
    r = client.post(
        "/v2/models/sentiment/infer",
        json={
            "inputs": [
                {"name": "input_ids", "datatype": "INT64", "shape": [2, width], "data": ids},
                {"name": "attention_mask", "datatype": "INT64", "shape": [2, width], "data": mask},
            ],
            "outputs": [{"name": "probabilities"}],
        },
    )
    assert r.status_code == 200, r.text
    [out] = r.json()["outputs"]
    assert np.allclose(np.asarray(out["data"]).reshape(2, 2), expected, atol=1e-5)


def test_a_long_text_is_cut_at_the_declared_length_and_flagged(client: httpx.Client) -> None:
    cap = _max_length()
    long = " ".join(["The pacing drags but the final scene is wonderful."] * 40)
    body = _predict(client, [long, "short and sweet"], "&explain=1")
    cut, short = body["predictions"]
    assert cut["truncated"] is True and cut["max_length"] == cap
    shipped = _tokenizer()
    assert shipped.truncation["max_length"] == cap and shipped.padding is None  # the file's 128 fixed: off
    shipped.no_truncation()
    assert cut["tokens"] == len(shipped.encode(long).ids) > cap  # how long it was
    assert len(cut["input"]["tokens"]) == cap and cut["input"]["tokens"][-1] == "[SEP]"
    assert "truncated" not in short


def test_explain_shows_the_subword_tokens_the_model_read(client: httpx.Client) -> None:
    body = _predict(client, ["Unbelievably underwhelming.", "ok"], "&explain=1")
    first, second = (p["input"] for p in body["predictions"])
    enc = _tokenizer().encode("Unbelievably underwhelming.")
    assert first["tokens"] == enc.tokens and first["ids"] == enc.ids
    assert any(t.startswith("##") for t in first["tokens"])  # subword pieces, not words
    assert first["tokens"][0] == "[CLS]" and all(first["known"])
    assert second["tokens"] == ["[CLS]", "ok", "[SEP]"]  # no padding from the longer text
    off = client.post("/predict?explain=0", json={"text": "ok"}).json()
    assert "input" not in off["predictions"][0]


def test_mixed_lengths_batched_answer_as_single_texts(server: Server) -> None:
    """One request with texts of mixed lengths (padded to the longest), and many requests at once (joined
    by the batcher, padded again): each answer equals the text sent alone."""

    async def main() -> tuple[list[np.ndarray], np.ndarray, list[np.ndarray]]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as ac:

            async def probs(texts: list[str]) -> np.ndarray:
                r = await ac.post("/predict?top_k=2", json={"texts": texts})
                assert r.status_code == 200, r.text
                return np.asarray(_probabilities(r.json()))

            alone = [await probs([t]) for t in MIXED]
            together = await probs(MIXED)
            crowd = await asyncio.gather(*(probs([MIXED[i % len(MIXED)]]) for i in range(30)))
            return alone, together, crowd

    alone, together, crowd = asyncio.run(main())
    for i, single in enumerate(alone):
        assert np.allclose(together[i], single[0], atol=1e-5), (MIXED[i], together[i], single)
    for i, answer in enumerate(crowd):
        assert np.allclose(answer, alone[i % len(MIXED)], atol=1e-5)


def _v2(inputs: list[dict]) -> dict:
    return {"inputs": inputs}


def _tensor(name: str, rows: list[list[int]], datatype: str = "INT64") -> dict:
    return {"name": name, "datatype": datatype, "shape": [len(rows), len(rows[0])], "data": rows}


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (
            _v2([_tensor("input_ids", [[101, 2204, 102]]), _tensor("attention_mask", [[1, 1, 7]])]),
            422,
            "0 and 1",
        ),
        (
            _v2([_tensor("input_ids", [[101, 99999, 102]]), _tensor("attention_mask", [[1, 1, 1]])]),
            422,
            "[0, ",
        ),
        (_v2([_tensor("input_ids", [[101, -3, 102]]), _tensor("attention_mask", [[1, 1, 1]])]), 422, "[0, "),
        (_v2([_tensor("input_ids", [[101, 102]]), _tensor("attention_mask", [[1, 1, 1]])]), 422, "one shape"),
        (_v2([_tensor("input_ids", [[101] * 129]), _tensor("attention_mask", [[1] * 129])]), 422, "at most"),
        (_v2([_tensor("input_ids", [[101, 102]])]), 422, "attention_mask"),
        (
            _v2([_tensor("input_ids", [[101.5, 102.0]], "FP32"), _tensor("attention_mask", [[1, 1]])]),
            422,
            "INT64",
        ),
    ],
)
def test_bad_tensors_answer_4xx(client: httpx.Client, body: dict, status: int, words: str) -> None:
    r = client.post("/v2/models/sentiment/infer", json=body)
    assert r.status_code == status, r.text
    assert words in r.json()["error"]


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"text": ""}, 422, "empty"),
        ({"text": "   "}, 422, "empty"),
        ({"texts": ["fine", 5]}, 422, "must be a string"),
        ({"text": "x" * 20_001}, 422, "limit"),
        ({"texts": []}, 400, "no texts"),
    ],
)
def test_bad_texts_answer_4xx(client: httpx.Client, body: dict, status: int, words: str) -> None:
    r = client.post("/predict?model=sentiment", json=body)
    assert r.status_code == status, r.text
    assert words in r.json()["error"]
    nul = client.post(
        "/v2/models/sentiment/infer",
        content=b'{"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [""]}]}',
        headers={"content-type": "application/json"},
    )
    assert nul.status_code == 422 and "empty" in nul.json()["error"]
