"""Drawings for the class-dataset tests: a "0" is a ring, a "1" a stroke from top to bottom, each
drawn a little differently (size, place, slant), black on a white page as a sketchpad gives them."""
from __future__ import annotations

import io
import random

from PIL import Image, ImageDraw

PAGE = 200


def sketch(label: str, variant: int) -> Image.Image:
    """A drawing of class `label` ("0": a ring, anything else: a stroke), variant `variant`."""
    rng = random.Random(f"{label}-{variant}")
    img = Image.new("RGB", (PAGE, PAGE), "white")
    draw = ImageDraw.Draw(img)
    cx, cy = PAGE / 2 + rng.uniform(-25, 25), PAGE / 2 + rng.uniform(-25, 25)
    if label == "0":
        rx, ry = rng.uniform(25, 45), rng.uniform(40, 60)
        draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], outline="black", width=rng.randint(6, 12))
    else:
        dx = rng.uniform(-15, 15)
        draw.line([cx - dx, cy - 60, cx + dx, cy + 60], fill="black", width=rng.randint(6, 12))
    return img


def sketch_png(label: str, variant: int) -> bytes:
    out = io.BytesIO()
    sketch(label, variant).save(out, format="PNG")
    return out.getvalue()
