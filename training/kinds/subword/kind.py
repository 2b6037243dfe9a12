"""Texts for transformer models: fine-tune a pretrained encoder (training/kinds/subword/recipe.py) and export it
with its tokenizer.json (training/kinds/subword/export.py: two graph inputs, so this kind writes its own graph)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.kinds import register
from training.kinds.base import TrainingKind

if TYPE_CHECKING:
    from torch import nn

    from training.train import TrainConfig


@register
class SubwordTraining(TrainingKind):
    name = "subword"
    summary = "fine-tune a pretrained transformer encoder (MiniLM) on texts"
    data_help = (
        "'rotten_tomatoes' (make data), a CSV/JSONL file with text,label[,split], or an aclImdb folder"
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--encoder", default="all-minilm-l6-v2", help="a pretrained encoder (make data)")
        parser.add_argument("--max-length", type=int, default=128, help="subword tokens kept per text")
        parser.add_argument("--pooling", choices=("mean", "cls"), default="mean")
        parser.add_argument("--warmup", type=float, default=0.06, help="share of the steps warming up")
        parser.add_argument("--augment", type=int, default=0, help="add N short phrases (negative/positive)")
        parser.add_argument(
            "--weights",
            choices=("auto", "fp32", "int8-weights", "int8-dynamic"),
            default="auto",
            help="shipped weights; auto: int8-stored weights (fp32 compute) if they keep validation "
            "accuracy within 1 point of fp32, else fp32 (training/kinds/subword/export.py)",
        )

    def train(self, args: argparse.Namespace, cfg: TrainConfig) -> Path:
        import torch

        from training.kinds.subword.recipe import train_transformer

        path = train_transformer(
            args.data,
            args.name,
            args.runs,
            cfg,
            encoder=args.encoder,
            max_length=args.max_length,
            pooling=args.pooling,
            warmup=args.warmup,
            augment=args.augment,
        )
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        ckpt["weights"] = (
            args.weights
        )  # what export ships (training/kinds/subword/export.py: export_transformer)
        torch.save(ckpt, path)
        return path

    def build_net(self, net_config: dict[str, Any]) -> nn.Module:
        from training.kinds.subword.recipe import EncoderClassifier, EncoderClassifierConfig

        return EncoderClassifier(EncoderClassifierConfig(**net_config), pretrained=False)

    def export(
        self, checkpoint: Path, models_dir: Path, name: str, version: int | None, int8: bool
    ) -> Path | None:
        import torch

        from training.kinds.subword.export import export_transformer

        weights = (
            "int8-dynamic"
            if int8
            else torch.load(checkpoint, map_location="cpu", weights_only=False).get("weights", "auto")
        )
        return export_transformer(checkpoint, models_dir, name, version, weights)
