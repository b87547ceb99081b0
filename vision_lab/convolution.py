"""How one value of a feature map is computed: the course's convolution arithmetic, on a real model.

`conv_arithmetic(model, x, layer, channel, row, col)` runs the model once on one image and returns
every number behind one position of one conv layer's map: the input patch under the kernel (zeros
where the kernel hangs over a zero-padded edge), the kernel's weights, their products, the partial
sum of each input channel, the bias, the BatchNorm step when one follows (eval mode: running
statistics) and the ReLU. Its `value` is the same number `network_view.feature_maps` shows at that
position (the map after the ReLU that follows the conv), and `map_value` is that number as the
forward hooks recorded it, so the two can be compared. `parameter_counts` puts the layer's
parameters beside those of a fully connected layer with the same input and output sizes: the
course's "parameter sharing".

Stride, padding, dilation and groups are read from the layer itself; the arithmetic is done in
float64, so the shown sum is exact up to the float32 rounding of the forward pass (about 1e-6).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .i18n import text
from .network_view import (NoSpatialFeatures, _device_of, _eval_mode, _forward_hooks, _single_image,
                      _to_cpu_copy)
from .models import conv_layers


@dataclass
class BatchNormStep:
    """y = (z - mean) / sqrt(var + eps) * weight + bias, for one channel, eval mode."""

    name: str
    mean: float
    var: float
    eps: float
    weight: float
    bias: float
    output: float


@dataclass
class ConvArithmetic:
    """Every number behind one feature-map value (see the module's docstring)."""

    layer: str
    channel: int
    row: int
    col: int
    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]  # rows, columns added on the top and the left
    dilation: tuple[int, int]
    groups: int
    input_shape: tuple[int, int, int]  # the layer's input (C, H, W)
    map_shape: tuple[int, int]  # the layer's output (h, w)
    input_channels: list[int]  # the input channels this output channel's sum runs over
    origin: tuple[int, int]  # input row, column under the kernel's top-left weight
    patch: np.ndarray  # (channels, kh, kw): the input under the kernel, 0 where padded
    padded: np.ndarray  # (kh, kw) bool: where the kernel hangs over the edge
    weights: np.ndarray  # (channels, kh, kw)
    products: np.ndarray  # weights * patch
    partial_sums: np.ndarray  # (channels,): one sum per input channel
    total: float  # the sum of every product
    bias: float | None  # the conv's bias, None when it has none
    conv_output: float  # total + bias: the conv's own output
    batch_norm: BatchNormStep | None
    added: float | None  # what reached the ReLU besides the above (a ResNet's skip connection)
    relu: bool  # whether a ReLU follows (the map is taken after it)
    value: float  # the result of the arithmetic
    map_value: float  # the feature map's value at that position, as the forward pass made it


def _pair(value) -> tuple[int, int]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def conv_names(model: nn.Module) -> list[str]:
    """The model's conv layers by name, in the order they run."""
    names = [name for name, _ in conv_layers(model)]
    if not names:
        raise NoSpatialFeatures()
    return names


def find_conv(model: nn.Module, layer: str) -> nn.Conv2d:
    """The conv layer named `layer`, or a ValueError that lists the model's conv layers."""
    convs = dict(conv_layers(model))
    if not convs:
        raise NoSpatialFeatures()
    if layer not in convs:
        raise ValueError(text("convolution.no_layer", layer=repr(layer),
                              layers=", ".join(convs) or "-"))
    return convs[layer]


class _Recorder:
    """Hooks that keep the conv's input and output, the BatchNorm that takes that output, and
    the ReLU the feature map is taken after (as `network_view.feature_maps` picks it: the first nn.ReLU
    of the same shape that runs after the conv)."""

    def __init__(self, conv: nn.Conv2d):
        self.conv = conv
        self.conv_in = self.conv_out = None
        self.bn = self.bn_out = None
        self.relu_in = self.relu_out = None
        self._conv_out_tensor = None  # the object itself: a BatchNorm fed by it is this conv's
        self._relu = None

    def conv_hook(self, module, inputs, output):
        self.conv_in, self.conv_out = _to_cpu_copy(inputs[0][0]), _to_cpu_copy(output[0])
        self._conv_out_tensor = output

    def bn_pre_hook(self, module, inputs):
        if self.bn is None and self._conv_out_tensor is not None \
                and inputs[0] is self._conv_out_tensor and self.relu_in is None:
            self.bn = module

    def bn_hook(self, module, inputs, output):
        if module is self.bn and self.bn_out is None:
            self.bn_out = _to_cpu_copy(output[0])

    def relu_pre_hook(self, module, inputs):
        # Kept before the ReLU runs: an in-place ReLU overwrites its input.
        if self.conv_out is not None and self.relu_in is None \
                and inputs[0].shape[1:] == self.conv_out.shape:
            self.relu_in = _to_cpu_copy(inputs[0][0])
            self._relu = module

    def relu_hook(self, module, inputs, output):
        if self.relu_out is None and self._relu is module:
            self.relu_out = _to_cpu_copy(output[0])

    def run(self, model: nn.Module, x: torch.Tensor) -> None:
        bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
        hooks = [(self.conv, self.conv_hook)] + [(m, self.bn_hook) for m in bns] \
            + [(m, self.relu_hook) for m in relus]
        pre = [m.register_forward_pre_hook(self.bn_pre_hook) for m in bns] \
            + [m.register_forward_pre_hook(self.relu_pre_hook) for m in relus]
        try:
            with _eval_mode(model), torch.no_grad(), _forward_hooks(hooks):
                model(_single_image(x).to(_device_of(model)))
        finally:
            for handle in pre:
                handle.remove()


def _check_position(channel, row, col, out_channels, height, width) -> None:
    if not 0 <= channel < out_channels:
        raise ValueError(text("convolution.bad_channel", channel=channel, channels=out_channels))
    if not (0 <= row < height and 0 <= col < width):
        raise ValueError(text("convolution.bad_position", row=row, col=col, height=height,
                              width=width))


def _window(conv: nn.Conv2d, conv_in: torch.Tensor, channels: list[int], row: int, col: int):
    """(origin, patch, padded mask): the input under the kernel for output (row, col)."""
    # The padding the layer really applies, 'same' and 'valid' included: [left, right, top, bottom].
    left, right, top, bottom = conv._reversed_padding_repeated_twice
    mode = "constant" if conv.padding_mode == "zeros" else conv.padding_mode
    chosen = conv_in[channels].double()
    padded_in = F.pad(chosen[None], (left, right, top, bottom), mode=mode)[0]
    (sh, sw), (dh, dw), (kh, kw) = _pair(conv.stride), _pair(conv.dilation), _pair(conv.kernel_size)
    rows = row * sh + dh * np.arange(kh)  # in padded coordinates
    cols = col * sw + dw * np.arange(kw)
    patch = padded_in[:, rows][:, :, cols].numpy()
    height, width = conv_in.shape[1:]
    outside_rows = (rows - top < 0) | (rows - top >= height)
    outside_cols = (cols - left < 0) | (cols - left >= width)
    padded = outside_rows[:, None] | outside_cols[None, :]
    return (row * sh - top, col * sw - left), patch, padded, (top, left)


def _batch_norm_step(rec: _Recorder, name: str, channel: int, z: float) -> BatchNormStep:
    bn = rec.bn
    if bn.running_mean is not None:
        mean, var = float(bn.running_mean[channel]), float(bn.running_var[channel])
    else:  # no running statistics: BatchNorm uses this image's own, even in eval mode
        values = rec.conv_out[channel].double()
        mean, var = float(values.mean()), float(values.var(unbiased=False))
    weight = float(bn.weight.detach()[channel]) if bn.weight is not None else 1.0
    shift = float(bn.bias.detach()[channel]) if bn.bias is not None else 0.0
    output = (z - mean) / np.sqrt(var + bn.eps) * weight + shift
    return BatchNormStep(name, mean, var, float(bn.eps), weight, shift, float(output))


def conv_arithmetic(model: nn.Module, x: torch.Tensor, layer: str, channel: int, row: int,
                    col: int) -> ConvArithmetic:
    """Every number behind the value at (`row`, `col`) of output `channel` of conv `layer`, for
    one image `x` ((C, H, W) or (1, C, H, W), normalized as the model expects)."""
    conv = find_conv(model, layer)
    channel, row, col = int(channel), int(row), int(col)
    rec = _Recorder(conv)
    rec.run(model, x)
    height, width = rec.conv_out.shape[1:]
    _check_position(channel, row, col, conv.out_channels, height, width)
    per_group = conv.in_channels // conv.groups
    group = channel // (conv.out_channels // conv.groups)
    channels = list(range(group * per_group, (group + 1) * per_group))
    origin, patch, padded, padding = _window(conv, rec.conv_in, channels, row, col)
    weights = conv.weight[channel].detach().double().cpu().numpy()
    products = weights * patch
    partial_sums = products.sum(axis=(1, 2))
    total = float(partial_sums.sum())
    bias = float(conv.bias.detach()[channel]) if conv.bias is not None else None
    value = conv_output = total + (bias or 0.0)
    batch_norm = None
    if rec.bn is not None:
        name = next(n for n, m in model.named_modules() if m is rec.bn)
        batch_norm = _batch_norm_step(rec, name, channel, conv_output)
        value = batch_norm.output
    added, relu = None, rec.relu_in is not None
    if relu:
        reached = float(rec.relu_in[channel, row, col])
        # Something joined between the conv (or its BatchNorm) and the ReLU: a residual add.
        if abs(reached - value) > 1e-4 * max(1.0, abs(value)):
            added = reached - value
            value = reached
        value = max(value, 0.0)
        map_value = float(rec.relu_out[channel, row, col])
    else:
        map_value = float(rec.conv_out[channel, row, col])
    return ConvArithmetic(
        layer=layer, channel=channel, row=row, col=col, kernel_size=_pair(conv.kernel_size),
        stride=_pair(conv.stride), padding=padding, dilation=_pair(conv.dilation),
        groups=conv.groups, input_shape=tuple(rec.conv_in.shape), map_shape=(height, width),
        input_channels=channels, origin=origin, patch=patch, padded=padded, weights=weights,
        products=products, partial_sums=partial_sums, total=total, bias=bias,
        conv_output=conv_output, batch_norm=batch_norm, added=added, relu=relu, value=value,
        map_value=map_value)


def parameter_counts(model: nn.Module, layer: str, input_shape, map_shape) -> dict:
    """The conv layer's parameters beside a fully connected layer's with the same input
    (C, H, W) and output (out_channels, h, w) sizes: {"conv", "kernels", "dense", "in_features",
    "out_features", "uses"} (`uses`: how many output positions share each weight)."""
    conv = find_conv(model, layer)
    conv_params = sum(p.numel() for p in conv.parameters())
    in_features = int(np.prod(input_shape))
    out_features = conv.out_channels * int(np.prod(map_shape))
    return {"conv": conv_params, "kernels": conv.out_channels,
            "dense": in_features * out_features + out_features,
            "in_features": in_features, "out_features": out_features,
            "uses": int(np.prod(map_shape))}


def as_dict(found: ConvArithmetic) -> dict:
    """The arithmetic as plain JSON-able values (for the API)."""
    out = {}
    for key, value in vars(found).items():
        if isinstance(value, np.ndarray):
            value = value.tolist()
        elif isinstance(value, BatchNormStep):
            value = vars(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[key] = value
    return out
