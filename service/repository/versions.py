"""ModelVersion: one loaded version (its runtime, batcher and kind), held by the requests that resolved it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.batching import DynamicBatcher
from service.kinds import InputKind
from service.metrics import ModelMetrics
from service.repository.model_files import ModelMeta
from service.runtime import Runtime, TensorSpec
from service.stats import ModelStats


@dataclass
class ModelVersion:
    """One loaded version: its session, its batcher, and what /predict needs to prepare inputs."""

    name: str
    version: int
    path: Path
    meta: ModelMeta
    model: Runtime  # OnnxModel today; the rest of the service needs only the protocol
    batcher: DynamicBatcher
    kind: InputKind
    load_s: float = 0.0
    metrics: ModelMetrics | None = None
    stats: ModelStats | None = None
    default_for_kind: bool = False
    """config.json's knob: /predict picks this model for its kind among several (transports/http/predict.py)."""
    users: int = field(default=0, init=False)
    """Requests that resolved this version and are not answered yet (see ``lease``)."""
    _unused: asyncio.Event | None = field(default=None, init=False, repr=False)

    def lease(self) -> ModelVersion:
        """Hold this version for one request (``with mv.lease():``): a swap retires it only when every
        holder is done. Take it right where the version is resolved, with no await between, so no request
        can slip past. (The version is its own context manager: a generator-based one cost a request
        ~2 µs.)"""
        return self

    def __enter__(self) -> ModelVersion:
        self.users += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self.users -= 1
        if self.users == 0 and self._unused is not None:
            self._unused.set()

    async def wait_unused(self, timeout_s: float) -> bool:
        """Wait (bounded) until no request holds this version; False if some still did at the timeout."""
        if self.users:
            self._unused = asyncio.Event()
            try:
                await asyncio.wait_for(self._unused.wait(), timeout_s)
            except TimeoutError:
                return False
        return True

    @property
    def input_kind(self) -> str:
        return self.meta.input_kind

    @property
    def inputs(self) -> list[TensorSpec]:
        return self.model.inputs

    @property
    def outputs(self) -> list[TensorSpec]:
        return self.model.outputs

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": str(self.version),
            "input_kind": self.input_kind,
            "task": self.meta.task,
            "labels": self.meta.labels,
            "inputs": [t.as_dict() for t in self.inputs],
            "outputs": [t.as_dict() for t in self.outputs],
            "max_batch_size": self.batcher.policy.max_batch_size,
            **self.kind.describe(),
        }
