"""Start serving: the settings (flags layered over MODELSERVE_* settings), then one process or several.

One worker: this process serves (service/process/serving.py). Several ("auto" is one per usable CPU):
service/process/supervisor.py forks them.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import TYPE_CHECKING, Any

import uvicorn

from service import logs
from service.config import Settings
from service.process.cpus import plan
from service.process.ports import claim_grpc_port
from service.process.serving import DrainingServer, uvicorn_options

if TYPE_CHECKING:  # no work at import time: the app is imported after the settings
    from service.dataplane import DataPlane

log = logging.getLogger(__name__)


def _storage_ok(settings: Settings) -> bool:
    """Fail at once, in words, when the model storage cannot be read (bad credentials, no bucket, no
    endpoint), before any worker starts: a clear exit, not a restart loop or a hang."""
    from service.repository.download import is_uri, open_storage
    from service.repository.storage import StorageError

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
        from service.process.supervisor import Supervisor

        logs.configure(settings.log_level, settings.log_format, worker="supervisor")
        return Supervisor(settings, workers).run()
    logs.configure(settings.log_level, settings.log_format)
    try:  # before the models load: a taken gRPC port stops the start at once, and no other server takes it
        grpc_claim = claim_grpc_port(settings.host, settings.grpc_port, 1)
    except OSError as e:
        log.error("%s", e.strerror)
        return 1
    from service.app import create_app, serving_stack  # after the settings: no work at import time

    settings = settings.model_copy(update={"intra_op_threads": workers.intra_op_threads})
    app = create_app(settings)
    plane: DataPlane = app.state.dataplane
    try:
        DrainingServer(
            uvicorn.Config(serving_stack(app), **uvicorn_options(settings, app)),
            plane,
            settings.shutdown_delay_s,
        ).run()
    finally:
        if grpc_claim is not None:
            grpc_claim.close()
    if any(t.daemon and t.is_alive() for t in threading.enumerate()):
        # A batch the drain timeout cut short is still inside onnxruntime on its (daemon) thread: tearing
        # the interpreter down under it aborts the process (SIGABRT). Leave without the teardown, as a
        # worker of several does; the drain and the lifespan's shutdown are done.
        logging.shutdown()  # flushes the handlers, held access lines included (no loop runs now)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0
