"""The Python SDK against a real server: every call, sync and async, errors, retries on overload."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from service.client import (
    AsyncModelServeClient,
    AuthenticationError,
    BadRequestError,
    ConnectionFailedError,
    InvalidInputError,
    ModelServeClient,
    NotFoundError,
    OverloadedError,
    RetryPolicy,
    UnsupportedMediaTypeError,
)
from tests.conftest import EXAMPLES, MODELS, Server, free_port, run_server
from tests.graphs import slow_model, write_config


def test_sync_calls(server: Server, digit_png: Callable[[int], bytes]) -> None:
    with ModelServeClient(server.url) as ms:
        assert ms.ready()
        kinds = {m.name: m.input_kind for m in ms.models()}
        assert (
            kinds.items()
            >= {
                "digits": "image",
                "sentiment": "subword",
                "sentiment-lstm": "text",
                "letters": "tabular",
            }.items()
        )
        path = EXAMPLES / "digits" / "4.png"
        assert ms.predict_image("digits", path).label == "4"  # a path
        assert ms.predict_image("digits", str(path)).label == "4"  # a string path
        assert ms.predict_image("digits", digit_png(8)).label == "8"  # bytes
        pil = Image.open(io.BytesIO(digit_png(2)))
        p = ms.predict_image("digits", pil, top_k=3)  # a PIL image
        assert (p.label, p.model, p.version, len(p.top_k)) == ("2", "digits", "1", 3)
        assert [q.label for q in ms.predict_images("digits", [digit_png(d) for d in (1, 5, 9)])] == [
            "1",
            "5",
            "9",
        ]
        assert ms.predict_text("sentiment", "I loved this film").label == "positive"
        many = ms.predict_text("sentiment", ["terrible, a waste of money", "not bad at all"])
        assert [q.label for q in many] == ["negative", "positive"]
        pixels = np.stack([np.asarray(pil.convert("L"))[:, :, None]] * 2)
        for binary in (True, False):
            out = ms.infer("digits", {"pixels": pixels}, binary=binary)
            assert out["probabilities"].shape == (2, 10) and out["probabilities"].argmax(1).tolist() == [2, 2]
            assert out["logits"].dtype == np.float32
        texts = np.array([b"what a mess", b"a real gem"], dtype=object)
        out = ms.infer("sentiment", {"text": texts}, outputs=["probabilities"], version="2")
        assert list(out) == ["probabilities"] and out["probabilities"].argmax(1).tolist() == [0, 1]


def test_async_calls(server: Server) -> None:
    async def main() -> None:
        async with AsyncModelServeClient(server.url) as ms:
            assert await ms.ready()
            assert {m.name for m in await ms.models()} == {p.name for p in MODELS.iterdir() if p.is_dir()}
            results = await asyncio.gather(
                *(ms.predict_image("digits", EXAMPLES / "digits" / f"{d}.png") for d in range(10))
            )
            assert [r.label for r in results] == [str(d) for d in range(10)]
            assert (await ms.predict_text("sentiment", "not bad at all")).label == "positive"
            assert len(await ms.predict_images("digits", [EXAMPLES / "digits" / "0.png"] * 3)) == 3
            out = await ms.infer("sentiment-lstm", {"ids": np.array([[5, 6, 7]], dtype=np.int64)})
            assert out["probabilities"].shape == (1, 2)
            with pytest.raises(NotFoundError):
                await ms.predict_text("nope", "x")

    asyncio.run(main())


def test_errors_carry_status_message_and_request_id(server: Server) -> None:
    with ModelServeClient(server.url) as ms:
        with pytest.raises(NotFoundError) as e:
            ms.predict_text("nope", "hello")
        assert e.value.status_code == 404 and "unknown model 'nope'" in e.value.message and e.value.request_id
        with pytest.raises(UnsupportedMediaTypeError, match="takes images"):
            ms.predict_text("digits", "hello")
        with pytest.raises(InvalidInputError, match="empty"):
            ms.predict_text("sentiment", "")
        with pytest.raises(InvalidInputError, match="shape"):
            ms.infer("digits", {"pixels": np.zeros((1, 5, 5, 1), np.uint8)})
    with ModelServeClient(
        f"http://127.0.0.1:{free_port()}", retry=RetryPolicy(retries=2, backoff_s=0.01)
    ) as ms:
        assert not ms.ready()
        with pytest.raises(ConnectionFailedError):
            ms.models()
        assert ms.retries_done == 2


def test_api_key(tmp_path: Path) -> None:
    with run_server(MODELS, tmp_path, env={"MODELSERVE_API_KEYS": "s3cret"}) as srv:
        with ModelServeClient(srv.url) as ms, pytest.raises(AuthenticationError):
            ms.models()
        with ModelServeClient(srv.url, api_key="s3cret") as ms:
            assert ms.predict_text("sentiment", "great").label == "positive"


def test_retries_on_503_until_the_overload_passes(tmp_path: Path) -> None:
    """A model with a queue of 1 and slow runs: 12 concurrent clients overload it, the 503s carry
    Retry-After, and the client retries until every call succeeds."""
    repo = tmp_path / "models"
    slow_model(repo / "slow" / "1", matmuls=8)  # about 50 ms a run
    write_config(repo / "slow", max_batch_size=1, max_queue_size=1)
    x = {"x": np.ones((1, 4), np.float32)}
    with run_server(repo, tmp_path) as srv:
        results: list[object] = []
        clients = [
            # Retries enough for a busy machine, where each run takes far longer than 50 ms and a client
            # can lose the race for the one queue place many times over (bounded by the joins below).
            ModelServeClient(srv.url, retry=RetryPolicy(retries=2000, backoff_s=0.02, max_backoff_s=0.1))
            for _ in range(12)
        ]

        def call(ms: ModelServeClient) -> None:
            try:
                results.append(ms.infer("slow", x)["y"].shape)
            except Exception as e:  # recorded, asserted below
                results.append(e)

        threads = [threading.Thread(target=call, args=(ms,)) for ms in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join(240)
        assert results == [(1, 4)] * 12
        assert sum(ms.retries_done for ms in clients) > 0  # the server did refuse some at first
        no_retry = ModelServeClient(srv.url, retry=RetryPolicy(retries=0))
        errors: list[Exception] = []

        def burst() -> None:
            try:
                no_retry.infer("slow", x)
            except OverloadedError as e:
                errors.append(e)

        threads = [threading.Thread(target=burst) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors and all(e.status_code == 503 for e in errors)
        for ms in [*clients, no_retry]:
            ms.close()


def test_caller_mistakes_fail_at_once_in_words(server: Server, tmp_path: Path) -> None:
    """What the third fuzzing pass found: a model name with '..' reached another model (the URL collapsed
    it), a missing CSV path went as CSV text ('no rows'), and bytes, a number, an odd row or dtype, NaN
    in a row or an invalid URL raised bare Python errors or a traceback."""
    with ModelServeClient(server.url) as ms:
        with pytest.raises((BadRequestError, NotFoundError)):  # not digits' answer
            ms.infer("a/../digits", {"pixels": np.zeros((1, 28, 28, 1), np.uint8)})
        with pytest.raises(NotFoundError):
            ms.infer("digits", {"pixels": np.zeros((1, 28, 28, 1), np.uint8)}, version="../1")
        with pytest.raises(FileNotFoundError, match="no such file"):
            ms.predict_csv("churn", str(tmp_path / "missing.csv"))
        with pytest.raises(FileNotFoundError, match="a directory"):
            ms.predict_csv("churn", tmp_path)
        for text in (b"\xff\xfe", 5, ["fine", 7]):
            with pytest.raises(TypeError, match="str"):
                ms.predict_text("sentiment", text)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="row 0"):
            ms.predict_rows("letters", [5])
        with pytest.raises(TypeError, match="dict of input name"):
            ms.infer("digits", [1, 2])  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="no V2 datatype"):
            ms.infer("digits", {"pixels": np.zeros((1, 28, 28, 1), np.complex64)})
        # NaN in a row is a missing value (null): the server names the feature it needs.
        row = dict.fromkeys(("x-box", "y-box", "width", "high", "onpix", "x-bar", "y-bar", "x2bar"), 1.0)
        row |= dict.fromkeys(("y2bar", "xybar", "x2ybr", "xy2br", "x-ege", "xegvy", "y-ege", "yegvx"), 1.0)
        row["onpix"] = float("nan")
        with pytest.raises(InvalidInputError, match="onpix"):
            ms.predict_rows("letters", [row])
    with pytest.raises(ConnectionFailedError, match="invalid server URL"):
        ModelServeClient("http://999.1.1.1:1").models()
    cli = [sys.executable, "-m", "service", "predict", "--url", server.url, "--model", "digits"]
    for arg, words in ((str(tmp_path / "nope.png"), "no such file"), (str(tmp_path), "is a directory")):
        run = subprocess.run([*cli, arg], capture_output=True, text=True, timeout=60)
        assert run.returncode == 2 and words in run.stderr and "Traceback" not in run.stderr, run.stderr
    run = subprocess.run(
        [*cli[:4], "--url", "http://999.1.1.1:1", "--model", "sentiment", "hi"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1 and "invalid server URL" in run.stderr and "Traceback" not in run.stderr
