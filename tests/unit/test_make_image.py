"""`make image` picks docker, else podman, else says what to install (run with stand-in engines on PATH)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.conftest import ROOT

TOOLS = ("bash", "make", "env", "cat")


def _clone(tmp_path: Path) -> Path:
    """The Makefile and script in a folder with no ../shared/container/prepare.sh beside it."""
    repo = tmp_path / "work" / "repo"
    (repo / "deploy").mkdir(parents=True)
    shutil.copy(ROOT / "Makefile", repo / "Makefile")
    shutil.copy(ROOT / "deploy" / "image.sh", repo / "deploy" / "image.sh")
    return repo


def _bin(tmp_path: Path, engines: dict[str, int]) -> Path:
    """A PATH with the basic tools and stand-in engines: `<engine> info` exits with the given code, a
    build prints its arguments."""
    path = tmp_path / "bin"
    path.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found, tool
        (path / tool).symlink_to(found)
    for engine, info_code in engines.items():
        script = f'#!{shutil.which("bash")}\n[ "$1" = info ] && exit {info_code}\necho "{engine} $*"\n'
        (path / engine).write_text(script)
        (path / engine).chmod(0o755)
    return path


def _make_image(tmp_path: Path, engines: dict[str, int]) -> subprocess.CompletedProcess[str]:
    env = {"PATH": str(_bin(tmp_path, engines)), "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run(
        ["make", "-s", "image"], cwd=_clone(tmp_path), env=env, capture_output=True, text=True, timeout=60
    )


def test_docker_when_its_daemon_answers(tmp_path: Path) -> None:
    done = _make_image(tmp_path, {"docker": 0, "podman": 0})
    assert done.returncode == 0 and done.stdout.strip() == "docker build -t modelserve .", done


def test_podman_when_docker_is_absent_or_down(tmp_path: Path) -> None:
    done = _make_image(tmp_path, {"docker": 1, "podman": 0})
    assert done.returncode == 0, done
    assert done.stdout.strip() == "podman build --format docker -t modelserve .", done


def test_a_clear_message_when_there_is_no_engine(tmp_path: Path) -> None:
    done = _make_image(tmp_path, {})
    assert done.returncode != 0
    assert "no container engine found" in done.stderr and "apt-get install podman" in done.stderr, done
    assert "not found" not in done.stderr  # not a shell's complaint about a missing command
