"""One access-log line and the request metrics, for every transport (HTTP's middleware, the gRPC adapter)."""

from __future__ import annotations

import itertools
import logging
import os
import re

from service import logs
from service.config import Settings
from service.context import RequestContext
from service.metrics import Metrics

access_log = logging.getLogger("modelserve.access")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


def valid_request_id(value: str | None) -> str:
    """The client's X-Request-ID (or gRPC x-request-id) when it is 1-128 safe characters, else a fresh one."""
    return value if value is not None and _REQUEST_ID.fullmatch(value) else fresh_request_id()


# Fresh ids: 32 hex digits, a random 64-bit prefix per process (new in every forked worker) and a
# counter; unique like uuid4's, without its getrandom() call per request.
_prefix = ""
_counter = itertools.count()


def _new_prefix() -> None:
    global _prefix, _counter
    _prefix, _counter = os.urandom(8).hex(), itertools.count()


_new_prefix()
os.register_at_fork(after_in_child=_new_prefix)


def fresh_request_id() -> str:
    return f"{_prefix}{next(_counter):016x}"


class AccessLog:
    """Records each answered request: its model's metrics (or the unlabelled counter) and the log line."""

    def __init__(self, settings: Settings, metrics: Metrics | None) -> None:
        self.metrics = metrics
        self.enabled = settings.access_log
        self.json_logs = settings.log_format == "json"

    def record(
        self, ctx: RequestContext, method: str, path: str, status: int, latency_s: float, inference: bool
    ) -> None:
        """``inference``: a call that counts in the request metrics even when it resolved no model."""
        mv = ctx.mv
        if self.metrics is not None:
            if mv is not None:
                if mv.metrics is not None:
                    mv.metrics.on_request(status, latency_s, ctx.protocol)
            elif inference:
                self.metrics.unlabelled_request(status, ctx.protocol)
        if self.enabled:
            self.write(ctx, method, path, status, latency_s)

    def write(self, ctx: RequestContext, method: str, path: str, status: int, latency_s: float) -> None:
        mv = ctx.mv
        direct = logs.access_line
        if not self.json_logs:
            text = (
                f"{method} {path} {status} {latency_s * 1000:.2f}ms id={ctx.request_id} "
                f"model={mv.name if mv is not None else None}:{mv.version if mv is not None else None} "
                f"rows={ctx.rows} batch={ctx.batch_rows}"
            )
            if direct is not None and not direct.json and direct.active(access_log):
                direct.write_text(text)  # the same line, without a LogRecord
            else:
                access_log.info("%s", text)
            return
        fields = {
            "request_id": ctx.request_id,
            "protocol": ctx.protocol,
            "method": method,
            "path": path,
            "status": status,
            "latency_ms": round(latency_s * 1000, 3),
            "model": mv.name if mv is not None else None,
            "version": str(mv.version) if mv is not None else None,
            "rows": ctx.rows,
            "batch_size": ctx.batch_rows,
        }
        if direct is not None and direct.json and direct.active(access_log):
            direct.write(fields)
        else:
            access_log.info("request", extra=fields)
