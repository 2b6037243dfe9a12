"""One access-log line and the request metrics, for every transport (HTTP's middleware, the gRPC adapter)."""

from __future__ import annotations

import logging
import re
import uuid

from service.config import Settings
from service.context import RequestContext
from service.metrics import Metrics

access_log = logging.getLogger("modelserve.access")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


def valid_request_id(value: str | None) -> str:
    """The client's X-Request-ID (or gRPC x-request-id) when it is 1-128 safe characters, else a fresh one."""
    return value if value is not None and _REQUEST_ID.fullmatch(value) else uuid.uuid4().hex


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
        if self.json_logs:
            access_log.info("request", extra=fields)
        else:
            access_log.info(
                "%s %s %d %.2fms id=%s model=%s:%s rows=%s batch=%s",
                method,
                path,
                status,
                fields["latency_ms"],
                ctx.request_id,
                fields["model"],
                fields["version"],
                ctx.rows,
                ctx.batch_rows,
            )
