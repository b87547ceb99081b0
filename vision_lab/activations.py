"""How strongly each layer of a network responds to one image, in three numbers per layer.

Two networks can give the same answer for different reasons. Summing up each layer's activations
as the next layer receives them (after its ReLU) by their mean, their spread and the share that are
exactly zero makes the difference readable side by side: the same CNN with BatchNorm keeps every
layer's activations at a similar scale while one without lets the scale drift from layer to layer,
and the share of zeros says how many ReLUs this image leaves silent. `side_by_side` lines two
models' layers up by depth, which is how the Feature maps tab compares two checkpoints.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .network_view import _device_of, _eval_mode, _forward_hooks, _single_image


@dataclass(frozen=True)
class LayerActivity:
    """One layer's activations for one image."""
    layer: str     # the module's name in the model, e.g. "features.2"
    units: int     # how many activations: channels x height x width, or hidden units
    mean: float
    std: float     # population standard deviation over the layer's units
    zeros: float   # fraction exactly 0: the units the ReLU silenced for this image


def _recorded_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The nn.ReLU modules (what the next layer receives); a network without any: its Linear
    and Conv2d layers."""
    relus = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.ReLU)]
    if relus:
        return relus
    return [(name, m) for name, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def layer_activity(model: nn.Module, x: torch.Tensor) -> list[LayerActivity]:
    """Per recorded layer, in the order the forward pass runs them: its activity for one image.

    `x` is the normalised input the model receives, (1, C, H, W) or (C, H, W). A module called
    twice (ResNet reuses a block's ReLU) gives one entry per call. The statistics are taken inside
    the hook, before an in-place operation further on could change the tensor.
    """
    records = []

    def recorder(name):
        def hook(module, inputs, output):
            values = output.detach()[0].float()
            records.append(LayerActivity(
                layer=name, units=values.numel(), mean=float(values.mean()),
                std=float(values.std(unbiased=False)), zeros=float((values == 0).float().mean())))

        return hook

    hooks = [(module, recorder(name)) for name, module in _recorded_modules(model)]
    with _eval_mode(model), torch.no_grad(), _forward_hooks(hooks):
        model(_single_image(x).to(_device_of(model)))
    return records


def side_by_side(a: list[LayerActivity], b: list[LayerActivity], digits: int = 3) -> list[list]:
    """Two models' activity lined up by depth, one row per depth: [depth (1 = first), then layer,
    units, mean, std, zeros (a percentage) of A, then the same of B]. Where one model is deeper,
    the other's cells are empty strings."""
    rows = []
    for depth in range(max(len(a), len(b))):
        row = [depth + 1]
        for records in (a, b):
            if depth < len(records):
                r = records[depth]
                row += [r.layer, r.units, round(r.mean, digits), round(r.std, digits),
                        round(100 * r.zeros, 1)]
            else:
                row += [""] * 5
        rows.append(row)
    return rows
