"""Tabular datasets: UCI Letter Recognition and the IBM Telco churn set from pinned Debian packages of R
data (read with the ``rdata`` package, no R), and a user's CSV with a label column.

    letters  r-cran-mlbench's LetterRecognition.rda: 20,000 rows, 16 integer features, 26 letters;
             the classic split (first 16,000 train, last 4,000 test)
    churn    r-cran-modeldata's wa_churn (in its lazy-load database Rdata.rdb/.rdx): 7,043 customers,
             numeric and categorical features, churn Yes/No
    FILE.csv a header row, one column the label (--label), the rest features; an optional ``split``
             column (train/validation/test) fixes the split

``make data`` unpacks the Debian packages under $MODELSERVE_DATA_DIR (default .data) / debian.
Every loader returns a ``Table``: raw rows (dicts of feature -> value, as a client would send them),
labels, classes, the columns that are categorical, and the split.
"""

from __future__ import annotations

import csv
import gzip
import lzma
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from service.kinds.tabular.preprocess import Feature, TabularSpec, is_missing

R_LIBRARY = Path("debian/usr/lib/R/site-library")
LETTERS_RDA = R_LIBRARY / "mlbench/data/LetterRecognition.rda"
MODELDATA_DB = R_LIBRARY / "modeldata/data/Rdata"
SOURCES = {
    "letters": "UCI Letter Recognition (Frey & Slate 1991) from Debian r-cran-mlbench 2.1-3-1 "
    "(LetterRecognition.rda, GPL-2 packaging; UCI data CC BY 4.0)",
    "churn": "IBM Telco customer churn (wa_churn) from Debian r-cran-modeldata 1.1.0-1 (MIT)",
}


@dataclass
class Table:
    rows: list[dict[str, Any]]  # feature name -> raw value (number, string or None)
    labels: np.ndarray  # (N,) int64
    classes: list[str]
    columns: list[str]  # the features, in order
    categorical: set[str]
    split: dict[str, np.ndarray]  # train / validation / test row indices
    source: str
    fallbacks: dict[str, str] = field(default_factory=dict)

    def part(self, name: str) -> tuple[list[dict[str, Any]], np.ndarray]:
        idx = self.split[name]
        return [self.rows[i] for i in idx], self.labels[idx]


def data_dir() -> Path:
    return Path(os.environ.get("MODELSERVE_DATA_DIR", ".data"))


def _needs_make_data(path: Path) -> FileNotFoundError:
    return FileNotFoundError(f"{path} is missing: run `make data` (or set MODELSERVE_DATA_DIR)")


def _rdata() -> Any:
    import rdata

    warnings.filterwarnings("ignore", module="rdata")  # "Unknown encoding. Assumed ASCII." on old files
    return rdata


def _labelled(values: list[str]) -> tuple[np.ndarray, list[str]]:
    classes = sorted(set(values))
    index = {c: i for i, c in enumerate(classes)}
    return np.asarray([index[v] for v in values], dtype=np.int64), classes


def _split_validation(train: np.ndarray, labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from training.datasets import stratified_split

    fit, val = stratified_split(labels[train], (0.9, 0.1), seed)
    return train[fit], train[val]


def load_letters(seed: int = 0, root: Path | None = None) -> Table:
    """LetterRecognition: the classic split, first 16,000 rows train (10% of them validation), last 4,000
    test. Feature names as UCI writes them (x-box, y-box, ...)."""
    path = (root or data_dir()) / LETTERS_RDA
    if not path.is_file():
        raise _needs_make_data(path)
    frame = _rdata().read_rda(str(path))["LetterRecognition"]
    columns = [str(c).replace(".", "-") for c in frame.columns[1:]]
    values = frame.iloc[:, 1:].to_numpy(dtype=np.float64)
    rows = [dict(zip(columns, (int(v) for v in row), strict=True)) for row in values]
    labels, classes = _labelled([str(v) for v in frame["lettr"]])
    train, val = _split_validation(np.arange(16000), labels, seed)
    split = {"train": train, "validation": val, "test": np.arange(16000, len(rows))}
    return Table(rows, labels, classes, columns, set(), split, SOURCES["letters"])


def read_lazyload(base: Path, name: str) -> Any:
    """One object of an R lazy-load database (``base``.rdx index, ``base``.rdb data) as rdata converts it.

    The index is a gzipped serialisation of {variables: {name: (offset, length)}}; each entry in the .rdb
    is a 4-byte length, a type byte ('Z' xz, '2' bzip2, '1' zlib) and the compressed serialisation."""
    rdata = _rdata()
    from rdata.parser import parse_data

    for suffix in (".rdx", ".rdb"):
        if not base.with_suffix(suffix).is_file():
            raise _needs_make_data(base.with_suffix(suffix))
    index = rdata.conversion.convert(parse_data(gzip.decompress(base.with_suffix(".rdx").read_bytes())))
    offset, length = (int(v) for v in index["variables"][name])
    with base.with_suffix(".rdb").open("rb") as f:
        f.seek(offset)
        blob = f.read(length)
    kind, payload = blob[4:5], blob[5:]
    if kind == b"Z":  # R writes raw LZMA2 (no .xz container)
        filters = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}]
        raw = lzma.decompress(payload, format=lzma.FORMAT_RAW, filters=filters)
    elif kind == b"2":
        import bz2

        raw = bz2.decompress(payload)
    else:
        import zlib

        raw = zlib.decompress(payload if kind == b"1" else blob[4:])
    return rdata.conversion.convert(parse_data(raw))


def load_churn(seed: int = 0, root: Path | None = None) -> Table:
    """wa_churn: predict churn (Yes/No) from the other 19 columns; R factors are categorical; a stratified,
    seeded 70/15/15 split. total_charges is missing for 11 new customers: not required."""
    from training.datasets import stratified_split

    frame = read_lazyload((root or data_dir()) / MODELDATA_DB, "wa_churn")
    columns = [str(c) for c in frame.columns if c != "churn"]
    categorical = {c for c in columns if str(frame[c].dtype) == "category"}
    rows = []
    for record in frame[columns].to_dict("records"):
        rows.append({c: _plain(v, c in categorical) for c, v in record.items()})
    labels, classes = _labelled([str(v) for v in frame["churn"]])
    train, val, test = stratified_split(labels, (0.7, 0.15, 0.15), seed)
    split = {"train": train, "validation": val, "test": test}
    return Table(rows, labels, classes, columns, categorical, split, SOURCES["churn"])


def _plain(value: Any, categorical: bool) -> Any:
    """A pandas cell as a client would send it: str for categories, float for numbers, None if missing."""
    import pandas as pd

    if pd.isna(value):
        return None
    return str(value) if categorical else float(value)


def load_csv(path: Path, label: str, categorical: set[str] | None = None, seed: int = 0) -> Table:
    """A user's CSV: a header row, the ``label`` column, the rest features. A column is categorical when
    named in ``categorical`` or when a value is not a number. An optional ``split`` column (train,
    validation, test) fixes the split; otherwise a stratified, seeded 70/15/15 one is drawn."""
    from training.datasets import stratified_split

    with path.open(encoding="utf-8-sig", newline="") as f:
        records = list(csv.DictReader(f))
    if not records:
        raise ValueError(f"{path}: no rows")
    header = list(records[0].keys())
    if label not in header:
        raise ValueError(f"{path}: no label column {label!r}; columns: {', '.join(header)}")
    has_split = "split" in header and all(r["split"] in ("train", "validation", "test") for r in records)
    columns = [c for c in header if c != label and not (has_split and c == "split")]
    categorical = set(categorical or ()) | {
        c for c in columns if any(not is_missing(r[c]) and not _is_number(r[c]) for r in records)
    }
    unknown = categorical - set(columns)
    if unknown:
        raise ValueError(f"{path}: --categorical names no column: {', '.join(sorted(unknown))}")
    rows = [
        {
            c: None if is_missing(r[c]) else (r[c].strip() if c in categorical else float(r[c]))
            for c in columns
        }
        for r in records
    ]
    labels, classes = _labelled([r[label].strip() for r in records])
    if has_split:
        split = {
            s: np.asarray([i for i, r in enumerate(records) if r["split"] == s], dtype=np.int64)
            for s in ("train", "validation", "test")
        }
    else:
        train, val, test = stratified_split(labels, (0.7, 0.15, 0.15), seed)
        split = {"train": train, "validation": val, "test": test}
    return Table(rows, labels, classes, columns, categorical, split, f"CSV {path} (label {label!r})")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def load_table(
    source: str, label: str | None = None, categorical: set[str] | None = None, seed: int = 0
) -> Table:
    """``letters``, ``churn``, or a CSV file (with ``label``)."""
    if source == "letters":
        return load_letters(seed)
    if source == "churn":
        return load_churn(seed)
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"{source}: not 'letters', 'churn' nor a CSV file")
    if not label:
        raise ValueError("a CSV needs --label: the column to predict")
    return load_csv(path, label, categorical, seed)


def feature_spec(table: Table) -> TabularSpec:
    """The features as model.json declares them: numeric ranges and means from the training split only;
    categories from the whole table (they are the schema, not a statistic); a feature with a missing
    value anywhere is not required, and is filled with the training median (numeric) or most frequent
    category."""
    train_rows, _ = table.part("train")
    features = []
    for c in table.columns:
        present = [r[c] for r in train_rows if r[c] is not None]
        missing = any(r[c] is None for r in table.rows)
        if c in table.categorical:
            categories = sorted({str(r[c]) for r in table.rows if r[c] is not None})
            counts = {k: 0 for k in categories}
            for v in present:
                counts[str(v)] += 1
            mode = max(categories, key=lambda k: counts[k])
            features.append(
                Feature(
                    name=c,
                    type="categorical",
                    categories=categories,
                    required=not missing,
                    default=mode if missing else None,
                    fallback=table.fallbacks.get(c),
                )
            )
            continue
        values = np.asarray(present, dtype=np.float64)
        features.append(
            Feature(
                name=c,
                min=float(values.min()),
                max=float(values.max()),
                integer=bool(np.all(values == np.round(values))),
                mean=round(float(values.mean()), 5),
                required=not missing,
                default=float(np.median(values)) if missing else None,
            )
        )
    return TabularSpec(features=features)


LABEL_COLUMNS = {"letters": "lettr", "churn": "churn"}


def write_held_out(name: str, out_dir: Path) -> Path:
    """The test split of ``letters`` or ``churn`` as a CSV (features, then the label column): committed
    under tests/data so the shipped models' accuracy is re-checked without `make data`."""
    table = load_table(name)
    rows, labels = table.part("test")
    path = out_dir / f"{name}-test.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow([*table.columns, LABEL_COLUMNS[name]])
        for row, label in zip(rows, labels, strict=True):
            cells = ["" if row[c] is None else _cell(row[c]) for c in table.columns]
            writer.writerow([*cells, table.classes[label]])
    return path


def _cell(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


if __name__ == "__main__":  # python -m training.kinds.tabular.data tests/data: rewrite the held-out CSVs
    import sys

    for dataset in ("letters", "churn"):
        print(write_held_out(dataset, Path(sys.argv[1] if len(sys.argv) > 1 else "tests/data")))
