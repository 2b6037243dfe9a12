"""Tensors: a model without a kind of its own (or without model.json) takes V2 tensors only.

Its graph's inputs are the contract; /predict answers 415 pointing to V2 infer.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Executor
from typing import Any

from service.config import Settings
from service.errors import UnsupportedMediaType
from service.kinds import register
from service.kinds.base import InputKind, Prepared


@register
class TensorKind(InputKind):
    name = "tensor"

    def refusal(self, model_name: str, sent: type[InputKind]) -> str:
        return f"model {model_name!r} takes tensors, not {sent.plural()}: POST /v2/models/{model_name}/infer"

    async def prepare(self, items: Sequence[Any], settings: Settings, pool: Executor) -> Prepared:
        raise UnsupportedMediaType("this model takes tensors: POST /v2/models/<name>/infer")
