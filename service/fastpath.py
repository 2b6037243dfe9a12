"""The inference routes without the framework's per-request machinery.

Profiling V2 infer at 64 concurrent clients showed about 40% of the event loop in FastAPI and Starlette
layers (exit stacks, routing over every route, body-limit and telemetry middleware) before the handler
ran. The hot routes (/predict and V2 infer) are few and take the raw body, so they are matched here with
a split of the path and handed to the same handler functions FastAPI registers (which still serve the
OpenAPI docs); everything else falls through to FastAPI. Errors go through the same error_response.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from service.errors import InvalidInput
from service.protocol import predict, v2
from service.protocol.http import error_response

Handler = Callable[..., Awaitable[Response]]


def _route(parts: list[str]) -> tuple[Handler, dict[str, Any]] | None:
    """Match /predict, /models/{m}[/versions/{v}]/predict, /v2/models/{m}[/versions/{v}]/infer."""
    n = len(parts)
    if n == 1 and parts[0] == "predict":
        return predict.predict_any, {}
    if parts[-1] == "predict" and parts[0] == "models" and (n == 3 or (n == 5 and parts[2] == "versions")):
        return predict.predict_any, {"name": parts[1], "version": parts[3] if n == 5 else None}
    if (
        parts[-1] == "infer"
        and parts[:2] == ["v2", "models"]
        and (n == 4 or (n == 6 and parts[3] == "versions"))
    ):
        return v2.infer, {"name": parts[2], "version": parts[4] if n == 6 else None}
    return None


class FastPath:
    """ASGI app: POSTs to the inference routes go straight to their handlers, the rest to FastAPI."""

    def __init__(self, app: FastAPI, exact: dict[str, Handler] | None = None) -> None:
        self.app = app
        self.exact = exact or {}  # more POST routes by exact path (the benchmark's no-work route)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            matched = _route(path.strip("/").split("/")) if "%" not in path else None
            if matched is None and path in self.exact:
                matched = self.exact[path], {}
            if matched is not None:
                handler, params = matched
                scope["app"] = self.app
                response = await self._handle(handler, Request(scope, receive), params)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _handle(self, handler: Handler, request: Request, params: dict[str, Any]) -> Response:
        try:
            if handler is predict.predict_any:
                params["top_k"] = _top_k(request)
                params["explain"] = _flag(request, "explain")
                params.setdefault("name", request.query_params.get("model"))
                params.setdefault("version", None)
            return await handler(request, **params)
        except Exception as e:
            return error_response(e)


def _flag(request: Request, name: str) -> bool:
    """A boolean query parameter as FastAPI reads one (1/true/yes/on, 0/false/no/off)."""
    raw = request.query_params.get(name)
    if raw is None:
        return False
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise InvalidInput(f"invalid request: query.{name}: must be a boolean (1/0, true/false), got {raw!r}")


def _top_k(request: Request) -> int:
    raw = request.query_params.get("top_k")
    if raw is None:
        return 1
    try:
        k = int(raw)
    except ValueError:
        raise InvalidInput(f"invalid request: query.top_k: must be an integer, got {raw!r}") from None
    if not 1 <= k <= predict.MAX_TOP_K:
        raise InvalidInput(
            f"invalid request: query.top_k: must be between 1 and {predict.MAX_TOP_K}, got {k}"
        )
    return k
