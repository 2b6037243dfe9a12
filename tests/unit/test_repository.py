"""ModelRepository over real ONNX files: policies, metadata-less models, broken models."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from service.config import Settings
from service.errors import NotFound
from service.repository.registry import ModelRepository
from tests.graphs import affine_model, copy_shipped, write_config


def load(root: Path, **settings: object) -> ModelRepository:
    repo = ModelRepository(Settings(models_dir=root, **settings))  # type: ignore[arg-type]
    asyncio.run(repo.load_all())
    return repo


def test_model_without_metadata_serves_as_a_tensor_model(tmp_path: Path) -> None:
    affine_model(tmp_path / "affine" / "1")
    repo = load(tmp_path)
    mv = repo.get("affine")
    assert mv.input_kind == "tensor"
    assert [t.as_dict() for t in mv.inputs] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    assert mv.model.batchable
    out = mv.model.run({"x": np.ones((3, 4), np.float32)})
    assert np.allclose(out["y"], 3.0)
    assert repo.is_ready()


def test_version_policies(tmp_path: Path) -> None:
    for v in (1, 2, 3):
        affine_model(tmp_path / "m" / str(v), shift=float(v))
    assert [mv.version for mv in load(tmp_path).versions("m")] == [3]
    write_config(tmp_path / "m", version_policy="all")
    assert [mv.version for mv in load(tmp_path).versions("m")] == [1, 2, 3]
    write_config(tmp_path / "m", version_policy={"latest": 2})
    assert [mv.version for mv in load(tmp_path).versions("m")] == [2, 3]
    write_config(tmp_path / "m", version_policy={"specific": [1, 3]})
    repo = load(tmp_path)
    assert [mv.version for mv in repo.versions("m")] == [1, 3]
    assert repo.get("m").version == 3  # no version named: the highest
    assert repo.get("m", "1").version == 1
    with pytest.raises(NotFound, match="no loaded version 2"):
        repo.get("m", "2")
    with pytest.raises(NotFound, match="versions are integers"):
        repo.get("m", "latest")


def test_broken_models_are_skipped_with_their_reason(tmp_path: Path) -> None:
    copy_shipped("digits", tmp_path)
    (tmp_path / "corrupt" / "1").mkdir(parents=True)
    (tmp_path / "corrupt" / "1" / "model.onnx").write_bytes(b"not an onnx file")
    (tmp_path / "empty").mkdir()
    affine_model(tmp_path / "badconfig" / "1")
    (tmp_path / "badconfig" / "config.json").write_text('{"max_batch_size": "lots"}')
    repo = load(tmp_path)
    assert repo.names() == ["digits"]
    failures = repo.failures()
    assert set(failures) == {"corrupt:1", "empty", "badconfig"}
    assert "no numeric version" in failures["empty"]
    assert not repo.is_ready()  # strict readiness: every model should have loaded
    assert load(tmp_path, strict_readiness=False).is_ready()
    with pytest.raises(NotFound, match="failed to load"):
        repo.get("corrupt")


def test_metadata_that_contradicts_the_graph_is_refused(tmp_path: Path) -> None:
    target = copy_shipped("digits", tmp_path)
    meta = (target / "model.json").read_text().replace('"height": 28', '"height": 32')
    (target / "model.json").write_text(meta)
    repo = load(tmp_path)
    assert "UINT8 [-1, 32, 28, 1]" in repo.failures()["digits:1"]


def test_fixed_shape_model_is_not_batched(tmp_path: Path) -> None:
    affine_model(tmp_path / "fixed" / "1", batch=2)
    mv = load(tmp_path).get("fixed")
    assert not mv.model.batchable
    assert mv.batcher.policy.max_batch_size == 1


def test_config_knobs_override_settings(tmp_path: Path) -> None:
    affine_model(tmp_path / "m" / "1")
    write_config(tmp_path / "m", max_batch_size=5, instances=2, timeout_s=3)
    b = load(tmp_path, max_batch_size=64).get("m").batcher.policy
    assert (b.max_batch_size, b.instances, b.timeout_s) == (5, 2, 3)
