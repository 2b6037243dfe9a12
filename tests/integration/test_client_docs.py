"""Every example in docs/clients.md runs against a real server and succeeds."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, Server, require_programs

DOC = (ROOT / "docs" / "clients.md").read_text()


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC, re.S)


def run(argv: list[str]) -> str:
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{argv}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_python_examples(server: Server, tmp_path: Path, index: int) -> None:
    code = blocks("python")[index].replace("http://localhost:8080", server.url)
    script = tmp_path / "example.py"
    script.write_text(code)
    run([sys.executable, str(script)])


def test_shell_examples(server: Server) -> None:
    require_programs("curl")
    for block in blocks("bash"):
        script = block.replace("http://localhost:8080", server.url).replace(
            "modelserve ", f"{sys.executable} -m service "
        )
        out = run(["bash", "-euo", "pipefail", "-c", script])
        assert '"error"' not in out and "error (" not in out, out
        assert out.strip()


def test_javascript_example(server: Server, tmp_path: Path) -> None:
    require_programs("node")
    [code] = blocks("javascript")
    script = tmp_path / "example.mjs"
    script.write_text(code.replace("http://localhost:8080", server.url))
    out = run(["node", str(script)])
    assert "positive" in out and "9" in out
