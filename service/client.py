"""Python clients for modelserve: three lines from another service.

    from service.client import ModelServeClient
    with ModelServeClient("http://localhost:8080") as ms:
        print(ms.predict_image("digits", "examples/digits/7.png").label)

Built on httpx (connection pooling, HTTP keep-alive), no torch. 503 answers are retried after the
server's Retry-After; connection errors are retried too (inference is read-only, so a retry is safe),
both with capped exponential backoff. Every error the server answers raises a subclass of
ModelServeError carrying its status code, the server's message and the request id.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Iterable, Sequence
from typing import Any

import httpx
import numpy as np

from service.client_calls import (
    DEFAULT_URL,
    AudioLike,
    AuthenticationError,
    BadRequestError,
    Call,
    ConnectionFailedError,
    ImageLike,
    InvalidInputError,
    Label,
    ModelInfo,
    ModelServeError,
    NotFoundError,
    OverloadedError,
    PayloadTooLargeError,
    PermissionDeniedError,
    Prediction,
    QueueTimeoutError,
    RetryPolicy,
    ServerError,
    UnsupportedMediaTypeError,
    client_headers,
    decode_models,
    decode_predictions,
    decode_tensors,
    infer_call,
    predict_audio_call,
    predict_csv_call,
    predict_images_call,
    predict_rows_call,
    predict_texts_call,
    text_list,
)

__all__ = [
    "DEFAULT_URL",
    "AsyncModelServeClient",
    "AudioLike",
    "AuthenticationError",
    "BadRequestError",
    "Call",
    "ConnectionFailedError",
    "ImageLike",
    "InvalidInputError",
    "Label",
    "ModelInfo",
    "ModelServeClient",
    "ModelServeError",
    "NotFoundError",
    "OverloadedError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "Prediction",
    "QueueTimeoutError",
    "RetryPolicy",
    "ServerError",
    "UnsupportedMediaTypeError",
]


class ModelServeClient:
    """Synchronous client; one pooled connection set per instance. Use as a context manager or close()."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        api_key: str | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        **httpx_options: Any,
    ) -> None:
        self.retry = retry or RetryPolicy()
        self.retries_done = 0  # 503s and connection errors retried so far
        try:
            self._http = httpx.Client(
                base_url=base_url, timeout=timeout, headers=client_headers(api_key), **httpx_options
            )
        except httpx.InvalidURL as e:
            raise ConnectionFailedError(f"invalid server URL {base_url!r}: {e}") from None

    def _send(self, call: Call) -> httpx.Response:
        for attempt in itertools.count():
            try:
                response, error = self._http.request(call.method, call.path, **call.kwargs), None
            except httpx.TransportError as e:
                response, error = None, e
            wait = self.retry.next_wait(attempt, response, error, str(self._http.base_url))
            if wait is None:
                assert response is not None
                return response
            self.retries_done += 1
            time.sleep(wait)
        raise AssertionError("unreachable")

    def predict_image(self, model: str, image: ImageLike, top_k: int = 1) -> Prediction:
        return self.predict_images(model, [image], top_k)[0]

    def predict_images(self, model: str, images: Iterable[ImageLike], top_k: int = 1) -> list[Prediction]:
        return decode_predictions(self._send(predict_images_call(model, list(images), top_k)))

    def predict_audio(self, model: str, clip: AudioLike, top_k: int = 1) -> Prediction:
        """One WAV clip (a path or the file's bytes) of 0.2-2 s."""
        return self.predict_audios(model, [clip], top_k)[0]

    def predict_audios(self, model: str, clips: Iterable[AudioLike], top_k: int = 1) -> list[Prediction]:
        return decode_predictions(self._send(predict_audio_call(model, list(clips), top_k)))

    def predict_text(self, model: str, text: str | Sequence[str], top_k: int = 1) -> Any:
        """One text: a Prediction; a list of texts: a list of them."""
        texts = text_list(text)
        predictions = decode_predictions(self._send(predict_texts_call(model, texts, top_k)))
        return predictions[0] if isinstance(text, str) else predictions

    def predict_rows(self, model: str, rows: Iterable[Any], top_k: int = 1) -> list[Prediction]:
        """Tabular rows: dicts of named features, or lists of values in the model's feature order."""
        return decode_predictions(self._send(predict_rows_call(model, list(rows), top_k)))

    def predict_csv(
        self, model: str, csv: str | bytes | os.PathLike[str], top_k: int = 1
    ) -> list[Prediction]:
        """A CSV with a header row (a path, or the document itself): one prediction per data row."""
        return decode_predictions(self._send(predict_csv_call(model, csv, top_k)))

    def infer(
        self,
        model: str,
        inputs: dict[str, Any],
        outputs: Sequence[str] | None = None,
        version: str | None = None,
        binary: bool = True,
    ) -> dict[str, np.ndarray]:
        """V2 inference with numpy arrays in and out (binary tensor extension by default)."""
        return decode_tensors(self._send(infer_call(model, inputs, outputs, version, binary)))

    def models(self) -> list[ModelInfo]:
        return decode_models(self._send(Call("GET", "/models")))

    def ready(self) -> bool:
        try:
            return self._http.get("/v2/health/ready").status_code == 200
        except httpx.TransportError:
            return False

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ModelServeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncModelServeClient:
    """The same calls for asyncio code: ``await ms.predict_text("sentiment", "great")``."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        api_key: str | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        **httpx_options: Any,
    ) -> None:
        self.retry = retry or RetryPolicy()
        self.retries_done = 0
        try:
            self._http = httpx.AsyncClient(
                base_url=base_url, timeout=timeout, headers=client_headers(api_key), **httpx_options
            )
        except httpx.InvalidURL as e:
            raise ConnectionFailedError(f"invalid server URL {base_url!r}: {e}") from None

    async def _send(self, call: Call) -> httpx.Response:
        for attempt in itertools.count():
            try:
                response, error = await self._http.request(call.method, call.path, **call.kwargs), None
            except httpx.TransportError as e:
                response, error = None, e
            wait = self.retry.next_wait(attempt, response, error, str(self._http.base_url))
            if wait is None:
                assert response is not None
                return response
            self.retries_done += 1
            await asyncio.sleep(wait)
        raise AssertionError("unreachable")

    async def predict_image(self, model: str, image: ImageLike, top_k: int = 1) -> Prediction:
        return (await self.predict_images(model, [image], top_k))[0]

    async def predict_images(
        self, model: str, images: Iterable[ImageLike], top_k: int = 1
    ) -> list[Prediction]:
        return decode_predictions(await self._send(predict_images_call(model, list(images), top_k)))

    async def predict_audio(self, model: str, clip: AudioLike, top_k: int = 1) -> Prediction:
        return (await self.predict_audios(model, [clip], top_k))[0]

    async def predict_audios(
        self, model: str, clips: Iterable[AudioLike], top_k: int = 1
    ) -> list[Prediction]:
        return decode_predictions(await self._send(predict_audio_call(model, list(clips), top_k)))

    async def predict_text(self, model: str, text: str | Sequence[str], top_k: int = 1) -> Any:
        texts = text_list(text)
        predictions = decode_predictions(await self._send(predict_texts_call(model, texts, top_k)))
        return predictions[0] if isinstance(text, str) else predictions

    async def predict_rows(self, model: str, rows: Iterable[Any], top_k: int = 1) -> list[Prediction]:
        return decode_predictions(await self._send(predict_rows_call(model, list(rows), top_k)))

    async def predict_csv(
        self, model: str, csv: str | bytes | os.PathLike[str], top_k: int = 1
    ) -> list[Prediction]:
        return decode_predictions(await self._send(predict_csv_call(model, csv, top_k)))

    async def infer(
        self,
        model: str,
        inputs: dict[str, Any],
        outputs: Sequence[str] | None = None,
        version: str | None = None,
        binary: bool = True,
    ) -> dict[str, np.ndarray]:
        return decode_tensors(await self._send(infer_call(model, inputs, outputs, version, binary)))

    async def models(self) -> list[ModelInfo]:
        return decode_models(await self._send(Call("GET", "/models")))

    async def ready(self) -> bool:
        try:
            return (await self._http.get("/v2/health/ready")).status_code == 200
        except httpx.TransportError:
            return False

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncModelServeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
