"""The `modelserve` command: serve, and (with the train extra) train and export."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def _serve(args: argparse.Namespace) -> int:
    from service.server import run

    overrides = {
        k: v
        for k, v in (
            ("host", args.host),
            ("port", args.port),
            ("models_dir", args.models),
            ("workers", args.workers),
        )
        if v is not None
    }
    run(**overrides)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelserve", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser(
        "serve", help="serve the model repository over HTTP (flags override MODELSERVE_* env)"
    )
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--models", type=Path, help="model repository folder")
    serve.add_argument("--workers", type=int, help="uvicorn worker processes")
    serve.set_defaults(func=_serve)
    try:
        from training.cli import add_commands
    except ImportError:  # the service alone, without the train extra
        pass
    else:
        add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
