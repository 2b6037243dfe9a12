"""create_app(settings): the FastAPI application and its lifespan; no work at import time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from service import __version__
from service.config import Settings
from service.errors import ServiceError
from service.protocol import health, predict
from service.protocol.http import json_response
from service.protocol.v2 import register_v2_endpoints
from service.repository import ModelRepository

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.preprocess_pool = ThreadPoolExecutor(
            settings.preprocess_threads, thread_name_prefix="preprocess"
        )
        repository = ModelRepository(settings)
        app.state.repository = repository
        await repository.load_all()
        log.info("serving %s from %s", ", ".join(repository.names()) or "no models", settings.models_dir)
        poller = None
        if settings.repository_poll_s > 0:
            poller = asyncio.create_task(repository.poll_forever(settings.repository_poll_s))
        try:
            yield
        finally:
            if poller is not None:
                poller.cancel()
            app.state.shutting_down = True
            await repository.close()
            app.state.preprocess_pool.shutdown(wait=False)

    app = FastAPI(
        title="modelserve",
        version=__version__,
        lifespan=lifespan,
        description="ONNX classifiers behind dynamic batching: /predict and the Open Inference Protocol.",
    )
    app.state.settings = settings
    app.state.shutting_down = False
    app.include_router(predict.router)
    app.include_router(health.router)
    register_v2_endpoints(app)
    _add_error_handlers(app)
    return app


def create_app_from_env() -> FastAPI:
    """uvicorn's factory: settings from MODELSERVE_* (the CLI writes its flags there)."""
    return create_app(Settings())


def _add_error_handlers(app: FastAPI) -> None:
    """One renderer for every error: {"error": "..."} with the right status."""

    async def service_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, ServiceError)
        if exc.status_code >= 500:
            log.error("%s: %s", type(exc).__name__, exc.message)
        return json_response({"error": exc.message}, exc.status_code, exc.headers)

    async def validation_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        parts = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in exc.errors()]
        return json_response({"error": "invalid request: " + "; ".join(parts)}, 422)

    async def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return json_response({"error": str(exc.detail)}, exc.status_code, dict(exc.headers or {}))

    async def unexpected(_: Request, exc: Exception) -> Response:
        log.exception("unhandled error")
        return json_response({"error": f"internal error: {type(exc).__name__}"}, 500)

    app.add_exception_handler(ServiceError, service_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
