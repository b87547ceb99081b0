"""What every dataset loader returns, and small helpers they share."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Callable

import torch

from ..i18n import text


class DatasetUnavailable(RuntimeError):
    """A dataset cannot be loaded here; the message says what the user can do."""


@dataclass
class ImageData:
    """A dataset in memory: uint8 images (N, C, H, W) and int64 labels per split.

    Three splits, as the course teaches them: the model learns from `train`; choices made while
    training (the best epoch, early stopping, the plateau scheduler) look at `val`, carved from the
    training data; `test` is looked at once, when training is over.
    """
    name: str
    classes: list[str]
    channels: int
    image_size: int
    # Per-channel statistics in [0, 1] units, measured on the training images (None until then).
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    # The tensors are left out of repr: printing an ImageData should stay readable.
    train_images: torch.Tensor = field(repr=False)
    train_labels: torch.Tensor = field(repr=False)
    test_images: torch.Tensor = field(repr=False)
    test_labels: torch.Tensor = field(repr=False)
    messages: list[str] = field(default_factory=list)
    val_images: torch.Tensor | None = field(default=None, repr=False)
    val_labels: torch.Tensor | None = field(default=None, repr=False)

    @property
    def has_validation(self) -> bool:
        return self.val_images is not None and len(self.val_images) > 0

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(images, labels) of "train", "val" or "test"."""
        if name not in ("train", "val", "test"):
            raise ValueError(text("datasets.split.unknown", split=repr(name)))
        if name == "val" and not self.has_validation:
            raise ValueError(text("datasets.split.no_validation", name=self.name))
        return getattr(self, f"{name}_images"), getattr(self, f"{name}_labels")

    def with_train_share(self, share: float, seed: int) -> "ImageData":
        """The same data learning from `share` of its training images (every class keeps at least
        one). A smaller share's images are among a larger one's for the same seed: the points of a
        learning curve add images, they do not swap them. Validation, test and the channel
        statistics stay as they are, so runs on different shares are measured on the same images."""
        if share >= 1:
            return self
        kept, _ = split_per_class(self.train_labels, 1 - share, seed)
        return replace(self, train_images=self.train_images[kept], train_labels=self.train_labels[kept])



def split_per_class(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (kept, held out) of a random split that holds out `fraction` of each class.

    Stratified, so a small split still has every class: at least one image of each class with two
    or more is held out, and at least one is always kept. Both index lists are sorted."""
    generator = torch.Generator().manual_seed(seed)
    kept, held = [torch.zeros(0, dtype=torch.int64)], [torch.zeros(0, dtype=torch.int64)]
    for label in labels.unique().tolist():
        members = torch.nonzero(labels == label).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        n_held = min(max(1, round(len(members) * fraction)), len(members) - 1)
        held.append(members[:n_held])
        kept.append(members[n_held:])
    return torch.cat(kept).sort().values, torch.cat(held).sort().values


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(text("datasets.env_not_whole", name=name, value=repr(value))) from None




def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
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


def say(progress: Callable[[str], None] | None, message: str) -> None:
    """Tell `progress` (if any) what is happening: a catalogue Text, said in the reader's language."""
    if progress is not None:
        progress(message)


def format_bytes(size: int) -> str:
    if size < 1024:
        return text("datasets.bytes", size=size)
    for unit in ("KB", "MB", "GB"):
        size /= 1024
        if size < 1024 or unit == "GB":
            return f"{size:,.1f} {unit}"

