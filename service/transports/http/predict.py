"""The simple API: POST images or text, get labels and scores.

curl -F file=@examples/digits/7.png 'localhost:8080/predict?model=digits'
curl -H 'Content-Type: application/json' -d '{"text": "not bad at all"}' localhost:8080/predict
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.responses import Response

from service.context import request_context
from service.dataplane import DataPlane, PredictRequest
from service.errors import BadRequest
from service.kinds import FormFile
from service.repository.registry import ModelRepository
from service.repository.versions import ModelVersion
from service.transports.http.body import (
    await_unless_disconnected,
    json_response,
    media_type,
    read_body,
)

router = APIRouter(tags=["predict"])
MAX_TOP_K = 1000
TopK = Annotated[
    int, Query(ge=1, le=MAX_TOP_K, description="how many of the best labels to return per input")
]
Explain = Annotated[
    bool, Query(description="add what the model saw to each prediction (docs/api.md: explain)")
]
# Bodies that go to the decoding pool (images, audio): refused before reading while the pool is full.
_DECODED_PREFIXES = ("image/", "audio/", "multipart/form-data", "application/octet-stream")


async def _form(request: Request, body: bytes) -> list[FormFile | str]:
    """A multipart body's files and plain fields, in order (the data plane tells their kind)."""

    async def stream() -> AsyncGenerator[bytes, None]:
        yield body

    try:
        form = await MultiPartParser(
            Headers(scope=request.scope), stream(), max_files=100_000, max_fields=1000
        ).parse()
    except MultiPartException as e:
        raise BadRequest(f"malformed multipart body: {e.message}") from None
    parts: list[FormFile | str] = []
    try:
        for _, value in form.multi_items():
            if isinstance(value, UploadFile):
                parts.append(FormFile(await value.read(), value.content_type, value.filename))
            else:
                parts.append(value)
    finally:
        await form.close()
    return parts


async def predict_any(
    request: Request, name: str | None, version: str | None, top_k: int, explain: bool = False
) -> Response:
    """The one handler behind every /predict route (also called by fastpath.py): read the body, hand it
    to the data plane (which recognises the inputs' kind and picks the model), answer its predictions."""
    plane: DataPlane = request.app.state.dataplane
    media = media_type(request)
    if media.startswith(_DECODED_PREFIXES):  # a full pool: refuse before reading the upload
        plane.pool.refuse_if_full()
    body = await read_body(request, plane.settings.max_body_bytes)
    started = time.monotonic()  # the timeout covers decoding and the queue, not the client's upload
    inputs = PredictRequest(name, version, media, body, top_k=top_k, explain=explain)
    if media == "multipart/form-data":
        inputs.form = await _form(request, body)
    answer = await plane.predict(
        inputs,
        request_context(),
        wait=lambda queued: await_unless_disconnected(request, queued),
        started=started,
    )
    return json_response(answer)


# The FastAPI endpoints of the predict routes, registered from service/transports/http/routes.py (one table
# with the fast path's matcher); their typed query parameters are what OpenAPI documents.
async def predict(
    request: Request, model: str | None = None, top_k: TopK = 1, explain: Explain = False
) -> Response:
    return await predict_any(request, model, None, top_k, explain)


async def predict_model(request: Request, name: str, top_k: TopK = 1, explain: Explain = False) -> Response:
    return await predict_any(request, name, None, top_k, explain)


async def predict_version(
    request: Request, name: str, version: str, top_k: TopK = 1, explain: Explain = False
) -> Response:
    return await predict_any(request, name, version, top_k, explain)


@router.get("/models", summary="The served models: versions, input kind, labels")
async def list_models(request: Request) -> Response:
    repo: ModelRepository = request.app.state.dataplane.repository
    models = []
    for name in repo.names():
        versions = repo.versions(name)
        latest = versions[-1]
        models.append(
            {
                "name": name,
                "versions": [str(mv.version) for mv in versions],
                "latest": str(latest.version),
                "input_kind": latest.input_kind,
                "labels": latest.meta.labels,
                "inputs": [t.as_dict() for t in latest.inputs],
                **_test_report(latest),
                **latest.kind.describe(),
            }
        )
    return json_response({"models": models, "failed": repo.failures()})


def _test_report(mv: ModelVersion) -> dict[str, Any]:
    """model.json's held-out test accuracy and what the model was trained on, when it says."""
    training = mv.meta.training
    test = training.get("test") or {}
    return {"accuracy": test.get("accuracy"), "test_size": test.get("n"), "data": training.get("data")}
