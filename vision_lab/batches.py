"""An epoch's batches: a new random order, cut into batches, augmented a chunk at a time.

The images stay in memory as uint8 tensors; each chunk of several batches is augmented
(batch_augment.py) and normalised at once, on the device the augmentation's generator lives on,
and the batches are sliced out of it ready for the model.
"""
from __future__ import annotations

import math
from typing import Iterator

import torch

from . import distributed
from .batch_augment import BatchAugmenter
from .evaluation import normalize_on_device
from .preprocessing import Preprocessing

# Training augments and normalises a "chunk" of several batches at once, then slices batches out
# of it: each augmentation op has a fixed cost per call (dispatch, and on several threads an OpenMP
# fork/join) that 64 CIFAR-sized images do not amortise. Bigger chunks stop paying once an op's
# tensors fall out of the CPU caches: on a 2-core machine the mlp trained at 0.65, 0.70, 0.78 and
# 0.68 of its compute floor with chunks of 64, 128, 256 and 512 CIFAR images, so the cap is 256 of
# them (3 MB of float pixels). A batch larger than the cap (224 px images) is augmented on its own.
AUGMENT_CHUNK_BYTES = 3 * 2**20


def augment_chunk_size(batch_size: int, channels: int, image_size: int,
                       max_bytes: int = AUGMENT_CHUNK_BYTES) -> int:
    """Images augmented at once: the most whole batches whose float32 pixels fit in
    `max_bytes`, and at least one batch."""
    batch_bytes = batch_size * channels * image_size * image_size * 4
    return batch_size * max(1, max_bytes // batch_bytes)


def batch_bounds(n: int, batch_size: int, smallest_last: int = 2) -> list[tuple[int, int]]:
    """(start, end) of each batch of an epoch of n images. A last batch of fewer than
    `smallest_last` images joins the batch before it: BatchNorm cannot compute a batch's spread
    from a single image (a distributed run asks for 2 per process)."""
    starts = list(range(0, n, batch_size))
    if len(starts) > 1 and n - starts[-1] < smallest_last:
        starts.pop()
    return list(zip(starts, starts[1:] + [n]))


def training_batches(images: torch.Tensor, labels: torch.Tensor, order: torch.Tensor, batch_size: int,
                     chunk_size: int, augment: BatchAugmenter, prep: Preprocessing,
                     generator: torch.Generator, bounds: list[tuple[int, int]] | None = None,
                     ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(x, y) batches in `order`: augmented, normalised, ready for the model.

    A chunk of about `chunk_size` images (whole batches) is augmented at once; every image still
    gets its own random parameters, drawn from `generator`, so a given generator state always
    gives the same batches. (ColorJitter's order of adjustments, drawn once per BatchAugmenter
    call, is shared by a chunk instead of a batch; see BatchAugmenter.) The augmentation runs on
    the generator's device: on a GPU, only uint8 pixels ever cross to it. `bounds` are the
    batches' (start, end) in `order` (default: `batch_bounds`).
    """
    bounds = bounds if bounds is not None else batch_bounds(len(order), batch_size)
    per_chunk = max(1, chunk_size // batch_size)
    for first in range(0, len(bounds), per_chunk):
        chunk = bounds[first:first + per_chunk]
        offset = chunk[0][0]
        idx = order[offset:chunk[-1][1]].to(images.device)
        # index_select copies whole images; images[idx] would gather element by element (~10x slower).
        pixels = images.index_select(0, idx)
        if pixels.device != generator.device:  # images too many for the GPU: this chunk crosses
            pixels = pixels.pin_memory().to(generator.device, non_blocking=True)
        x = normalize_on_device(prep, augment.pixels(pixels, generator))
        y = labels.index_select(0, idx)
        for start, end in chunk:
            yield x[start - offset:end - offset], y[start - offset:end - offset]


def epoch_batches(run) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """This epoch's batches of a run (run_setup.Run), in a new random order drawn from its
    `order_gen`; in a distributed run, this process's share of each (every process draws the same
    order)."""
    images, labels = run.images["train"]
    order = torch.randperm(len(images), generator=run.order_gen)
    bounds = batch_bounds(len(order), run.batch_size, run.smallest_last)
    batch_size = run.batch_size
    if run.group:
        order, bounds = distributed.shard_batches(order, bounds, run.group)
        batch_size = math.ceil(batch_size / run.group.world_size)
    chunk = augment_chunk_size(batch_size, run.data.channels, max(run.data.image_size, run.prep.image_size))
    return training_batches(images, labels, order, batch_size, chunk, run.augment, run.prep,
                            run.augment_gen, bounds)
