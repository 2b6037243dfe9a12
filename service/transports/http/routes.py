"""The inference routes, once: FastAPI registers them from this table (so OpenAPI documents them with
their typed query parameters) and the raw-ASGI fast path matches them from the same table.

Each route names its FastAPI endpoint (typed parameters, for the docs and for FastAPI's own dispatch)
and its handler (what the fast path calls with the path parameters and the query it reads itself).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from service.errors import InvalidInput
from service.transports.http import predict, v2

Handler = Callable[..., Awaitable[Response]]


def _no_query(request: Request) -> dict[str, Any]:
    return {}


def _predict_query(request: Request) -> dict[str, Any]:
    """What FastAPI reads from a predict route's query: top_k and explain."""
    return {"top_k": _top_k(request), "explain": _flag(request, "explain")}


def _predict_any_query(request: Request) -> dict[str, Any]:
    """/predict itself also takes the model by query: ?model=NAME."""
    return {**_predict_query(request), "name": request.query_params.get("model")}


@dataclass(frozen=True)
class Route:
    path: str  # FastAPI's template: "/v2/models/{name}/versions/{version}/infer"
    endpoint: Handler  # what FastAPI registers
    handler: Handler  # what the fast path calls: handler(request, **path params, **query(request))
    summary: str
    query: Callable[[Request], dict[str, Any]] = _no_query
    defaults: dict[str, Any] = field(default_factory=dict)  # parameters the path does not hold
    segments: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "segments", tuple(self.path.strip("/").split("/")))


ROUTES = (
    Route(
        "/predict",
        predict.predict,
        predict.predict_any,
        "Classify images or texts with the default (or ?model=) model",
        _predict_any_query,
        {"version": None},
    ),
    Route(
        "/models/{name}/predict",
        predict.predict_model,
        predict.predict_any,
        "Classify with the latest version of a model",
        _predict_query,
        {"version": None},
    ),
    Route(
        "/models/{name}/versions/{version}/predict",
        predict.predict_version,
        predict.predict_any,
        "Classify with one version of a model",
        _predict_query,
    ),
    Route(
        "/v2/models/{name}/infer",
        v2.infer,
        v2.infer,
        "Inference (latest version)",
        defaults={"version": None},
    ),
    Route("/v2/models/{name}/versions/{version}/infer", v2.infer, v2.infer, "Inference"),
)


def register(router: APIRouter) -> None:
    """Every inference route on FastAPI (as POST), in the table's order."""
    for route in ROUTES:
        tags: list[str | Enum] = ["v2"] if route.path.startswith("/v2/") else ["predict"]
        router.add_api_route(route.path, route.endpoint, methods=["POST"], summary=route.summary, tags=tags)


class RouteMatcher:
    """The table's paths by segment count: a split and a few string compares per request, no regex."""

    def __init__(self, routes: tuple[Route, ...] = ROUTES) -> None:
        self._by_length: dict[int, list[Route]] = {}
        for route in routes:
            self._by_length.setdefault(len(route.segments), []).append(route)

    def match(self, path: str) -> tuple[Route, dict[str, Any]] | None:
        """The route and its path parameters, or None. Percent-encoded paths are left to FastAPI."""
        if "%" in path:
            return None
        parts = path.strip("/").split("/")
        for route in self._by_length.get(len(parts), ()):
            params: dict[str, Any] = {}
            for want, got in zip(route.segments, parts, strict=True):
                if want[0] == "{":
                    if not got:
                        break
                    params[want[1:-1]] = got
                elif want != got:
                    break
            else:
                return route, params
        return None


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
