"""A request body's deadline and its connection's watch, shared by the HTTP protocol (limits.py), the body
reads of the ASGI routes (body.py) and the direct path (direct.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from service.errors import BadRequest

# The scope extension under which the protocol hands a request's BodyDeadline to the app.
BODY_EXTENSION = "modelserve.body"


class BodyDeadline:
    """When the request body must be in: ``timeout_s`` after the headers. Once the server drains, an upload
    still arriving is an in-flight request and is read on, but within the drain, and only while bytes keep
    coming: one that sends nothing for ``stalled_s`` is cut short. ``read_body`` awaits each body message
    through ``receive``. It also tells the handler when the client goes away: the connection cancels the
    future ``watch``ed here as it closes (no watcher task per request)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout_s: float, stalled_s: float) -> None:
        self.loop = loop
        self.timeout_s = timeout_s
        self.stalled_s = stalled_s
        self.when = loop.time() + timeout_s
        self.last_bytes = loop.time()  # the protocol moves it as body bytes arrive
        self.complete = False  # the whole body is buffered: no wait left to bound
        self.drain_s: float | None = None
        self._drain_end: float | None = None  # set when the server begins to drain
        self.client_gone = False
        self.malformed: str | None = None  # the body's framing failed to parse: the read answers 400
        self._timeout: asyncio.Timeout | None = None
        self._watched: asyncio.Future[Any] | None = None

    def watch(self, future: asyncio.Future[Any] | None) -> None:
        """Cancel ``future`` if the connection closes before it is done (None: stop watching)."""
        self._watched = future

    def connection_lost(self) -> None:
        self.client_gone = True
        if self._watched is not None:
            self._watched.cancel()

    async def receive(self, receive: Any) -> Any:
        if self.complete:
            return await receive()
        if self.malformed is not None:
            raise BadRequest(self.malformed)
        # One wait ends when any bytes arrive (uvicorn sets its message event per chunk): the stall bound
        # needs no re-arming while it waits.
        async with asyncio.timeout_at(self._until()) as timeout:
            self._timeout = timeout
            try:
                message = await receive()
            finally:
                self._timeout = None
        if self.malformed is not None:
            raise BadRequest(self.malformed)
        return message

    def drain(self, within_s: float | None) -> None:
        """The server is shutting down: the body must still come in within ``within_s`` (None: no bound)."""
        self.drain_s = within_s
        self._drain_end = self.loop.time() + within_s if within_s is not None else float("inf")
        if self._timeout is not None:
            self._timeout.reschedule(self._until())

    def shutdown_reason(self) -> str | None:
        """After a timeout: why a draining server stopped waiting; None when it was the body timeout."""
        if self._drain_end is None or self.loop.time() >= self.when:
            return None
        if self.loop.time() >= self._drain_end:
            return f"the request body did not arrive within the drain timeout ({self.drain_s:g} s)"
        return f"the request body stopped arriving (nothing for {self.stalled_s:g} s)"

    def _until(self) -> float:
        if self._drain_end is None:
            return self.when
        return min(self.when, self._drain_end, self.last_bytes + self.stalled_s)
