"""Triton's model-configuration and statistics extensions as plain dicts: the HTTP routes answer them as
JSON and the gRPC service parses the same dicts into its messages, so both transports say the same.

Model configuration: the ModelConfig message of Triton's model_config.proto, in the JSON Triton itself
answers (int64 fields as numbers). Dims leave out the batch axis when the model batches
(``max_batch_size > 0``), which is what perf_analyzer reads to shape its requests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from service.repository.versions import ModelVersion
    from service.runtime import TensorSpec


_TRITON_TYPES = {
    "BOOL": "TYPE_BOOL",
    "UINT8": "TYPE_UINT8",
    "UINT16": "TYPE_UINT16",
    "UINT32": "TYPE_UINT32",
    "UINT64": "TYPE_UINT64",
    "INT8": "TYPE_INT8",
    "INT16": "TYPE_INT16",
    "INT32": "TYPE_INT32",
    "INT64": "TYPE_INT64",
    "FP16": "TYPE_FP16",
    "FP32": "TYPE_FP32",
    "FP64": "TYPE_FP64",
    "BYTES": "TYPE_STRING",
}


def _tensor(spec: TensorSpec, batched: bool) -> dict[str, Any]:
    dims = list(spec.shape[1:] if batched else spec.shape)
    return {
        "name": spec.name,
        "data_type": _TRITON_TYPES.get(spec.datatype, "TYPE_INVALID"),
        "dims": dims or [1],
    }


def model_config(mv: ModelVersion) -> dict[str, Any]:
    """``GET /v2/models/<m>[/versions/<v>]/config``: what the server does with this version."""
    policy = mv.batcher.policy
    batched = mv.model.batchable
    config: dict[str, Any] = {
        "name": mv.name,
        "platform": mv.model.platform,
        "backend": mv.model.backend,
        "max_batch_size": policy.max_batch_size if batched else 0,
        "input": [_tensor(t, batched) for t in mv.inputs],
        "output": [_tensor(t, batched) for t in mv.outputs],
        "instance_group": [{"name": mv.name, "kind": "KIND_CPU", "count": policy.instances}],
        "parameters": {
            "input_kind": {"string_value": mv.input_kind},
            "labels": {"string_value": ",".join(mv.meta.labels)},
        },
    }
    if batched:
        config["dynamic_batching"] = {
            "max_queue_delay_microseconds": round(policy.max_queue_delay_s * 1e6),
            "default_queue_policy": {
                "timeout_action": "REJECT",
                "default_timeout_microseconds": round(policy.timeout_s * 1e6),
                "max_queue_size": policy.max_queue_size,
            },
        }
    return config


def model_stats(versions: list[ModelVersion]) -> dict[str, Any]:
    """``GET /v2/models[/<m>[/versions/<v>]]/stats``: the statistics extension's response."""
    return {"model_stats": [mv.stats.as_dict() for mv in versions if mv.stats is not None]}
