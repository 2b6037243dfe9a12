"""ConnectionBalancer (service/transports/balance.py) with two workers in one process: real TCP connections on
loopback, real descriptor passing; which worker takes a connection follows the counts they publish."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from service.transports.balance import ConnectionBalancer


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        yield sock


def connect(listener: socket.socket, hello: bytes) -> tuple[socket.socket, socket.socket]:
    """(the client's end, the server's accepted end), the client's first bytes sent and not yet read."""
    client = socket.create_connection(listener.getsockname(), timeout=5)
    client.sendall(hello)
    accepted, _ = listener.accept()
    return client, accepted


async def until(condition: Callable[[], object], what: str) -> None:
    for _ in range(500):  # 5 s
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not within 5 s: {what}")


def test_a_new_connection_goes_to_the_worker_holding_fewer_and_is_read_there_from_its_first_byte(
    tmp_path: Path, listener: socket.socket
) -> None:
    async def main() -> None:
        sent: list[int] = []
        first = ConnectionBalancer(tmp_path, "grpc", 0, 2, on_hand_over=lambda: sent.append(1))
        second = ConnectionBalancer(tmp_path, "grpc", 1, 2)
        taken_by_first: list[socket.socket] = []
        taken_by_second: list[socket.socket] = []
        first.start(taken_by_first.append)
        second.start(taken_by_second.append)
        held = []
        try:
            # Even (0 and 0): the worker that accepted keeps it.
            client, accepted = connect(listener, b"one")
            held += [client, accepted]
            assert not first.hand_over(accepted)
            first.publish(1)
            # The first holds 1, the second 0: the next goes to the second, its bytes still unread.
            client, accepted = connect(listener, b"two")
            held.append(client)
            assert first.hand_over(accepted) and sent == [1]
            accepted.close()  # the first's copy: the connection lives on in the message
            await until(lambda: taken_by_second, "the second worker takes it")
            moved = taken_by_second[0]
            held.append(moved)
            moved.setblocking(True)
            moved.settimeout(5)
            assert moved.recv(16) == b"two"
            moved.sendall(b"answered by the second")
            assert client.recv(64) == b"answered by the second"
            assert taken_by_first == []
            # Level again (1 and 1, once the second says so): kept.
            second.publish(1)
            client, accepted = connect(listener, b"three")
            held += [client, accepted]
            assert not first.hand_over(accepted)
            first.publish(2)
            # A worker that drains takes none, however few it holds.
            second.stop()
            client, accepted = connect(listener, b"four")
            held += [client, accepted]
            assert not first.hand_over(accepted) and sent == [1]
            accepted.setblocking(True)
            accepted.settimeout(5)
            assert accepted.recv(16) == b"four"
        finally:
            for sock in held:
                sock.close()
            first.close()
            second.close()

    asyncio.run(asyncio.wait_for(main(), 30))


def test_a_worker_that_has_not_started_takes_none(tmp_path: Path, listener: socket.socket) -> None:
    """A slot of zeros (not started, or replaced and still loading) is never chosen."""

    async def main() -> None:
        only = ConnectionBalancer(tmp_path, "grpc", 0, 2)
        only.start(lambda sock: sock.close())
        only.publish(5)
        client, accepted = connect(listener, b"x")
        try:
            assert not only.hand_over(accepted)
        finally:
            client.close()
            accepted.close()
            only.close()

    asyncio.run(asyncio.wait_for(main(), 30))
