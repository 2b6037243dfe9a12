"""Logging setup: JSON lines (one object per line) or plain text, chosen by MODELSERVE_LOG_FORMAT."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson

# LogRecord attributes that are not extra fields.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName", "color_message"}


class JsonFormatter(logging.Formatter):
    """{"ts", "level", "logger", ["worker",] "msg", ...extra fields}; exceptions as "exc"."""

    def __init__(self, worker: str | None = None) -> None:
        super().__init__()
        self.worker = worker

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        if self.worker is not None:
            doc["worker"] = self.worker
        doc["msg"] = record.getMessage()
        for key, value in record.__dict__.items():
            if key not in _STANDARD:
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


def configure(level: str, fmt: str, worker: str | None = None) -> None:
    """Route the root logger (and uvicorn's) to stderr in the chosen format; with several worker
    processes, ``worker`` names the process on every line ("0", "1", ... or "supervisor")."""
    # The access log writes a line per request: skip what no line of ours prints (the logging HOWTO's
    # "Optimization" section). The caller lookup alone walks the stack on every record.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter(worker))
    else:
        # The tag is part of the format string, not a per-record filter: nothing more per line.
        tag = f"[{worker}] " if worker is not None else ""
        handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s {tag}%(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
