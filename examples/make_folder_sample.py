"""Draw the sample class-folder dataset: photos of two made-up sneaker brands, zipped.

    python examples/make_folder_sample.py            # writes examples/sneakers.zip
    python -m vision_lab train --dataset folder:examples/sneakers.zip --model cnn \
        --epochs 10 --batch-size 16

It stands in for "your own photos in folders" (the course's ImageFolder day: two sneaker brands):
sneakers.zip holds sneakers/train/ (80 photos a brand) and sneakers/test/ (30 a brand), each
with one folder per brand, `stripes/` and `wave/`. Both brands are drawn from the same colours,
low and high tops, turns, flips, shifts, scales and backgrounds: only the logo on the side tells
them apart (three slanted stripes, or one wave), a few pixels wide at 64×64, so a model has to
learn that (a CNN: chance for the first few epochs, about 90% on the test photos after 10; see
tests/core/test_folder_sample.py).

Deterministic: the same seed draws the same pixels, and the zip's members carry a fixed date, so
running it again with the same Pillow gives the same bytes. No downloads; the project draws every
pixel itself (CC0, see SOURCES.md).
"""
from __future__ import annotations

import argparse
import colorsys
import io
import math
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

HERE = Path(__file__).resolve().parent
BRANDS = ("stripes", "wave")
SPLITS = {"train": 80, "test": 30}   # images per brand
SIZE = 64
SS = 4                               # drawn 4x larger, shrunk with a box filter for smooth edges
SEED = 2026
ZIP_DATE = (2026, 1, 1, 0, 0, 0)


def _colour(rng: np.random.Generator, light: tuple[float, float] = (0.25, 0.85)) -> tuple:
    h, s, v = rng.random(), rng.uniform(0.3, 0.9), rng.uniform(*light)
    return tuple(int(c * 255) for c in colorsys.hsv_to_rgb(h, s, v))


def _background(rng: np.random.Generator, side: int) -> Image.Image:
    """A floor and a wall in random colours with a few blurred blobs: a room, not a studio."""
    img = Image.new("RGB", (side, side), _colour(rng, (0.35, 0.95)))
    d = ImageDraw.Draw(img)
    floor = int(side * rng.uniform(0.55, 0.8))
    d.rectangle((0, floor, side, side), fill=_colour(rng, (0.2, 0.8)))
    for _ in range(rng.integers(2, 5)):
        x, y, r = rng.uniform(0, side), rng.uniform(0, side), rng.uniform(0.05, 0.2) * side
        d.ellipse((x - r, y - r, x + r, y + r), fill=_colour(rng))
    return img.filter(ImageFilter.GaussianBlur(side / 40))


def _shoe(rng: np.random.Generator, brand: str, side: int) -> Image.Image:
    """An RGBA sneaker facing right, filling about the middle of a side×side square."""
    img = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    p = lambda x, y: (x * side, y * side)  # noqa: E731 - unit square -> pixels
    top = rng.uniform(0.22, 0.3) if rng.random() < 0.5 else rng.uniform(0.36, 0.42)  # high or low
    upper = [p(0.14, 0.7), p(0.13, top + 0.06), p(0.22, top), p(0.36, top + 0.04),
             p(0.5, 0.46), p(0.7, 0.52), p(0.86, 0.56), p(0.93, 0.63), p(0.93, 0.7)]
    # The logo stands out from the upper (one light, one dark), as a brand's logo does.
    dark, light = _colour(rng, (0.2, 0.5)) + (255,), _colour(rng, (0.85, 1.0)) + (255,)
    body, logo = (dark, light) if rng.random() < 0.5 else (light, dark)
    d.polygon(upper, fill=body)
    for i in range(4):  # laces
        x, y = 0.4 + 0.065 * i, top + 0.1 + 0.035 * i
        d.line([p(x, y), p(x + 0.06, y - 0.04)], fill=_colour(rng, (0.7, 1.0)) + (255,),
               width=side // 60)
    sole = _colour(rng, (0.05, 1.0)) if rng.random() < 0.5 else (240, 240, 236)
    d.rounded_rectangle((*p(0.1, 0.69), *p(0.96, 0.79)), radius=side // 30, fill=sole + (255,))
    width = side // 12
    if brand == "stripes":   # three parallel slanted stripes
        for i in range(3):
            x = 0.36 + 0.12 * i
            d.line([p(x, 0.68), p(x + 0.12, 0.47)], fill=logo, width=width)
    else:                    # one wave, rising towards the toe
        wave = [p(0.3 + 0.55 * k / 23, 0.6 + 0.06 * math.sin(k / 23 * 2 * math.pi) - 0.06 * k / 23)
                for k in range(24)]
        d.line(wave, fill=logo, width=width, joint="curve")
    return img


def _place(shoe: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The shoe turned, scaled, moved and maybe flipped, as photos of it would have it."""
    if rng.random() < 0.5:
        shoe = shoe.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    side = shoe.width
    angle, scale = rng.uniform(-12, 12), rng.uniform(0.85, 1.1)
    dx, dy = rng.uniform(-0.12, 0.12) * side, rng.uniform(-0.1, 0.1) * side
    return shoe.rotate(angle, Image.Resampling.BILINEAR, center=(side / 2, side / 2),
                       translate=(dx, dy)).transform(
        (side, side), Image.Transform.AFFINE,
        (1 / scale, 0, side / 2 * (1 - 1 / scale), 0, 1 / scale, side / 2 * (1 - 1 / scale)),
        Image.Resampling.BILINEAR)


def draw(brand: str, rng: np.random.Generator) -> Image.Image:
    """One 64×64 RGB photo of a sneaker of `brand`."""
    side = SIZE * SS
    img = _background(rng, side).convert("RGBA")
    img.alpha_composite(_place(_shoe(rng, brand, side), rng))
    small = np.asarray(img.convert("RGB").resize((SIZE, SIZE), Image.Resampling.BOX), np.float32)
    small = small * rng.uniform(0.75, 1.15) + rng.normal(0, 4, small.shape)  # light, sensor noise
    return Image.fromarray(np.clip(small, 0, 255).round().astype(np.uint8), "RGB")


def build(out: Path, seed: int = SEED) -> dict[str, int]:
    """Write the zip; returns how many images each split got."""
    rng = np.random.default_rng(seed)
    counts = {}
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:  # JPEGs do not compress
        for split, per_brand in SPLITS.items():
            for brand in BRANDS:
                for i in range(per_brand):
                    buffer = io.BytesIO()
                    draw(brand, rng).save(buffer, "JPEG", quality=85)
                    archive.writestr(zipfile.ZipInfo(f"sneakers/{split}/{brand}/{brand}_{i:02d}.jpg",
                                                     ZIP_DATE), buffer.getvalue())
            counts[split] = per_brand * len(BRANDS)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "sneakers.zip")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    counts = build(args.out, args.seed)
    print(f"{args.out}: {counts} images, {args.out.stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    main()
