"""create_app(settings): the FastAPI application and its lifespan; no work at import time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    disable_created_metrics,
    gc_collector,
    generate_latest,
    platform_collector,
    process_collector,
)
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp

from service import __version__
from service.config import Settings
from service.dataplane import DataPlane
from service.errors import ServiceError
from service.metrics import Metrics, flush_all, multiprocess_mode, scrape_registry
from service.playground import register_playground
from service.transports.http import health, openapi, predict
from service.transports.http.body import error_response, json_response
from service.transports.http.fastpath import FastPath
from service.transports.http.middleware import RequestMiddleware
from service.transports.http.routes import register as register_inference_routes
from service.transports.http.v2 import register_v2_endpoints

if TYPE_CHECKING:
    from service.process.group import WorkerGroup

log = logging.getLogger(__name__)


PROCESS_SAMPLE_S = 5.0


def create_app(settings: Settings | None = None, group: WorkerGroup | None = None) -> FastAPI:
    """The app of one process; ``group`` when it is one worker of several."""
    settings = settings or Settings()
    metrics, scraped = _metrics(settings)

    plane = DataPlane(settings, metrics, group)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await plane.start()
        grpc_server = await _start_grpc(plane, settings, metrics)
        tasks = []
        if metrics is not None:
            tasks.append(asyncio.create_task(_sample_forever(metrics)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            if grpc_server is not None:
                await grpc_server.stop(settings.drain_timeout_s)
            await plane.stop()

    app = FastAPI(
        title="modelserve",
        version=__version__,
        lifespan=lifespan,
        description="ONNX classifiers behind dynamic batching: /predict and the Open Inference Protocol.",
    )
    # App-wide wiring, set once: FastAPI routes find the data plane here (request.app.state.dataplane).
    # Nothing per request lives on app.state or the scope: see service/context.py.
    app.state.settings = settings
    app.state.dataplane = plane
    app.include_router(predict.router)
    inference = APIRouter()
    register_inference_routes(inference)  # the table the fast path matches from
    app.include_router(inference)
    app.include_router(health.router)
    register_v2_endpoints(app)
    if metrics is not None and scraped is not None:
        registry, sample = scraped, metrics.sample_process

        @app.get("/metrics", tags=["operations"], summary="Prometheus metrics (every worker's)")
        async def serve_metrics() -> Response:
            flush_all()  # what this loop step recorded
            sample()
            return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    if settings.playground:
        register_playground(app)
    _add_error_handlers(app)
    openapi.install(app)
    app.state.metrics = metrics
    return app


async def _start_grpc(plane: DataPlane, settings: Settings, metrics: Metrics | None) -> Any:
    """The gRPC transport on its own port, in this event loop (imported only when it is on)."""
    if not settings.grpc_port:
        return None
    from service.transports.grpc.server import GrpcTransport

    transport = GrpcTransport(plane, settings, metrics)
    await transport.start()
    return transport


def serving_stack(app: FastAPI, extra_routes: dict[str, Any] | None = None) -> ASGIApp:
    """What uvicorn runs: [CORS] -> RequestMiddleware -> FastPath (inference routes) -> FastAPI (the rest).

    The middleware wraps the fast path too, so every request gets its id, key check, metrics and log line.
    """
    settings: Settings = app.state.settings
    stack: ASGIApp = RequestMiddleware(FastPath(app, extra_routes), settings, app.state.metrics)
    if settings.cors_origins:
        stack = CORSMiddleware(
            stack,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
            expose_headers=["X-Request-ID", "Inference-Header-Content-Length"],
        )
    return stack


def _metrics(settings: Settings) -> tuple[Metrics | None, CollectorRegistry | None]:
    """The collectors and the registry /metrics renders."""
    if not settings.metrics:
        return None, None
    disable_created_metrics()  # the *_created series only add noise to a scrape
    scraped = scrape_registry()
    if multiprocess_mode():  # the process collectors would describe whichever worker got the scrape
        return Metrics(CollectorRegistry()), scraped
    process_collector.ProcessCollector(registry=scraped)
    platform_collector.PlatformCollector(registry=scraped)
    gc_collector.GCCollector(registry=scraped)
    return Metrics(scraped), scraped


async def _sample_forever(metrics: Metrics) -> None:
    while True:
        await asyncio.sleep(PROCESS_SAMPLE_S)
        metrics.sample_process()


_ROUTES_HINT = (
    "inference is POST /predict?model=NAME, POST /models/NAME/predict or POST /v2/models/NAME/infer, "
    "models are listed at GET /models, and GET /docs lists every route"
)


def _add_error_handlers(app: FastAPI) -> None:
    """One renderer for every error: {"error": "..."} with the right status."""

    async def render_error(_: Request, exc: Exception) -> Response:
        return error_response(exc)

    async def validation_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        parts = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in exc.errors()]
        return json_response({"error": "invalid request: " + "; ".join(parts)}, 422)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        headers = dict(exc.headers or {})
        message = str(exc.detail)
        where = f"{request.method} {request.url.path}"
        if exc.status_code == 404 and message == "Not Found":  # the router's: no route has this path
            message = f"no route for {where}; {_ROUTES_HINT}"
        elif exc.status_code == 405 and message == "Method Not Allowed":
            allow = next((v for k, v in headers.items() if k.lower() == "allow"), "other methods")
            message = f"{where} is not served; this path takes {allow}"
        return json_response({"error": message}, exc.status_code, headers)

    app.add_exception_handler(ServiceError, render_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, render_error)
