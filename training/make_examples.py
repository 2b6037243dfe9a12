"""Write the example inputs under examples/ (for curl, the README and the tests), from the pinned data.

    python -m training.make_examples            # after `make data`

examples/digits/
  0.png .. 9.png   the first MNIST test digit of each class, as stored (28x28, white on black)
  photo-3.jpg      an MNIST test 3 as a phone photo of ink on grey paper: dark on light, uneven light,
                   noise, blur, JPEG, 640x480
  canvas-5.png     a 5 drawn with a mouse on a 280x280 browser canvas: RGBA, transparent background,
                   black round-capped strokes
  printed-4.png    a 4 printed in DejaVu Sans Bold, black on white, 200x200
tests/data/{mnist,fashion-mnist}-test-500.npz
                   every 20th picture of each test split, as stored: the held-out samples the tests
                   re-check the shipped models' accuracy on
examples/fashion/
  ankle-boot.png   a Fashion-MNIST test item as stored (28x28, light on black)
  trouser-photo.jpg  a Fashion-MNIST test trouser as a product photo: dark on a white background, 360x360
  bag-cutout.png   a Fashion-MNIST test bag as a cut-out: RGBA, transparent around the item
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from service.kinds.image.preprocess import ImageSpec
from training.kinds.image.data import load_images

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
RAW = ImageSpec(28, 28, 1)  # as stored: no framing


def _first(labels: np.ndarray, label: int, skip: int = 0) -> int:
    return int(np.flatnonzero(labels == label)[skip])


def _photo_of_ink(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """Ink (dark) on grey paper, lit from one side, photographed: 640x480 RGB."""
    ink = (
        np.asarray(Image.fromarray(digit).resize((300, 300), Image.Resampling.BICUBIC), dtype=np.float64)
        / 255
    )
    ink = np.clip((ink - 0.2) * 1.6, 0, 1)  # a pen's edge, not a blur
    page = np.zeros((480, 640))
    page[80:380, 190:490] = ink
    yy, xx = np.mgrid[0:480, 0:640]
    light = 0.62 + 0.18 * (xx / 640) - 0.08 * (yy / 480)  # grey paper, brighter to the right
    grey = light * (1 - 0.75 * page) + rng.normal(0, 0.015, page.shape)
    rgb = np.stack([grey * 1.0, grey * 0.97, grey * 0.9], axis=-1)  # warm paper
    img = Image.fromarray(np.clip(rgb * 255, 0, 255).astype(np.uint8), "RGB")
    return img.filter(ImageFilter.GaussianBlur(1.0))


def _canvas_drawing(rng: np.random.Generator) -> Image.Image:
    """A 5 as a mouse draws it: a top bar, a down stroke, a belly; transparent canvas, black strokes."""
    img = Image.new("RGBA", (280, 280), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    belly = [(95 + 75 * math.sin(t), 170 - 55 * math.cos(t)) for t in np.linspace(-0.2, math.pi * 1.25, 20)]
    strokes: list[list[tuple[float, float]]] = [[(185, 52), (100, 55)], [(100, 55), (92, 132), *belly[1:]]]
    for stroke in strokes:
        path = [(x + rng.normal(0, 1.2), y + rng.normal(0, 1.2)) for x, y in stroke]
        draw.line(path, fill=(0, 0, 0, 255), width=14, joint="curve")
        for x, y in (path[0], path[-1]):
            draw.ellipse((x - 7, y - 7, x + 7, y + 7), fill=(0, 0, 0, 255))
    return img


def _printed(digit: int) -> Image.Image:
    """The digit in DejaVu Sans Bold (matplotlib ships it), black on white."""
    import matplotlib

    font_path = Path(matplotlib.__file__).parent / "mpl-data/fonts/ttf/DejaVuSans-Bold.ttf"
    font = ImageFont.truetype(str(font_path), 130)
    img = Image.new("L", (200, 200), 255)
    draw = ImageDraw.Draw(img)
    left, top, right, bottom = draw.textbbox((0, 0), str(digit), font=font)
    draw.text(((200 - right - left) / 2, (200 - bottom - top) / 2), str(digit), font=font, fill=0)
    return img


def write_digits(out: Path) -> None:
    test = load_images("mnist", RAW).test
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for label in range(10):
        Image.fromarray(test.images[_first(test.labels, label), :, :, 0], "L").save(out / f"{label}.png")
    _photo_of_ink(test.images[_first(test.labels, 3, 1), :, :, 0], rng).save(out / "photo-3.jpg", quality=85)
    _canvas_drawing(rng).save(out / "canvas-5.png")
    _printed(4).save(out / "printed-4.png")


def write_fashion(out: Path) -> None:
    test = load_images("fashion-mnist", RAW).test
    out.mkdir(parents=True, exist_ok=True)
    item = lambda label: test.images[_first(test.labels, label), :, :, 0]  # noqa: E731
    Image.fromarray(item(9), "L").save(out / "ankle-boot.png")
    trouser = Image.fromarray(255 - item(1), "L").resize((300, 300), Image.Resampling.BICUBIC)
    photo = Image.new("L", (360, 360), 255)
    photo.paste(trouser, (30, 30))
    photo.convert("RGB").filter(ImageFilter.GaussianBlur(0.6)).save(out / "trouser-photo.jpg", quality=88)
    bag = Image.fromarray(255 - item(8), "L").resize((224, 224), Image.Resampling.BICUBIC)
    alpha = (
        Image.fromarray(item(8), "L")
        .resize((224, 224), Image.Resampling.BICUBIC)
        .point(lambda v: 255 if v > 8 else 0)
    )
    cutout = Image.merge("RGBA", (bag, bag, bag, alpha))
    cutout.save(out / "bag-cutout.png")


def write_samples(out: Path, every: int = 20) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for source in ("mnist", "fashion-mnist"):
        splits = load_images(source, RAW)
        test = splits.test
        np.savez_compressed(
            out / f"{source}-test-{len(test.labels) // every}.npz",
            images=test.images[::every, :, :, 0],
            labels=test.labels[::every],
            source=np.asarray(f"{splits.source}; test split, every {every}th picture"),
        )


def main() -> None:
    write_digits(EXAMPLES / "digits")
    write_fashion(EXAMPLES / "fashion")
    write_samples(EXAMPLES.parent / "tests" / "data")


if __name__ == "__main__":
    main()
