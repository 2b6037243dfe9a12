"""Text datasets: the Rotten Tomatoes snippets (`make data`, sources.py), CSV/JSONL with text and label
columns, IMDB's aclImdb folder layout."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from training.datasets import Splits, TextData, take, three_way, with_validation


def _labelled(rows: list[tuple[str, str]]) -> tuple[TextData, list[str]]:
    classes = sorted({label for _, label in rows})
    index = {c: i for i, c in enumerate(classes)}
    return TextData(
        [t for t, _ in rows], np.asarray([index[lab] for _, lab in rows], dtype=np.int64)
    ), classes


def load_text_table(path: Path, seed: int = 0) -> Splits[TextData]:
    """CSV (header with text,label) or JSONL ({"text":..., "label":...}); an optional split column
    (train/validation/test) fixes the split, otherwise one is drawn."""
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        with path.open(encoding="utf-8") as f:
            records = [json.loads(line) for line in f if line.strip()]
    else:
        with path.open(encoding="utf-8", newline="") as f:
            records = list(csv.DictReader(f))
    if not records or "text" not in records[0] or "label" not in records[0]:
        raise ValueError(f"{path}: needs 'text' and 'label' fields")
    data, classes = _labelled([(str(r["text"]), str(r["label"])) for r in records])
    if all(r.get("split") in ("train", "validation", "test") for r in records):
        idx = {
            s: np.asarray([i for i, r in enumerate(records) if r["split"] == s], dtype=np.int64)
            for s in ("train", "validation", "test")
        }
        return Splits(
            take(data, idx["train"]),
            take(data, idx["validation"]),
            take(data, idx["test"]),
            classes,
            f"text table {path}",
        )
    return three_way(data, classes, f"text table {path}", seed)


def load_imdb(folder: Path, seed: int = 0) -> Splits[TextData]:
    """IMDB's aclImdb layout: {train,test}/{pos,neg}/*.txt."""

    def part(name: str) -> list[tuple[str, str]]:
        rows = []
        for label, sub in (("negative", "neg"), ("positive", "pos")):
            for path in sorted((folder / name / sub).glob("*.txt")):
                rows.append((path.read_text(encoding="utf-8").replace("<br />", " "), label))
        return rows

    train, classes = _labelled(part("train"))
    test, _ = _labelled(part("test"))
    return with_validation(train, test, classes, f"aclImdb {folder}", seed)


def load_texts(source: str, seed: int = 0) -> Splits[TextData]:
    """``rotten_tomatoes`` (installed by `make data`), a CSV/JSONL file, or an aclImdb folder."""
    if source == "rotten_tomatoes":
        from training.kinds.text.sources import load_rotten_tomatoes

        return load_rotten_tomatoes(seed)
    path = Path(source)
    if path.is_dir() and (path / "train" / "pos").is_dir():
        return load_imdb(path, seed)
    if path.is_file():
        return load_text_table(path, seed)
    raise FileNotFoundError(f"{source}: not 'rotten_tomatoes', a CSV/JSONL file, nor an aclImdb folder")
