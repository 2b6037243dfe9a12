"""Augmentations for framed image models: each turns a raw training picture into a varied one, which the
model's framing (service/kinds/image/framing.py) then frames exactly as it frames a served picture.

Registered by name (``AUGMENTATIONS``); `modelserve train image --augment <name>` picks one.

- ``handwriting`` (MNIST): small affine (rotation, shear, aspect), stroke width (dilate/erode), blur, and
  stroke styles MNIST's writers rarely used but printed digits have: a "1" with a flag and a foot, a "7"
  with a crossbar. Works at 2x scale so thin strokes stay smooth.
- ``items`` (Fashion-MNIST): mirror, small affine, contrast.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

Augment = Callable[[np.ndarray, int, np.random.Generator], Image.Image]

_SCALE = 2  # handwriting is augmented at twice the stored size


def _affine(
    img: Image.Image, rng: np.random.Generator, rot: float, shear: float, aspect: float
) -> Image.Image:
    """Rotate, shear and stretch about the centre, on a canvas large enough to keep the ink."""
    w, h = img.size
    pad = w // 4
    canvas = Image.new("L", (w + 2 * pad, h + 2 * pad), 0)
    canvas.paste(img, (pad, pad))
    a = math.radians(rng.uniform(-rot, rot))
    s = rng.uniform(-shear, shear)
    sx = math.exp(rng.uniform(-aspect, aspect))
    # Output -> input map (PIL's AFFINE takes the inverse): rotation, then shear, then x-stretch.
    m = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]) @ np.array([[1.0, s], [0.0, 1.0]])
    m = m @ np.diag([sx, 1.0])
    inv = np.linalg.inv(m)
    cx, cy = canvas.size[0] / 2, canvas.size[1] / 2
    off = np.array([cx, cy]) - inv @ np.array([cx, cy])
    coeffs = (inv[0, 0], inv[0, 1], off[0], inv[1, 0], inv[1, 1], off[1])
    return canvas.transform(canvas.size, Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR)


def _ink_extent(a: np.ndarray) -> tuple[int, int, int, int] | None:
    rows, cols = np.flatnonzero((a > 100).any(1)), np.flatnonzero((a > 100).any(0))
    if not len(rows) or not len(cols):
        return None
    return int(rows[0]), int(cols[0]), int(rows[-1]), int(cols[-1])


def _one_style(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A printed "1": a flag down-left from the top, and often a foot (serif base)."""
    box = _ink_extent(np.asarray(img))
    if box is None:
        return img
    top, _left, bottom, _right = box
    height = bottom - top
    width = max(2, round(rng.uniform(0.08, 0.14) * height))
    row_top = np.flatnonzero(np.asarray(img)[top] > 100)
    x_top = int(row_top.mean())
    draw = ImageDraw.Draw(img)
    flag = rng.uniform(0.2, 0.4) * height
    drop = rng.uniform(0.15, 0.35) * height
    draw.line([(x_top, top), (x_top - flag, top + drop)], fill=255, width=width, joint="curve")
    if rng.random() < 0.6:
        row_bottom = np.flatnonzero(np.asarray(img)[bottom] > 100)
        x_bottom = int(row_bottom.mean())
        half = rng.uniform(0.2, 0.35) * height
        draw.line([(x_bottom - half, bottom), (x_bottom + half, bottom)], fill=255, width=width)
    return img


def _seven_style(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A continental "7": a short crossbar through the middle of the stem."""
    box = _ink_extent(np.asarray(img))
    if box is None:
        return img
    top, _left, bottom, _right = box
    y = round(top + rng.uniform(0.45, 0.6) * (bottom - top))
    row = np.flatnonzero(np.asarray(img)[y] > 100)
    if not len(row):
        return img
    x = float(row.mean())
    half = rng.uniform(0.15, 0.25) * (bottom - top)
    width = max(2, round(rng.uniform(0.08, 0.12) * (bottom - top)))
    ImageDraw.Draw(img).line([(x - half, y), (x + half, y)], fill=255, width=width)
    return img


_STYLES: dict[int, Callable[[Image.Image, np.random.Generator], Image.Image]] = {
    1: _one_style,
    7: _seven_style,
}


def handwriting(image: np.ndarray, label: int, rng: np.random.Generator) -> Image.Image:
    """One varied handwritten digit, light on black, at twice the stored size (the framing rescales)."""
    h, w = image.shape[:2]
    img = Image.fromarray(image.reshape(h, w)).resize((w * _SCALE, h * _SCALE), Image.Resampling.BILINEAR)
    style = _STYLES.get(label)
    if style is not None and rng.random() < 0.35:
        img = style(img, rng)
    img = _affine(img, rng, rot=12.0, shear=0.25, aspect=0.2)
    r = rng.random()
    if r < 0.25:
        img = img.filter(ImageFilter.MaxFilter(3 if rng.random() < 0.7 else 5))
    elif r < 0.4:
        img = img.filter(ImageFilter.MinFilter(3))
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.5)))
    return img


def items(image: np.ndarray, label: int, rng: np.random.Generator) -> Image.Image:
    """One varied product picture, light on black: mirrored, slightly turned, contrast changed."""
    h, w = image.shape[:2]
    img = Image.fromarray(image.reshape(h, w))
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    img = _affine(img, rng, rot=6.0, shear=0.08, aspect=0.1)
    gain = rng.uniform(0.75, 1.15)
    return Image.fromarray(np.clip(np.asarray(img, dtype=np.float32) * gain, 0, 255).astype(np.uint8))


AUGMENTATIONS: dict[str, Augment] = {"handwriting": handwriting, "items": items}
