"""One serving process under uvicorn (uvloop + httptools): its options, and the SIGTERM that drains it.

SIGTERM: readiness turns false at once; after ``shutdown_delay_s`` uvicorn stops accepting (the connections
the kernel had already queued for it are taken in and answered first), lets the requests it holds finish,
then the lifespan drains the batchers (bounded by ``drain_timeout_s``); exit 0.
Used by service/process/server.py (one process) and worker.py (each of several).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from types import FrameType
from typing import TYPE_CHECKING, Any

import uvicorn

from service.config import Settings

if TYPE_CHECKING:
    from service.dataplane import DataPlane

log = logging.getLogger("service.process.server")
# At shutdown: at most this many queued connections are taken in, and they get this long to send their
# request before uvicorn's shutdown closes the ones still silent.
BACKLOG_MAX = 4096
BACKLOG_WAIT_S = 0.5


class DrainingServer(uvicorn.Server):
    """uvicorn's server, but a SIGTERM first marks the app not ready (and may wait) before shutting down."""

    def __init__(self, config: uvicorn.Config, plane: DataPlane, delay_s: float) -> None:
        super().__init__(config)
        self.plane = plane
        self.delay_s = delay_s

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.plane.draining:
            self.plane.draining = True  # readiness (HTTP and gRPC) turns false now
            log.info("signal %d: not ready; draining", sig)
            if self.delay_s > 0 and not self.should_exit:
                asyncio.get_running_loop().call_later(self.delay_s, self._exit, sig, frame)
                return
        self._exit(sig, frame)

    def _exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        # uvicorn re-raises a captured signal once it has shut down, so the process dies of SIGTERM;
        # a drained shutdown is a clean one: exit 0 (SIGINT keeps uvicorn's behaviour).
        captured = getattr(self, "_captured_signals", None)
        if isinstance(captured, list):
            captured[:] = [s for s in captured if s != signal.SIGTERM]

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await self._take_backlog()
        await super().shutdown(sockets)

    async def _take_backlog(self) -> None:
        """Connections the kernel has completed on our listening sockets that nobody has accepted yet (a
        busy loop accepts once an iteration): closing a listening socket resets them, so a client that
        connected a moment before the drain got a reset, not an answer (~1% of connections under a load of
        one connection per request). Here the loop stops accepting, and a copy of each listening socket keeps
        it open while its queue is accepted at once, to its end (no await meanwhile: what is queued now,
        not what keeps coming); the copy closes, so what arrives after that is refused; then each taken
        connection is served as any other (its answer says ``connection: close``)."""
        loop = asyncio.get_running_loop()
        copies = []
        for server in self.servers:
            for sock in server.sockets or ():
                with contextlib.suppress(OSError):
                    copies.append(socket.socket(fileno=os.dup(sock.fileno())))
            server.close()
        queued: list[socket.socket] = []
        try:  # no await in between: what is queued now, not what keeps coming while answers go out
            for copy in copies:
                copy.setblocking(False)
                while len(queued) < BACKLOG_MAX:
                    try:
                        queued.append(copy.accept()[0])
                    except OSError:  # BlockingIOError: the queue is empty
                        break
        finally:
            for copy in copies:
                copy.close()
        taken: list[Any] = []
        for conn in queued:
            try:
                _, protocol = await loop.connect_accepted_socket(self._protocol, conn)
            except OSError:
                conn.close()
                continue
            taken.append(protocol)
        if taken:
            log.info("took in %d connections queued at shutdown", len(taken))
        deadline = loop.time() + BACKLOG_WAIT_S
        while any(p.awaits_request() for p in taken) and loop.time() < deadline:
            await asyncio.sleep(0.005)

    def _protocol(self) -> asyncio.Protocol:
        """A connection's protocol, as uvicorn's startup makes one for each accepted connection."""
        config = self.config
        return config.http_protocol_class(  # type: ignore[call-arg]
            config=config, server_state=self.server_state, app_state=self.lifespan.state
        )


def uvicorn_options(settings: Settings, app: Any = None) -> dict[str, Any]:
    """uvicorn's settings; with the app, its protocol answers plain V2 infer requests itself
    (service/transports/http/direct.py), unless CORS is on (its headers come from the ASGI middleware)."""
    from service.transports.http.direct import DirectInfer
    from service.transports.http.limits import http_protocol

    direct = None
    if app is not None and not settings.cors_origins:
        direct = DirectInfer(app.state.dataplane, app.state.metrics)

    return dict(
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        # httptools with header/body timeouts, header caps, a connection cap and a lingering close.
        http=http_protocol(settings, direct),
        # No WebSocket routes: an Upgrade request is answered as plain HTTP. With a WebSocket library
        # installed (uvicorn's "auto"), uvicorn would hold it for an upgrade that no route takes.
        ws="none",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.drain_timeout_s) or None,
    )
