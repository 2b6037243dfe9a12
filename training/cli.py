"""`modelserve train <kind> ...` (a kind in training/kinds/) and `modelserve export ...`: argument parsing only."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from training import kinds


def add_commands(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="train a classifier and export it to the model repository")
    by_kind = train.add_subparsers(dest="kind", required=True)
    for kind in kinds.names():
        trainer = kinds.get(kind)
        p = by_kind.add_parser(kind, help=trainer.summary)
        p.add_argument("--data", required=True, help=trainer.data_help)
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
        trainer.add_arguments(p)
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
    checkpoint = kinds.get(args.kind).train(args, cfg)
    print(f"checkpoint: {checkpoint}  report: {checkpoint.parent / 'report.json'}")
    if not args.no_export:
        print(f"exported: {export(checkpoint, args.models, args.name, args.version)}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from training.export import export

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(f"exported: {export(args.checkpoint, args.models, args.name, args.version, int8=args.int8)}")
    return 0
