"""Datasets for Vision Lab, all loaded into memory as uint8 tensors.

Keeping every image in memory as uint8 (N, C, H, W) lets training augment and
normalise whole batches on the device at once, which is much faster than a
per-image PIL pipeline for the small datasets a lesson uses.

Built in: a synthetic "shapes" dataset (no download), MNIST, Fashion-MNIST and
CIFAR-10 (downloaded once into the data root). Any folder or zip of class
folders loads as "folder:PATH".

Nothing here unpickles files: MNIST-style data is read from its raw IDX files
and CIFAR-10 from its binary version, because a pickle from a data folder can
run arbitrary code.
"""

from __future__ import annotations

import io
import math
import os
import re
import stat
import tarfile
import warnings
import zipfile
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torchvision.datasets import MNIST, FashionMNIST
from torchvision.datasets.mnist import read_image_file, read_label_file
from torchvision.datasets.utils import download_and_extract_archive, download_url

DEFAULT_DATASET = "shapes"
FOLDER_PREFIX = "folder:"
DEFAULT_FOLDER_IMAGE_SIZE = 64


class DatasetUnavailable(RuntimeError):
    """A dataset cannot be loaded here; the message says what the user can do."""


@dataclass
class ImageData:
    name: str
    classes: list[str]
    channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    # The tensors are left out of repr: printing an ImageData should stay readable.
    train_images: torch.Tensor = field(repr=False)
    train_labels: torch.Tensor = field(repr=False)
    test_images: torch.Tensor = field(repr=False)
    test_labels: torch.Tensor = field(repr=False)
    messages: list[str] = field(default_factory=list)


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, not {text!r}.") from None


# Caps for reading zip files, so an uploaded archive cannot exhaust memory.
MAX_ARCHIVE_BYTES = _env_int("VISION_LAB_MAX_ARCHIVE_MB", 1024) * 1024 * 1024
MAX_ARCHIVE_FILES = _env_int("VISION_LAB_MAX_ARCHIVE_FILES", 50_000)


# ---- public API ---------------------------------------------------------------------------------

def list_datasets() -> list[str]:
    """Names of the built-in datasets; any folder or zip loads as "folder:PATH"."""
    return list(_BUILTIN)


def resolve_data_root(data_root: str | os.PathLike | None = None) -> Path:
    """Where downloadable datasets live: the argument, else $VISION_LAB_DATA, else ./data."""
    if data_root is None or str(data_root) == "":
        data_root = os.environ.get("VISION_LAB_DATA") or "data"
    return Path(data_root).expanduser()


def dataset_info(name: str, data_root: str | os.PathLike | None = None) -> dict:
    """What a dataset holds, without loading its images.

    For folder datasets only file names are scanned, so `channels` is None
    (it is known once the images are decoded) and `image_size` is the default
    size images are resized to.
    """
    if name.startswith(FOLDER_PREFIX):
        return _folder_info(name[len(FOLDER_PREFIX):])
    spec = _builtin_spec(name)
    return {
        "name": name,
        "classes": list(spec.classes),
        "channels": spec.channels,
        "image_size": spec.image_size,
        "description": spec.description,
        "needs_download": not spec.files_present(resolve_data_root(data_root)),
    }


def load_dataset(name: str, data_root: str | os.PathLike | None = None,
                 subset_train: int | None = None, subset_test: int | None = None,
                 subset_mode: str = "random", seed: int = 0, image_size: int | None = None,
                 **options: Any) -> ImageData:
    """Load a dataset into memory, optionally keeping only a subset of each split.

    subset_mode "first" keeps the first N images of a split, "random" a random
    N chosen with `seed`. `image_size` applies to folder datasets only; the
    built-in ones keep their native size. Options per dataset:
    shapes: n_train, n_test, shapes_seed; folder: test_fraction, max_bytes,
    max_files; all: progress (a callable taking a message string).
    """
    if subset_mode not in ("first", "random"):
        raise ValueError(f"subset_mode must be 'first' or 'random', not {subset_mode!r}.")
    if name.startswith(FOLDER_PREFIX):
        _check_options(name, options, _FOLDER_OPTIONS)
        data = _load_folder(name[len(FOLDER_PREFIX):], image_size or DEFAULT_FOLDER_IMAGE_SIZE,
                            seed, **options)
    else:
        spec = _builtin_spec(name)
        _check_options(name, options, spec.options)
        data = spec.load(resolve_data_root(data_root), seed, **options)
    generator = torch.Generator().manual_seed(seed)
    data.train_images, data.train_labels = _subset(
        data.train_images, data.train_labels, subset_train, subset_mode, generator,
        lambda n: f"subset_train={subset_train} is larger than the {n} training images of '{name}'.")
    data.test_images, data.test_labels = _subset(
        data.test_images, data.test_labels, subset_test, subset_mode, generator,
        lambda n: f"subset_test={subset_test} is larger than the {n} test images of '{name}'.")
    return data


def sample_grid(data: ImageData, n: int = 16, split: str = "train",
                seed: int = 0) -> tuple[torch.Tensor, list[str]]:
    """Up to n images of a split with their class names, spread evenly over the classes."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}.")
    images = data.train_images if split == "train" else data.test_images
    labels = data.train_labels if split == "train" else data.test_labels
    generator = torch.Generator().manual_seed(seed)
    per_class = [torch.nonzero(labels == k).flatten() for k in range(len(data.classes))]
    per_class = [idx[torch.randperm(len(idx), generator=generator)] for idx in per_class]
    # Round-robin over the classes, so every class shows up before any repeats.
    picked: list[int] = []
    rank = 0
    while len(picked) < n and rank < max((len(idx) for idx in per_class), default=0):
        picked += [int(idx[rank]) for idx in per_class if rank < len(idx)][: n - len(picked)]
        rank += 1
    # Grouping by class reads more easily in a grid.
    picked.sort(key=lambda i: int(labels[i]))
    index = torch.tensor(picked, dtype=torch.int64)
    return images[index], [data.classes[int(labels[i])] for i in picked]


# ---- shared helpers -----------------------------------------------------------------------------

def _check_options(name: str, options: dict, allowed: frozenset[str]) -> None:
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(f"Unknown option {unknown[0]!r} for dataset '{name}'; it accepts: "
                         f"{', '.join(sorted(allowed))}.")


def _subset(images: torch.Tensor, labels: torch.Tensor, size: int | None, mode: str,
            generator: torch.Generator,
            too_large: Callable[[int], str]) -> tuple[torch.Tensor, torch.Tensor]:
    if size is None:
        return images, labels
    if size < 1:
        raise ValueError(f"A subset needs at least 1 image, not {size}.")
    if size > len(images):
        raise ValueError(too_large(len(images)))
    if mode == "first":
        index = torch.arange(size)
    else:
        index = torch.randperm(len(images), generator=generator)[:size].sort().values
    return images[index].contiguous(), labels[index].contiguous()


def _channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std in [0, 1] units."""
    channels = images.shape[1]
    total = torch.zeros(channels, dtype=torch.float64)
    total_sq = torch.zeros(channels, dtype=torch.float64)
    # Chunks keep the float copy small; 50,000 images at once would need gigabytes.
    for chunk in images.split(2048):
        x = chunk.to(torch.float32) / 255
        total += x.sum(dim=(0, 2, 3), dtype=torch.float64)
        total_sq += (x * x).sum(dim=(0, 2, 3), dtype=torch.float64)
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = (total_sq / count - mean * mean).clamp(min=0).sqrt()
    return tuple(round(float(m), 4) for m in mean), tuple(round(float(s), 4) for s in std)


def _say(progress: Callable[[str], None] | None, message: str) -> None:
    if progress is not None:
        progress(message)


def _format_bytes(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    for unit in ("KB", "MB", "GB"):
        size /= 1024
        if size < 1024 or unit == "GB":
            return f"{size:,.1f} {unit}"


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}" + ("" if count == 1 else "s")


# ---- shapes: synthetic, generated in memory -----------------------------------------------------

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


_SHAPES = {
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
    for label, inside in enumerate(_SHAPES.values()):
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
    labels = torch.arange(n) % len(_SHAPES)
    # Chunks bound the memory of the float intermediates; large ones keep the
    # number of (multi-threaded) torch calls, and their overhead, low.
    images = torch.cat([_render_shapes(chunk, generator) for chunk in labels.split(2000)])
    return images, labels


def _load_shapes(data_root: Path, seed: int, n_train: int = 10_000, n_test: int = 2_000,
                 shapes_seed: int | None = None, progress=None) -> ImageData:
    if n_train < 1 or n_test < 0:
        raise ValueError(f"shapes needs n_train >= 1 and n_test >= 0, not {n_train} and {n_test}.")
    seed = seed if shapes_seed is None else shapes_seed
    _say(progress, f"Generating {n_train + n_test:,} shapes images …")
    # Separate streams per split, so the test images do not depend on n_train.
    train_images, train_labels = _generate_shapes(n_train, torch.Generator().manual_seed(2 * seed))
    test_images, test_labels = _generate_shapes(n_test, torch.Generator().manual_seed(2 * seed + 1))
    mean, std = _channel_stats(train_images)
    return ImageData("shapes", list(_SHAPES), 3, SHAPES_SIZE, mean, std,
                     train_images, train_labels, test_images, test_labels, [])


# ---- MNIST, Fashion-MNIST, CIFAR-10: downloaded into the data root ------------------------------

def _download_failed(title: str, data_root: Path, what_to_put: str) -> DatasetUnavailable:
    return DatasetUnavailable(
        f"Could not download {title} into {data_root}/ (no internet connection?). Put {what_to_put} "
        f"there, or choose the 'shapes' dataset, which needs no download.")


def _idx_folder(dataset_class, data_root: Path) -> Path:
    # torchvision's layout, e.g. data/MNIST/raw/, so files it downloaded load here too.
    return data_root / dataset_class.__name__ / "raw"


def _idx_names(dataset_class) -> list[str]:
    return [Path(archive).stem for archive, _ in dataset_class.resources]


def _idx_present(dataset_class, data_root: Path) -> bool:
    folder = _idx_folder(dataset_class, data_root)
    return all((folder / name).is_file() for name in _idx_names(dataset_class))


def _download_idx(dataset_class, data_root: Path) -> None:
    folder = _idx_folder(dataset_class, data_root)
    for archive, md5 in dataset_class.resources:
        errors = []
        for mirror in dataset_class.mirrors:
            try:
                download_and_extract_archive(mirror + archive, download_root=folder,
                                             filename=archive, md5=md5)
                break
            except Exception as error:
                errors.append(error)
        else:
            raise errors[-1]


def _load_idx(data_root: Path, seed: int, progress=None, *, dataset_class, name: str, title: str,
              size_mb: int, mean: tuple[float, ...], std: tuple[float, ...]) -> ImageData:
    folder = _idx_folder(dataset_class, data_root)
    if not _idx_present(dataset_class, data_root):
        _say(progress, f"Downloading {title} ({size_mb} MB) into {data_root}/ …")
        try:
            _download_idx(dataset_class, data_root)
        except Exception as error:
            files = ", ".join(_idx_names(dataset_class))
            where = folder.relative_to(data_root)
            raise _download_failed(title, data_root, f"its four files ({files}) in {where}/") \
                from error
    splits = []
    for prefix in ("train", "t10k"):
        images = read_image_file(str(folder / f"{prefix}-images-idx3-ubyte"))
        labels = read_label_file(str(folder / f"{prefix}-labels-idx1-ubyte"))
        splits += [images.unsqueeze(1).contiguous(), labels.to(torch.int64)]
    return ImageData(name, list(dataset_class.classes), 1, 28, mean, std, *splits, [])


_CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
_CIFAR_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
_CIFAR_FOLDER = "cifar-10-batches-bin"
_CIFAR_TRAIN = [f"data_batch_{i}.bin" for i in range(1, 6)]
_CIFAR_TEST = ["test_batch.bin"]
_CIFAR_RECORD = 1 + 3 * 32 * 32  # one label byte, then the red, green and blue planes
_CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
                  "dog", "frog", "horse", "ship", "truck"]  # as torchvision names them


def _cifar_present(data_root: Path) -> bool:
    return all((data_root / _CIFAR_FOLDER / name).is_file() for name in _CIFAR_TRAIN + _CIFAR_TEST)


def _download_cifar(data_root: Path) -> None:
    download_url(_CIFAR_URL, str(data_root), md5=_CIFAR_MD5)
    wanted = {f"{_CIFAR_FOLDER}/{name}" for name in _CIFAR_TRAIN + _CIFAR_TEST}
    with tarfile.open(data_root / Path(_CIFAR_URL).name) as archive:
        members = [m for m in archive.getmembers() if m.name in wanted]
        archive.extractall(data_root, members=members, filter="data")


def _read_cifar(paths: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
    records = []
    for path in paths:
        data = np.fromfile(path, dtype=np.uint8)
        if data.size == 0 or data.size % _CIFAR_RECORD:
            raise DatasetUnavailable(f"{path} is damaged (unexpected size); delete it and load "
                                     f"CIFAR-10 again to download a fresh copy.")
        records.append(data.reshape(-1, _CIFAR_RECORD))
    records = torch.from_numpy(np.concatenate(records))
    return records[:, 1:].reshape(-1, 3, 32, 32).contiguous(), records[:, 0].to(torch.int64)


def _load_cifar10(data_root: Path, seed: int, progress=None) -> ImageData:
    if not _cifar_present(data_root):
        _say(progress, f"Downloading CIFAR-10 (162 MB) into {data_root}/ …")
        try:
            _download_cifar(data_root)
        except Exception as error:
            what = f"the extracted '{_CIFAR_FOLDER}' folder (from cifar-10-binary.tar.gz)"
            if (data_root / "cifar-10-batches-py").is_dir():
                what += (" — the 'cifar-10-batches-py' folder already there is the Python version,"
                         " which Vision Lab does not read because loading it means unpickling")
            raise _download_failed("CIFAR-10", data_root, what) from error
    folder = data_root / _CIFAR_FOLDER
    train_images, train_labels = _read_cifar([folder / name for name in _CIFAR_TRAIN])
    test_images, test_labels = _read_cifar([folder / name for name in _CIFAR_TEST])
    return ImageData("cifar10", list(_CIFAR_CLASSES), 3, 32, (0.4914, 0.4822, 0.4465),
                     (0.2470, 0.2435, 0.2616), train_images, train_labels, test_images,
                     test_labels, [])


# ---- registry of built-in datasets --------------------------------------------------------------

@dataclass(frozen=True)
class _BuiltinSpec:
    classes: tuple[str, ...]
    channels: int
    image_size: int
    description: str
    files_present: Callable[[Path], bool]
    load: Callable[..., ImageData]
    options: frozenset[str] = frozenset({"progress"})


def _mnist_family(dataset_class, name: str, title: str, size_mb: int, mean, std,
                  description: str) -> _BuiltinSpec:
    return _BuiltinSpec(
        tuple(dataset_class.classes), 1, 28, description,
        partial(_idx_present, dataset_class),
        partial(_load_idx, dataset_class=dataset_class, name=name, title=title, size_mb=size_mb,
                mean=mean, std=std))


_BUILTIN = {
    "shapes": _BuiltinSpec(
        tuple(_SHAPES), 3, SHAPES_SIZE,
        "Synthetic 32×32 colour shapes in 10 classes, generated in memory (no download). Position, "
        "size, rotation, colours and background vary, so a small CNN beats an MLP clearly.",
        lambda root: True, _load_shapes,
        frozenset({"n_train", "n_test", "shapes_seed", "progress"})),
    "mnist": _mnist_family(
        MNIST, "mnist", "MNIST", 12, (0.1307,), (0.3081,),
        "Handwritten digits 0–9: 28×28 grayscale, 60,000 training and 10,000 test images."),
    "fashion_mnist": _mnist_family(
        FashionMNIST, "fashion_mnist", "Fashion-MNIST", 30, (0.2860,), (0.3530,),
        "Clothing photos in 10 classes: 28×28 grayscale, 60,000 training and 10,000 test images."),
    "cifar10": _BuiltinSpec(
        tuple(_CIFAR_CLASSES), 3, 32,
        "Small colour photos in 10 classes (planes, cars, animals, …): 32×32, 50,000 training and "
        "10,000 test images.",
        _cifar_present, _load_cifar10),
}


def _builtin_spec(name: str) -> _BuiltinSpec:
    if name not in _BUILTIN:
        raise ValueError(f"Unknown dataset {name!r}. Available: {', '.join(_BUILTIN)}, "
                         f"or {FOLDER_PREFIX}PATH for a folder or zip of class folders.")
    return _BUILTIN[name]


# ---- folder datasets: a folder or zip of class folders ------------------------------------------

_FOLDER_OPTIONS = frozenset({"test_fraction", "max_bytes", "max_files", "progress"})
_GRAYSCALE_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}

# Why files were skipped, as (one file, several files) phrases.
_SKIP_REASONS = {
    "not_image": ("that is not an image", "that are not images"),
    "too_large": ("that is too large to decode safely", "that are too large to decode safely"),
    "unreadable": ("that could not be read from the zip file",
                   "that could not be read from the zip file"),
    "nested_zip": ("that is a zip inside the zip (not opened)",
                   "that are zips inside the zip (not opened)"),
    "symlink": ("that is a symbolic link", "that are symbolic links"),
    "outside": ("that is not inside a class folder", "that are not inside a class folder"),
}


@dataclass
class _Tree:
    """File and folder paths (as tuples of names) of a folder or zip, hidden ones left out."""
    files: dict[tuple[str, ...], Callable[[], Any]]  # path -> opens it for PIL
    folders: set[tuple[str, ...]]
    skipped: dict[str, list[str]] = field(default_factory=dict)

    def skip(self, reason: str, name: str) -> None:
        self.skipped.setdefault(reason, []).append(name)


def _ignored(parts: tuple[str, ...]) -> bool:
    # Hidden files, and the resource forks macOS adds to the zips it makes.
    return any(part.startswith(".") or part == "__MACOSX" for part in parts)


def _scan_directory(root: Path) -> _Tree:
    tree = _Tree({}, set())
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = [sub for sub in subfolders if not _ignored((sub,))]  # don't descend
        relative = Path(folder).relative_to(root).parts
        tree.folders.update(relative + (sub,) for sub in subfolders)
        for name in names:
            if not _ignored((name,)):
                path = Path(folder, name)
                tree.files[relative + (name,)] = lambda path=path: path
    return tree


def _zip_member_name(info: zipfile.ZipInfo) -> str:
    # Zips without the UTF-8 flag get cp437 names from zipfile, but most such
    # zips (macOS, Linux tools) really hold UTF-8; recover it where it decodes.
    if info.flag_bits & 0x800:
        return info.filename
    try:
        return info.filename.encode("cp437").decode("utf-8")
    except UnicodeError:
        return info.filename


def _safe_member_parts(name: str) -> tuple[str, ...]:
    unified = name.replace("\\", "/")
    parts = tuple(p for p in unified.split("/") if p not in ("", "."))
    if unified.startswith("/") or re.match(r"[A-Za-z]:", unified) or ".." in parts:
        raise ValueError(f"The zip file contains an unsafe path {name!r} (absolute or with '..'); "
                         f"refusing to read it.")
    return parts


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


class _ReadBudget:
    """Bytes that may still be read from an archive, whatever its headers claim."""

    def __init__(self, limit: int):
        self.limit = limit
        self.remaining = limit

    def read(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> io.BytesIO:
        with archive.open(info) as member:
            data = member.read(self.remaining + 1)
        if len(data) > self.remaining:
            raise ValueError(f"The zip file unpacks to more than {_format_bytes(self.limit)}, the "
                             f"limit (set VISION_LAB_MAX_ARCHIVE_MB to raise it).")
        self.remaining -= len(data)
        return io.BytesIO(data)


def _scan_zip(archive: zipfile.ZipFile, max_bytes: int, max_files: int) -> _Tree:
    """Check every member before reading any, then map paths to in-memory readers."""
    members = [(info, _safe_member_parts(_zip_member_name(info))) for info in archive.infolist()]
    files = [info for info, _ in members if not info.is_dir()]
    if len(files) > max_files:
        raise ValueError(f"The zip file has {len(files):,} files, more than the limit of "
                         f"{max_files:,} (set VISION_LAB_MAX_ARCHIVE_FILES to raise it).")
    declared = sum(info.file_size for info in files)
    if declared > max_bytes:
        raise ValueError(f"The zip file unpacks to {_format_bytes(declared)}, more than the "
                         f"{_format_bytes(max_bytes)} limit (set VISION_LAB_MAX_ARCHIVE_MB to "
                         f"raise it).")
    budget = _ReadBudget(max_bytes)
    tree = _Tree({}, set())
    for info, parts in members:
        if not parts or _ignored(parts):
            continue
        name = "/".join(parts)
        if info.is_dir():
            tree.folders.add(parts)
        elif _is_symlink(info):
            tree.skip("symlink", name)
        elif name.lower().endswith(".zip"):
            tree.skip("nested_zip", name)
        else:
            tree.files[parts] = lambda info=info: budget.read(archive, info)
    return tree


@dataclass
class _Layout:
    """Where the images are: class name -> files, per split (test is None to split them)."""
    train: dict[str, list[tuple[str, ...]]]
    test: dict[str, list[tuple[str, ...]]] | None


def _children(tree: _Tree, prefix: tuple[str, ...]) -> tuple[set[str], bool]:
    """Folder names directly under prefix, and whether files sit there directly."""
    depth = len(prefix)
    folders = {p[depth] for p in tree.folders if len(p) > depth and p[:depth] == prefix}
    folders |= {p[depth] for p in tree.files if len(p) > depth + 1 and p[:depth] == prefix}
    has_files = any(len(p) == depth + 1 and p[:depth] == prefix for p in tree.files)
    return folders, has_files


def _class_files(tree: _Tree, prefix: tuple[str, ...]) -> dict[str, list[tuple[str, ...]]]:
    depth = len(prefix)
    classes: dict[str, list[tuple[str, ...]]] = {}
    for folder in tree.folders:
        if len(folder) == depth + 1 and folder[:depth] == prefix:
            classes.setdefault(folder[depth], [])
    for path in sorted(tree.files):
        if path[:depth] != prefix:
            continue
        if len(path) == depth + 1:
            tree.skip("outside", "/".join(path))
        else:
            # Images in subfolders of a class folder belong to that class.
            classes.setdefault(path[depth], []).append(path)
    return dict(sorted(classes.items()))


def _find_layout(tree: _Tree, shown_path: str) -> _Layout:
    prefix: tuple[str, ...] = ()
    folders, has_files = _children(tree, prefix)
    # Step through lone wrapper folders (like the one a zip of a folder has):
    # a lone folder that holds folders and no files is no class folder.
    while len(folders) == 1 and not has_files:
        inner, inner_has_files = _children(tree, prefix + tuple(folders))
        if not inner or inner_has_files:
            break
        prefix += tuple(folders)
        folders, has_files = inner, inner_has_files
    by_lower = {name.lower(): name for name in folders}
    if "train" in by_lower and "test" in by_lower:
        train_prefix, test_prefix = prefix + (by_lower["train"],), prefix + (by_lower["test"],)
        train, test = _class_files(tree, train_prefix), _class_files(tree, test_prefix)
        expected = f"{shown_path}/{'/'.join(train_prefix)}/<class name>/<images>"
    else:
        train, test = _class_files(tree, prefix), None
        expected = "/".join([shown_path, *prefix, "<class name>/<images>"])
    _check_classes(train, test, shown_path, expected)
    return _Layout(train, test)


def _check_classes(train: dict, test: dict | None, shown_path: str, expected: str) -> None:
    if not train:
        raise ValueError(f"Looked in '{shown_path}' but found no class folders: expected {expected}.")
    names = sorted(set(train) | set(test or {}))
    by_lower: dict[str, str] = {}
    for name in names:
        if name.lower() in by_lower:
            raise ValueError(f"Class folders '{by_lower[name.lower()]}' and '{name}' differ only "
                             f"by upper/lower case; rename or merge them.")
        by_lower[name.lower()] = name
    if len(train) < 2:
        raise ValueError(f"'{shown_path}' has only one class folder ('{next(iter(train))}'); a "
                         f"classifier needs at least 2 classes: expected {expected}.")
    extra = sorted(set(test or {}) - set(train))
    if extra:
        raise ValueError(f"The test folder has class folders that the train folder lacks: "
                         f"{', '.join(extra)}.")


def _open_tree(path: Path, shown_path: str, max_bytes: int, max_files: int):
    """Scan a folder or zip; returns (tree, zip file to close or None)."""
    if not path.exists():
        raise ValueError(f"The folder or zip file '{shown_path}' does not exist.")
    if path.is_dir():
        return _scan_directory(path), None
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        raise ValueError(f"'{shown_path}' is neither a folder nor a readable zip file.") from None
    try:
        return _scan_zip(archive, max_bytes, max_files), archive
    except BaseException:
        archive.close()
        raise


def _folder_info(path_text: str) -> dict:
    tree, archive = _open_tree(Path(path_text).expanduser(), path_text, MAX_ARCHIVE_BYTES,
                               MAX_ARCHIVE_FILES)
    if archive is not None:
        archive.close()
    layout = _find_layout(tree, path_text)
    count = sum(len(files) for files in layout.train.values())
    if layout.test is not None:
        count += sum(len(files) for files in layout.test.values())
    return {
        "name": FOLDER_PREFIX + path_text,
        "classes": list(layout.train),
        "channels": None,
        "image_size": DEFAULT_FOLDER_IMAGE_SIZE,
        "description": f"Your images from {path_text}: {len(layout.train)} class folders, "
                       f"{count:,} files.",
        "needs_download": False,
    }


def _flatten(image: Image.Image) -> Image.Image:
    """RGB, with any transparency shown over white (as a viewer would), not over black."""
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def _decode(source: Any, size: int) -> tuple[np.ndarray, bool]:
    """(size, size, 3) uint8 pixels and whether the file was grayscale."""
    with warnings.catch_warnings():
        # PIL only warns between 1x and 2x its pixel limit; refuse those too.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(source) as image:  # the first frame of an animation
            # JPEGs can decode straight at a fraction of their size: far faster for photos.
            image.draft(image.mode, (size, size))
            grayscale = image.mode in _GRAYSCALE_MODES
            image = ImageOps.exif_transpose(image)
            image = _flatten(image).resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(image), grayscale


@dataclass
class _Decoded:
    pixels: list[np.ndarray] = field(default_factory=list)  # (size, size, 3) uint8 each
    grayscale: list[bool] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)

    def tensors(self, channels: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.pixels:
            return (torch.zeros(0, channels, size, size, dtype=torch.uint8),
                    torch.zeros(0, dtype=torch.int64))
        images = torch.from_numpy(np.stack(self.pixels)).permute(0, 3, 1, 2)[:, :channels]
        return images.contiguous(), torch.tensor(self.labels, dtype=torch.int64)


def _decode_classes(classes: dict[str, list[tuple[str, ...]]], tree: _Tree, size: int,
                    report: Callable[[], None]) -> _Decoded:
    decoded = _Decoded()
    for label, paths in enumerate(classes.values()):
        for path in paths:
            name = "/".join(path)
            try:
                source = tree.files[path]()
            except (zipfile.BadZipFile, OSError, EOFError):
                tree.skip("unreadable", name)
                continue
            try:
                pixels, grayscale = _decode(source, size)
            except (Image.DecompressionBombError, Image.DecompressionBombWarning):
                tree.skip("too_large", name)
                continue
            except Exception:  # PIL raises many kinds of errors on files it cannot read
                tree.skip("not_image", name)
                continue
            decoded.pixels.append(pixels)
            decoded.grayscale.append(grayscale)
            decoded.labels.append(label)
            report()
    return decoded


def _split_per_class(labels: list[int], test_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices of a random train/test split that keeps each class in both where it can."""
    generator = torch.Generator().manual_seed(seed)
    by_class: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(label, []).append(i)
    train, test = [], []
    for label in sorted(by_class):
        members = by_class[label]
        order = torch.randperm(len(members), generator=generator).tolist()
        # At least one test image where there are two, and always one training image.
        n_test = min(max(1, round(len(members) * test_fraction)), len(members) - 1)
        test += sorted(members[i] for i in order[:n_test])
        train += sorted(members[i] for i in order[n_test:])
    return train, test


def _skip_messages(skipped: dict[str, list[str]]) -> list[str]:
    messages = []
    for reason, (one, several) in _SKIP_REASONS.items():
        names = skipped.get(reason, [])
        if names:
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5:,} more" if len(names) > 5 else "")
            phrase = one if len(names) == 1 else several
            messages.append(f"Skipped {_plural(len(names), 'file')} {phrase}: {shown}.")
    return messages


def _load_folder(path_text: str, image_size: int, seed: int, test_fraction: float = 0.2,
                 max_bytes: int | None = None, max_files: int | None = None,
                 progress=None) -> ImageData:
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be between 0 and 1, not {test_fraction}.")
    if image_size < 1:
        raise ValueError(f"image_size must be a positive number of pixels, not {image_size}.")
    max_bytes = MAX_ARCHIVE_BYTES if max_bytes is None else max_bytes
    max_files = MAX_ARCHIVE_FILES if max_files is None else max_files
    tree, archive = _open_tree(Path(path_text).expanduser(), path_text, max_bytes, max_files)
    try:
        layout = _find_layout(tree, path_text)
        # Test class folders are labelled by their position among the training classes.
        test_files = {name: (layout.test or {}).get(name, []) for name in layout.train}
        total = sum(len(paths) for paths in [*layout.train.values(), *test_files.values()])
        _say(progress, f"Reading {total:,} files from {path_text} …")
        done = 0

        def report():
            nonlocal done
            done += 1
            if done % 500 == 0:
                _say(progress, f"Read {done:,} of {total:,} files …")

        train = _decode_classes(layout.train, tree, image_size, report)
        test = _decode_classes(test_files, tree, image_size, report)
    finally:
        if archive is not None:
            archive.close()

    classes = list(layout.train)
    empty = [name for label, name in enumerate(classes) if label not in set(train.labels)]
    if empty:
        raise ValueError(f"Class folder{'s' if len(empty) > 1 else ''} {', '.join(map(repr, empty))} "
                         f"in '{path_text}' {'have' if len(empty) > 1 else 'has'} no images.")
    channels = 1 if all(train.grayscale + test.grayscale) else 3
    train_images, train_labels = train.tensors(channels, image_size)
    test_images, test_labels = test.tensors(channels, image_size)
    if layout.test is None:
        train_index, test_index = _split_per_class(train.labels, test_fraction, seed)
        test_images, test_labels = train_images[test_index], train_labels[test_index]
        train_images, train_labels = train_images[train_index], train_labels[train_index]
    if len(test_images) == 0:
        raise ValueError(f"'{path_text}' has no images to test on: add images to its test folder, "
                         f"or at least 2 images to a class folder.")
    mean, std = _channel_stats(train_images)
    return ImageData(FOLDER_PREFIX + path_text, classes, channels, image_size, mean, std,
                     train_images.contiguous(), train_labels, test_images.contiguous(),
                     test_labels, _skip_messages(tree.skipped))
