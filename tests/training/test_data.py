"""Each data format a user brings, on small files the test writes itself."""

from __future__ import annotations

import csv
import gzip
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from service.kinds.image.preprocess import ImageSpec
from training.kinds.image.data import load_digits, load_images
from training.kinds.text.data import load_texts

GREY28 = ImageSpec(28, 28, 1)


def write_idx(path: Path, array: np.ndarray, gz: bool) -> None:
    codes = {np.uint8: 0x08}
    header = bytes([0, 0, codes[array.dtype.type], array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    raw = header + array.tobytes()
    if gz:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx(tmp_path: Path, gz: bool) -> None:
    rng = np.random.default_rng(0)
    for part, n in (("train", 40), ("t10k", 10)):
        write_idx(
            tmp_path / f"{part}-images-idx3-ubyte", rng.integers(0, 255, (n, 28, 28), dtype=np.uint8), gz
        )
        write_idx(tmp_path / f"{part}-labels-idx1-ubyte", (np.arange(n) % 10).astype(np.uint8), gz)
    splits = load_images(str(tmp_path), GREY28)
    assert splits.train.images.shape[1:] == (28, 28, 1)
    assert len(splits.train.labels) + len(splits.validation.labels) == 40
    assert len(splits.test.labels) == 10
    assert splits.classes == [str(d) for d in range(10)]


def test_cifar10_batches(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for name, n in (("data_batch_1", 30), ("data_batch_2", 30), ("test_batch", 10)):
        batch = {
            b"data": rng.integers(0, 255, (n, 3072), dtype=np.uint8),
            b"labels": [i % 10 for i in range(n)],
        }
        (tmp_path / name).write_bytes(pickle.dumps(batch))
    names = [
        b"airplane",
        b"automobile",
        b"bird",
        b"cat",
        b"deer",
        b"dog",
        b"frog",
        b"horse",
        b"ship",
        b"truck",
    ]
    (tmp_path / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}))
    splits = load_images(str(tmp_path), ImageSpec(32, 32, 3))
    assert splits.train.images.shape[1:] == (32, 32, 3)
    assert len(splits.train.labels) + len(splits.validation.labels) == 60
    assert splits.classes[0] == "airplane"


def test_image_folder_any_size_and_mode(tmp_path: Path) -> None:
    for cls, colour in (("cats", (200, 30, 30)), ("dogs", (30, 30, 200))):
        (tmp_path / cls).mkdir()
        for i in range(10):
            img = Image.new("RGB", (40 + i, 30), colour)
            (img.convert("P") if i % 2 else img).save(tmp_path / cls / f"{i}.png")
    (tmp_path / "cats" / "notes.txt").write_text("ignored")
    splits = load_images(str(tmp_path), ImageSpec(32, 32, 3))
    assert splits.classes == ["cats", "dogs"]
    assert sum(len(s.labels) for s in (splits.train, splits.validation, splits.test)) == 20
    assert splits.train.images.shape[1:] == (32, 32, 3)


def test_digits_are_scaled_to_28x28_grey() -> None:
    splits = load_digits(GREY28)
    n = sum(len(s.labels) for s in (splits.train, splits.validation, splits.test))
    assert n == 1797
    assert splits.train.images.shape[1:] == (28, 28, 1) and splits.train.images.max() > 200


def test_text_csv_and_jsonl(tmp_path: Path) -> None:
    rows = [(f"text number {i}", "pos" if i % 2 else "neg") for i in range(40)]
    with (tmp_path / "t.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps({"text": t, "label": lab}) for t, lab in rows))
    for name in ("t.csv", "t.jsonl"):
        splits = load_texts(str(tmp_path / name))
        assert splits.classes == ["neg", "pos"]
        assert sum(len(s.texts) for s in (splits.train, splits.validation, splits.test)) == 40


def test_aclimdb_folders(tmp_path: Path) -> None:
    for part in ("train", "test"):
        for sub, word in (("pos", "great"), ("neg", "awful")):
            folder = tmp_path / part / sub
            folder.mkdir(parents=True)
            for i in range(6):
                (folder / f"{i}_7.txt").write_text(f"A {word} movie.<br />Number {i}.")
    splits = load_texts(str(tmp_path))
    assert splits.classes == ["negative", "positive"]
    assert len(splits.test.texts) == 12
    assert "<br />" not in splits.train.texts[0]
