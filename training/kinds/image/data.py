"""Image datasets: scikit-learn's ``digits`` (bundled, no download), MNIST IDX files (raw or .gz, and the
pinned sources `make data` installs), CIFAR-10 python batches, an image folder (one sub-folder per class).
Every picture is framed by the serving preprocessor, so the model trains on what it will be sent."""

from __future__ import annotations

import gzip
import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from service.errors import InvalidInput
from service.kinds.image.preprocess import ImageSpec, decode, to_array
from training.datasets import ImageData, Splits, three_way, with_validation
from training.kinds.image.sources import IMAGE_SOURCES

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def _resized(images: np.ndarray, spec: ImageSpec) -> np.ndarray:
    """Pass raw uint8 images through the serving preprocessor: (N, H, W, C) at the model's size."""
    mode = "L" if images.shape[-1] == 1 else "RGB"
    return np.stack(
        [framed(Image.fromarray(img.squeeze(-1) if mode == "L" else img, mode), spec) for img in images]
    )


def framed(img: Image.Image, spec: ImageSpec) -> np.ndarray:
    """The serving preprocessor's frame of one training picture; one it finds blank (a data set's
    rare near-empty picture) is resized instead, so a data set never fails to load over it."""
    try:
        return to_array(img, spec)
    except InvalidInput:
        return to_array(img, replace(spec, framing="resize"))


def load_digits(spec: ImageSpec, seed: int = 0) -> Splits[ImageData]:
    """scikit-learn's bundled 8x8 handwritten digits (values 0..16), scaled to ``spec`` (28x28 grey)."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    raw = (bunch.images * (255.0 / 16.0)).round().astype(np.uint8)[..., None]  # (N, 8, 8, 1)
    data = ImageData(_resized(raw, spec), bunch.target.astype(np.int64))
    return three_way(data, [str(d) for d in range(10)], "sklearn digits", seed)


def _read_idx(path: Path) -> np.ndarray:
    """One IDX file (MNIST's format), raw or gzipped: magic (0, 0, dtype, ndim), big-endian dims, data."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an IDX file")
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    dtype, ndim = np.dtype(dtypes[raw[2]]), raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(int)
    return np.frombuffer(raw, dtype=dtype, offset=4 + 4 * ndim).reshape(dims)


def _find(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (folder / name).exists():
            return folder / name
    raise FileNotFoundError(f"{folder}: no {stem}[.gz]")


def load_mnist(folder: Path, spec: ImageSpec, seed: int = 0) -> Splits[ImageData]:
    """MNIST (or Fashion-MNIST) IDX files: train-images-idx3-ubyte[.gz] and friends."""
    parts = {}
    for part in ("train", "t10k"):
        images = _read_idx(_find(folder, f"{part}-images-idx3-ubyte")).astype(np.uint8)[..., None]
        labels = _read_idx(_find(folder, f"{part}-labels-idx1-ubyte")).astype(np.int64)
        parts[part] = ImageData(_resized(images, spec), labels)
    classes = [str(c) for c in range(int(parts["train"].labels.max()) + 1)]
    return with_validation(parts["train"], parts["t10k"], classes, f"MNIST IDX {folder}", seed)


def load_cifar10(folder: Path, spec: ImageSpec, seed: int = 0) -> Splits[ImageData]:
    """CIFAR-10's python batches: data_batch_1..5, test_batch, batches.meta (pickled dicts)."""

    def batch(path: Path) -> ImageData:
        with path.open("rb") as f:
            d = pickle.load(f, encoding="bytes")
        images = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        return ImageData(_resized(images, spec), np.asarray(d[b"labels"], dtype=np.int64))

    train_parts = [batch(p) for p in sorted(folder.glob("data_batch_*"))]
    if not train_parts:
        raise FileNotFoundError(f"{folder}: no data_batch_* files")
    train = ImageData(
        np.concatenate([p.images for p in train_parts]), np.concatenate([p.labels for p in train_parts])
    )
    test = batch(folder / "test_batch")
    meta = folder / "batches.meta"
    if meta.exists():
        with meta.open("rb") as f:
            classes = [n.decode() for n in pickle.load(f, encoding="bytes")[b"label_names"]]
    else:
        classes = [str(c) for c in range(10)]
    return with_validation(train, test, classes, f"CIFAR-10 batches {folder}", seed)


def load_image_folder(folder: Path, spec: ImageSpec, seed: int = 0) -> Splits[ImageData]:
    """One sub-folder per class; with train/ and test/ sub-folders, those are used as given."""
    if (folder / "train").is_dir() and (folder / "test").is_dir():
        train, classes = _read_class_folders(folder / "train", spec, None)
        test, _ = _read_class_folders(folder / "test", spec, classes)
        return with_validation(train, test, classes, f"image folder {folder}", seed)
    data, classes = _read_class_folders(folder, spec, None)
    return three_way(data, classes, f"image folder {folder}", seed)


def _read_class_folders(
    folder: Path, spec: ImageSpec, classes: list[str] | None
) -> tuple[ImageData, list[str]]:
    classes = classes or sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not classes:
        raise FileNotFoundError(f"{folder}: no class sub-folders")
    images, labels = [], []
    for label, name in enumerate(classes):
        for path in sorted((folder / name).iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                images.append(to_array(decode(path.read_bytes(), max_pixels=1 << 28), spec))
                labels.append(label)
    return ImageData(np.stack(images), np.asarray(labels, dtype=np.int64)), classes


def load_images(source: str, spec: ImageSpec, seed: int = 0) -> Splits[ImageData]:
    """``digits``, a pinned source (``mnist``, ``fashion-mnist``: `make data`), or a folder, whose format
    is told by the files in it. The images are the model's inputs: framed as ``spec`` says."""
    if source == "digits":
        return load_digits(spec, seed)
    if source in IMAGE_SOURCES:
        pinned = IMAGE_SOURCES[source]
        splits = load_mnist(pinned.find(), spec, seed)
        splits.classes, splits.source = list(pinned.classes), f"{pinned.data} (licence: {pinned.licence})"
        return splits
    folder = Path(source)
    if not folder.is_dir():
        raise FileNotFoundError(f"{source}: not 'digits' nor a folder")
    names = {p.name for p in folder.iterdir()}
    if any(n.startswith(("train-images-idx3", "train-images.idx3")) for n in names):
        return load_mnist(folder, spec, seed)
    if "data_batch_1" in names:
        return load_cifar10(folder, spec, seed)
    return load_image_folder(folder, spec, seed)
