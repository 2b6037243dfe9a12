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
    summary = "train a conv + LSTM/GRU on spoken words (WAV clips)"
    data_help = (
        "'commands' (synthesised by `make data`), or a folder of WAV files: <class>/*.wav, "
        "or {train,validation,test}/<class>/*.wav"
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--hidden", type=int, default=128, help="RNN hidden size (each direction)")
        parser.add_argument("--mels", type=int, default=40, help="mel bands (40-64)")
        parser.add_argument("--rnn", choices=("lstm", "gru"), default="lstm", help="the recurrent cell")
        parser.add_argument("--unidirectional", action="store_true", help="one RNN direction, not two")
        parser.add_argument(
            "--conv",
            help="conv widths, each layer stride 2 in time (default: 16,32 for conv2d, 64,128 for conv1d)",
        )
        parser.add_argument(
            "--frontend",
            choices=("conv1d", "conv2d"),
            default="conv2d",
            help="conv2d (the proxy's choice, version 2): 3x3 convolutions over time and bands, the bands "
            "max-pooled; conv1d (version 1): the bands as the channels of 1-D convolutions over time",
        )
        parser.add_argument(
            "--lifter",
            type=int,
            default=0,
            help="keep each frame's first N cepstral coefficients (its envelope; 0: the whole spectrum)",
        )
        parser.add_argument("--dropout", type=float, default=0.1)
        parser.add_argument(
            "--norm",
            choices=("band", "clip"),
            default="band",
            help="clip: take off each clip's mean per band",
        )
        parser.add_argument(
            "--feature-augment",
            choices=("on", "off"),
            default="on",
            help="on (the proxy's choice with conv2d): VTLP, tempo, EQ, band-limit and 2+2 masks; off: one "
            "SpecAugment mask of each kind",
        )
        parser.add_argument(
            "--hold-out-engine",
            choices=("espeak-ng", "flite"),
            help="the unseen-engine proxy: train on the other engine, validate and test on this one",
        )
        parser.add_argument(
            "--train-fraction", type=float, default=1.0, help="train on this part of the clips"
        )

    def train(self, args: argparse.Namespace, cfg: TrainConfig) -> Path:
        from training.kinds.audio.feature_augment import FeatureAugment
        from training.kinds.audio.recipe import train_audio_model

        spec = AudioSpec(n_mels=args.mels)
        return train_audio_model(
            args.data,
            args.name,
            args.runs,
            cfg,
            spec=spec,
            augment=FeatureAugment() if args.feature_augment == "on" else FeatureAugment.off(),
            hold_out_engine=args.hold_out_engine,
            train_fraction=args.train_fraction,
            hidden_dim=args.hidden,
            rnn=args.rnn,
            bidirectional=not args.unidirectional,
            channels=tuple(
                int(w) for w in (args.conv or ("16,32" if args.frontend == "conv2d" else "64,128")).split(",")
            ),
            dropout=args.dropout,
            norm=args.norm,
            frontend=args.frontend,
            lifter=args.lifter,
        )

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
