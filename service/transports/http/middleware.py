"""One pure-ASGI middleware for what every HTTP request needs: a request id, the API-key check
(service/auth.py), request metrics and the access log line (service/access_log.py). It creates the
request's RequestContext (service/context.py), records the key check's result in it, hands it to the
handler through ``current_request`` and reads the trace the handler and the batcher left in it for the
metrics and the log line. Pure ASGI (not BaseHTTPMiddleware), because it wraps the hot path."""

from __future__ import annotations

import asyncio
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.access_log import AccessLog, valid_request_id
from service.auth import Access, ApiKeys
from service.config import Settings
from service.context import RequestContext, current_request
from service.metrics import Metrics
from service.transports.http.body import DRAIN_OVER, error_response

_INFERENCE_PREFIXES = ("/predict", "/models/", "/v2/models/")


class PathAccess:
    """What an HTTP path needs (service/auth.py decides whether the key allows it)."""

    def __init__(self, settings: Settings) -> None:
        self.open_paths: set[str] = set()
        if not settings.auth_docs:
            self.open_paths |= {"/docs", "/openapi.json", "/docs/oauth2-redirect", "/redoc"}
        if not settings.auth_metrics:
            self.open_paths.add("/metrics")
        self.open_prefixes: tuple[str, ...] = ()
        if settings.playground:  # the page is public; the API calls it makes still need a key
            self.open_paths.add("/")
            self.open_prefixes += ("/playground/",)

    def __call__(self, path: str) -> Access:
        if path in self.open_paths or path.startswith(self.open_prefixes):
            return "open"
        if path.startswith("/v2/health/"):
            return "health"
        if path.startswith("/v2/repository/"):
            return "admin"
        return "inference"


class RequestMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings, metrics: Metrics | None) -> None:
        self.app = app
        self.keys = ApiKeys(settings)
        self.access = PathAccess(settings)
        self.log = AccessLog(settings, metrics)
        name = settings.replica_name
        self.served_by = (b"x-served-by", name.encode()) if name else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        headers = dict(scope["headers"])
        request_id = valid_request_id(_decode(headers.get(b"x-request-id")))
        ctx = RequestContext(request_id)
        # The handler's one channel to this context (its own task, or a copy of its context: no reset).
        current_request.set(ctx)
        added = [(b"x-request-id", request_id.encode())]
        if self.served_by is not None:
            added.append(self.served_by)
        status = 500
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                message["headers"] = [*message.get("headers", ()), *added]
            await send(message)

        try:
            error = None
            if self.keys.enabled:
                ctx.auth, error = self.keys.authenticate(self.access(scope["path"]), headers)
            if error is not None:
                await error_response(error)(scope, receive, send_with_id)
            else:
                await self.app(scope, receive, send_with_id)
        except asyncio.CancelledError:
            # uvicorn cancels the requests still running when the drain timeout ends (nothing else cancels
            # a request's task): answer them as a refusal to retry, not with uvicorn's plain-text 500 and a
            # traceback. The task ends here, answered.
            if started:
                raise
            await error_response(DRAIN_OVER)(scope, receive, send_with_id)
        finally:
            path = scope["path"]
            # Counted without a model only when it was an inference call (an unknown model, a bad URL).
            inference = ctx.mv is None and scope["method"] == "POST" and path.startswith(_INFERENCE_PREFIXES)
            self.log.record(ctx, scope["method"], path, status, time.perf_counter() - start, inference)


def _decode(value: bytes | None) -> str | None:
    return value.decode("latin-1") if value is not None else None
