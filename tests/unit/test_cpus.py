"""Usable CPUs from a cgroup quota (v1 and v2, own folder or an ancestor), and the worker/thread split."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.config import Settings
from service.process.cpus import cgroup_cpu_limit, plan


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_quota_in_a_container(tmp_path: Path) -> None:
    write(tmp_path / "proc", "0::/\n")
    write(tmp_path / "fs" / "cgroup.controllers", "cpu memory\n")
    write(tmp_path / "fs" / "cpu.max", "200000 100000\n")  # docker --cpus 2
    assert cgroup_cpu_limit(tmp_path / "fs", tmp_path / "proc") == 2.0
    write(tmp_path / "fs" / "cpu.max", "max 100000\n")
    assert cgroup_cpu_limit(tmp_path / "fs", tmp_path / "proc") is None


def test_cgroup_v2_tightest_ancestor_wins(tmp_path: Path) -> None:
    write(tmp_path / "proc", "0::/kubepods/pod1/c1\n")
    fs = tmp_path / "fs"
    write(fs / "cgroup.controllers", "cpu\n")
    write(fs / "kubepods" / "cpu.max", "max 100000\n")
    write(fs / "kubepods" / "pod1" / "cpu.max", "150000 100000\n")  # limits: 1500m
    write(fs / "kubepods" / "pod1" / "c1" / "cpu.max", "max 100000\n")
    assert cgroup_cpu_limit(fs, tmp_path / "proc") == 1.5


def test_cgroup_v1_cfs_quota(tmp_path: Path) -> None:
    write(tmp_path / "proc", "4:memory:/x\n2:cpu,cpuacct:/docker/abc\n")
    cpu = tmp_path / "fs" / "cpu,cpuacct" / "docker" / "abc"
    write(cpu / "cpu.cfs_quota_us", "300000\n")
    write(cpu / "cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_limit(tmp_path / "fs", tmp_path / "proc") == 3.0
    write(cpu / "cpu.cfs_quota_us", "-1\n")
    assert cgroup_cpu_limit(tmp_path / "fs", tmp_path / "proc") is None


def test_no_cgroup_files_means_no_limit(tmp_path: Path) -> None:
    assert cgroup_cpu_limit(tmp_path, tmp_path / "missing") is None


@pytest.mark.parametrize(
    ("workers", "threads", "cpus", "expected"),
    [
        ("auto", 0, 8, (8, 1)),  # one worker per CPU, one thread each
        (1, 0, 8, (1, 8)),  # one process gets every CPU for its sessions
        (2, 0, 8, (2, 4)),
        (3, 0, 2, (3, 1)),  # more workers than CPUs: never 0 threads
        (2, 3, 8, (2, 3)),  # an explicit thread count stays
    ],
)
def test_plan_never_oversubscribes_by_default(
    workers: int | str, threads: int, cpus: int, expected: tuple[int, int]
) -> None:
    p = plan(workers, threads, cpus=cpus)
    assert (p.workers, p.intra_op_threads) == expected


def test_workers_setting_takes_auto_or_a_positive_count(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().workers == "auto"
    monkeypatch.setenv("MODELSERVE_WORKERS", "3")
    assert Settings().workers == 3
    monkeypatch.setenv("MODELSERVE_WORKERS", "0")
    with pytest.raises(ValueError):
        Settings()
