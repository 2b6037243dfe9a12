"""Evens long-lived connections over the workers: a worker that holds more than another hands a new one over.

Why: SO_REUSEPORT hashes each connection to a worker by its addresses. That is even over many connections,
but a gRPC client puts all of its calls on one HTTP/2 connection, and a load generator opens few of them
(perf_analyzer: 1, 3 and 11 at concurrency 1, 16 and 64). Three connections fell 3:0 about one time in
four, and the other worker idled for the whole run: the same tree measured 3,132 and 4,534 gRPC infer/s.

How: each worker publishes how many connections it holds in a shared array (one 8-byte slot each, written
only by its owner, read by all; a stale read costs one uneven placement, never a wrong answer). A worker
that accepts a connection while holding more than the least loaded taking worker sends the socket to it
over a Unix datagram socket (SCM_RIGHTS) before reading a byte, and closes its own copy: the client's
bytes wait in the kernel, and the other worker reads them from the start. If the send fails (the other
worker is gone, restarting or full), the worker keeps the connection. A handed connection is never handed
again. A slot holds count + 1; 0 says the worker takes none (not started, or draining).
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import logging
import mmap
import os
import socket
import struct
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

_SLOT = struct.Struct("<q")
_TOKEN = b"c"  # one byte carries the descriptor


class ConnectionBalancer:
    """One listener's connections evened over ``count`` workers; this is worker ``index``."""

    def __init__(
        self,
        run_dir: Path,
        name: str,
        index: int,
        count: int,
        on_hand_over: Callable[[], object] | None = None,
    ) -> None:
        self.index, self.count = index, count
        self._on_hand_over = on_hand_over  # counts the connections this worker sent (a metric)
        self._inbox_path = run_dir / f"w{index}.{name}.sock"
        self._peer_paths = [str(run_dir / f"w{i}.{name}.sock") for i in range(count)]
        fd = os.open(run_dir / f"{name}.connections", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < _SLOT.size * count:
                os.ftruncate(fd, _SLOT.size * count)  # zeros: no worker takes any until it says so
            self._slots = mmap.mmap(fd, _SLOT.size * count)
        finally:
            os.close(fd)
        self._inbox: socket.socket | None = None
        self._outbox = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._outbox.setblocking(False)
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, adopt: Callable[[socket.socket], object]) -> None:
        """Take connections handed over (``adopt(sock)`` serves one) and say this worker holds none yet."""
        self._loop = asyncio.get_running_loop()
        self._inbox_path.unlink(missing_ok=True)  # the inbox of the worker this one replaces
        inbox = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        inbox.bind(str(self._inbox_path))
        inbox.setblocking(False)
        self._inbox = inbox
        self._loop.add_reader(inbox.fileno(), self._receive, adopt)
        self.publish(0)

    def stop(self) -> None:
        """Take no more: other workers stop sending, and what was sent but not read is closed with the inbox."""
        _SLOT.pack_into(self._slots, _SLOT.size * self.index, 0)
        if self._inbox is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._inbox.fileno())
            self._inbox.close()
            self._inbox = None
            self._inbox_path.unlink(missing_ok=True)

    def publish(self, held: int) -> None:
        if self._inbox is not None:
            _SLOT.pack_into(self._slots, _SLOT.size * self.index, held + 1)

    def hand_over(self, sock: socket.socket) -> bool:
        """Send a just-accepted connection to a worker holding fewer; True when sent (close this copy)."""
        if self._inbox is None:
            return False
        mine = _SLOT.unpack_from(self._slots, _SLOT.size * self.index)[0]
        best, target = mine, -1
        for i in range(self.count):
            held = _SLOT.unpack_from(self._slots, _SLOT.size * i)[0]
            if i != self.index and 0 < held < best:
                best, target = held, i
        if target < 0:
            return False
        try:
            # sendmsg, not socket.send_fds: that helper drops its address argument (CPython 3.11).
            rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [sock.fileno()]))]
            self._outbox.sendmsg([_TOKEN], rights, 0, self._peer_paths[target])
        except OSError:  # the other worker's inbox is gone (it stopped or died) or full: keep it
            return False
        if self._on_hand_over is not None:
            self._on_hand_over()
        return True

    def _receive(self, adopt: Callable[[socket.socket], object]) -> None:
        while self._inbox is not None:
            try:
                _, fds, _, _ = socket.recv_fds(self._inbox, 16, 16)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                log.exception("connection hand-over inbox")
                return
            for fd in fds:
                sock = socket.socket(fileno=fd)
                try:
                    sock.setblocking(False)
                    adopt(sock)
                except Exception:
                    log.exception("serving a connection handed over by another worker")
                    with contextlib.suppress(OSError):
                        sock.close()

    def close(self) -> None:
        self.stop()
        self._outbox.close()
        self._slots.close()
