"""Write examples/digits/<label>.png: one held-out test digit per class, for curl and the tests.

python -m training.make_examples
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from service.preprocess.image import ImageSpec
from training.data import load_digits

OUT = Path(__file__).resolve().parent.parent / "examples" / "digits"


def main() -> None:
    splits = load_digits(ImageSpec(28, 28, 1), seed=0)
    OUT.mkdir(parents=True, exist_ok=True)
    for label in range(10):
        first = int((splits.test.labels == label).argmax())
        Image.fromarray(splits.test.images[first, :, :, 0], "L").save(OUT / f"{label}.png", optimize=True)


if __name__ == "__main__":
    main()
