"""Logging setup: JSON lines (one object per line) or plain text, chosen by MODELSERVE_LOG_FORMAT."""

from __future__ import annotations

import asyncio
import atexit
import logging
import sys
import threading
import time
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


class DeferredStream:
    """A text stream whose ``flush`` on the event loop's thread waits for the end of the loop step: the
    lines written meanwhile (under load, a batch's worth of access lines) leave in one write, not one
    write each. Elsewhere (startup, other threads, no loop) it flushes at once.

    Not a timer (tried: every 10 ms saved one write per request at one request at a time): a line must be
    in the log once its request is answered and the loop has moved on, which operators and tests rely on.
    """

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._scheduled = False
        self.flushes = 0  # writes so far: one a loop step with lines (AccessLine.active's step)

    def write(self, text: str) -> int:
        with self._lock:
            self._lines.append(text)
        return len(text)

    def flush(self) -> None:
        if self._scheduled:  # the step's write is due: it takes this line too (no loop lookup per line)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not the loop's thread
            self.flush_now()
            return
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self.flush_now)

    def flush_now(self) -> None:
        with self._lock:
            self._scheduled = False
            self.flushes += 1
            lines, self._lines = self._lines, []
        if lines:
            try:
                self.stream.write("".join(lines))
                self.stream.flush()
            except (OSError, ValueError):  # stderr closed (shutdown): nothing to tell
                pass


class AccessLine:
    """The access log's line written straight to the configured stream, formatted as the root handler
    formats any record (JSON or text), without a LogRecord: the logging machinery cost ~20 µs a line.
    Used only while logging is as ``configure`` left it (``active``); otherwise lines go through logging."""

    def __init__(
        self, handler: logging.Handler, stream: DeferredStream, fmt: str, worker: str | None
    ) -> None:
        self.handler = handler
        self.stream = stream
        self.json = fmt == "json"
        self.worker = worker
        self.tag = f"[{worker}] " if worker is not None else ""
        self._second = -1
        self._stamp = ""
        self._checked: tuple[int, logging.Logger | None] = (-1, None)  # (step, logger) of the last check
        self._verdict = False

    def active(self, logger: logging.Logger) -> bool:
        """Whether lines of ``logger`` may skip logging: checked once a loop step (a configuration changed
        since applies from the next step), not once a line."""
        checked = self._checked
        if checked[0] == self.stream.flushes and checked[1] is logger:
            return self._verdict
        root = logging.root
        self._verdict = (
            not logger.handlers
            and not logger.filters
            and logger.propagate
            and len(root.handlers) == 1
            and root.handlers[0] is self.handler
            and not root.filters
            and logger.isEnabledFor(logging.INFO)
        )
        self._checked = (self.stream.flushes, logger)
        return self._verdict

    def write(self, fields: dict[str, Any]) -> None:
        """A JSON line of ``fields``, as JsonFormatter would write the record."""
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(time.time(), UTC).isoformat(timespec="milliseconds"),
            "level": "info",
            "logger": "modelserve.access",
        }
        if self.worker is not None:
            doc["worker"] = self.worker
        doc["msg"] = "request"
        doc.update(fields)
        self.stream.write(orjson.dumps(doc, default=str).decode() + "\n")
        self.stream.flush()

    def write_text(self, text: str) -> None:
        """A text line, as the text formatter would write the record (its time to the second is made once
        a second: strftime and localtime per line were a tenth of the line's cost)."""
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
        self.stream.write(
            f"{self._stamp},{int(now * 1000) % 1000:03d} INFO {self.tag}modelserve.access: {text}\n"
        )
        self.stream.flush()


# Set by configure(): the access log's direct writer.
access_line: AccessLine | None = None


def flush_pending() -> None:
    """Write the lines still held back (before an os._exit, which skips atexit)."""
    if access_line is not None:
        access_line.stream.flush_now()


def configure(level: str, fmt: str, worker: str | None = None) -> None:
    """Route the root logger (and uvicorn's) to stderr in the chosen format; with several worker
    processes, ``worker`` names the process on every line ("0", "1", ... or "supervisor")."""
    # The access log writes a line per request: skip what no line of ours prints (the logging HOWTO's
    # "Optimization" section). The caller lookup alone walks the stack on every record.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    global access_line
    stream = DeferredStream(sys.stderr)
    handler = logging.StreamHandler(stream)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(worker))
    else:
        # The tag is part of the format string, not a per-record filter: nothing more per line.
        tag = f"[{worker}] " if worker is not None else ""
        handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s {tag}%(name)s: %(message)s"))
    access_line = AccessLine(handler, stream, fmt, worker)
    atexit.register(stream.flush_now)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
