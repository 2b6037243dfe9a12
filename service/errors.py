"""The error hierarchy: every error the service answers is a ServiceError with its status code."""

from __future__ import annotations


class ServiceError(Exception):
    """Base class; rendered by one handler as ``{"error": message}`` with ``status_code``."""

    status_code = 500

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class BadRequest(ServiceError):
    """Malformed input: unparseable JSON, an empty body, a corrupt image."""

    status_code = 400


class Unauthorized(ServiceError):
    """A missing or wrong API key."""

    status_code = 401

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(ServiceError):
    """A valid key without the right to this endpoint."""

    status_code = 403


class NotFound(ServiceError):
    """An unknown model or version."""

    status_code = 404


class RequestTimeout(ServiceError):
    """The request body did not arrive in time; the connection closes after the answer."""

    status_code = 408

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"Connection": "close"})


class PayloadTooLarge(ServiceError):
    """A body, image or request past a configured limit."""

    status_code = 413


class UnsupportedMediaType(ServiceError):
    """A content type the endpoint or model does not take."""

    status_code = 415


class InvalidInput(ServiceError):
    """Well-formed but wrong for the model: shape, dtype, missing input, empty text."""

    status_code = 422


class Unimplemented(ServiceError):
    """A request feature the server does not implement (a transfer coding it cannot undo: RFC 9112 6.1)."""

    status_code = 501


class Overloaded(ServiceError):
    """The model's queue is full, or the server is not ready; the client should retry."""

    status_code = 503

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


class QueueTimeout(ServiceError):
    """A request outlived its timeout before it ran."""

    status_code = 504


class InferenceFailed(ServiceError):
    """The model raised while running a batch: our fault, not the client's."""

    status_code = 500


class ClientGone(ServiceError):
    """The client closed the connection before its answer was ready (nginx's 499); nobody reads it."""

    status_code = 499


class LoadError(ValueError):
    """A model version that cannot load; its message is safe to answer: it names no path and quotes no
    library (the detail goes to the log)."""
