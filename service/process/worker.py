"""One worker process of several: its identity, its logs, its app, served on the socket its slot owns."""

from __future__ import annotations

import socket

import uvicorn

from service import logs
from service.app import create_app, serving_stack
from service.config import Settings
from service.process.group import WorkerGroup, WorkerIdentity
from service.process.serving import DrainingServer, uvicorn_options

__all__ = ["WorkerIdentity", "serve"]


def serve(identity: WorkerIdentity, sock: socket.socket, intra_op_threads: int) -> int:
    """Run until SIGTERM has drained this worker; the exit code for the supervisor."""
    settings = Settings()
    logs.configure(settings.log_level, settings.log_format, worker=identity.label)
    settings = settings.model_copy(update={"intra_op_threads": intra_op_threads})
    app = create_app(settings, group=WorkerGroup(identity))
    config = uvicorn.Config(serving_stack(app), **uvicorn_options(settings, app))
    server = DrainingServer(config, app.state.dataplane, settings.shutdown_delay_s)
    server.run(sockets=[sock])
    return 0 if server.started else 3
