"""The inference routes without the framework's per-request machinery.

Profiling V2 infer at 64 concurrent clients showed about 40% of the event loop in FastAPI and Starlette
layers (exit stacks, routing over every route, body-limit and telemetry middleware) before the handler
ran. The hot routes (/predict and V2 infer) are few and take the raw body, so they are matched here with
a split of the path (service/transports/http/routes.py: the one table FastAPI registers them from too) and
handed to their handlers; everything else falls through to FastAPI. Errors go through the same error_response.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from service.transports.http.body import error_response
from service.transports.http.routes import Route, RouteMatcher

Handler = Callable[..., Awaitable[Response]]


class FastPath:
    """ASGI app: POSTs to the inference routes go straight to their handlers, the rest to FastAPI."""

    def __init__(self, app: FastAPI, exact: dict[str, Handler] | None = None) -> None:
        self.app = app
        self.matcher = RouteMatcher()
        self.exact = exact or {}  # more POST routes by exact path (the benchmark's no-work route)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            matched = self.matcher.match(path)
            if matched is not None or path in self.exact:
                scope["app"] = self.app
                response = await self._handle(matched, path, Request(scope, receive))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _handle(
        self, matched: tuple[Route, dict[str, Any]] | None, path: str, request: Request
    ) -> Response:
        try:
            if matched is None:
                return await self.exact[path](request)
            route, params = matched
            return await route.handler(request, **route.defaults, **params, **route.query(request))
        except Exception as e:
            return error_response(e)
