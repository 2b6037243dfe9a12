"""Liveness and readiness (the Open Inference Protocol's health endpoints) and per-model readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from service.transports.http.body import json_response

router = APIRouter(tags=["health"])


# HEAD too: load balancers and some probes ask with HEAD (Starlette answers it without a body).
@router.api_route("/v2/health/live", methods=["GET", "HEAD"], summary="The process is up")
async def live() -> Response:
    return json_response({"live": True})


@router.api_route(
    "/v2/health/ready",
    methods=["GET", "HEAD"],
    summary="Every model that should load has loaded and warmed up",
)
async def ready(request: Request) -> Response:
    is_ready, body = await request.app.state.dataplane.readiness()
    return json_response(body, 200 if is_ready else 503)


@router.api_route(
    "/v2/models/{name}/ready", methods=["GET", "HEAD"], summary="A model's latest version is loaded and ready"
)
@router.api_route(
    "/v2/models/{name}/versions/{version}/ready",
    methods=["GET", "HEAD"],
    summary="One version is loaded and ready",
)
async def model_ready(request: Request, name: str, version: str | None = None) -> Response:
    mv = request.app.state.dataplane.resolve(name, version)
    return json_response({"name": mv.name, "version": str(mv.version), "ready": True})
