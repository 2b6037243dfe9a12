"""Framings: how a decoded picture of any size becomes the small grey frame a model was trained on.

A model declares its framing in model.json (``preprocessing.image.framing``); training frames its data
through the same functions, so a model sees at serving what it saw in training.

- ``resize``: convert the mode and resize the whole picture (bilinear): the generic framing.
- ``mnist``: as MNIST was made from NIST's scans. Find the ink (light ink on dark, whatever the picture's
  polarity), crop to it, bring thin strokes to MNIST's stroke width, scale the longest side to 20 px
  keeping the aspect ratio, and place it in 28x28 with its centre of mass at the centre.
- ``fill``: as Fashion-MNIST was made from product photos. Find the item (light item on black: a photo of a
  dark item on white paper is inverted), crop to it, scale the longest side to the frame (28 px), centre it.

A picture with no ink (blank, or one speck) is refused with InvalidInput (422) rather than guessed at.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageFilter

from service.errors import InvalidInput

# The longest side the ink search works at: a bigger picture is box-reduced first (cost stays bounded).
MAX_WORK_SIDE = 640
# Ink fainter than this (0..1, after background removal) over the paper is no ink: the picture is blank.
MIN_CONTRAST = 0.12
# Paper texture and JPEG noise below this fraction of the ink's contrast are dropped.
NOISE_FLOOR = 0.15
# The ink box is trimmed of this fraction of the ink's mass at each side (specks far from the digit).
TRIM_MASS = 0.002
# Less ink than this (pixels, or share of the picture's longest side) is a speck, not a drawing.
MIN_INK_PIXELS = 4
MIN_INK_EXTENT = 0.02
# mnist: the digit's box, the frame, and where its centre of mass goes (MNIST's own mean, measured).
MNIST_BOX = 20
MNIST_CENTRE = (14.0, 14.0)
# mnist: strokes are measured and thickened at this scale (the box's longest side, in pixels), to a
# width of STROKE_RATIO of it (MNIST's median stroke width relative to its box, measured).
STROKE_SCALE = 80
STROKE_RATIO = 0.135
THIN_STROKE = 0.7  # thinner than this share of the target width is thickened to it


def _blank(why: str) -> InvalidInput:
    return InvalidInput(f"the image looks blank: {why}; send a picture with something drawn or printed on it")


def grey_of(img: Image.Image) -> np.ndarray:
    """float32 (H, W) grey in 0..1, box-reduced to MAX_WORK_SIDE; a transparent background is filled.

    A canvas export is transparent with opaque strokes: the strokes are laid on paper of the opposite
    shade (black strokes on white, white strokes on black), so the ink is never lost to the fill."""
    factor = math.ceil(max(img.size) / MAX_WORK_SIDE)
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
    if not has_alpha:
        grey = img.convert("L")
        if factor > 1:
            grey = grey.reduce(factor)
        return np.asarray(grey, dtype=np.float32) / 255.0
    rgba = img.convert("RGBA").convert("RGBa")  # premultiplied, so reducing does not smear hidden colour
    if factor > 1:
        rgba = rgba.reduce(factor)
    arr = np.asarray(rgba, dtype=np.float32) / 255.0
    alpha = arr[..., 3]
    ink = arr[..., 0] * 0.299 + arr[..., 1] * 0.587 + arr[..., 2] * 0.114  # premultiplied luma
    opaque = alpha > 0.5
    if not opaque.any():
        raise _blank("it is fully transparent")
    paper = 1.0 if np.median(ink[opaque] / alpha[opaque]) < 0.5 else 0.0
    return np.asarray(ink + (1.0 - alpha) * paper, dtype=np.float32)


def _extrema(a: np.ndarray) -> tuple[float, float]:
    """(darkest, lightest) after a 3x3 mean, which damps single-pixel noise: the ink's extreme levels."""
    small = Image.fromarray(np.asarray(np.clip(a, 0.0, 1.0) * 255.0, dtype=np.uint8))
    lo, hi = small.filter(ImageFilter.BoxBlur(1)).getextrema()
    return float(lo) / 255.0, float(hi) / 255.0  # type: ignore[arg-type]


def _ring(a: np.ndarray) -> np.ndarray:
    """The picture's border, a few pixels wide: mostly paper, whatever is drawn."""
    b = max(1, round(0.03 * min(a.shape)))
    return np.concatenate([a[:b].ravel(), a[-b:].ravel(), a[b:-b, :b].ravel(), a[b:-b, -b:].ravel()])


def _background(a: np.ndarray, uneven: bool) -> np.ndarray | float:
    """The paper's level: one value, or (``uneven``) a smooth map where the border's paper is unevenly lit,
    as in a photo. The border's interquartile spread decides, so ink touching the border does not."""
    ring = _ring(a)
    q1, q3 = np.percentile(ring, [25, 75])
    if not uneven or a.shape[0] < 32 or a.shape[1] < 32 or float(q3 - q1) < 0.04:
        return float(np.median(ring))
    # A coarse grid of low quantiles (ink is high here), smoothly upsampled.
    n = 6
    ys = np.linspace(0, a.shape[0], n + 1).astype(int)
    xs = np.linspace(0, a.shape[1], n + 1).astype(int)
    grid = np.array(
        [[np.percentile(a[ys[i] : ys[i + 1], xs[j] : xs[j + 1]], 30) for j in range(n)] for i in range(n)],
        dtype=np.float32,
    )
    smooth = Image.fromarray(grid, "F").resize((a.shape[1], a.shape[0]), Image.Resampling.BILINEAR)
    return np.asarray(smooth, dtype=np.float32)


def ink_of(
    grey: np.ndarray, *, normalise: bool, noise_floor: float = NOISE_FLOOR, uneven: bool = True
) -> np.ndarray:
    """Light ink on a black background, 0..1: the polarity found, the paper removed.

    The paper is the border's median; the ink is whichever extreme lies farther from it, so dark ink on
    light paper is inverted. ``normalise`` scales the ink's typical level to 1 (pen strokes); otherwise
    shades are kept (a product photo's texture)."""
    ring = float(np.median(_ring(grey)))
    darkest, lightest = _extrema(grey)
    if ring - darkest > lightest - ring:
        grey, ring = 1.0 - grey, 1.0 - ring
    diff = np.clip(grey - _background(grey, uneven), 0.0, 1.0)
    top = _extrema(diff)[1]
    if top < MIN_CONTRAST:
        raise _blank(f"its darkest/lightest marks differ from the background by {top:.0%}")
    # The level that becomes full white: the ink's typical level, or the darkest the paper allows.
    peak = float(np.median(diff[diff > 0.5 * top])) if normalise else max(top, 1.0 - ring)
    return np.clip((diff - noise_floor * peak) / ((1.0 - noise_floor) * peak), 0.0, 1.0)


def ink_box(ink: np.ndarray, threshold: float) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of the ink, trimmed of far specks; InvalidInput when there is none."""
    strong = ink > max(threshold, 0.5)
    if int(strong.sum()) < MIN_INK_PIXELS:
        raise _blank(f"fewer than {MIN_INK_PIXELS} pixels of ink")
    mass = np.where(ink > threshold, ink, 0.0)

    def span(profile: np.ndarray) -> tuple[int, int]:
        cum = np.cumsum(profile)
        total = cum[-1]
        lo = int(np.searchsorted(cum, TRIM_MASS * total, side="right"))
        hi = int(np.searchsorted(cum, (1.0 - TRIM_MASS) * total, side="left")) + 1
        return lo, max(hi, lo + 1)

    top, bottom = span(mass.sum(axis=1))
    left, right = span(mass.sum(axis=0))
    if max(bottom - top, right - left) < MIN_INK_EXTENT * max(ink.shape):
        raise _blank("the only marks are a speck")
    return top, left, bottom, right


def _max_pool(a: np.ndarray, k: int) -> np.ndarray:
    h, w = a.shape
    p = np.pad(a, ((0, -h % k), (0, -w % k)))
    return p.reshape(p.shape[0] // k, k, p.shape[1] // k, k).max(axis=(1, 3))


def _resize(a: np.ndarray, width: int, height: int, resample: Image.Resampling) -> np.ndarray:
    return np.asarray(Image.fromarray(a.astype(np.float32), "F").resize((width, height), resample))


def _dilate(a: np.ndarray, radius: int) -> np.ndarray:
    """Grey dilation by ``radius`` (alternating square and cross steps: a roughly round pen)."""
    h, w = a.shape
    out = np.zeros((h + 2 * radius, w + 2 * radius), dtype=np.float32)
    out[radius : radius + h, radius : radius + w] = a
    for step in range(radius):
        prev = out.copy()
        np.maximum(out[1:], prev[:-1], out=out[1:])
        np.maximum(out[:-1], prev[1:], out=out[:-1])
        np.maximum(out[:, 1:], prev[:, :-1], out=out[:, 1:])
        np.maximum(out[:, :-1], prev[:, 1:], out=out[:, :-1])
        if step % 2 == 0:  # the diagonals too: a square step
            np.maximum(out[1:, 1:], prev[:-1, :-1], out=out[1:, 1:])
            np.maximum(out[:-1, :-1], prev[1:, 1:], out=out[:-1, :-1])
            np.maximum(out[1:, :-1], prev[:-1, 1:], out=out[1:, :-1])
            np.maximum(out[:-1, 1:], prev[1:, :-1], out=out[:-1, 1:])
    return out


def stroke_width(ink: np.ndarray) -> float:
    """Mean stroke width in pixels: 2 x area / boundary of the ink (exact for long strokes, >= 2)."""
    m = ink > 0.5
    area = int(m.sum())
    if area == 0:
        return 0.0
    p = np.pad(m, 1)
    inner = m & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return 2.0 * area / max(1, area - int(inner.sum()))


def _to_stroke_scale(crop: np.ndarray) -> np.ndarray:
    """The crop with its longest side at about STROKE_SCALE: max-pooled down (thin strokes stay whole),
    bilinear up."""
    longest = max(crop.shape)
    if longest > STROKE_SCALE:
        crop = _max_pool(crop, math.ceil(longest / STROKE_SCALE))
    f = STROKE_SCALE / max(crop.shape)
    h, w = max(1, round(crop.shape[0] * f)), max(1, round(crop.shape[1] * f))
    return _resize(crop, w, h, Image.Resampling.BILINEAR)


def _thicken(crop: np.ndarray) -> np.ndarray:
    """Strokes thinner than MNIST's (a fine pen, a light font, a big canvas) widened to MNIST's width."""
    crop = _to_stroke_scale(crop)
    target = STROKE_RATIO * STROKE_SCALE
    width = stroke_width(crop)
    if width >= THIN_STROKE * target:
        return crop
    radius = max(1, round((target - width) / 2))
    return _dilate(crop, radius)


def _fit(crop: np.ndarray, box: int) -> np.ndarray:
    """Scale so the longest side is ``box``, keeping the aspect ratio (area-averaged)."""
    f = box / max(crop.shape)
    h, w = max(1, round(crop.shape[0] * f)), max(1, round(crop.shape[1] * f))
    return np.clip(_resize(crop, w, h, Image.Resampling.BOX), 0.0, 1.0)


def _paste(small: np.ndarray, size: int, centre: tuple[float, float] | None) -> np.ndarray:
    """Into a black size x size frame: the centre of mass at ``centre``, or the box centred (None);
    never pushed out of the frame."""
    h, w = small.shape
    if centre is None:
        top, left = (size - h) // 2, (size - w) // 2
    else:
        total = float(small.sum()) or 1.0
        cy = float((small.sum(axis=1) * np.arange(h)).sum()) / total
        cx = float((small.sum(axis=0) * np.arange(w)).sum()) / total
        top = min(max(round(centre[0] - cy), 0), size - h)
        left = min(max(round(centre[1] - cx), 0), size - w)
    frame = np.zeros((size, size), dtype=np.float32)
    frame[top : top + h, left : left + w] = small
    return frame


def _uint8(a: np.ndarray) -> np.ndarray:
    return np.asarray(np.round(np.clip(a, 0.0, 1.0) * 255.0), dtype=np.uint8)


def frame_mnist(img: Image.Image, height: int, width: int) -> np.ndarray:
    """MNIST's framing: uint8 (28, 28), light ink on black, centred by its centre of mass."""
    ink = ink_of(grey_of(img), normalise=True)
    top, left, bottom, right = ink_box(ink, 0.3)
    crop = _thicken(ink[top:bottom, left:right])
    t, lft, b, r = ink_box(crop, 0.3)  # dilation widened the canvas
    frame = _paste(
        _fit(crop[t:b, lft:r], MNIST_BOX * min(height, width) // 28), min(height, width), MNIST_CENTRE
    )
    return _uint8(_centre_crop(frame, height, width))


def frame_fill(img: Image.Image, height: int, width: int) -> np.ndarray:
    """Fashion-MNIST's framing: uint8 (H, W), the item light on black, filling the frame, centred."""
    ink = ink_of(grey_of(img), normalise=False, noise_floor=0.04, uneven=False)
    top, left, bottom, right = ink_box(ink, 0.05)
    size = min(height, width)
    frame = _paste(_fit(ink[top:bottom, left:right], size), size, None)
    return _uint8(_centre_crop(frame, height, width))


def _centre_crop(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """A square frame into a (rare) non-square input: padded with black."""
    out = np.zeros((height, width), dtype=np.float32)
    s = frame.shape[0]
    out[(height - s) // 2 : (height - s) // 2 + s, (width - s) // 2 : (width - s) // 2 + s] = frame
    return out


# Name -> (picture, height, width) -> uint8 (H, W) grey. ``resize`` is image.py's own (any channels).
INK_FRAMINGS: dict[str, Callable[[Image.Image, int, int], np.ndarray]] = {
    "mnist": frame_mnist,
    "fill": frame_fill,
}
