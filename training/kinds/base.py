"""The training side of an input kind: its CLI options, its recipe, its network, and what export needs.

Kind modules import torch inside their methods, not at import: the `modelserve` CLI registers every
kind's `train` options, and `modelserve serve` must not pay for (or need) torch.

A ``TrainingKind`` subclass in ``training/kinds/<kind>/kind.py``, decorated ``@register``, is all
``modelserve train <kind>`` and ``training/export.py`` know of a kind. Beside it in its folder: its recipe,
data sources and augmentation; its network is in ``training/nets.py``, its preprocessing in
``service/kinds/<kind>/preprocess.py`` (the one copy serving runs).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np

from service.repository.model_files import TensorDecl

if TYPE_CHECKING:  # `modelserve --help` and `serve` list the kinds without importing torch
    import onnxruntime as ort
    from torch import nn

    from training.train import TrainConfig

TOLERANCE = 1e-4  # onnxruntime vs torch, and alone vs batched, max abs difference of logits


class ExportError(RuntimeError):
    """The exported graph does not answer as the torch model does."""


@dataclass
class GraphInput:
    """The exported graph's one input: as model.json declares it, its dynamic axes, a dummy to trace."""

    decl: TensorDecl
    dynamic_axes: dict[int, str]
    dummy: np.ndarray  # a batch of 2 to trace with


class TrainingKind:
    """One kind, for training and export. Checkpoints are dicts: kind, net_config, state_dict, classes,
    preprocessing (model.json's section), report, samples (real inputs), data (to reload the test split)."""

    name: ClassVar[str]
    summary: ClassVar[str]  # `modelserve train --help`: "train a CNN on images"
    data_help: ClassVar[str]  # what --data takes

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Options of `modelserve train <kind>` beyond the shared ones."""

    def train(self, args: argparse.Namespace, cfg: TrainConfig) -> Path:
        """Train from the parsed options; the checkpoint's path."""
        raise NotImplementedError

    def build_net(self, net_config: dict[str, Any]) -> nn.Module:
        """The untrained network a checkpoint's ``net_config`` describes."""
        raise NotImplementedError

    def graph_input(self, ckpt: dict[str, Any]) -> GraphInput:
        raise NotImplementedError

    def sample_batches(self, ckpt: dict[str, Any]) -> list[np.ndarray]:
        """Real model inputs at batch sizes 1 and 7, for the parity check."""
        raise NotImplementedError

    def check_invariance(self, ckpt: dict[str, Any], sess: ort.InferenceSession) -> float:
        """Kind-specific checks of the exported graph (e.g. padding invariance): the worst difference;
        ExportError past TOLERANCE."""
        return 0.0

    def test_set(self, ckpt: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """The checkpoint's test split as model inputs and labels (reloaded from its data source)."""
        raise NotImplementedError

    def extra_files(self, ckpt: dict[str, Any]) -> dict[str, str]:
        """Files written beside model.onnx (e.g. vocab.txt), by name."""
        return {}


T = TypeVar("T", bound=type[TrainingKind])
