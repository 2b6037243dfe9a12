"""The simple API: POST images or text, get labels and scores.

curl -F file=@examples/digits/7.png 'localhost:8080/predict?model=digits'
curl -H 'Content-Type: application/json' -d '{"text": "not bad at all"}' localhost:8080/predict
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.responses import Response

from service import kinds
from service.context import request_context
from service.dataplane import DataPlane, prepare
from service.errors import BadRequest, UnsupportedMediaType
from service.kinds import InputKind, Prepared
from service.protocol.predict_codec import scores_of
from service.protocol.predict_codec import top_k as best_labels
from service.repository.registry import ModelRepository
from service.repository.versions import ModelVersion
from service.runtime import Feeds
from service.transports.http.body import (
    await_unless_disconnected,
    json_response,
    media_type,
    parse_json,
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


async def _raw_inputs(request: Request, body: bytes) -> tuple[type[InputKind], list[Any]]:
    """The input kind a body holds (by content type, JSON field, file type), and its items."""
    media = media_type(request)
    if media == "multipart/form-data":
        return await _multipart(request, body)
    if media == "application/json":
        return kinds.kind_for_json(parse_json(body))
    kind = kinds.kind_for_body(media, body)
    if kind is not None:
        return kind, kind.from_body(body, media)
    if not media:
        raise UnsupportedMediaType(f"missing Content-Type; send one of: {kinds.accepted()}")
    hint = (
        " (curl -d sends form encoding: use -F file=@image.png or set -H 'Content-Type')"
        if media == "application/x-www-form-urlencoded"
        else ""
    )
    raise UnsupportedMediaType(f"unsupported Content-Type {media!r}{hint}; send one of: {kinds.accepted()}")


async def _multipart(request: Request, body: bytes) -> tuple[type[InputKind], list[Any]]:
    """Files are told apart by type, name or bytes; plain fields are the form-field kind's (text)."""

    async def stream() -> AsyncGenerator[bytes, None]:
        yield body

    try:
        form = await MultiPartParser(
            Headers(scope=request.scope), stream(), max_files=100_000, max_fields=1000
        ).parse()
    except MultiPartException as e:
        raise BadRequest(f"malformed multipart body: {e.message}") from None
    found: dict[type[InputKind], list[Any]] = {}
    try:
        for _, value in form.multi_items():
            if isinstance(value, UploadFile):
                data = await value.read()
                kind = kinds.kind_for_file(data, value.content_type, value.filename)
                if kind is None:
                    raise UnsupportedMediaType(
                        f"unsupported file type {value.content_type!r} ({value.filename}); send one of: "
                        f"{kinds.accepted()}"
                    )
                found.setdefault(kind, []).extend(kind.from_file(data, value.content_type, value.filename))
            else:
                kind = kinds.form_field_kind()
                found.setdefault(kind, []).extend(kind.from_field(value))
    finally:
        await form.close()
    if len(found) > 1:
        sent = " and ".join(k.plural() for k in found)
        raise BadRequest(f"send inputs of one kind per request, not {sent}")
    if not found:
        raise BadRequest("the multipart body holds no files or fields")
    return next(iter(found.items()))


def _pick_model(
    repo: ModelRepository, name: str | None, kind: type[InputKind], default: str | None
) -> ModelVersion:
    """An explicit name; else the configured default; else the only model, or the only one of this kind."""
    if name:
        return repo.get(name)
    if default:
        return repo.get(default)
    names = repo.names()
    if len(names) == 1:
        return repo.get(names[0])
    of_kind = [n for n in names if isinstance(repo.get(n).kind, kind)]
    if len(of_kind) == 1:
        return repo.get(of_kind[0])
    raise BadRequest(
        f"name a model: POST /predict?model=NAME (served: {', '.join(names) or 'none'}), "
        "or set MODELSERVE_DEFAULT_MODEL"
    )


async def predict_any(
    request: Request, name: str | None, version: str | None, top_k: int, explain: bool = False
) -> Response:
    """The one handler behind every /predict route (also called by service/transports/http/fastpath.py): the body's kind
    and items, the model, then the data plane's lifecycle."""
    plane: DataPlane = request.app.state.dataplane
    settings = plane.settings
    if media_type(request).startswith(_DECODED_PREFIXES):  # a full pool: refuse before reading the upload
        plane.pool.refuse_if_full()
    body = await read_body(request, settings.max_body_bytes)
    start = time.monotonic()  # the timeout covers decoding and the queue, not the client's upload
    kind, items = await _raw_inputs(request, body)
    ctx = request_context()
    ctx.rows = len(items)

    async def prepare_items(mv: ModelVersion) -> tuple[Prepared, Feeds, int]:
        prepared = await prepare(mv, kind, items, settings, plane.pool)
        return prepared, prepared.feeds, prepared.rows

    def encode(mv: ModelVersion, prepared: Prepared, outputs: Feeds) -> tuple[list[dict[str, Any]], Feeds]:
        predictions = best_labels(mv, scores_of(mv, outputs), top_k)
        if prepared.notes is not None:
            for prediction, note in zip(predictions, prepared.notes, strict=True):
                prediction.update(note)
        return predictions, prepared.feeds  # the feeds for explain

    mv = (
        _pick_model(plane.repository, name, kind, settings.default_model)
        if version is None
        else plane.model(name or "", version)
    )
    predictions, feeds = await plane.run(
        mv,
        prepare_items,
        encode,
        ctx,
        wait=lambda answer: await_unless_disconnected(request, answer),
        started=start,
    )
    if explain:
        # Not the bounded decoding pool: the model has run, this answer must not turn into a 503 now.
        seen = await asyncio.to_thread(mv.kind.explain, items, feeds)
        for prediction, extra in zip(predictions, seen or (), strict=False):
            prediction.update(extra)
    return json_response({"model": mv.name, "version": str(mv.version), "predictions": predictions})


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
