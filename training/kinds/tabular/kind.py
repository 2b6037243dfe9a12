"""Feature rows for training: the MLP recipe (training/kinds/tabular/recipe.py), its options, and what export needs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from service.kinds.tabular.preprocess import TabularSpec
from service.repository.model_files import TensorDecl
from training.kinds import register
from training.kinds.base import GraphInput, TrainingKind

if TYPE_CHECKING:
    from torch import nn

    from training.train import TrainConfig


@register
class TabularTraining(TrainingKind):
    name = "tabular"
    summary = "train an MLP on feature rows"
    data_help = (
        "'letters' or 'churn' (make data: Debian r-cran-mlbench / r-cran-modeldata), or a CSV file with a "
        "header row and a --label column"
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--label", help="the CSV column to predict (letters and churn know theirs)")
        parser.add_argument(
            "--categorical",
            default="",
            help="CSV columns to treat as categories, comma-separated (columns holding text always are)",
        )
        parser.add_argument(
            "--unknown-category",
            choices=("refuse", "most_frequent"),
            default="refuse",
            help="an unseen category at serving: 422, or read as the column's most frequent (flagged)",
        )
        parser.add_argument("--hidden", default="256,256", help="hidden layer sizes, comma-separated")
        parser.add_argument("--dropout", type=float, default=0.2)

    def train(self, args: argparse.Namespace, cfg: TrainConfig) -> Path:
        from training.kinds.tabular.recipe import train_tabular_model

        return train_tabular_model(
            args.data,
            args.name,
            args.runs,
            cfg,
            label=args.label,
            categorical={c.strip() for c in args.categorical.split(",") if c.strip()},
            fallback=None if args.unknown_category == "refuse" else args.unknown_category,
            hidden=tuple(int(h) for h in args.hidden.split(",")),
            dropout=args.dropout,
        )

    def build_net(self, net_config: dict[str, Any]) -> nn.Module:
        from training.nets import TabularMLP, TabularMLPConfig

        cfg = dict(net_config)
        for key in ("numeric", "mean", "std", "hidden"):
            cfg[key] = tuple(cfg[key])
        cfg["categorical"] = tuple(tuple(c) for c in cfg["categorical"])
        return TabularMLP(TabularMLPConfig(**cfg))

    def graph_input(self, ckpt: dict[str, Any]) -> GraphInput:
        width = len(TabularSpec.from_preprocessing(ckpt["preprocessing"]["tabular"]).features)
        return GraphInput(
            TensorDecl(name="features", datatype="FP32", shape=[-1, width]),
            {0: "batch"},
            np.asarray(ckpt["samples"][:2], dtype=np.float32),
        )

    def sample_batches(self, ckpt: dict[str, Any]) -> list[np.ndarray]:
        rows = np.asarray(ckpt["samples"], dtype=np.float32)
        return [rows[:1], rows[:7]]

    def test_set(self, ckpt: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        from training.kinds.tabular.recipe import held_out_split

        return held_out_split(ckpt)
