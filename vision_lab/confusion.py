"""Behind each cell of a confusion matrix: the test images that landed there, and why.

A click on cell (true class, predicted class) asks "which images are these?". Off the diagonal the
most confidently wrong come first: the mistakes the model is surest of, usually a lesson about the
data (a mislabelled image, two classes that look alike). On the diagonal the least confident correct
ones come first: the near misses; the confident ones all look alike. Each image comes with every
class's probability and, for a model with convolutions, a Grad-CAM overlay for the predicted class:
where the model found the evidence for what it said.

The forward pass over the test set is the expensive part and does not depend on the cell:
`predict_probabilities` once, then `confusion_cell(..., probs=probs)` for each click, and
`confusion_matrix(probs, labels)` for a matrix whose counts match the cells exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .i18n import text
from .network_view import _device_of, _eval_mode, _fast_layout, grad_cam, overlay_heatmap
from .models import conv_layers
from .preprocessing import Preprocessing


@dataclass
class CellImage:
    index: int                   # position in the test images given
    image: torch.Tensor          # the test image, uint8 (C, H, W)
    confidence: float            # probability of the predicted class
    probs: list[float]           # probability of every class
    overlay: np.ndarray | None   # Grad-CAM of the predicted class over the image, (H, W, 3)
                                 # uint8; None for a model without convolutions


@dataclass
class ConfusionCell:
    true_class: int
    predicted_class: int
    total: int                   # test images in the cell; `images` holds the first `limit`
    images: list[CellImage]


def predict_probabilities(model: nn.Module, prep: Preprocessing, images: torch.Tensor,
                          batch_size: int = 256) -> torch.Tensor:
    """Softmax probabilities (N, num_classes), float32 on the CPU, for uint8 images (N, C, H, W)."""
    if len(images) == 0:
        raise ValueError(text("confusion.no_images"))
    device = _device_of(model)
    chunks = []
    # no_grad rather than inference_mode: the caller may go on to modify the result.
    with _eval_mode(model), torch.no_grad():
        for start in range(0, len(images), batch_size):
            batch = prep(images[start:start + batch_size]).to(device)
            logits = model(_fast_layout(model, batch))
            chunks.append(logits.float().softmax(dim=1).cpu())
    return torch.cat(chunks)


def confusion_matrix(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(K, K) counts, rows the true class and columns the predicted one (the most probable)."""
    num_classes = probs.shape[1]
    cells = torch.as_tensor(labels).long() * num_classes + probs.argmax(dim=1)
    return torch.bincount(cells, minlength=num_classes ** 2).view(num_classes, num_classes)


def cell_indices(probs: torch.Tensor, labels: torch.Tensor, true_class: int,
                 predicted_class: int) -> torch.Tensor:
    """Indices of the images in one cell: off the diagonal the most confident first, on it the
    least confident first. Ties keep test-set order."""
    in_cell = torch.nonzero((torch.as_tensor(labels) == true_class)
                            & (probs.argmax(dim=1) == predicted_class)).flatten()
    confidence = probs[in_cell, predicted_class]
    order = confidence.argsort(descending=true_class != predicted_class, stable=True)
    return in_cell[order]


def _cam_overlay(model: nn.Module, prep: Preprocessing, image: torch.Tensor,
                 predicted_class: int) -> np.ndarray:
    heatmap, _ = grad_cam(model, prep(image[None]), target_class=predicted_class)
    # The heatmap covers the model's input; a pixel-permuted model's is put back on the image's
    # own pixels, which are what the gallery shows.
    heatmap = prep.unpermute(heatmap)
    return overlay_heatmap(image, heatmap)


def confusion_cell(model: nn.Module, prep: Preprocessing, images: torch.Tensor,
                   labels: torch.Tensor, true_class: int, predicted_class: int, limit: int = 32,
                   probs: torch.Tensor | None = None, batch_size: int = 256) -> ConfusionCell:
    """The test images of one confusion-matrix cell, in the order `cell_indices` gives, at most
    `limit` of them (`total` counts them all), each with its probabilities and a Grad-CAM overlay.

    `images` are uint8 (N, C, H, W) and `labels` (N,) class indices. Pass `probs` from
    `predict_probabilities` to skip the forward pass over the whole test set.
    """
    if limit < 0:
        raise ValueError(text("confusion.negative_limit", limit=limit))
    if probs is None:
        probs = predict_probabilities(model, prep, images, batch_size)
    num_classes = probs.shape[1]
    for name, value in (("true_class", true_class), ("predicted_class", predicted_class)):
        if not 0 <= value < num_classes:
            raise ValueError(text("confusion.class_out_of_range", name=name, value=value,
                                  count=num_classes))
    indices = cell_indices(probs, labels, true_class, predicted_class)
    has_convs = bool(conv_layers(model))
    shown = []
    for i in indices[:limit].tolist():
        overlay = _cam_overlay(model, prep, images[i], predicted_class) if has_convs else None
        shown.append(CellImage(index=i, image=images[i], confidence=float(probs[i, predicted_class]),
                               probs=probs[i].tolist(), overlay=overlay))
    return ConfusionCell(true_class, predicted_class, total=len(indices), images=shown)
