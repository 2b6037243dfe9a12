"""One serving process under uvicorn (uvloop + httptools): its options, and the SIGTERM that drains it.

SIGTERM: readiness turns false at once; after ``shutdown_delay_s`` uvicorn stops accepting, lets the
requests it holds finish, then the lifespan drains the batchers (bounded by ``drain_timeout_s``); exit 0.
Used by service/process/server.py (one process) and worker.py (each of several).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from types import FrameType
from typing import TYPE_CHECKING, Any

import uvicorn

from service.config import Settings

if TYPE_CHECKING:
    from service.dataplane import DataPlane

log = logging.getLogger("service.process.server")


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
