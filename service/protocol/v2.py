"""The Open Inference Protocol (KServe V2) over REST, with Triton's model repository extension.

Every route of the protocol is registered in ``register_v2_endpoints``; health routes live in health.py.
Spec: kserve/open-inference-protocol, specification/protocol/inference_rest.md.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from starlette.responses import Response

from service import __version__
from service.errors import BadRequest
from service.preprocess.pool import request_deadline
from service.protocol.http import await_unless_disconnected, json_response, parse_json, read_body
from service.protocol.v2_codec import (
    decode_request,
    encode_response,
    parameters,
    raw_bytes_input,
    tensor_feeds,
)
from service.repository import ModelRepository, ModelVersion

EXTENSIONS = ["binary_tensor_data", "classification", "model_repository", "parameters"]


async def server_metadata() -> Response:
    return json_response({"name": "modelserve", "version": __version__, "extensions": EXTENSIONS})


async def model_metadata(request: Request, name: str, version: str | None = None) -> Response:
    repo: ModelRepository = request.app.state.repository
    mv = repo.get(name, version)
    return json_response(
        {
            "name": mv.name,
            "versions": [str(v.version) for v in repo.versions(name)],
            "platform": "onnxruntime_onnx",
            "inputs": [t.as_dict() for t in mv.inputs],
            "outputs": [t.as_dict() for t in mv.outputs],
            "parameters": {
                "input_kind": mv.input_kind,
                "labels": mv.meta.labels,
                "max_batch_size": mv.batcher.max_batch_size,
                **mv.kind.describe(),
            },
        }
    )


async def infer(request: Request, name: str, version: str | None = None) -> Response:
    start = time.monotonic()
    state = request.app.state
    settings = state.settings
    body = await read_body(request, settings.max_body_bytes)
    mv: ModelVersion = state.repository.get(name, version)
    request.state.mv = mv
    with mv.lease():  # taken with no await since resolving: a reload retires mv only after this answer
        deadline = start + mv.batcher.timeout_s  # the timeout covers decoding too
        request_deadline.set(deadline)
        req = decode_request(body, request.headers.get("inference-header-content-length"))
        raw = raw_bytes_input(req)
        items = None
        if raw is not None:
            assert isinstance(raw.value, list)  # BYTES elements
            items = mv.kind.from_v2_bytes(raw.name, raw.value, raw.binary)
        if items is not None:  # encoded images, strings, ... for the model's own preprocessing
            request.state.rows = len(items)
            prepared = await mv.kind.prepare(items, settings, state.preprocess_pool)
            feeds, rows = prepared.feeds, prepared.rows
        else:
            feeds, rows = tensor_feeds(mv, req, settings.max_items_per_request)
        request.state.rows = rows
        outputs = await await_unless_disconnected(
            request, mv.batcher.enqueue(feeds, rows=rows, trace=request.scope["state"], deadline=deadline)
        )
    content, headers = encode_response(mv, req, outputs)
    return Response(content, headers=headers)


def _optional_object(body: bytes) -> dict[str, Any]:
    """The repository routes take an empty body or a JSON object."""
    doc = parse_json(body) if body.strip() else {}
    if not isinstance(doc, dict):
        raise BadRequest("the request body must be a JSON object (or empty)")
    return doc


async def repository_index(request: Request) -> Response:
    only_ready = bool(_optional_object(await read_body(request, 1 << 16)).get("ready"))
    rows: list[dict[str, Any]] = request.app.state.repository.index()
    return json_response([r for r in rows if r["state"] == "READY"] if only_ready else rows)


async def repository_load(request: Request, name: str) -> Response:
    doc = _optional_object(await read_body(request, 1 << 20))
    if parameters(doc, "load request").keys() - {"ready"}:
        raise BadRequest(
            "load parameters (config or file overrides) are not supported: change models/ and load"
        )
    group = request.app.state.group
    if group is not None:  # every worker loads it; the answer waits for all
        await group.change("load", name)
    else:
        await request.app.state.repository.load_or_fail(name)
    return json_response({})


async def repository_unload(request: Request, name: str) -> Response:
    await read_body(request, 1 << 16)
    group = request.app.state.group
    if group is not None:
        await group.change("unload", name)
    else:
        await request.app.state.repository.unload(name)
    return json_response({})


def register_v2_endpoints(app: FastAPI) -> None:
    """Every V2 route on one screen."""
    r = APIRouter(tags=["v2"])
    r.add_api_route("/v2", server_metadata, methods=["GET"], summary="Server metadata")
    r.add_api_route("/v2/models/{name}", model_metadata, methods=["GET"], summary="Model metadata")
    r.add_api_route(
        "/v2/models/{name}/versions/{version}",
        model_metadata,
        methods=["GET"],
        summary="Model version metadata",
    )
    r.add_api_route("/v2/models/{name}/infer", infer, methods=["POST"], summary="Inference (latest version)")
    r.add_api_route(
        "/v2/models/{name}/versions/{version}/infer", infer, methods=["POST"], summary="Inference"
    )
    r.add_api_route("/v2/repository/index", repository_index, methods=["POST"], summary="Repository index")
    r.add_api_route(
        "/v2/repository/models/{name}/load",
        repository_load,
        methods=["POST"],
        summary="Load or reload a model",
    )
    r.add_api_route(
        "/v2/repository/models/{name}/unload", repository_unload, methods=["POST"], summary="Unload a model"
    )
    app.include_router(r)
