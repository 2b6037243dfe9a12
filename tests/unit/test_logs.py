"""The access line's direct writer: used while logging is as ``configure`` left it, checked once a loop step."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator

import pytest

from service import logs
from service.access_log import access_log


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch) -> Iterator[logs.AccessLine]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    stderr = io.StringIO()
    monkeypatch.setattr("sys.stderr", stderr)
    logs.configure("info", "text")
    assert logs.access_line is not None
    yield logs.access_line
    root.handlers[:], root.level = saved
    access_log.handlers[:] = []


def _alone(line: logs.AccessLine) -> logs.AccessLine:
    """The root logger as configure left it (pytest adds its capture handlers to it for each test's call)."""
    logging.getLogger().handlers[:] = [line.handler]
    return line


def test_a_handler_added_to_the_access_log_takes_its_lines_from_the_next_loop_step(
    configured: logs.AccessLine,
) -> None:
    line = _alone(configured)

    async def steps() -> tuple[bool, bool, bool]:
        first = line.active(access_log)
        line.write_text("one")  # the step's write is scheduled for its end
        access_log.addHandler(logging.NullHandler())
        same_step = line.active(access_log)  # checked once a step: this step's lines go one way
        await asyncio.sleep(0)  # the step ends: its lines are written
        return first, same_step, line.active(access_log)

    first, same_step, next_step = asyncio.run(steps())
    assert (first, same_step, next_step) == (True, True, False)
    assert "modelserve.access: one" in line.stream.stream.getvalue()


def test_off_the_event_loop_every_line_checks_again(configured: logs.AccessLine) -> None:
    line = _alone(configured)
    assert line.active(access_log)
    line.write_text("two")  # no loop: written at once
    access_log.addHandler(logging.NullHandler())
    assert not line.active(access_log)
