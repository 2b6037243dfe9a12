"""One pure-ASGI middleware for what every request needs: a request id, the API-key check, request
metrics and the access log line. It creates the request's RequestContext (service/context.py), records the
key check's result in it, hands it to the handler through ``current_request`` and reads the trace the
handler and the batcher left in it for the metrics and the log line. Pure ASGI (not BaseHTTPMiddleware), because it wraps the hot path."""

from __future__ import annotations

import hmac
import itertools
import logging
import os
import re
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import logs
from service.config import Settings
from service.context import Auth, RequestContext, current_request
from service.errors import Forbidden, ServiceError, Unauthorized
from service.metrics import Metrics
from service.protocol.http import error_response

access_log = logging.getLogger("modelserve.access")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_INFERENCE_PREFIXES = ("/predict", "/models/", "/v2/models/")


def valid_request_id(value: str | None) -> str:
    """The client's X-Request-ID when it is 1-128 safe characters, else a fresh one."""
    return value if value is not None and _REQUEST_ID.fullmatch(value) else _fresh_id()


# Fresh ids: 32 hex digits, a random 64-bit prefix per process (new in every forked worker) and a
# counter; unique like uuid4's, without its getrandom() call per request.
_prefix = ""
_counter = itertools.count()


def _new_prefix() -> None:
    global _prefix, _counter
    _prefix, _counter = os.urandom(8).hex(), itertools.count()


_new_prefix()
os.register_at_fork(after_in_child=_new_prefix)


def _fresh_id() -> str:
    return f"{_prefix}{next(_counter):016x}"


class ApiKeys:
    """Inference keys and an admin key; health and metrics may stay open."""

    def __init__(self, settings: Settings) -> None:
        self.keys = [k.encode() for k in settings.api_keys]
        self.admin = settings.admin_key.encode() if settings.admin_key else None
        self.open_paths: set[str] = set()
        if not settings.auth_docs:
            self.open_paths |= {"/docs", "/openapi.json", "/docs/oauth2-redirect", "/redoc"}
        if not settings.auth_health:
            self.open_prefixes: tuple[str, ...] = ("/v2/health/",)
        else:
            self.open_prefixes = ()
        if not settings.auth_metrics:
            self.open_paths.add("/metrics")
        if settings.playground:  # the page is public; the API calls it makes still need a key
            self.open_paths.add("/")
            self.open_prefixes += ("/playground/",)

    @property
    def enabled(self) -> bool:
        return bool(self.keys or self.admin)

    def check(self, path: str, headers: dict[bytes, bytes]) -> ServiceError | None:
        return self.authenticate(path, headers)[1]

    def authenticate(self, path: str, headers: dict[bytes, bytes]) -> tuple[Auth, ServiceError | None]:
        """What the request's key (if any) allows on ``path``, and the error to answer when refused.
        (The allowed answers are constant tuples: no allocation on the hot path.)"""
        if not self.enabled:
            return ("off", None)
        if path in self.open_paths or path.startswith(self.open_prefixes):
            return ("open", None)
        key = _presented_key(headers)
        is_admin = key is not None and self.admin is not None and hmac.compare_digest(key, self.admin)
        if path.startswith("/v2/repository/"):
            if is_admin:
                return ("admin", None)
            if self.admin is None:
                return "denied", Forbidden(
                    "repository endpoints are disabled: set MODELSERVE_ADMIN_KEY to use them"
                )
            if key is None:
                return "denied", Unauthorized("the repository endpoints need the admin key")
            return "denied", Forbidden("the repository endpoints need the admin key, not an inference key")
        if is_admin:
            return ("admin", None)
        if not self.keys:
            return ("off", None)  # only an admin key is set: inference stays open
        if key is None:
            return "denied", Unauthorized(
                "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
            )
        # Compare with every key, so the time taken does not tell which one came close.
        matched = False
        for candidate in self.keys:
            matched |= hmac.compare_digest(key, candidate)
        return ("key", None) if matched else ("denied", Unauthorized("invalid API key"))


def _presented_key(headers: dict[bytes, bytes]) -> bytes | None:
    auth = headers.get(b"authorization")
    if auth is not None and auth[:7].lower() == b"bearer ":
        return auth[7:].strip()
    return headers.get(b"x-api-key")


class RequestMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings, metrics: Metrics | None) -> None:
        self.app = app
        self.metrics = metrics
        self.keys = ApiKeys(settings)
        self.access_log = settings.access_log
        self.json_logs = settings.log_format == "json"

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
        rid_header = (b"x-request-id", request_id.encode())
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), rid_header]
            await send(message)

        try:
            ctx.auth, error = self.keys.authenticate(scope["path"], headers)
            if error is not None:
                await error_response(error)(scope, receive, send_with_id)
            else:
                await self.app(scope, receive, send_with_id)
        finally:
            self._record(scope, ctx, status, time.perf_counter() - start)

    def _record(self, scope: Scope, ctx: RequestContext, status: int, latency_s: float) -> None:
        mv = ctx.mv
        if self.metrics is not None:
            if mv is not None:
                mv.metrics.on_request(status, latency_s)
            elif scope["method"] == "POST" and scope["path"].startswith(_INFERENCE_PREFIXES):
                self.metrics.unlabelled_request(status)
        if not self.access_log:
            return
        log_access(
            self.json_logs,
            request_id=ctx.request_id,
            method=scope["method"],
            path=scope["path"],
            status=status,
            latency_s=latency_s,
            mv=mv,
            rows=ctx.rows,
            batch_rows=ctx.batch_rows,
        )


def log_access(
    json_logs: bool,
    *,
    request_id: str,
    method: str,
    path: str,
    status: int,
    latency_s: float,
    mv: Any,
    rows: int | None,
    batch_rows: int | None,
    protocol: str = "http",
) -> None:
    """One access line, for HTTP (the middleware) and gRPC (method GRPC, path the RPC's name) alike."""
    fields = {
        "request_id": request_id,
        "protocol": protocol,
        "method": method,
        "path": path,
        "status": status,
        "latency_ms": round(latency_s * 1000, 3),
        "model": mv.name if mv is not None else None,
        "version": str(mv.version) if mv is not None else None,
        "rows": rows,
        "batch_size": batch_rows,
    }
    text = ""
    if not json_logs:
        text = (
            f"{method} {path} {status} {fields['latency_ms']:.2f}ms id={request_id} "
            f"model={fields['model']}:{fields['version']} rows={rows} batch={batch_rows}"
        )
    direct = logs.access_line
    if direct is not None and direct.json == json_logs and direct.active(access_log):
        direct.write(fields, text)  # the same line, without a LogRecord
    elif json_logs:
        access_log.info("request", extra=fields)
    else:
        access_log.info("%s", text)


def _decode(value: bytes | None) -> str | None:
    return value.decode("latin-1") if value is not None else None
