"""shapes: synthetic 32x32 colour shapes in 10 classes, generated in memory (no download).

Position, size, rotation, colours and background vary, so a small CNN beats an MLP clearly.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from ..i18n import text
from .base import ImageData, say

SHAPES_SIZE = 32
_SUPERSAMPLE = 2  # render at 2x and average down, for smooth edges
_MAX_ROTATION = math.radians(25)  # small enough that e.g. square and diamond stay distinct
_SQRT3 = math.sqrt(3)


# Each shape is an inside test on shape-local coordinates (u right, v up) where
# the shape fits in a circle of radius about 1.
def _circle(u, v):
    return u * u + v * v <= 1


def _ring(u, v):
    r2 = u * u + v * v
    return (r2 <= 1) & (r2 >= 0.55 ** 2)


def _square(u, v):
    return torch.maximum(u.abs(), v.abs()) <= 0.78


def _frame(u, v):
    edge = torch.maximum(u.abs(), v.abs())
    return (edge <= 0.82) & (edge >= 0.5)


def _triangle(u, v):
    # Equilateral, pointing up, circumradius 1.1.
    return (v >= -0.55) & (_SQRT3 * u + v <= 1.1) & (-_SQRT3 * u + v <= 1.1)


def _cross(u, v):
    arm, length = 0.3, 0.92
    return (((u.abs() <= arm) & (v.abs() <= length)) | ((v.abs() <= arm) & (u.abs() <= length)))


def _star(u, v, outer=1.05, inner=0.45, points=5):
    # Fold every direction into the half-sector between an outer tip (angle 0)
    # and the next inner corner, then test against that one straight edge.
    sector = 2 * math.pi / points
    angle = torch.remainder(torch.atan2(v, u) - math.pi / 2, sector)  # a tip points up
    angle = torch.minimum(angle, sector - angle)
    radius = torch.sqrt(u * u + v * v)
    x, y = radius * torch.cos(angle), radius * torch.sin(angle)
    corner_x, corner_y = inner * math.cos(sector / 2), inner * math.sin(sector / 2)
    # Outward normal of the edge from (outer, 0) to the inner corner.
    normal_x, normal_y = corner_y, outer - corner_x
    return normal_x * (x - outer) + normal_y * y <= 0


def _crescent(u, v):
    return (u * u + v * v <= 1) & ((u - 0.45) ** 2 + v * v >= 0.82 ** 2)


def _equals(u, v):
    return (u.abs() <= 0.9) & (v.abs() >= 0.18) & (v.abs() <= 0.56)


def _diamond(u, v):
    # Tall, so that no allowed rotation turns a square into a diamond.
    return u.abs() / 0.62 + v.abs() / 1.05 <= 1


SHAPES = {
    "circle": _circle, "ring": _ring, "square": _square, "frame": _frame,
    "triangle": _triangle, "cross": _cross, "star": _star, "crescent": _crescent,
    "equals": _equals, "diamond": _diamond,
}


def _uniform(shape, low, high, generator):
    return low + (high - low) * torch.rand(shape, generator=generator)


def _luminance(rgb: torch.Tensor) -> torch.Tensor:
    weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return (rgb * weights).sum(dim=1, keepdim=True)


def _pixel_grid(side: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x and y of the pixel centres of a side x side grid spanning the image, in image pixels."""
    centres = (torch.arange(side, dtype=torch.float32) + 0.5) * (SHAPES_SIZE / side)
    return centres.view(1, 1, 1, side), centres.view(1, 1, side, 1)


def _backgrounds(n: int, generator: torch.Generator) -> torch.Tensor:
    """Backgrounds in thirds: plain colour, linear gradient, smooth blotchy noise."""
    grid_x, grid_y = _pixel_grid(SHAPES_SIZE)
    base = torch.rand(n, 3, 1, 1, generator=generator)
    background = base.expand(n, 3, SHAPES_SIZE, SHAPES_SIZE).clone()
    kind = torch.randint(0, 3, (n,), generator=generator)

    gradient = torch.nonzero(kind == 1).flatten()
    other = (base[gradient] + _uniform((len(gradient), 3, 1, 1), -0.35, 0.35, generator)).clamp(0, 1)
    direction = _uniform((len(gradient), 1, 1, 1), 0, 2 * math.pi, generator)
    ramp = ((grid_x - SHAPES_SIZE / 2) * direction.cos()
            + (grid_y - SHAPES_SIZE / 2) * direction.sin()) / SHAPES_SIZE + 0.5
    background[gradient] = base[gradient] + (other - base[gradient]) * ramp

    noisy = torch.nonzero(kind == 2).flatten()
    blotches = F.interpolate(0.15 * torch.randn(len(noisy), 3, 6, 6, generator=generator),
                             size=(SHAPES_SIZE, SHAPES_SIZE), mode="bilinear", align_corners=False)
    grain = 0.04 * torch.randn(len(noisy), 1, SHAPES_SIZE, SHAPES_SIZE, generator=generator)
    background[noisy] = base[noisy] + blotches + grain
    return background.clamp_(0, 1)


def _coverage(labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(N, 1, 32, 32) fraction of each pixel the shape covers: antialiased masks."""
    n = len(labels)
    # Radius 6-12.5 px; the centre keeps even a rotated shape inside the image.
    radius = _uniform((n, 1, 1, 1), 6.0, 12.5, generator)
    margin = 1.15 * radius + 0.5
    centre_x = margin + torch.rand(n, 1, 1, 1, generator=generator) * (SHAPES_SIZE - 2 * margin)
    centre_y = margin + torch.rand(n, 1, 1, 1, generator=generator) * (SHAPES_SIZE - 2 * margin)
    angle = _uniform((n, 1, 1, 1), -_MAX_ROTATION, _MAX_ROTATION, generator)
    cos, sin = angle.cos() / radius, angle.sin() / radius

    grid_x, grid_y = _pixel_grid(SHAPES_SIZE * _SUPERSAMPLE)
    coverage = torch.empty(n, 1, SHAPES_SIZE, SHAPES_SIZE)
    for label, inside in enumerate(SHAPES.values()):
        index = torch.nonzero(labels == label).flatten()
        dx, dy = grid_x - centre_x[index], centre_y[index] - grid_y  # dy points up
        u = dx * cos[index] + dy * sin[index]
        v = dy * cos[index] - dx * sin[index]
        coverage[index] = F.avg_pool2d(inside(u, v).float(), _SUPERSAMPLE)
    return coverage


def _render_shapes(labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """uint8 (N, 3, 32, 32) images of the shapes named by labels."""
    n = len(labels)
    coverage = _coverage(labels, generator)
    background = _backgrounds(n, generator)
    foreground = torch.rand(n, 3, 1, 1, generator=generator)
    # A shape must stand out from its background: where their brightness is
    # too close, pull the shape's colour towards white or black.
    background_lum = _luminance(background).mean(dim=(2, 3), keepdim=True)
    too_close = (_luminance(foreground) - background_lum).abs() < 0.3
    contrast = (background_lum < 0.5).float()
    foreground = torch.where(too_close, 0.35 * foreground + 0.65 * contrast, foreground)

    image = background + (foreground - background) * coverage
    return (image * 255).round_().clamp_(0, 255).to(torch.uint8)


def _generate_shapes(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    # Cycling through the classes keeps them balanced, also in a "first N" subset.
    labels = torch.arange(n) % len(SHAPES)
    # Chunks bound the memory of the float intermediates; large ones keep the
    # number of (multi-threaded) torch calls, and their overhead, low.
    images = torch.cat([_render_shapes(chunk, generator) for chunk in labels.split(2000)])
    return images, labels


SHAPES_TRAIN, SHAPES_TEST = 10_000, 2_000  # the full dataset's splits


def generated_sizes(subset_train: int | None, subset_test: int | None,
                    fit: list | None = None) -> dict[str, int]:
    """How many images to generate for subsets of these sizes: just those (generating is the slow
    part), never more than the full dataset has (one request must not make millions). A size over
    that is an error, or, given a `fit` list of messages, the full split and a note in that list."""
    sizes = {}
    for split, size, full in (("train", subset_train, SHAPES_TRAIN), ("test", subset_test, SHAPES_TEST)):
        if size is not None and size > full:
            said = text(f"datasets.subset_{'too_large' if fit is None else 'uses_all'}.{split}",
                        size=size, count=full, name="shapes")
            if fit is None:
                raise ValueError(said)
            fit.append(said)
            size = full
        if size is not None and size < 1:
            raise ValueError(text("datasets.subset_too_small", size=size))
        sizes[f"n_{split}"] = size or full
    return sizes


def load_shapes(data_root: Path, seed: int, n_train: int = SHAPES_TRAIN, n_test: int = SHAPES_TEST,
                shapes_seed: int | None = None, progress=None) -> ImageData:
    if n_train < 1 or n_test < 0:
        raise ValueError(text("datasets.shapes.sizes", n_train=n_train, n_test=n_test))
    seed = seed if shapes_seed is None else shapes_seed
    say(progress, text("datasets.shapes.generating", count=n_train + n_test))
    # Separate streams per split, so the test images do not depend on n_train.
    train_images, train_labels = _generate_shapes(n_train, torch.Generator().manual_seed(2 * seed))
    test_images, test_labels = _generate_shapes(n_test, torch.Generator().manual_seed(2 * seed + 1))
    # mean and std are measured on the training images once the splits are final (load_dataset).
    return ImageData("shapes", list(SHAPES), 3, SHAPES_SIZE, None, None,
                     train_images, train_labels, test_images, test_labels, [])

