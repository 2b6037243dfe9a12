"""Out-of-distribution checks for a digits model: printed and hand-drawn digits as users send them.

    python -m training.eval_digits --model models/digits/1            # accuracy per set, misses listed

Never used for training: the model learns from MNIST only. Two sets, each pushed through the full serving
path (encode -> decode -> the model's framing -> the ONNX graph):

- ``fonts``: every digit in every installed TrueType/OpenType font (symbol fonts left out), rendered at
  28, 64 and 280 px, black on white and white on black, PNG and JPEG.
- ``canvas``: digits drawn as a mouse draws them on a 280x280 browser canvas: wobbly strokes from per-digit
  stroke templates (several styles per digit), a round brush 6-26 px wide, random slant and size; exported
  as a canvas does (transparent background, black strokes), some on opaque white or black.
"""

from __future__ import annotations

import argparse
import io
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from service.kinds.image.preprocess import ImageSpec, decode_to_array

FONT_DIRS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"))
# Fonts whose digits are pictures or missing.
SYMBOL_FONTS = ("symbol", "dingbat", "d050000l", "standardsymbols", "opensymbol", "emoji", "math")

Stroke = list[tuple[float, float]]
# Per digit, styles; a style is strokes; a stroke is points in the unit square (x right, y down).
TEMPLATES: dict[int, list[list[Stroke]]] = {
    0: [
        [[(0.5 + 0.3 * math.sin(t), 0.5 - 0.42 * math.cos(t)) for t in np.linspace(0, 2 * math.pi, 14)]],
        [[(0.5 + 0.25 * math.sin(t), 0.5 - 0.4 * math.cos(t)) for t in np.linspace(-0.3, 2 * math.pi, 14)]],
    ],
    1: [
        [[(0.5, 0.1), (0.5, 0.9)]],
        [[(0.32, 0.28), (0.52, 0.1), (0.52, 0.9)]],
        [[(0.32, 0.28), (0.52, 0.1), (0.52, 0.9)], [(0.3, 0.9), (0.74, 0.9)]],
        [[(0.45, 0.1), (0.55, 0.9)]],
    ],
    2: [
        [[(0.22, 0.3), (0.35, 0.12), (0.6, 0.1), (0.75, 0.25), (0.7, 0.45), (0.25, 0.88), (0.8, 0.88)]],
        [[(0.25, 0.25), (0.5, 0.1), (0.72, 0.25), (0.55, 0.55), (0.2, 0.85), (0.5, 0.78), (0.82, 0.85)]],
    ],
    3: [
        [[(0.25, 0.15), (0.55, 0.1), (0.72, 0.25), (0.5, 0.47), (0.75, 0.65), (0.6, 0.88), (0.25, 0.85)]],
        [[(0.25, 0.12), (0.72, 0.12), (0.45, 0.42), (0.72, 0.6), (0.62, 0.88), (0.25, 0.82)]],
    ],
    4: [
        [[(0.58, 0.1), (0.2, 0.65), (0.82, 0.65)], [(0.62, 0.35), (0.62, 0.92)]],
        [[(0.3, 0.1), (0.25, 0.55), (0.8, 0.55)], [(0.66, 0.15), (0.66, 0.92)]],
    ],
    5: [
        [
            [
                (0.72, 0.12),
                (0.3, 0.12),
                (0.27, 0.45),
                (0.5, 0.4),
                (0.72, 0.55),
                (0.7, 0.78),
                (0.5, 0.9),
                (0.25, 0.82),
            ]
        ],
        [
            [(0.3, 0.12), (0.27, 0.45), (0.5, 0.4), (0.72, 0.55), (0.7, 0.78), (0.5, 0.9), (0.25, 0.82)],
            [(0.3, 0.12), (0.75, 0.12)],
        ],
    ],
    6: [
        [
            [
                (0.68, 0.12),
                (0.45, 0.2),
                (0.3, 0.45),
                (0.28, 0.7),
                (0.45, 0.9),
                (0.68, 0.8),
                (0.7, 0.6),
                (0.5, 0.5),
                (0.3, 0.6),
            ]
        ],
    ],
    7: [
        [[(0.22, 0.12), (0.78, 0.12), (0.45, 0.9)]],
        [[(0.22, 0.12), (0.78, 0.12), (0.45, 0.9)], [(0.38, 0.5), (0.76, 0.5)]],
        [[(0.22, 0.2), (0.25, 0.12), (0.78, 0.12), (0.6, 0.45), (0.5, 0.9)]],
    ],
    8: [
        [
            [
                (0.5, 0.5),
                (0.7, 0.32),
                (0.5, 0.1),
                (0.3, 0.3),
                (0.5, 0.5),
                (0.72, 0.7),
                (0.5, 0.9),
                (0.28, 0.7),
                (0.5, 0.5),
            ]
        ],
    ],
    9: [
        [[(0.7, 0.35), (0.5, 0.48), (0.3, 0.35), (0.45, 0.12), (0.7, 0.2), (0.7, 0.5), (0.65, 0.9)]],
        [[(0.7, 0.3), (0.5, 0.45), (0.3, 0.3), (0.5, 0.1), (0.7, 0.3), (0.5, 0.9)]],
    ],
}


@dataclass
class Case:
    set: str
    name: str
    label: int
    data: bytes


def _encode(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, quality=90) if fmt == "JPEG" else img.save(buf, fmt)
    return buf.getvalue()


def font_files() -> list[Path]:
    """Installed TrueType/OpenType fonts that draw digits (symbol fonts left out)."""
    found: list[Path] = []
    for root in FONT_DIRS:
        if root.is_dir():
            found += [p for p in root.rglob("*") if p.suffix.lower() in (".ttf", ".otf")]
    return sorted(p for p in found if not any(s in p.name.lower() for s in SYMBOL_FONTS))


def _render_digit(font_path: Path, digit: int, size: int, dark_on_light: bool) -> Image.Image:
    """The digit in the font, its height about 70% of a size x size picture, centred."""
    font = ImageFont.truetype(str(font_path), round(size * 0.7))
    paper, ink = (255, 0) if dark_on_light else (0, 255)
    img = Image.new("L", (size, size), paper)
    draw = ImageDraw.Draw(img)
    left, top, right, bottom = draw.textbbox((0, 0), str(digit), font=font)
    draw.text(((size - right - left) / 2, (size - bottom - top) / 2), str(digit), font=font, fill=ink)
    return img


def font_cases(fonts: list[Path] | None = None, sizes: tuple[int, ...] = (28, 64, 280)) -> Iterator[Case]:
    for path in fonts if fonts is not None else font_files():
        for digit in range(10):
            for size in sizes:
                for dark in (True, False):
                    img = _render_digit(path, digit, size, dark)
                    fmt = "JPEG" if (digit + size) % 3 == 0 else "PNG"
                    name = f"{path.stem} {size}px {'dark' if dark else 'light'} {fmt}"
                    yield Case("fonts", name, digit, _encode(img, fmt))


def _smooth(points: Stroke, per_segment: int = 12) -> list[tuple[float, float]]:
    """Catmull-Rom through the points: the curve a hand makes through them."""
    pts = [points[0], *points, points[-1]]
    out: list[tuple[float, float]] = []
    for i in range(1, len(pts) - 2):
        p0, p1, p2, p3 = (np.asarray(p) for p in pts[i - 1 : i + 3])
        for t in np.linspace(0, 1, per_segment, endpoint=False):
            q = 0.5 * (
                2 * p1
                + (-p0 + p2) * t
                + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t * t
                + (-p0 + 3 * p1 - 3 * p2 + p3) * t * t * t
            )
            out.append((float(q[0]), float(q[1])))
    out.append(points[-1])
    return out


def draw_canvas(digit: int, rng: np.random.Generator, size: int = 280) -> tuple[Image.Image, str]:
    """One mouse-drawn digit on a size x size canvas, as a browser exports it."""
    styles = TEMPLATES[digit]
    strokes = styles[int(rng.integers(len(styles)))]
    angle = math.radians(rng.uniform(-12, 12))
    scale = rng.uniform(0.45, 0.95) * size
    aspect = rng.uniform(0.75, 1.15)
    cx, cy = size / 2 + rng.uniform(-0.15, 0.15) * size, size / 2 + rng.uniform(-0.1, 0.1) * size
    width = int(rng.choice([6, 10, 14, 18, 26]))
    style = str(rng.choice(["transparent", "transparent", "white", "black"]))
    paper = {"transparent": (0, 0, 0, 0), "white": (255, 255, 255, 255), "black": (0, 0, 0, 255)}[style]
    ink = (255, 255, 255, 255) if style == "black" else (0, 0, 0, 255)
    img = Image.new("RGBA", (size, size), paper)
    draw = ImageDraw.Draw(img)
    for stroke in strokes:
        jittered = [(x + rng.normal(0, 0.025), y + rng.normal(0, 0.025)) for x, y in stroke]
        path = []
        for x, y in _smooth(jittered):
            u, v = (x - 0.5) * scale * aspect, (y - 0.5) * scale
            path.append(
                (
                    cx + u * math.cos(angle) - v * math.sin(angle) + rng.normal(0, 0.6),
                    cy + u * math.sin(angle) + v * math.cos(angle) + rng.normal(0, 0.6),
                )
            )
        draw.line(path, fill=ink, width=width, joint="curve")
        for x, y in (path[0], path[-1]):  # round caps, as a canvas's lineCap = "round"
            draw.ellipse((x - width / 2, y - width / 2, x + width / 2, y + width / 2), fill=ink)
    return img, f"{style} brush {width}"


def canvas_cases(n_per_digit: int = 40, seed: int = 0) -> Iterator[Case]:
    rng = np.random.default_rng(seed)
    for digit in range(10):
        for i in range(n_per_digit):
            img, name = draw_canvas(digit, rng)
            yield Case("canvas", f"{digit}-{i} {name}", digit, _encode(img))


def evaluate(model_dir: Path, cases: Iterator[Case]) -> dict[str, dict[str, object]]:
    """Accuracy per set through the serving path; misses named."""
    import onnxruntime as ort

    meta = json.loads((model_dir / "model.json").read_text())
    spec = ImageSpec.from_preprocessing(meta["preprocessing"]["image"])
    sess = ort.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    by_set: dict[str, list[tuple[Case, np.ndarray]]] = {}
    for case in cases:
        by_set.setdefault(case.set, []).append((case, decode_to_array(case.data, spec, max_pixels=1 << 24)))
    results: dict[str, dict[str, object]] = {}
    for name, items in by_set.items():
        pixels = np.stack([p for _, p in items])
        preds = sess.run(["probabilities"], {"pixels": pixels})[0].argmax(1)
        labels = np.asarray([c.label for c, _ in items])
        misses = [
            f"{c.name}: {c.label} -> {p}" for (c, _), p in zip(items, preds, strict=True) if c.label != p
        ]
        per_digit = {str(d): round(float((preds[labels == d] == d).mean()), 3) for d in range(10)}
        results[name] = {
            "n": len(items),
            "accuracy": round(float((preds == labels).mean()), 4),
            "per_digit": per_digit,
            "misses": misses,
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=Path("models/digits/1"))
    parser.add_argument("--canvas", type=int, default=40, help="drawings per digit")
    parser.add_argument("--show-misses", type=int, default=20)
    args = parser.parse_args()
    fonts = font_files()

    def cases() -> Iterator[Case]:
        yield from font_cases(fonts)
        yield from canvas_cases(args.canvas)

    results = evaluate(args.model, cases())
    print(f"{len(fonts)} fonts")
    for name, r in results.items():
        print(f"{name}: {r['accuracy']:.2%} of {r['n']}  per digit {r['per_digit']}")
        for miss in list(r["misses"])[: args.show_misses]:  # type: ignore[call-overload]
            print("   ", miss)


if __name__ == "__main__":
    main()
