"""Liveness and readiness (the Open Inference Protocol's health endpoints) and per-model readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from service.protocol.http import json_response
from service.repository import ModelRepository

router = APIRouter(tags=["health"])


@router.get("/v2/health/live", summary="The process is up")
async def live() -> Response:
    return json_response({"live": True})


@router.get("/v2/health/ready", summary="Every model that should load has loaded and warmed up")
async def ready(request: Request) -> Response:
    repo: ModelRepository = request.app.state.repository
    if request.app.state.shutting_down:
        return json_response({"ready": False, "error": "shutting down"}, 503)
    if repo.is_ready():
        group = request.app.state.group
        why = await group.not_ready() if group is not None else None
        if why is None:
            return json_response({"ready": True, "models": repo.names()})
        return json_response({"ready": False, "models": repo.names(), "error": why}, 503)
    body = {"ready": False, "models": repo.names(), "failed": repo.failures()}
    body["error"] = (
        "models are still loading" if not repo.loaded else f"models failed to load: {repo.failures()}"
    )
    return json_response(body, 503)


@router.get("/v2/models/{name}/ready", summary="A model's latest version is loaded and ready")
@router.get("/v2/models/{name}/versions/{version}/ready", summary="One version is loaded and ready")
async def model_ready(request: Request, name: str, version: str | None = None) -> Response:
    mv = request.app.state.repository.get(name, version)
    return json_response({"name": mv.name, "version": str(mv.version), "ready": True})
