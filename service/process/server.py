"""Start serving: the settings (flags layered over MODELSERVE_* settings), then one process or several.

One worker: this process serves (service/process/serving.py). Several ("auto" is one per usable CPU):
service/process/supervisor.py forks them.
"""

from __future__ import annotations

import logging
import os
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


def run(**overrides: Any) -> int:
    """Start serving; ``overrides`` (from CLI flags) win over the environment. The exit code."""
    for key, value in overrides.items():
        os.environ[f"MODELSERVE_{key.upper()}"] = str(value)
    settings = Settings()
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
            uvicorn.Config(serving_stack(app), **uvicorn_options(settings)), plane, settings.shutdown_delay_s
        ).run()
    finally:
        if grpc_claim is not None:
            grpc_claim.close()
    return 0
