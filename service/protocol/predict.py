"""The simple API: POST images or text, get labels and scores.

curl -F file=@examples/digits/7.png 'localhost:8080/predict?model=digits'
curl -H 'Content-Type: application/json' -d '{"text": "not bad at all"}' localhost:8080/predict
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from collections.abc import AsyncGenerator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.responses import Response

from service.errors import BadRequest, UnsupportedMediaType
from service.preprocess.image import GENERIC_TYPES, IMAGE_TYPES
from service.preprocess.pool import request_deadline
from service.protocol.explain import explain as explain_rows
from service.protocol.http import await_unless_disconnected, json_response, media_type, parse_json, read_body
from service.protocol.inputs import ImageInput, image_feeds, scores_of, text_feeds
from service.protocol.inputs import top_k as best_labels
from service.repository import ModelRepository, ModelVersion

router = APIRouter(tags=["predict"])
MAX_TOP_K = 1000
TopK = Annotated[
    int, Query(ge=1, le=MAX_TOP_K, description="how many of the best labels to return per input")
]
Explain = Annotated[
    bool, Query(description="add what the model saw to each prediction (docs/api.md: explain)")
]
ACCEPTED = (
    "multipart/form-data (image files), image/* or application/octet-stream (one image), "
    "application/json ({image|images|text|texts}), text/plain (one text)"
)


async def _raw_inputs(request: Request, body: bytes) -> tuple[str, list[Any]]:
    """("image", [ImageInput...]) or ("text", [str...]) from any accepted body."""
    kind = media_type(request)
    if kind == "multipart/form-data":
        return await _multipart(request, body)
    if kind in IMAGE_TYPES or kind in GENERIC_TYPES - {""}:
        if not body:
            raise BadRequest("the request body is empty")
        return "image", [ImageInput(body, kind)]
    if kind == "application/json":
        return _json_inputs(parse_json(body))
    if kind == "text/plain":
        try:
            return "text", [body.decode("utf-8")]
        except UnicodeDecodeError:
            raise BadRequest("the text/plain body is not valid UTF-8") from None
    if not kind:
        raise UnsupportedMediaType(f"missing Content-Type; send one of: {ACCEPTED}")
    hint = (
        " (curl -d sends form encoding: use -F file=@image.png or set -H 'Content-Type')"
        if kind == "application/x-www-form-urlencoded"
        else ""
    )
    raise UnsupportedMediaType(f"unsupported Content-Type {kind!r}{hint}; send one of: {ACCEPTED}")


async def _multipart(request: Request, body: bytes) -> tuple[str, list[Any]]:
    async def stream() -> AsyncGenerator[bytes, None]:
        yield body

    try:
        form = await MultiPartParser(
            Headers(scope=request.scope), stream(), max_files=100_000, max_fields=1000
        ).parse()
    except MultiPartException as e:
        raise BadRequest(f"malformed multipart body: {e.message}") from None
    images, texts = [], []
    try:
        for _, value in form.multi_items():
            if isinstance(value, UploadFile):
                images.append(ImageInput(await value.read(), value.content_type))
            else:
                texts.append(value)
    finally:
        await form.close()
    if images and texts:
        raise BadRequest("send either image files or text fields in one request, not both")
    return ("image", images) if images else ("text", texts)


def _json_inputs(doc: Any) -> tuple[str, list[Any]]:
    keys = {"image", "images", "text", "texts"}
    if not isinstance(doc, dict) or len(keys & doc.keys()) != 1:
        raise BadRequest('JSON body must be an object with exactly one of "image", "images", "text", "texts"')
    key = (keys & doc.keys()).pop()
    value = doc[key]
    items = [value] if key in ("image", "text") else value
    if not isinstance(items, list):
        raise BadRequest(f'"{key}" must be a list')
    if key.startswith("text"):
        return "text", items
    images = []
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise BadRequest(f"image {i} must be a base64 string")
        try:
            images.append(
                ImageInput(
                    base64.b64decode(
                        item.split(",", 1)[-1] if item.startswith("data:") else item, validate=True
                    )
                )
            )
        except (binascii.Error, ValueError):
            raise BadRequest(f"image {i} is not valid base64") from None
    return "image", images


def _pick_model(repo: ModelRepository, name: str | None, kind: str, default: str | None) -> ModelVersion:
    """An explicit name; else the configured default; else the only model, or the only one of this kind."""
    if name:
        return repo.get(name)
    if default:
        return repo.get(default)
    names = repo.names()
    if len(names) == 1:
        return repo.get(names[0])
    of_kind = [n for n in names if repo.get(n).input_kind == kind]
    if len(of_kind) == 1:
        return repo.get(of_kind[0])
    raise BadRequest(
        f"name a model: POST /predict?model=NAME (served: {', '.join(names) or 'none'}), "
        "or set MODELSERVE_DEFAULT_MODEL"
    )


async def predict_any(
    request: Request, name: str | None, version: str | None, top_k: int, explain: bool = False
) -> Response:
    """The one handler behind every /predict route (also called by service/fastpath.py)."""
    start = time.monotonic()
    state = request.app.state
    settings = state.settings
    body = await read_body(request, settings.max_body_bytes)
    kind, items = await _raw_inputs(request, body)
    mv = (
        _pick_model(state.repository, name, kind, settings.default_model)
        if version is None
        else state.repository.get(name or "", version)
    )
    request.state.mv = mv
    request.state.rows = len(items)
    with mv.lease():  # taken with no await since resolving: a reload retires mv only after this answer
        deadline = start + mv.batcher.timeout_s  # the timeout covers decoding too
        request_deadline.set(deadline)
        if kind == "image":
            feeds = await image_feeds(mv, items, settings, state.preprocess_pool)
        else:
            feeds = await text_feeds(mv, items, settings, state.preprocess_pool)
        outputs = await await_unless_disconnected(
            request,
            mv.batcher.enqueue(feeds, rows=len(items), trace=request.scope["state"], deadline=deadline),
        )
    predictions = best_labels(mv, scores_of(mv, outputs), top_k)
    if explain:
        # Not the bounded decoding pool: the model has run, this answer must not turn into a 503 now.
        seen = await asyncio.to_thread(explain_rows, mv, items, feeds)
        for prediction, extra in zip(predictions, seen or (), strict=False):
            prediction.update(extra)
    return json_response({"model": mv.name, "version": str(mv.version), "predictions": predictions})


@router.post("/predict", summary="Classify images or texts with the default (or ?model=) model")
async def predict(
    request: Request, model: str | None = None, top_k: TopK = 1, explain: Explain = False
) -> Response:
    return await predict_any(request, model, None, top_k, explain)


@router.post("/models/{name}/predict", summary="Classify with the latest version of a model")
async def predict_model(request: Request, name: str, top_k: TopK = 1, explain: Explain = False) -> Response:
    return await predict_any(request, name, None, top_k, explain)


@router.post("/models/{name}/versions/{version}/predict", summary="Classify with one version of a model")
async def predict_version(
    request: Request, name: str, version: str, top_k: TopK = 1, explain: Explain = False
) -> Response:
    return await predict_any(request, name, version, top_k, explain)


@router.get("/models", summary="The served models: versions, input kind, labels")
async def list_models(request: Request) -> Response:
    repo: ModelRepository = request.app.state.repository
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
            }
        )
    return json_response({"models": models, "failed": repo.failures()})


def _test_report(mv: ModelVersion) -> dict[str, Any]:
    """model.json's held-out test accuracy and what the model was trained on, when it says."""
    training = (mv.meta.model_extra or {}).get("training") or {}
    test = training.get("test") or {}
    return {"accuracy": test.get("accuracy"), "test_size": test.get("n"), "data": training.get("data")}
