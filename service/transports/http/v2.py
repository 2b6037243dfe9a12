"""The Open Inference Protocol (KServe V2) over REST, with Triton's model repository, model-configuration
and statistics extensions: thin routes over the DataPlane.

Every route of the protocol is registered in ``register_v2_endpoints``; health routes live in health.py.
Spec: kserve/open-inference-protocol, specification/protocol/inference_rest.md.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Request
from starlette.responses import Response

from service.context import request_context
from service.dataplane import DataPlane
from service.errors import BadRequest
from service.protocol.documents import parse_json
from service.protocol.v2_codec import parameters
from service.protocol.v2_encode import HTTP
from service.transports.http.body import await_unless_disconnected, json_response, read_body


def _plane(request: Request) -> DataPlane:
    plane: DataPlane = request.app.state.dataplane
    return plane


async def server_metadata(request: Request) -> Response:
    return json_response(_plane(request).server_metadata())


async def model_metadata(request: Request, name: str, version: str | None = None) -> Response:
    return json_response(_plane(request).model_metadata(name, version))


async def model_config(request: Request, name: str, version: str | None = None) -> Response:
    """Triton's model-configuration extension (what perf_analyzer reads first)."""
    return json_response(_plane(request).model_config(name, version))


async def model_stats(request: Request, name: str, version: str | None = None) -> Response:
    """Triton's statistics extension: one model (all its versions), or one version."""
    return json_response(await _plane(request).model_stats(name, version))


async def all_model_stats(request: Request) -> Response:
    """Triton's statistics extension: every version of every model."""
    return json_response(await _plane(request).model_stats())


async def infer(request: Request, name: str, version: str | None = None) -> Response:
    plane = _plane(request)
    body = await read_body(request, plane.settings.max_body_bytes)
    header_length = request.headers.get("inference-header-content-length")
    content, headers = await plane.infer(
        name,
        version,
        (body, header_length),
        HTTP,
        request_context(),
        wait=lambda answer: await_unless_disconnected(request, answer),
    )
    return Response(content, headers=headers)


def _optional_object(body: bytes) -> dict[str, Any]:
    """The repository routes take an empty body or a JSON object."""
    doc = parse_json(body) if body.strip() else {}
    if not isinstance(doc, dict):
        raise BadRequest("the request body must be a JSON object (or empty)")
    return doc


async def repository_index(request: Request) -> Response:
    only_ready = bool(_optional_object(await read_body(request, 1 << 16)).get("ready"))
    rows: list[dict[str, Any]] = _plane(request).repository.index()
    return json_response([r for r in rows if r["state"] == "READY"] if only_ready else rows)


async def repository_load(request: Request, name: str) -> Response:
    doc = _optional_object(await read_body(request, 1 << 20))
    if parameters(doc, "load request").keys() - {"ready"}:
        raise BadRequest(
            "load parameters (config or file overrides) are not supported: change models/ and load"
        )
    await _plane(request).load_model(name)
    return json_response({})


async def repository_unload(request: Request, name: str) -> Response:
    await read_body(request, 1 << 16)
    await _plane(request).unload_model(name)
    return json_response({})


def register_v2_endpoints(app: FastAPI) -> None:
    """Every V2 route on one screen."""
    r = APIRouter(tags=["v2"])
    r.add_api_route("/v2", server_metadata, methods=["GET"], summary="Server metadata")
    r.add_api_route("/v2/models/stats", all_model_stats, methods=["GET"], summary="Statistics of every model")
    r.add_api_route("/v2/models/{name}", model_metadata, methods=["GET"], summary="Model metadata")
    r.add_api_route(
        "/v2/models/{name}/versions/{version}",
        model_metadata,
        methods=["GET"],
        summary="Model version metadata",
    )
    r.add_api_route("/v2/models/{name}/config", model_config, methods=["GET"], summary="Model configuration")
    r.add_api_route(
        "/v2/models/{name}/versions/{version}/config",
        model_config,
        methods=["GET"],
        summary="Model version configuration",
    )
    r.add_api_route("/v2/models/{name}/stats", model_stats, methods=["GET"], summary="Model statistics")
    r.add_api_route(
        "/v2/models/{name}/versions/{version}/stats",
        model_stats,
        methods=["GET"],
        summary="Model version statistics",
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
