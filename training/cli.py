"""`modelserve train image|text ...` and `modelserve export ...`: argument parsing only."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from service.preprocess.image import ImageSpec


def add_commands(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="train a classifier and export it to the model repository")
    kinds = train.add_subparsers(dest="kind", required=True)
    for kind, data_help in (
        (
            "image",
            "'digits' (bundled), or a folder: MNIST IDX files, CIFAR-10 batches, or one sub-folder per class",
        ),
        ("text", "'sentiment' (bundled), a CSV/JSONL file with text,label[,split], or an aclImdb folder"),
    ):
        p = kinds.add_parser(kind, help=f"train a {'CNN' if kind == 'image' else 'LSTM'} on {kind}s")
        p.add_argument("--data", required=True, help=data_help)
        p.add_argument("--name", required=True, help="model name in the repository")
        p.add_argument("--epochs", type=int, default=20)
        p.add_argument("--batch-size", type=int, default=64)
        p.add_argument("--lr", type=float, default=3e-3)
        p.add_argument(
            "--patience", type=int, default=5, help="early stop after this many epochs without gain"
        )
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--runs", type=Path, default=Path("runs"), help="checkpoint and report folder")
        p.add_argument("--models", type=Path, default=Path("models"), help="model repository to export into")
        p.add_argument("--version", type=int, default=None, help="version to write (default: next free)")
        p.add_argument("--no-export", action="store_true", help="only train and keep the checkpoint")
        p.add_argument("--no-progress", action="store_true")
        if kind == "image":
            p.add_argument(
                "--size", type=int, help="square input size (default 28 for digits/MNIST, else 32)"
            )
            p.add_argument("--channels", type=int, choices=(1, 3), help="1 grey, 3 RGB")
            p.add_argument("--widths", help="conv widths, comma-separated (default 16,32,64)")
        else:
            p.add_argument("--max-length", type=int, default=128, help="tokens kept per text")
            p.add_argument("--vocab-size", type=int, default=20000)
            p.add_argument("--hidden", type=int, default=96, help="LSTM hidden size")
        p.set_defaults(func=run_train)

    exp = sub.add_parser("export", help="export a training checkpoint to the model repository")
    exp.add_argument("--checkpoint", type=Path, required=True)
    exp.add_argument("--name", required=True)
    exp.add_argument("--models", type=Path, default=Path("models"))
    exp.add_argument("--version", type=int, default=None)
    exp.add_argument(
        "--int8",
        action="store_true",
        help="ship onnxruntime's dynamic int8 quantisation (fails past a 0.5-point accuracy drop)",
    )
    exp.set_defaults(func=run_export)


def run_train(args: argparse.Namespace) -> int:
    from training.export import export
    from training.recipes import default_image_spec, train_image_model, train_text_model
    from training.train import TrainConfig

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        patience=args.patience,
        seed=args.seed,
        progress=not args.no_progress,
    )
    if args.kind == "image":
        spec = default_image_spec(args.data)
        if args.size or args.channels:
            size = args.size or spec.height
            spec = ImageSpec(size, size, args.channels or spec.channels)
        widths = tuple(int(w) for w in args.widths.split(",")) if args.widths else None
        checkpoint = train_image_model(args.data, args.name, args.runs, cfg, spec=spec, widths=widths)
    else:
        checkpoint = train_text_model(
            args.data,
            args.name,
            args.runs,
            cfg,
            max_length=args.max_length,
            vocab_size=args.vocab_size,
            hidden_dim=args.hidden,
        )
    print(f"checkpoint: {checkpoint}  report: {checkpoint.parent / 'report.json'}")
    if not args.no_export:
        print(f"exported: {export(checkpoint, args.models, args.name, args.version)}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from training.export import export

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(f"exported: {export(args.checkpoint, args.models, args.name, args.version, int8=args.int8)}")
    return 0
