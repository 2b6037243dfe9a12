"""The `modelserve` command: serve, and (with the train extra) train and export."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _serve(args: argparse.Namespace) -> int:
    from service.process.server import run

    overrides = {
        k: v
        for k, v in (
            ("host", args.host),
            ("port", args.port),
            ("grpc_port", args.grpc_port),
            ("models_dir", args.models),
            ("workers", args.workers),
        )
        if v is not None
    }
    return run(**overrides)


# What the predict command reads as files: an argument with one of these suffixes names a file.
_FILE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".wav", ".wave", ".csv"}
)


def _client(args: argparse.Namespace) -> Any:
    from service.client import ModelServeClient

    return ModelServeClient(args.url, api_key=args.api_key, timeout=args.timeout)


def _predict(args: argparse.Namespace) -> int:
    """Files that exist are images (or WAV clips), sent in chunks; otherwise the arguments are texts."""
    from service.client import ModelServeError

    if not args.inputs and not args.row:
        print("error: give inputs (files or texts) or --row", file=sys.stderr)
        return 2
    try:
        given = [json.loads(r) for r in args.row]
    except json.JSONDecodeError as e:
        print(f"error: --row is not JSON: {e}", file=sys.stderr)
        return 2
    if not args.text:  # a file name that is no file is a mistake, not a text to classify
        for x in args.inputs:
            path = Path(x)
            if not path.is_file() and (path.is_dir() or path.suffix.lower() in _FILE_SUFFIXES):
                what = "is a directory" if path.is_dir() else "no such file"
                print(f"error: {x}: {what} (--text sends the arguments as texts)", file=sys.stderr)
                return 2
    as_csv = not args.text and all(x.lower().endswith(".csv") and Path(x).is_file() for x in args.inputs)
    as_images = not args.text and all(Path(x).is_file() for x in args.inputs)
    rows: list[tuple[str, Any]] = []
    try:
        with _client(args) as ms:
            if args.row:  # tabular rows given as JSON on the command line
                rows += zip(args.row, ms.predict_rows(args.model, given, top_k=args.top_k), strict=True)
            elif as_csv:  # tabular rows, one prediction per data row
                for path in args.inputs:
                    answers = ms.predict_csv(args.model, Path(path), top_k=args.top_k)
                    rows += [(f"{path} row {i + 1}", p) for i, p in enumerate(answers)]
            elif as_images:
                wav = all(Path(x).suffix.lower() in (".wav", ".wave") for x in args.inputs)
                send = ms.predict_audios if wav else ms.predict_images
                chunks = [args.inputs[i : i + args.chunk] for i in range(0, len(args.inputs), args.chunk)]
                progress = len(args.inputs) > args.chunk and sys.stderr.isatty()
                for n, chunk in enumerate(chunks, 1):
                    rows += zip(chunk, send(args.model, chunk, top_k=args.top_k), strict=True)
                    if progress:
                        done = min(n * args.chunk, len(args.inputs))
                        bar = "#" * (30 * done // len(args.inputs))
                        print(f"\r[{bar:<30}] {done}/{len(args.inputs)}", end="", file=sys.stderr, flush=True)
                if progress:
                    print(file=sys.stderr)
            else:
                rows += zip(
                    args.inputs, ms.predict_text(args.model, args.inputs, top_k=args.top_k), strict=True
                )
    except ModelServeError as e:
        print(f"error ({e.status_code or 'no answer'}): {e.message}", file=sys.stderr)
        return 1
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "input": name,
                        "label": p.label,
                        "index": p.index,
                        "score": p.score,
                        "top_k": [vars(t) for t in p.top_k],
                        "model": p.model,
                        "version": p.version,
                        **p.notes,
                    }
                    for name, p in rows
                ],
                indent=2,
            )
        )
    else:
        for name, p in rows:
            extra = (
                "  " + ", ".join(f"{t.label} {t.score:.3f}" for t in p.top_k[1:]) if args.top_k > 1 else ""
            )
            flagged = [o["feature"] for o in p.notes.get("out_of_range", [])]
            if flagged:
                extra += f"  (outside the training range: {', '.join(flagged)})"
            print(f"{p.label}\t{p.score:.4f}\t{name}{extra}")
    return 0


def _models(args: argparse.Namespace) -> int:
    from service.client import ModelServeError

    try:
        with _client(args) as ms:
            models = ms.models()
    except ModelServeError as e:
        print(f"error ({e.status_code or 'no answer'}): {e.message}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([vars(m) for m in models], indent=2))
    else:
        for m in models:
            labels = ", ".join(m.labels[:10]) + (" ..." if len(m.labels) > 10 else "")
            print(f"{m.name}\tversions {','.join(m.versions)}\t{m.input_kind}\t{labels}")
    return 0


def _add_client_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--url",
        default=os.environ.get("MODELSERVE_URL", "http://localhost:8080"),
        help="server address (env MODELSERVE_URL)",
    )
    p.add_argument("--api-key", default=os.environ.get("MODELSERVE_API_KEY"), help="(env MODELSERVE_API_KEY)")
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("--json", action="store_true", help="JSON output")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelserve", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser(
        "serve", help="serve the model repository over HTTP (flags override MODELSERVE_* env)"
    )
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--grpc-port", type=int, help="Open Inference Protocol over gRPC (0: off)")
    serve.add_argument("--models", help="model repository: a folder or s3://bucket/prefix")
    serve.add_argument("--workers", help='worker processes: "auto" (one per usable CPU, the default) or N')
    serve.set_defaults(func=_serve)
    pred = sub.add_parser("predict", help="classify image files, WAV clips or texts with a running server")
    pred.add_argument("--model", required=True)
    pred.add_argument("inputs", nargs="*", help="image files, WAV files, CSV files (tabular rows), or texts")
    pred.add_argument(
        "--row",
        action="append",
        default=[],
        help="a tabular row as JSON: an object of named features or a list of values (repeatable)",
    )
    pred.add_argument("--text", action="store_true", help="treat every input as text, even a file name")
    pred.add_argument("--top-k", type=int, default=1)
    pred.add_argument("--chunk", type=int, default=32, help="files per request")
    _add_client_options(pred)
    pred.set_defaults(func=_predict)
    models = sub.add_parser("models", help="list the models a running server serves")
    _add_client_options(models)
    models.set_defaults(func=_models)
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
