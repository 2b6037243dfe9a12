"""schemathesis against the running server: every generated request (positive and negative, stateful
sequences) answers as /openapi.json says, status codes, content types, headers and bodies included."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import run_server
from tests.graphs import copy_shipped

pytestmark = pytest.mark.slow

# Every check but one: "positive_data_acceptance" expects any schema-valid request to succeed, and no
# schema can say "these base64 bytes are a PNG" or "this tensor matches the model's shape".
EXCLUDED = "positive_data_acceptance"


def test_schemathesis_finds_no_failure(tmp_path: Path) -> None:
    repo = tmp_path / "models"
    copy_shipped("digits", repo)
    copy_shipped("sentiment", repo, version=2)
    with run_server(repo, tmp_path) as srv:
        cli = str(Path(sys.executable).with_name("schemathesis"))
        options = ["--checks", "all", "--exclude-checks", EXCLUDED, "--max-examples", "25"]
        options += ["--seed", "20261201", "--no-color", "--workers", "2"]
        done = subprocess.run(
            [cli, "run", f"{srv.url}/openapi.json", *options],
            capture_output=True,
            text=True,
            timeout=240,
            cwd=tmp_path,
            env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
        )
        assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
        assert " passed" in done.stdout and "failures" not in done.stdout.split("SUMMARY")[-1].lower()
        # The server is still whole afterwards.
        assert httpx.get(f"{srv.url}/v2/health/ready").status_code == 200


def test_the_document_declares_the_real_errors_and_metrics_as_text(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    infer = spec["paths"]["/v2/models/{name}/infer"]["post"]["responses"]
    assert {"400", "404", "413", "415", "422", "503", "504"} <= infer.keys()
    assert infer["503"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    metrics = spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == ["text/plain"]
    assert client.get("/metrics").headers["content-type"].startswith("text/plain")
