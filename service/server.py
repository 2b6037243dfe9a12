"""Run the app under uvicorn (uvloop + httptools), with flags layered over MODELSERVE_* settings."""

from __future__ import annotations

import logging
import os
from typing import Any

import uvicorn

from service.config import Settings


def run(**overrides: Any) -> None:
    """Start serving; ``overrides`` (from CLI flags) win over the environment."""
    # Workers are separate processes that build their own Settings: hand them the overrides by env.
    for key, value in overrides.items():
        os.environ[f"MODELSERVE_{key.upper()}"] = str(value)
    settings = Settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(
        "service.app:create_app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http="httptools",
        log_level=settings.log_level,
        access_log=False,
        timeout_graceful_shutdown=30,
    )
