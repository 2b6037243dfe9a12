"""The gRPC port claim (service/process/ports.py) on real loopback sockets."""

from __future__ import annotations

import errno
import socket

import pytest

from service.process.ports import claim
from tests.conftest import free_port


def _bind(port: int, reuseport: bool, listen: bool = True) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuseport:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    if listen:
        sock.listen()
    return sock


def test_a_second_claim_fails_even_before_anything_listens() -> None:
    """The race two servers starting together would run: the first has claimed, bound nothing yet."""
    port = free_port()
    first = claim("127.0.0.1", port)
    try:
        with pytest.raises(OSError) as caught:
            claim("127.0.0.1", port, placeholder=True)
        assert caught.value.errno == errno.EADDRINUSE and "another modelserve" in str(caught.value)
    finally:
        first.close()
    claim("127.0.0.1", port).close()  # released with its holder


def test_the_placeholder_lets_the_workers_share_the_port_and_nobody_else() -> None:
    port = free_port()
    held = claim("127.0.0.1", port, placeholder=True)
    try:
        workers = [_bind(port, reuseport=True) for _ in range(2)]  # what grpc.so_reuseport=1 does
        with pytest.raises(OSError) as caught:  # another program, or one modelserve process alone
            _bind(port, reuseport=False)
        assert caught.value.errno == errno.EADDRINUSE
        for w in workers:
            w.close()
        with pytest.raises(OSError):  # every worker gone (being replaced): the placeholder still holds it
            _bind(port, reuseport=False)
        probe = socket.socket()
        with pytest.raises(OSError):  # it takes no connections: they would wait for nobody
            probe.connect(("127.0.0.1", port))
        probe.close()
    finally:
        held.close()


def test_a_port_another_program_listens_on_is_refused() -> None:
    other = _bind(0, reuseport=True)  # SO_REUSEPORT, as another modelserve's workers bind it
    try:
        with pytest.raises(OSError) as caught:
            claim("127.0.0.1", other.getsockname()[1], placeholder=True)
        assert caught.value.errno == errno.EADDRINUSE
    finally:
        other.close()
