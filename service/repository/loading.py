"""Loading one model version: build the runtime session, read model.json, let the kind check it, warm up,
and give it a batcher. A failure becomes a reason safe to answer (``public_reason``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from service.batch_policy import BatchPolicy
from service.batching import DynamicBatcher
from service.config import Settings
from service.errors import LoadError
from service.kinds import get_kind
from service.metrics import Metrics
from service.repository.model_files import ModelConfig, ModelMeta, validation_reason
from service.repository.versions import ModelVersion
from service.runtime import OnnxModel
from service.stats import FanOut, ModelStats


def load_version(
    name: str, version: int, path: Path, settings: Settings, config: ModelConfig, metrics: Metrics | None
) -> ModelVersion:
    """Blocking: build the session, read metadata, warm up. Runs in a thread."""
    start = time.perf_counter()
    onnx_path = path / "model.onnx"
    if not onnx_path.is_file():
        raise LoadError("model.onnx is missing")
    meta = ModelMeta.read(path)
    kind_cls = get_kind(meta.input_kind)  # before the session: an unknown kind fails fast, by name
    model = OnnxModel(
        onnx_path,
        providers=settings.providers,
        intra_op_threads=settings.intra_op_threads,
        inter_op_threads=settings.inter_op_threads,
        optimization=settings.graph_optimization_level,
        spin_wait=settings.spin_wait,
    )
    kind = kind_cls.load(meta, path, model)
    model.pad_values.update(kind.pad_values())
    check_outputs(meta, model)
    model.warm_up()

    def knob(key: str) -> Any:
        value = getattr(config, key)
        return getattr(settings, key) if value is None else value

    model_metrics = metrics.for_model(name, version) if metrics is not None else None
    stats = ModelStats(name, version)
    policy = BatchPolicy(
        max_batch_size=knob("max_batch_size") if model.batchable else 1,
        max_queue_delay_ms=knob("max_queue_delay_ms"),
        max_queue_size=knob("max_queue_size"),
        timeout_s=knob("timeout_s"),
        instances=knob("instances"),
        inline_run_ms=settings.inline_run_ms,
    )
    batcher = DynamicBatcher.for_runtime(
        model, policy, name=f"{name}:{version}", observer=FanOut(stats, model_metrics)
    )
    load_s = time.perf_counter() - start
    if model_metrics is not None:
        model_metrics.loaded(load_s)
    return ModelVersion(
        name,
        version,
        path,
        meta,
        model,
        batcher,
        kind,
        load_s=load_s,
        metrics=model_metrics,
        stats=stats,
        default_for_kind=config.default_for_kind,
    )


def check_outputs(meta: ModelMeta, model: OnnxModel) -> None:
    """The scores output and labels must match the graph, or answers would be mislabelled."""
    scores = meta.scores_output or model.outputs[0].name
    if scores not in model.output_names:
        raise LoadError(f"scores output {scores!r} is not a graph output ({model.output_names})")
    width = dict((o.name, o.shape) for o in model.outputs)[scores]
    if meta.labels and len(width) == 2 and width[1] not in (-1, len(meta.labels)):
        raise LoadError(f"{len(meta.labels)} labels but the scores output has {width[1]} columns")


def public_reason(error: Exception) -> str:
    """What a load failure may tell a client: our own words, never a path or a library's message."""
    if isinstance(error, LoadError):
        return str(error)
    if isinstance(error, ValidationError):
        return validation_reason(error)
    if isinstance(error, KeyError):
        return f"model.json lacks the key {error.args[0]!r}" if error.args else "model.json lacks a key"
    if type(error).__module__.startswith("onnxruntime"):
        return f"model.onnx cannot be loaded by onnxruntime ({type(error).__name__})"
    if isinstance(error, OSError):
        return f"a file of this version cannot be read ({error.strerror or type(error).__name__})"
    return f"{type(error).__name__} while loading (details in the server log)"
