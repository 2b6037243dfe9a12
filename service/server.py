"""Run the app under uvicorn (uvloop + httptools), with flags layered over MODELSERVE_* settings.

One worker: this process serves. Several ("auto" is one per usable CPU): service/supervisor.py forks them.
SIGTERM: readiness turns false at once; after ``shutdown_delay_s`` uvicorn stops accepting, lets the
requests it holds finish, then the lifespan drains the batchers (bounded by ``drain_timeout_s``); exit 0.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from types import FrameType
from typing import TYPE_CHECKING, Any

import uvicorn

from service import logs
from service.config import Settings
from service.cpus import plan

if TYPE_CHECKING:  # no work at import time: the app is imported after the settings
    from service.dataplane import DataPlane

log = logging.getLogger(__name__)


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


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    from service.protocol.limits import http_protocol

    return dict(
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        # httptools with header/body timeouts, header caps, a connection cap and a lingering close.
        http=http_protocol(settings),
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.drain_timeout_s) or None,
    )


def _storage_ok(settings: Settings) -> bool:
    """Fail at once, in words, when the model storage cannot be read (bad credentials, no bucket, no
    endpoint), before any worker starts: a clear exit, not a restart loop or a hang."""
    from service.storage import StorageError, is_uri, open_storage

    if not is_uri(settings.models_dir):
        return True
    try:
        open_storage(settings.models_dir, settings.models_cache_dir).check()
    except StorageError as e:
        logs.configure(settings.log_level, settings.log_format)
        log.error("cannot start: %s", e)
        return False
    return True


def run(**overrides: Any) -> int:
    """Start serving; ``overrides`` (from CLI flags) win over the environment. The exit code."""
    for key, value in overrides.items():
        os.environ[f"MODELSERVE_{key.upper()}"] = str(value)
    settings = Settings()
    if not _storage_ok(settings):
        return 2
    workers = plan(settings.workers, settings.intra_op_threads)
    if workers.workers > 1:
        from service.supervisor import Supervisor

        logs.configure(settings.log_level, settings.log_format, worker="supervisor")
        return Supervisor(settings, workers).run()
    logs.configure(settings.log_level, settings.log_format)
    from service.app import create_app, serving_stack  # after the settings: no work at import time

    settings = settings.model_copy(update={"intra_op_threads": workers.intra_op_threads})
    app = create_app(settings)
    plane: DataPlane = app.state.dataplane
    DrainingServer(
        uvicorn.Config(serving_stack(app), **uvicorn_options(settings)), plane, settings.shutdown_delay_s
    ).run()
    return 0
