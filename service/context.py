"""RequestContext: one request as its transport saw it, and the one channel that hands it on.

The HTTP middleware and the gRPC adapter each create one per request; the handlers, the data plane and
the batcher fill it in; the transport reads it back for the access log and metrics. On HTTP it reaches the
handler through ``current_request`` (a ContextVar, typed), never through the ASGI scope or request.state:
the middleware and the handler run in the same task (or a copy of its context), so what the handler
writes into the object is what the middleware reads afterwards. Stdlib only: logs.py imports it.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal

# What the API-key check decided: "off" no keys configured, "open" a path that needs none, "key" a valid
# inference key, "admin" the admin key, "denied" refused (the request never reaches a handler).
Auth = Literal["off", "open", "key", "admin", "denied"]


@dataclass(slots=True)
class RequestContext:
    """``mv``, ``rows`` and ``batch_rows`` are the trace the access log and metrics report; slots, not a
    dict, so the hot path allocates one object per request for all of it."""

    request_id: str
    protocol: str = "http"
    deadline: float | None = None  # time.monotonic() by which the caller stops waiting (gRPC deadline)
    auth: Auth = "off"
    mv: Any = None  # the ModelVersion that served it, once resolved
    rows: int | None = None
    batch_rows: int | None = None  # rows of the batch it ran in


# The request this task serves (set by the transport): handlers read it, log lines name its id.
current_request: ContextVar[RequestContext | None] = ContextVar("current_request", default=None)


def request_context() -> RequestContext:
    """The context the transport set for this request; a fresh one when none did (a handler called
    without the middleware, as in-process tests may)."""
    ctx = current_request.get()
    return ctx if ctx is not None else RequestContext("")


def current_request_id() -> str | None:
    ctx = current_request.get()
    return ctx.request_id if ctx is not None else None
