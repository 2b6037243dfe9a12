"""The input-kind registry: lookup, unknown kinds at load, request recognition, the model.json schema."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from service import kinds
from service.config import Settings
from service.errors import BadRequest
from service.kinds import UnknownKind
from service.repository.model_files import ModelMeta
from service.repository.registry import ModelRepository
from tests.graphs import copy_shipped

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def load(root: Path) -> ModelRepository:
    repo = ModelRepository(Settings(models_dir=root))  # type: ignore[call-arg]
    asyncio.run(repo.load_all())
    return repo


def test_registry_names_the_kinds_and_refuses_unknown_ones() -> None:
    assert {"image", "text", "tensor"} <= set(kinds.kind_names())
    assert kinds.get_kind("image").name == "image"
    with pytest.raises(UnknownKind, match=r"unknown input kind 'smell'; the kinds are: .*image.*text"):
        kinds.get_kind("smell")


def test_an_unknown_kind_in_model_json_fails_that_version_by_name(tmp_path: Path) -> None:
    target = copy_shipped("digits", tmp_path)
    meta = json.loads((target / "model.json").read_text())
    meta["input_kind"] = "smell"
    (target / "model.json").write_text(json.dumps(meta))
    reason = load(tmp_path).failures()["digits:1"]
    assert "unknown input kind 'smell'" in reason and "image" in reason and "text" in reason


def test_model_json_is_typed_and_missing_sections_are_named(tmp_path: Path) -> None:
    target = copy_shipped("digits", tmp_path)
    meta = json.loads((target / "model.json").read_text())
    assert ModelMeta.read(target).section("image")["height"] == 28
    (target / "model.json").write_text(json.dumps({**meta, "typo_field": 1}))
    assert "typo_field" in load(tmp_path).failures()["digits:1"]
    (target / "model.json").write_text(json.dumps({**meta, "preprocessing": {}}))
    assert "no preprocessing.image section" in load(tmp_path).failures()["digits:1"]
    assert ModelMeta.read(tmp_path / "nowhere").input_kind == "tensor"


def test_request_bodies_are_recognised_by_type_field_suffix_and_bytes() -> None:
    image, text = kinds.get_kind("image"), kinds.get_kind("text")
    assert kinds.kind_for_body("image/png", PNG_MAGIC) is image
    assert kinds.kind_for_body("text/plain", b"hi") is text
    assert kinds.kind_for_body("application/octet-stream", PNG_MAGIC) is image  # the binary fallback
    assert kinds.kind_for_body("application/xml", b"<x/>") is None
    assert kinds.kind_for_file(b"...", None, "cat.JPG") is image
    assert kinds.kind_for_file(b"hello", "text/plain; charset=utf-8", "a.txt") is text
    tabular = kinds.get_kind("tabular")
    assert kinds.kind_for_file(b"a,b\n1,2\n", "text/plain", "rows.csv") is tabular  # the suffix says more
    assert kinds.kind_for_file(b"a,b\n1,2\n", "application/octet-stream", "rows.CSV") is tabular
    assert kinds.kind_for_file(b"a,b\n1,2\n", "text/csv", None) is tabular
    kind, items = kinds.kind_for_json({"texts": ["a", "b"]})
    assert kind is text and items == ["a", "b"]
    with pytest.raises(BadRequest, match='exactly one of "image", "images", "text", "texts"'):
        kinds.kind_for_json({"text": "a", "image": "b"})
    with pytest.raises(BadRequest, match="must be a list"):
        kinds.kind_for_json({"texts": "a"})
