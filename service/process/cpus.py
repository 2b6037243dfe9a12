"""How many CPUs this process may really use, and how to divide them among workers and onnxruntime threads.

``os.cpu_count()`` is the host's count: a container limited to 2 CPUs on a 64-core host sees 64, starts 64
workers of 64 onnxruntime threads each, and is throttled by the kernel for all of it. The affinity mask
(taskset, cpusets) and the cgroup CPU quota (docker --cpus, Kubernetes limits) are the real bounds.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def cgroup_cpu_limit(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """The CPU quota of this process's cgroup (the tightest along its path), in CPUs; None if unlimited."""
    limits: list[float] = []
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # cgroup v2: cpu.max is "<quota> <period>" or "max <period>"
            mount = root if (root / "cgroup.controllers").exists() else root / "unified"  # hybrid hosts
            limits += _along(mount, path, lambda d: _v2_limit(d / "cpu.max"))
        elif "cpu" in controllers.split(","):  # cgroup v1: cpu.cfs_quota_us (-1: none) / cpu.cfs_period_us
            mount = root / next(
                (n for n in ("cpu,cpuacct", "cpuacct,cpu", "cpu") if (root / n).is_dir()), "cpu"
            )
            limits += _along(mount, path, _v1_limit)
    return min(limits) if limits else None


def _along(mount: Path, path: str, read: Callable[[Path], float | None]) -> list[float]:
    """Read a limit in the cgroup's own folder and every ancestor up to the mount (a container sees "/")."""
    found = []
    parts = [p for p in path.split("/") if p]
    for depth in range(len(parts), -1, -1):
        folder = mount.joinpath(*parts[:depth])
        value = read(folder)
        if value is not None:
            found.append(value)
    return found


def _v2_limit(path: Path) -> float | None:
    try:
        quota, period = path.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    return None if quota == "max" else int(quota) / int(period)


def _v1_limit(folder: Path) -> float | None:
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota <= 0 or period <= 0 else quota / period


def usable_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by its cgroup quota (rounded down, at least 1).

    Rounded down because a worker per fractional CPU would be throttled in every scheduling period.
    """
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        count = os.cpu_count() or 1
    quota = cgroup_cpu_limit()
    if quota is not None:
        count = min(count, max(1, math.floor(quota)))
    return max(1, count)


@dataclass(frozen=True)
class WorkerPlan:
    """Worker processes and onnxruntime intra-op threads per session, so workers x threads <= CPUs."""

    cpus: int
    workers: int
    intra_op_threads: int


def plan(workers: int | str, intra_op_threads: int, cpus: int | None = None) -> WorkerPlan:
    """``workers`` "auto" is one per usable CPU; ``intra_op_threads`` 0 divides the CPUs among the workers."""
    cpus = cpus or usable_cpus()
    count = cpus if workers == "auto" else int(workers)
    threads = intra_op_threads or max(1, cpus // count)
    return WorkerPlan(cpus, count, threads)
