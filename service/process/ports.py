"""This server's claim on its gRPC port, taken at start and held for its life, so that a second server on a
used port fails at once with "address already in use" instead of sharing it. (HTTP needs no more than the
supervisor's probe: it binds every worker's socket itself, at once.)

SO_REUSEPORT, which the workers need to share a port (service/process/supervisor.py; grpc's ``grpc.so_reuseport``),
lets any process of the same user join the port, a second modelserve included, and the kernel then
splits the connections between the two. So before any SO_REUSEPORT socket is bound:

1. A lock, an abstract Unix socket named after the port: binding it is atomic, it lives in the same
   network namespace as the port, and it goes when the last process holding it does. Two servers starting
   at the same moment cannot both pass (a check-then-bind alone would let both through).
2. A probe, a plain bind of the port: fails if any program listens on it, or holds it without
   SO_REUSEPORT (what the lock cannot see: another server, an older modelserve).
3. For a port the workers will bind themselves (gRPC), a placeholder: the port bound with SO_REUSEPORT and
   never listened on, held by the supervisor. It takes no connections, and keeps every other program's bind
   off the port until the workers listen, and while all of them are being replaced.
"""

from __future__ import annotations

import errno
import socket
import sys


class PortClaim:
    """The sockets that hold a port for this server; ``close`` at exit (or let the process end)."""

    def __init__(self, port: int, held: list[socket.socket]) -> None:
        self.port = port
        self._held = held

    def close(self) -> None:
        for sock in self._held:
            sock.close()


def claim(host: str, port: int, placeholder: bool = False) -> PortClaim:
    """Claim ``port`` on ``host`` (0: a free port, resolved); OSError EADDRINUSE when it is taken."""
    held: list[socket.socket] = []
    try:
        if port:
            held += _lock(port)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            # SO_REUSEADDR: a port left in TIME_WAIT by a server that just stopped is free.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
            resolved = int(probe.getsockname()[1])
        if not port:
            held += _lock(resolved)
        if placeholder:
            # SO_REUSEPORT so the workers' sockets join; no SO_REUSEADDR, so any other bind conflicts.
            sock = socket.socket(family, socket.SOCK_STREAM)
            held.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, resolved))
    except BaseException:
        for sock in held:
            sock.close()
        raise
    return PortClaim(resolved, held)


def _lock(port: int) -> list[socket.socket]:
    """The port's lock ([] where abstract Unix sockets do not exist: Linux only)."""
    if not sys.platform.startswith("linux"):
        return []
    lock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        lock.bind(f"\0modelserve-port-{port}")
    except OSError as e:
        lock.close()
        if e.errno != errno.EADDRINUSE:
            return []
        raise OSError(
            errno.EADDRINUSE, f"address already in use (another modelserve holds port {port})"
        ) from None
    return [lock]


def claim_grpc_port(host: str, port: int, workers: int) -> PortClaim | None:
    """The gRPC port's claim (None when gRPC is off); with several workers, a placeholder holds it for them."""
    if not port:
        return None
    try:
        return claim(host, port, placeholder=workers > 1)
    except OSError as e:
        raise OSError(e.errno, f"cannot listen on {host}:{port} for gRPC: {e.strerror or e}") from None
