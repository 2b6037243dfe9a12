"""What a gRPC method and its handler see: the method table's entries and the call's context (the subset of
grpc.aio's ServicerContext our handlers use), and the abort that ends a call with a status.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class Abort(Exception):
    """Ends a call with a status (``context.abort``)."""

    def __init__(self, code: int, details: str, metadata: Any = ()) -> None:
        super().__init__(details)
        self.code, self.details, self.metadata = code, details, tuple(metadata or ())


@dataclass(frozen=True)
class Method:
    """One RPC: unary-unary (``handler(request, context)`` returns the answer) or stream-stream
    (``handler(requests, context)`` is an async iterator of answers)."""

    streaming: bool
    deserialize: Callable[[bytes], Any]
    serialize: Callable[[Any], bytes]
    handler: Callable[..., Any]


class Context:
    """What a handler sees of its call: the subset of grpc.aio.ServicerContext our handlers use."""

    __slots__ = ("_deadline", "_metadata", "after", "trailing")

    def __init__(self, metadata: list[tuple[str, Any]], deadline: float | None) -> None:
        self._metadata = metadata
        self._deadline = deadline
        self.trailing: tuple[tuple[str, Any], ...] = ()
        self.after: list[Callable[[], None]] = []

    def after_answer(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the call's answer is written (or the call ended without one): work the
        client need not wait for (its access line and metrics). Not in grpc.aio: a handler checks."""
        self.after.append(callback)

    def invocation_metadata(self) -> tuple[tuple[str, Any], ...]:
        return tuple(self._metadata)

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def set_trailing_metadata(self, metadata: Any) -> None:
        self.trailing = tuple(metadata)

    async def abort(self, code: Any, details: str = "", trailing_metadata: Any = ()) -> None:
        raise Abort(wire_code(code), details, trailing_metadata)


def wire_code(code: Any) -> int:
    """A grpc.StatusCode (value (number, name)) or a plain number."""
    value = getattr(code, "value", code)
    return int(value[0] if isinstance(value, tuple) else value)
