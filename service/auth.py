"""API keys for every transport: inference keys and an admin key, checked by what a call needs.

A transport says what a call is (``Access``): HTTP from the path (service/transports/http/middleware.py),
gRPC from the RPC (service/transports/grpc/server.py); the same rules decide for both.
"""

from __future__ import annotations

import hmac
from typing import Literal

from service.config import Settings
from service.context import Auth
from service.errors import Forbidden, ServiceError, Unauthorized

# What a call needs: "open" nothing (docs, metrics, the playground, as configured), "health" nothing
# unless MODELSERVE_AUTH_HEALTH, "inference" an inference key, "admin" the admin key (repository API).
Access = Literal["open", "health", "inference", "admin"]


class ApiKeys:
    """Inference keys and an admin key; health may stay open."""

    def __init__(self, settings: Settings) -> None:
        self.keys = [k.encode() for k in settings.api_keys]
        self.admin = settings.admin_key.encode() if settings.admin_key else None
        self.health_open = not settings.auth_health

    @property
    def enabled(self) -> bool:
        return bool(self.keys or self.admin)

    def check(self, access: Access, headers: dict[bytes, bytes]) -> ServiceError | None:
        return self.authenticate(access, headers)[1]

    def authenticate(self, access: Access, headers: dict[bytes, bytes]) -> tuple[Auth, ServiceError | None]:
        """What the call's key (if any) allows, and the error to answer when refused.
        (The allowed answers are constant tuples: no allocation on the hot path.)"""
        if not self.enabled:
            return ("off", None)
        if access == "open" or (access == "health" and self.health_open):
            return ("open", None)
        key = presented_key(headers)
        is_admin = key is not None and self.admin is not None and hmac.compare_digest(key, self.admin)
        if access == "admin":
            if is_admin:
                return ("admin", None)
            if self.admin is None:
                return "denied", Forbidden(
                    "repository endpoints are disabled: set MODELSERVE_ADMIN_KEY to use them"
                )
            if key is None:
                return "denied", Unauthorized("the repository endpoints need the admin key")
            return "denied", Forbidden("the repository endpoints need the admin key, not an inference key")
        if is_admin:
            return ("admin", None)
        if not self.keys:
            return ("off", None)  # only an admin key is set: inference stays open
        if key is None:
            return "denied", Unauthorized(
                "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
            )
        # Compare with every key, so the time taken does not tell which one came close.
        matched = False
        for candidate in self.keys:
            matched |= hmac.compare_digest(key, candidate)
        return ("key", None) if matched else ("denied", Unauthorized("invalid API key"))


def presented_key(headers: dict[bytes, bytes]) -> bytes | None:
    """The key in ``Authorization: Bearer`` or ``X-API-Key`` (HTTP headers and gRPC metadata alike)."""
    auth = headers.get(b"authorization")
    if auth is not None and auth[:7].lower() == b"bearer ":
        return auth[7:].strip()
    return headers.get(b"x-api-key")
