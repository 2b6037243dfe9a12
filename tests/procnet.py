"""Where a loopback TCP connection stands on the server side, read from Linux's /proc: which process
accepted it, or how many wait unaccepted in a listening socket's backlog. Lets the worker tests wait on
events (accepted, queued) instead of sleeping."""

from __future__ import annotations

import os
from dataclasses import dataclass

LISTEN = "0A"
ESTABLISHED = "01"


@dataclass(frozen=True)
class TcpEntry:
    local_port: int
    remote_port: int
    state: str
    queued: int  # a listening socket's backlog: connections the kernel holds that no process accepted yet
    inode: int  # 0 for a connection still in a backlog (no process holds it)


def tcp_entries(port: int) -> list[TcpEntry]:
    """The IPv4 sockets on local port ``port``."""
    entries = []
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            local_port = int(fields[1].split(":")[1], 16)
            if local_port != port:
                continue
            rx_queue = int(fields[4].split(":")[1], 16)
            entries.append(
                TcpEntry(local_port, int(fields[2].split(":")[1], 16), fields[3], rx_queue, int(fields[9]))
            )
    return entries


def socket_inodes(pid: int) -> set[int]:
    """The sockets process ``pid`` holds open."""
    inodes = set()
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(f"{fd_dir}/{fd}")
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def accepted_by(port: int, client_port: int, pids: list[int]) -> int | None:
    """The pid (of ``pids``) that accepted the connection from ``client_port``; None while none has."""
    for entry in tcp_entries(port):
        if entry.remote_port == client_port and entry.state == ESTABLISHED and entry.inode:
            for pid in pids:
                if entry.inode in socket_inodes(pid):
                    return pid
    return None


def backlog(port: int, pid: int) -> int:
    """Connections waiting unaccepted on the listening socket(s) on ``port`` that ``pid`` holds."""
    mine = socket_inodes(pid)
    return sum(e.queued for e in tcp_entries(port) if e.state == LISTEN and e.inode in mine)
