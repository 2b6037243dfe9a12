"""Images for training: the CNN recipe (recipe.py beside it), its options, and what export needs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from service.kinds.image.preprocess import FRAMINGS, ImageSpec
from service.repository.model_files import TensorDecl
from training.kinds import register
from training.kinds.base import GraphInput, TrainingKind
from training.kinds.image.augment import AUGMENTATIONS
from training.kinds.image.sources import IMAGE_SOURCES

if TYPE_CHECKING:
    from torch import nn

    from training.train import TrainConfig


@register
class ImageTraining(TrainingKind):
    name = "image"
    summary = "train a CNN on images"
    data_help = (
        "'digits' (bundled), 'mnist' or 'fashion-mnist' (pinned: make data), or a folder: MNIST IDX files, "
        "CIFAR-10 batches, or one sub-folder per class"
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--size", type=int, help="square input size (default 28 for digits/MNIST, else 32)"
        )
        parser.add_argument("--channels", type=int, choices=(1, 3), help="1 grey, 3 RGB")
        parser.add_argument("--widths", help="conv widths, comma-separated (default 16,32,64)")
        parser.add_argument(
            "--framing",
            choices=sorted(FRAMINGS),
            help="how a served picture is framed (default: the pinned source's own, else resize)",
        )
        parser.add_argument(
            "--augment",
            choices=sorted(AUGMENTATIONS),
            help="augmentation for framed models (default: the pinned source's own)",
        )
        parser.add_argument("--copies", type=int, default=2, help="augmented copies of the training set")
        parser.add_argument(
            "--pool", choices=("mean", "flatten"), default="mean", help="CNN head: average or flatten"
        )

    def train(self, args: argparse.Namespace, cfg: TrainConfig) -> Path:
        from training.kinds.image.recipe import default_image_spec, train_image_model

        spec = default_image_spec(args.data)
        if args.size or args.channels or args.framing:
            size = args.size or spec.height
            spec = ImageSpec(size, size, args.channels or spec.channels, args.framing or spec.framing)
        widths = tuple(int(w) for w in args.widths.split(",")) if args.widths else None
        pinned = IMAGE_SOURCES.get(args.data)
        augment = args.augment or (pinned.augment if pinned and spec.framing != "resize" else None)
        return train_image_model(
            args.data,
            args.name,
            args.runs,
            cfg,
            spec=spec,
            widths=widths,
            augment=augment,
            copies=args.copies,
            pool=args.pool,
        )

    def build_net(self, net_config: dict[str, Any]) -> nn.Module:
        from training.nets import ImageCNN, ImageCNNConfig

        cfg = dict(net_config)
        cfg["widths"], cfg["mean"], cfg["std"] = (tuple(cfg[k]) for k in ("widths", "mean", "std"))
        return ImageCNN(ImageCNNConfig(**cfg))

    def graph_input(self, ckpt: dict[str, Any]) -> GraphInput:
        spec = ImageSpec.from_preprocessing(ckpt["preprocessing"]["image"])
        shape = [spec.height, spec.width, spec.channels]
        return GraphInput(
            TensorDecl(name="pixels", datatype="UINT8", shape=[-1, *shape]),
            {0: "batch"},
            np.zeros((2, *shape), dtype=np.uint8),
        )

    def sample_batches(self, ckpt: dict[str, Any]) -> list[np.ndarray]:
        images = np.asarray(ckpt["samples"], dtype=np.uint8)
        return [images[:1], images[:7]]

    def test_set(self, ckpt: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        from training.kinds.image.data import load_images

        spec = ImageSpec.from_preprocessing(ckpt["preprocessing"]["image"])
        images = load_images(ckpt["data"]["source"], spec, ckpt["data"]["seed"]).test
        return images.images, images.labels
