"""BodyDeadline's reasons at shutdown, on a clock the test moves (no sleeping)."""

from __future__ import annotations

import asyncio
from typing import cast

from service.transports.http.deadline import BodyDeadline


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def time(self) -> float:
        return self.now


def test_why_a_draining_server_stopped_waiting_for_a_body() -> None:
    clock = Clock()
    deadline = BodyDeadline(cast(asyncio.AbstractEventLoop, clock), timeout_s=60, stalled_s=5)
    clock.now += 10
    deadline.drain(30)  # the drain ends at 140, the body timeout at 160
    clock.now = 115  # nothing since 100: stalled
    assert deadline.shutdown_reason() == "the request body stopped arriving (nothing for 5 s)"
    clock.now = 140
    assert deadline.shutdown_reason() == "the request body did not arrive within the drain timeout (30 s)"
    clock.now = 160
    assert deadline.shutdown_reason() is None  # the body timeout's own 408


def test_before_the_drain_a_timeout_is_the_body_timeout() -> None:
    clock = Clock()
    deadline = BodyDeadline(cast(asyncio.AbstractEventLoop, clock), timeout_s=60, stalled_s=5)
    clock.now += 60
    assert deadline.shutdown_reason() is None
