"""Datasets for Vision Lab, all loaded into memory as uint8 tensors.

Keeping every image in memory as uint8 (N, C, H, W) lets training augment and normalise whole
batches at once on the CPU, which is much faster than a per-image PIL pipeline for the small
datasets a lesson uses.

This module is the registry and `load_dataset`; the loaders live beside it: `shapes` (synthetic,
no download), `downloads` (MNIST, Fashion-MNIST and CIFAR-10, downloaded once into the data root)
and `folders` (any folder or zip of class folders, as "folder:PATH").
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable

import torch
from torchvision.datasets import MNIST, FashionMNIST

from ..i18n import text
from .base import DatasetUnavailable, ImageData, channel_stats, split_per_class
from .downloads import CIFAR_CLASSES, cifar_present, idx_present, load_cifar10, load_idx
from .folders import FOLDER_OPTIONS, FOLDER_PREFIX, folder_info, load_folder
from .shapes import SHAPES, SHAPES_SIZE, generated_sizes, load_shapes

__all__ = ["DEFAULT_DATASET", "FOLDER_PREFIX", "DatasetUnavailable", "ImageData", "dataset_info",
           "list_datasets", "load_dataset", "resolve_data_root", "sample_grid"]

DEFAULT_DATASET = "shapes"

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

    For folder datasets only file names are scanned, so `channels` and `image_size` are None
    (both are known once the images are read).
    """
    if name.startswith(FOLDER_PREFIX):
        return folder_info(name[len(FOLDER_PREFIX):])
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
                 val_fraction: float = 0.0, fit_subsets: bool = False, **options: Any) -> ImageData:
    """Load a dataset into memory, optionally keeping only a subset of each split, and hold out
    `val_fraction` of the training images as a validation set.

    subset_mode "first" keeps the first N images of a split, "random" a random N chosen with
    `seed`; the validation images are then drawn from those N, stratified by class, also with
    `seed` (a folder's own val/ folder is used instead when it has one). `image_size` applies to
    folder datasets only (None: their own size, see folders.choose_image_size); the built-in ones
    keep their native size. A subset larger than its split is an error, unless `fit_subsets`: then
    it takes the whole split and `messages` says so (a `datasets.subset_uses_all.<split>` Text,
    whose `count` is what the split has). Options per dataset: shapes: n_train, n_test, shapes_seed; folder:
    test_fraction, max_bytes, max_files; all: progress (a callable taking a message string).
    """
    if subset_mode not in ("first", "random"):
        raise ValueError(text("datasets.subset_mode", mode=repr(subset_mode)))
    if not 0 <= val_fraction < 1:
        raise ValueError(text("datasets.val_fraction", fraction=val_fraction))
    notes = []   # shapes' subsets are made, not taken: generated_sizes fits them
    if name.startswith(FOLDER_PREFIX):
        _check_options(name, options, FOLDER_OPTIONS)
        data = load_folder(name[len(FOLDER_PREFIX):], image_size, seed, **options)
    else:
        spec = _builtin_spec(name)
        _check_options(name, options, spec.options)
        if name == "shapes" and not options.keys() & {"n_train", "n_test"}:
            # shapes is generated: make just the subset asked for, the same images for the app,
            # the CLI and the tests (options n_train/n_test make a pool to draw subsets from).
            options.update(generated_sizes(subset_train, subset_test, notes if fit_subsets else None))
            subset_train = subset_test = None
        data = spec.load(resolve_data_root(data_root), seed, **options)
    data.messages.extend(notes)
    generator = torch.Generator().manual_seed(seed)
    fit = data.messages if fit_subsets else None
    data.train_images, data.train_labels = _subset(
        data.train_images, data.train_labels, subset_train, subset_mode, generator, "train", name, fit)
    data.test_images, data.test_labels = _subset(
        data.test_images, data.test_labels, subset_test, subset_mode, generator, "test", name, fit)
    if data.val_images is None and val_fraction > 0:
        _hold_out_validation(data, val_fraction, seed)
    if data.mean is None:
        data.mean, data.std = channel_stats(data.train_images)
    return data


def _hold_out_validation(data: ImageData, fraction: float, seed: int) -> None:
    """Move `fraction` of each class's training images into the validation split."""
    counts = torch.bincount(data.train_labels, minlength=len(data.classes))
    if counts.min() < 2:
        label = int(counts.argmin())
        raise ValueError(text("datasets.too_few_for_validation", count=len(data.train_images),
                              name=data.classes[label], has=int(counts[label])))
    kept, held = split_per_class(data.train_labels, fraction, seed)
    data.val_images, data.val_labels = data.train_images[held], data.train_labels[held]
    data.train_images, data.train_labels = data.train_images[kept], data.train_labels[kept]


def sample_grid(data: ImageData, n: int = 16, split: str = "train",
                seed: int = 0) -> tuple[torch.Tensor, list[str]]:
    """Up to n images of a split with their class names, spread evenly over the classes."""
    images, labels = data.split(split)
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


# ---- helpers ------------------------------------------------------------------------------------

def _check_options(name: str, options: dict, allowed: frozenset[str]) -> None:
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(text("datasets.unknown_option", option=repr(unknown[0]), name=name,
                              allowed=", ".join(sorted(allowed))))


def _subset(images: torch.Tensor, labels: torch.Tensor, size: int | None, mode: str,
            generator: torch.Generator, split: str, name: str,
            fit: list | None) -> tuple[torch.Tensor, torch.Tensor]:
    """`size` images of a split. One larger than the split is an error, or, given a `fit` list
    of messages, the whole split and a note in that list."""
    if size is None:
        return images, labels
    if size < 1:
        raise ValueError(text("datasets.subset_too_small", size=size))
    if size > len(images):
        said = text(f"datasets.subset_{'too_large' if fit is None else 'uses_all'}.{split}",
                    size=size, count=len(images), name=name)
        if fit is None:
            raise ValueError(said)
        fit.append(said)
        # Drawn like any subset, so loading exactly this many again gives the same images.
        size = len(images)
    if mode == "first":
        index = torch.arange(size)
    else:
        index = torch.randperm(len(images), generator=generator)[:size].sort().values
    return images[index].contiguous(), labels[index].contiguous()



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
        partial(idx_present, dataset_class),
        partial(load_idx, dataset_class=dataset_class, name=name, title=title, size_mb=size_mb,
                mean=mean, std=std))


_BUILTIN = {
    "shapes": _BuiltinSpec(
        tuple(SHAPES), 3, SHAPES_SIZE,
        text("datasets.shapes.description"),
        lambda root: True, load_shapes,
        frozenset({"n_train", "n_test", "shapes_seed", "progress"})),
    "mnist": _mnist_family(
        MNIST, "mnist", "MNIST", 12, (0.1307,), (0.3081,),
        text("datasets.mnist.description")),
    "fashion_mnist": _mnist_family(
        FashionMNIST, "fashion_mnist", "Fashion-MNIST", 30, (0.2860,), (0.3530,),
        text("datasets.fashion_mnist.description")),
    "cifar10": _BuiltinSpec(
        tuple(CIFAR_CLASSES), 3, 32,
        text("datasets.cifar10.description"),
        cifar_present, load_cifar10),
}


def _builtin_spec(name: str) -> _BuiltinSpec:
    if name not in _BUILTIN:
        raise ValueError(text("datasets.unknown", name=repr(name), available=", ".join(_BUILTIN),
                              prefix=FOLDER_PREFIX))
    return _BUILTIN[name]
