"""The subword text kind in-process: the tokenizer's padding and truncation, a graph with token_type_ids,
graphs it refuses, and int8 weight storage (training/int8_weights.py) on a tiny real graph."""

from __future__ import annotations

import asyncio
import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from service.collate import run_batch
from service.config import Settings
from service.kinds.subword.preprocess import SubwordTokenizer
from service.repository.registry import ModelRepository
from tests.conftest import MODELS
from training.int8_weights import int8_weights

SHIPPED = MODELS / "sentiment" / "2"


def _graph(path: Path, inputs: list[str], vocab: int = 30522) -> None:
    """probabilities = softmax(mean over masked tokens of an embedding (+ type embedding)): (B, 2)."""
    rng = np.random.default_rng(0)
    table = numpy_helper.from_array(rng.normal(size=(vocab, 2)).astype(np.float32), "table")
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["emb"]),  # (B, T, 2)
        helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "axis2"], ["mask3"]),
        helper.make_node("Mul", ["emb", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis1"], ["summed"], keepdims=0),
    ]
    inits = [
        table,
        numpy_helper.from_array(np.asarray([2], np.int64), "axis2"),
        numpy_helper.from_array(np.asarray([1], np.int64), "axis1"),
    ]
    if "token_type_ids" in inputs:
        nodes.append(helper.make_node("Cast", ["token_type_ids"], ["typesf"], to=TensorProto.FLOAT))
        nodes.append(helper.make_node("ReduceSum", ["typesf", "axis1"], ["typesum"], keepdims=1))
        nodes.append(helper.make_node("Add", ["summed", "typesum"], ["logits"]))
    else:
        nodes.append(helper.make_node("Identity", ["summed"], ["logits"]))
    nodes.append(helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1))
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"]) for n in inputs],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 2]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    path.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path / "model.onnx"))
    shutil.copy(SHIPPED / "tokenizer.json", path / "tokenizer.json")
    meta = {
        "input_kind": "subword",
        "labels": ["negative", "positive"],
        "scores_output": "probabilities",
        "preprocessing": {"subword": {"tokenizer": "tokenizer.json", "max_length": 16, "pad_id": 0}},
    }
    (path / "model.json").write_text(json.dumps(meta))


def _load(root: Path) -> ModelRepository:
    repo = ModelRepository(Settings(models_dir=root))  # type: ignore[call-arg]
    asyncio.run(repo.load_all())
    return repo


def test_tokenizer_pads_to_the_longest_and_flags_the_cut() -> None:
    tok = SubwordTokenizer.from_file(SHIPPED / "tokenizer.json", max_length=8)
    enc = tok.encode(["good", "a b c d e f g h i j"])
    assert enc.input_ids.shape == (2, 8) and enc.input_ids.dtype == np.int64
    assert enc.attention_mask.tolist()[0] == [1, 1, 1, 0, 0, 0, 0, 0]
    assert enc.input_ids[0, 3:].tolist() == [tok.pad_id] * 5
    assert enc.truncated == [False, True] and enc.lengths == [3, 12]
    assert enc.input_ids[1, -1] == tok.tokenizer.token_to_id("[SEP]")  # the cut keeps the end token


def test_a_graph_with_token_type_ids_is_fed_them_and_padded(tmp_path: Path) -> None:
    _graph(tmp_path / "tiny" / "1", ["input_ids", "attention_mask", "token_type_ids"])
    repo = _load(tmp_path)
    assert repo.failures() == {}
    mv = repo.get("tiny")
    assert mv.kind.pad_values() == {"input_ids": 0, "attention_mask": 0, "token_type_ids": 0}
    with ThreadPoolExecutor(1) as pool:
        prepared = asyncio.run(mv.kind.prepare(["good film", "x " * 40], Settings(), pool))  # type: ignore[call-arg]
    feeds = prepared.feeds
    assert set(feeds) == {"input_ids", "attention_mask", "token_type_ids"}
    assert feeds["input_ids"].shape == (2, 16) and not feeds["token_type_ids"].any()
    assert prepared.notes == [{}, {"truncated": True, "tokens": 42, "max_length": 16}]
    with ThreadPoolExecutor(1) as pool:
        short = asyncio.run(mv.kind.prepare(["ok"], Settings(), pool)).feeds  # type: ignore[call-arg]
    # Joined with a longer request: ids, mask and type ids padded to its width; answers as alone.
    joined, alone = run_batch(mv.model.run, [feeds, short], mv.model.pad_values), mv.model.run(short)
    assert not isinstance(joined[1], Exception)
    assert np.allclose(joined[1]["probabilities"], alone["probabilities"], atol=1e-6)


def test_graphs_that_do_not_take_ids_and_mask_fail_to_load_by_reason(tmp_path: Path) -> None:
    _graph(tmp_path / "nomask" / "1", ["input_ids", "attention_mask"])
    model = onnx.load(str(tmp_path / "nomask" / "1" / "model.onnx"))
    model.graph.input[1].name = "mask"
    for node in model.graph.node:
        node.input[:] = ["mask" if i == "attention_mask" else i for i in node.input]
    onnx.save(model, str(tmp_path / "nomask" / "1" / "model.onnx"))
    _graph(tmp_path / "notok" / "1", ["input_ids", "attention_mask"])
    (tmp_path / "notok" / "1" / "tokenizer.json").unlink()
    _graph(tmp_path / "badtok" / "1", ["input_ids", "attention_mask"])
    (tmp_path / "badtok" / "1" / "tokenizer.json").write_text("{not json")
    failures = _load(tmp_path).failures()
    assert "takes input_ids, attention_mask" in failures["nomask:1"]
    assert "tokenizer.json" in failures["notok:1"] and "lacks" in failures["notok:1"]
    assert "not a tokenizer file" in failures["badtok:1"]


def test_int8_weights_store_a_quarter_and_compute_as_fp32(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    w = rng.normal(size=(256, 128)).astype(np.float32)
    table = rng.normal(size=(500, 256)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "ids"], ["x"]), helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["b"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 128])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(table, "table")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(tmp_path / "fp32.onnx"))
    report = int8_weights(tmp_path / "fp32.onnx", tmp_path / "int8.onnx")
    assert report["tensors"] == 2 and report["size_int8"] < report["size_fp32"] / 3.5
    ids = np.asarray([0, 7, 499], dtype=np.int64)
    want = table[ids] @ w
    got = ort.InferenceSession(str(tmp_path / "int8.onnx")).run(None, {"ids": ids})[0]
    assert np.abs(got - want).max() < 0.02 * np.abs(want).max()
    # Each row answers alone as it does in the batch: no activation quantisation.
    alone = ort.InferenceSession(str(tmp_path / "int8.onnx")).run(None, {"ids": ids[1:2]})[0]
    assert np.array_equal(alone[0], got[1])
