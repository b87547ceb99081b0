"""Draw the bundled example images (the project makes them itself, so they are CC0).

    python examples/make_examples.py

Deterministic: running it again gives the same PNGs. See SOURCES.md for what each file is.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

HERE = Path(__file__).resolve().parent
SS = 4  # supersampling factor: draw big, shrink with a box filter for smooth edges


def _smooth(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    return img.resize(size, Image.BOX)


def _gradient(size, top, bottom, angle=90.0) -> Image.Image:
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    a = math.radians(angle)
    t = (x / w - 0.5) * math.cos(a) + (y / h - 0.5) * math.sin(a) + 0.5
    t = np.clip(t, 0, 1)[..., None]
    rgb = (1 - t) * np.array(top, np.float32) + t * np.array(bottom, np.float32)
    return Image.fromarray(rgb.round().astype(np.uint8), "RGB")


def _stroke(draw, points, width, fill):
    draw.line(points, fill=fill, width=width, joint="curve")
    r = width / 2
    for x, y in (points[0], points[-1]):
        draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)


def digit(strokes, name: str) -> None:
    """A digit drawn with a round pen, dark on white, like a mouse sketch or a scanned note."""
    size = 280
    img = Image.new("L", (size * SS, size * SS), 250)
    d = ImageDraw.Draw(img)
    for line in strokes:
        pts = [(x * SS * size, y * SS * size) for x, y in line]
        _stroke(d, pts, 20 * SS, 25)
    _smooth(img, (size, size)).save(HERE / name, optimize=True)


def _curve(cx, cy, rx, ry, start, end, n=24):
    """Points along an elliptical arc (degrees, 0 = right, counter-clockwise on screen)."""
    return [(cx + rx * math.cos(math.radians(a)), cy - ry * math.sin(math.radians(a)))
            for a in np.linspace(start, end, n)]


def shape(name: str, inside, background: Image.Image, colour) -> None:
    """A shape like those of the synthetic `shapes` dataset, at 6× its 32 px size."""
    size = 192
    w = size * SS
    y, x = np.mgrid[0:w, 0:w].astype(np.float32)
    u, v = (x - w / 2) / (0.36 * w), (w / 2 - y) / (0.36 * w)  # radius about a third of the image
    mask = Image.fromarray((inside(u, v) * 255).astype(np.uint8), "L")
    img = background.resize((w, w), Image.BILINEAR)
    img.paste(Image.new("RGB", (w, w), colour), (0, 0), mask)
    _smooth(img, (size, size)).save(HERE / name, optimize=True)


def _star(u, v, outer=1.05, inner=0.45, points=5):
    sector = 2 * math.pi / points
    angle = np.remainder(np.arctan2(v, u) - math.pi / 2, sector)
    angle = np.minimum(angle, sector - angle)
    r = np.hypot(u, v)
    x, y = r * np.cos(angle), r * np.sin(angle)
    cx, cy = inner * math.cos(sector / 2), inner * math.sin(sector / 2)
    return cy * (x - outer) + (outer - cx) * y <= 0


def _ring(u, v):
    r2 = u * u + v * v
    return (r2 <= 1) & (r2 >= 0.55 ** 2)


def _triangle(u, v):
    s = math.sqrt(3)
    return (v >= -0.55) & (s * u + v <= 1.1) & (-s * u + v <= 1.1)


def _cross(u, v):
    arm, length = 0.3, 0.92
    return ((np.abs(u) <= arm) & (np.abs(v) <= length)) | ((np.abs(v) <= arm) & (np.abs(u) <= length))


def scene() -> None:
    """A colourful landscape: something no lab model was trained on, to see what they make of it."""
    w, h = 320, 224
    img = _gradient((w * SS, h * SS), (70, 130, 220), (190, 225, 250))
    d = ImageDraw.Draw(img)
    S = SS
    d.ellipse((236 * S, 22 * S, 286 * S, 72 * S), fill=(255, 210, 60))
    d.polygon([(0, 150 * S), (90 * S, 95 * S), (180 * S, 150 * S)], fill=(110, 120, 140))
    d.polygon([(120 * S, 150 * S), (230 * S, 80 * S), (320 * S, 150 * S)], fill=(95, 105, 125))
    d.polygon([(205 * S, 96 * S), (230 * S, 80 * S), (255 * S, 96 * S)], fill=(245, 245, 250))
    d.rectangle((0, 150 * S, w * S, h * S), fill=(80, 160, 70))
    d.ellipse((-40 * S, 165 * S, 200 * S, 260 * S), fill=(60, 135, 55))
    d.rectangle((60 * S, 128 * S, 120 * S, 176 * S), fill=(200, 70, 60))       # house
    d.polygon([(52 * S, 130 * S), (90 * S, 100 * S), (128 * S, 130 * S)], fill=(120, 50, 40))
    d.rectangle((82 * S, 150 * S, 98 * S, 176 * S), fill=(90, 60, 40))          # door
    d.rectangle((66 * S, 138 * S, 78 * S, 150 * S), fill=(250, 240, 170))       # window
    d.rectangle((250 * S, 130 * S, 260 * S, 180 * S), fill=(100, 70, 40))       # tree
    d.ellipse((228 * S, 95 * S, 282 * S, 148 * S), fill=(40, 120, 50))
    for cx, cy in ((60, 45), (150, 35)):                                         # clouds
        for dx, dy, r in ((0, 0, 16), (18, -6, 20), (38, 0, 15)):
            x, y = cx + dx, cy + dy
            d.ellipse(((x - r) * S, (y - r) * S, (x + r) * S, (y + r) * S), fill=(250, 250, 252))
    _smooth(img, (w, h)).save(HERE / "scene.png", optimize=True)


def sneaker() -> None:
    """A sneaker seen from the side: a dark silhouette with a white sole and laces."""
    size = 224
    S = SS
    img = Image.new("RGB", (size * S, size * S), (245, 245, 242))
    d = ImageDraw.Draw(img)
    upper = [(20, 150), (30, 118), (60, 104), (92, 88), (108, 62), (140, 56), (150, 78),
             (168, 96), (200, 112), (210, 132), (206, 150)]
    d.polygon([(x * S, y * S) for x, y in upper], fill=(40, 60, 120))
    d.rounded_rectangle((16 * S, 146 * S, 212 * S, 166 * S), radius=8 * S, fill=(250, 250, 250),
                        outline=(60, 60, 60), width=2 * S)
    for i in range(4):  # laces
        x = 100 + 14 * i
        d.line([(x * S, (80 + 6 * i) * S), ((x + 14) * S, (70 + 6 * i) * S)],
               fill=(235, 235, 235), width=3 * S)
    d.line([(40 * S, 132 * S), (120 * S, 120 * S), (190 * S, 138 * S)], fill=(220, 80, 60),
           width=6 * S)  # a stripe
    img = img.filter(ImageFilter.GaussianBlur(0.5 * S))
    _smooth(img, (size, size)).save(HERE / "sneaker.png", optimize=True)


def main() -> None:
    digit([[(0.2, 0.2), (0.8, 0.2), (0.42, 0.85)]], "digit_7.png")
    digit([_curve(0.5, 0.3, 0.22, 0.16, 160, -60) + [(0.42, 0.5)]
           + _curve(0.5, 0.68, 0.24, 0.18, 90, -200)], "digit_3.png")
    shape("shape_star.png", _star, _gradient((32, 32), (30, 60, 140), (90, 150, 210), 30),
          (250, 215, 40))
    shape("shape_ring.png", _ring, Image.new("RGB", (32, 32), (120, 30, 40)), (240, 240, 230))
    shape("shape_triangle.png", _triangle, _gradient((32, 32), (200, 200, 190), (150, 170, 160)),
          (30, 110, 60))
    shape("shape_cross.png", _cross, Image.new("RGB", (32, 32), (40, 40, 45)), (90, 200, 230))
    scene()
    sneaker()
    for p in sorted(HERE.glob("*.png")):
        print(f"{p.name}: {p.stat().st_size / 1024:.1f} KB")


if __name__ == "__main__":
    main()
