"""Audio for training: the conv + LSTM recipe (training/kinds/audio/recipe.py), its options, and what export needs.

The graph takes log-mel features (B, frames, bands) FP32 as service/kinds/audio/preprocess.py computes them;
clips are fixed 1 s windows, so a batch needs no padding and rows cannot see each other.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from service.kinds.audio.preprocess import AudioSpec
from service.repository.model_files import TensorDecl
from training.kinds import register
from training.kinds.base import GraphInput, TrainingKind

if TYPE_CHECKING:
    from torch import nn

    from training.train import TrainConfig


@register
class AudioTraining(TrainingKind):
    name = "audio"
    summary = "train a conv + LSTM on spoken words (WAV clips)"
    data_help = (
        "'commands' (synthesised by `make data`), or a folder of WAV files: <class>/*.wav, "
        "or {train,validation,test}/<class>/*.wav"
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--hidden", type=int, default=128, help="LSTM hidden size (each direction)")
        parser.add_argument("--mels", type=int, default=40, help="mel bands (40-64)")

    def train(self, args: argparse.Namespace, cfg: TrainConfig) -> Path:
        from training.kinds.audio.recipe import train_audio_model

        spec = AudioSpec(n_mels=args.mels)
        return train_audio_model(args.data, args.name, args.runs, cfg, spec=spec, hidden_dim=args.hidden)

    def build_net(self, net_config: dict[str, Any]) -> nn.Module:
        from training.nets import AudioCRNN, AudioCRNNConfig

        cfg = dict(net_config)
        cfg["channels"], cfg["mean"], cfg["std"] = (tuple(cfg[k]) for k in ("channels", "mean", "std"))
        return AudioCRNN(AudioCRNNConfig(**cfg))

    def graph_input(self, ckpt: dict[str, Any]) -> GraphInput:
        spec = AudioSpec.from_preprocessing(ckpt["preprocessing"]["audio"])
        return GraphInput(
            TensorDecl(name="features", datatype="FP32", shape=[-1, spec.frames, spec.n_mels]),
            {0: "batch"},
            np.zeros((2, spec.frames, spec.n_mels), dtype=np.float32),
        )

    def sample_batches(self, ckpt: dict[str, Any]) -> list[np.ndarray]:
        feats = np.asarray(ckpt["samples"], dtype=np.float32)
        return [feats[:1], feats[:7]]

    def test_set(self, ckpt: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        from training.kinds.audio.data import load_audio

        spec = AudioSpec.from_preprocessing(ckpt["preprocessing"]["audio"])
        test = load_audio(ckpt["data"]["source"], spec, ckpt["data"]["seed"]).test
        return test.features, test.labels
