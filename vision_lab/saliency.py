"""Saliency maps: which parts of one image a prediction depends on.

Next to Grad-CAM (in `network_view`) there are three ways to ask, each with a one-line idea in
`METHODS` for the app to show. Occlusion and the input gradient only run the model forward and
backward, so they work for every model, the MLP included; Grad-CAM++ reads a convolution's maps
and, like Grad-CAM, raises `network_view.NoSpatialFeatures` for a network without any.

Every function takes the normalised input the model receives, (1, C, H, W) or (C, H, W), as
`network_view.grad_cam` does, and returns (map (H, W) float32 on the CPU, class explained); the
predicted class is explained when `target_class` is None. Maps cover the model's input: for a
pixel-permuted model, `Preprocessing.unpermute` puts them back on the image's own pixels.
"""
from __future__ import annotations

import torch
from torch import nn

from .i18n import text
from .network_view import (
    _cam_to_heatmap,
    _device_of,
    _eval_mode,
    _fast_layout,
    _layer_gradient,
    _normalize01,
    _single_image,
    _target_class,
    grad_cam,
)

METHODS = {method: text(f"saliency.{method}.idea")
           for method in ("grad_cam", "grad_cam_plus_plus", "occlusion", "input_gradient")}


def occlusion_patch(image_size: int) -> tuple[int, int]:
    """(patch, stride) in pixels: a fifth of the image, half-overlapping.

    Big enough to hide a part of an object (a stroke of a digit, a corner of a shape), small enough
    to say where; the ~10x10 positions it gives cost about a hundred forward passes at any size.
    """
    patch = max(2, image_size // 5)
    return patch, max(1, patch // 2)


def _patch_starts(size: int, patch: int, stride: int) -> list[int]:
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)  # the last row and column of pixels get covered too
    return starts


def occlusion(model: nn.Module, x: torch.Tensor, target_class: int | None = None,
              patch: int | None = None, stride: int | None = None,
              batch_size: int = 64) -> tuple[torch.Tensor, int]:
    """Occlusion sensitivity: how much the class's probability drops when a patch is hidden.

    Each patch is set to 0 in normalised space, which is the dataset's mean colour: a neutral grey
    rather than black, which would itself be a feature. Each pixel gets the mean drop of the
    patches that covered it, so the map has the input's size. Values are probability drops in
    [-1, 1] on an absolute scale (negative: hiding the patch made the class more likely); not
    rescaled, so a model that no single patch can sway shows a faint map. `patch` and `stride`
    default to `occlusion_patch` of the smaller side; the occluded copies run `batch_size` at a time.
    """
    x = _single_image(x)
    height, width = x.shape[-2:]
    default_patch, default_stride = occlusion_patch(min(height, width))
    patch, stride = min(patch or default_patch, height, width), stride or default_stride
    boxes = [(top, left) for top in _patch_starts(height, patch, stride)
             for left in _patch_starts(width, patch, stride)]
    # no_grad rather than inference_mode: the returned map is the caller's to modify.
    with _eval_mode(model), torch.no_grad():
        x = x.to(_device_of(model))
        reference = model(x).float().softmax(dim=1)
        target_class = _target_class(reference, target_class)
        drops = []
        for start in range(0, len(boxes), batch_size):
            chunk = boxes[start:start + batch_size]
            hidden = x.repeat(len(chunk), 1, 1, 1)
            for copy, (top, left) in zip(hidden, chunk):
                copy[:, top:top + patch, left:left + patch] = 0
            probs = model(_fast_layout(model, hidden)).float().softmax(dim=1)[:, target_class]
            drops.append(reference[0, target_class] - probs)
    drops = torch.cat(drops).cpu()
    total, count = torch.zeros(height, width), torch.zeros(height, width)
    for drop, (top, left) in zip(drops, boxes):
        total[top:top + patch, left:left + patch] += drop
        count[top:top + patch, left:left + patch] += 1
    return total / count, target_class


def input_gradient(model: nn.Module, x: torch.Tensor, target_class: int | None = None) -> tuple[torch.Tensor, int]:
    """Plain gradient saliency (Simonyan et al., 2014): |d class score / d pixel|, max over channels.

    The score is the class's logit, not its probability: a confident softmax is flat, and its
    gradient would vanish exactly where the model is surest. Returns the map scaled to [0, 1].
    """
    x = _single_image(x)
    # UI callbacks often run under no_grad or inference_mode; both are lifted here.
    with _eval_mode(model), torch.inference_mode(False), torch.enable_grad():
        # clone: an input created under inference_mode cannot join an autograd graph.
        x = x.detach().clone().to(_device_of(model)).requires_grad_(True)
        logits = model(x)
        target_class = _target_class(logits, target_class)
        # autograd.grad, not backward(): the parameters' .grad stay untouched.
        (gradient,) = torch.autograd.grad(logits[0, target_class], x)
    return _normalize01(gradient[0].abs().amax(dim=0).float().cpu()), target_class


def grad_cam_plus_plus(model: nn.Module, x: torch.Tensor, target_class: int | None = None,
                       layer: str | None = None) -> tuple[torch.Tensor, int]:
    """Grad-CAM++ (Chattopadhay et al., 2018) on the conv `network_view.grad_cam` uses, after its ReLU.

    Grad-CAM weighs channel k by the mean gradient g over its map A; Grad-CAM++ by
    sum_ij alpha_ij * relu(g_ij) with alpha = g^2 / (2 g^2 + sum_ab(A_ab) g^3), the closed form of
    the paper's eq. 19 (for an exponential of the class score, whose higher derivatives are powers
    of g). That form assumes maps that are never negative, so a conv's map is taken after the
    nn.ReLU that follows it, as the next layer receives it: on the raw conv output of the shipped
    cnn, whose channel sums are mostly negative, the denominator changes sign and the map can come
    out unrelated to Grad-CAM's. Where the denominator is 0 (g is 0 there) alpha is 0. A module
    named in `layer` that is not a Conv2d is used as it is. Returns (heatmap (H, W) in [0, 1] at
    the input's size, class explained).
    """
    x = _single_image(x)
    activation, gradient, target_class = _layer_gradient(model, x, target_class, layer, after_relu=True)
    squared = gradient.pow(2)
    denominator = 2 * squared + activation.sum(dim=(2, 3), keepdim=True) * squared * gradient
    alpha = torch.where(denominator != 0, squared / denominator, torch.zeros_like(denominator))
    channel_weights = (alpha * gradient.clamp(min=0)).sum(dim=(2, 3), keepdim=True)
    cam = (channel_weights * activation).sum(dim=1, keepdim=True)
    return _cam_to_heatmap(cam, x.shape[-2:]), target_class


_FUNCTIONS = {
    "grad_cam": grad_cam,
    "grad_cam_plus_plus": grad_cam_plus_plus,
    "occlusion": occlusion,
    "input_gradient": input_gradient,
}


def saliency_map(method: str, model: nn.Module, x: torch.Tensor,
                 target_class: int | None = None) -> tuple[torch.Tensor, int]:
    """Run one of `METHODS` by name with its defaults: (map (H, W), class explained)."""
    if method not in _FUNCTIONS:
        raise ValueError(text("saliency.unknown_method", method=repr(method),
                              available=", ".join(_FUNCTIONS)))
    return _FUNCTIONS[method](model, x, target_class)
