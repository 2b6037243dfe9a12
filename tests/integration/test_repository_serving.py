"""A repository with a broken model and a tensor model, served for real."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.conftest import run_server
from tests.graphs import affine_model, copy_shipped


def test_broken_model_is_skipped_the_rest_serve_and_readiness_names_it(tmp_path: Path) -> None:
    repo = tmp_path / "models"
    copy_shipped("sentiment", repo, version=2)
    (repo / "broken" / "1").mkdir(parents=True)
    (repo / "broken" / "1" / "model.onnx").write_bytes(b"\x08\x07garbage")
    with run_server(repo, tmp_path) as srv:
        ready = httpx.get(f"{srv.url}/v2/health/ready")
        assert ready.status_code == 503
        assert "broken:1" in ready.json()["failed"]
        r = httpx.post(f"{srv.url}/predict", json={"text": "I loved this film"})
        assert r.status_code == 200 and r.json()["predictions"][0]["label"] == "positive"
        assert "broken:1" in httpx.get(f"{srv.url}/models").json()["failed"]
    with run_server(repo, tmp_path, env={"MODELSERVE_STRICT_READINESS": "false"}) as srv:
        assert httpx.get(f"{srv.url}/v2/health/ready").status_code == 200


def test_tensor_model_refuses_predict_with_a_pointer_to_v2(tmp_path: Path) -> None:
    affine_model(tmp_path / "models" / "affine" / "1")
    with run_server(tmp_path / "models", tmp_path) as srv:
        r = httpx.post(f"{srv.url}/predict?model=affine", json={"text": "hi"})
        assert r.status_code == 415 and "/v2/models/affine/infer" in r.json()["error"]
