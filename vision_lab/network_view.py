"""What a trained network sees: predictions, feature maps, filters and Grad-CAM.

Every function puts the model in eval mode only for the duration of the call
(restoring each submodule's own mode afterwards) and removes every hook it
adds, so they are safe to call between epochs or from a UI callback.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from torch import nn

from .i18n import text
from .models import conv_layers

# Messages are catalogue Texts (inspect.*): English here, the visitor's language in the app.
NO_SPATIAL_MESSAGE = text("inspect.no_spatial")


class NoSpatialFeatures(ValueError):
    """Raised when asking a network without convolutions for spatial features."""

    def __init__(self, message: str = NO_SPATIAL_MESSAGE):
        super().__init__(message)


# --- helpers ----------------------------------------------------------------


def _require_convs(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    convs = conv_layers(model)
    if not convs:
        raise NoSpatialFeatures()
    return convs


def _device_of(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _fast_layout(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """A batch in the memory layout the model runs fastest on.

    CPU convolutions run about twice as fast on channels_last input for 3-channel images (no
    slower for 1 channel); an MLP would only pay for a copy when it flattens the batch.
    """
    if batch.dim() == 4 and conv_layers(model):
        return batch.contiguous(memory_format=torch.channels_last)
    return batch


def _as_batch(x: torch.Tensor) -> torch.Tensor:
    return x.unsqueeze(0) if x.dim() == 3 else x


def _single_image(x: torch.Tensor) -> torch.Tensor:
    x = _as_batch(x)
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(text("inspect.one_image", shape=tuple(x.shape)))
    return x


@contextmanager
def _eval_mode(model: nn.Module):
    # Remember every submodule's mode, not just the top one: a caller may keep
    # parts of the model (e.g. frozen BatchNorm) in eval on purpose.
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


@contextmanager
def _forward_hooks(pairs):
    """Register forward hooks given as (module, hook) pairs; always remove them."""
    owner = threading.get_ident()

    def for_this_thread_only(hook):
        def guarded(module, inputs, output):
            # A training loop or another web request may run the same model in
            # another thread meanwhile: those forward passes are not ours to
            # record, and Grad-CAM's hook must not cut their gradients.
            if threading.get_ident() == owner:
                return hook(module, inputs, output)
            return None

        return guarded

    handles = [module.register_forward_hook(for_this_thread_only(hook)) for module, hook in pairs]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _pick_convs(convs, layers):
    if layers is None:
        return convs
    if isinstance(layers, str):
        layers = [layers]
    by_name = dict(convs)
    unknown = [name for name in layers if name not in by_name]
    if unknown:
        raise ValueError(text("inspect.not_conv", unknown=unknown, available=list(by_name)))
    return [(name, by_name[name]) for name in layers]


def _to_cpu_copy(t: torch.Tensor) -> torch.Tensor:
    # clone() because .cpu()/.float() return the same tensor when nothing changes,
    # and an in-place ReLU later in the forward pass would overwrite it.
    return t.detach().float().cpu().clone()


class _PostReluRecorder:
    """Keeps each conv's output until a ReLU of the same shape runs, then keeps that.

    This catches Conv→ReLU, Conv→BN→ReLU and ResNet's Conv→BN→(+skip)→ReLU;
    a conv followed by no ReLU *module* (e.g. F.relu) keeps its raw output.
    """

    def __init__(self, max_channels: int):
        self.max_channels = max_channels
        self.maps: dict[str, torch.Tensor] = {}
        self._waiting: dict[str, torch.Size] = {}  # conv name -> shape of its output

    def conv_hook(self, name: str):
        def hook(module, inputs, output):
            self.maps[name] = self._keep(output)
            self._waiting[name] = output.shape

        return hook

    def relu_hook(self, module, inputs, output):
        for name, shape in list(self._waiting.items()):
            if shape == output.shape:
                self.maps[name] = self._keep(output)
                del self._waiting[name]

    def _keep(self, output: torch.Tensor) -> torch.Tensor:
        return _to_cpu_copy(output[0, : self.max_channels])


def _normalize01(t: torch.Tensor) -> torch.Tensor:
    low, high = t.min(), t.max()
    if high - low <= 1e-12:
        return torch.zeros_like(t)
    return (t - low) / (high - low)


# --- public API -------------------------------------------------------------


def predict(model: nn.Module, x: torch.Tensor, classes, top_k: int = 5) -> list[list[tuple[str, float]]]:
    """Top-k (label, probability) per image, most likely first."""
    if top_k < 1:
        raise ValueError(text("inspect.top_k", top_k=top_k))
    with _eval_mode(model), torch.inference_mode():
        logits = model(_as_batch(x).to(_device_of(model)))
    if logits.shape[1] != len(classes):
        raise ValueError(text("inspect.outputs_classes", outputs=logits.shape[1],
                              classes=len(classes)))
    probs, indices = logits.float().softmax(dim=1).cpu().topk(min(top_k, len(classes)), dim=1)
    return [
        [(classes[i], p) for p, i in zip(row_probs.tolist(), row_indices.tolist())]
        for row_probs, row_indices in zip(probs, indices)
    ]


def feature_maps(model: nn.Module, x: torch.Tensor, layers=None, max_channels: int = 16) -> list[tuple[str, torch.Tensor]]:
    """What each convolution (or each named one in `layers`) outputs for one image.

    Each map is taken after the ReLU that follows the conv - what the next layer
    actually receives - when the model uses an nn.ReLU module for it; otherwise it
    is the conv's raw output. Returns (name, tensor of shape (channels, h, w)),
    the first `max_channels` channels, detached float on the CPU.
    """
    convs = _pick_convs(_require_convs(model), layers)
    recorder = _PostReluRecorder(max_channels)
    hooks = [(conv, recorder.conv_hook(name)) for name, conv in convs]
    hooks += [(m, recorder.relu_hook) for m in model.modules() if isinstance(m, nn.ReLU)]
    # no_grad rather than inference_mode: the returned tensors are the caller's
    # to modify, which inference tensors forbid.
    with _eval_mode(model), torch.no_grad(), _forward_hooks(hooks):
        model(_single_image(x).to(_device_of(model)))
    return [(name, recorder.maps[name]) for name, _ in convs if name in recorder.maps]


def hidden_activations(model: nn.Module, x: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """Per hidden layer of an MLP, its output for one image as a 1-D tensor.

    Records every nn.ReLU output; a network without ReLUs records its Linear layers.
    """
    kind = nn.ReLU if any(isinstance(m, nn.ReLU) for m in model.modules()) else nn.Linear
    records = []

    def recorder(name):
        def hook(module, inputs, output):
            records.append((name, _to_cpu_copy(output[0]).flatten()))

        return hook

    hooks = [(m, recorder(name)) for name, m in model.named_modules() if isinstance(m, kind)]
    with _eval_mode(model), torch.no_grad(), _forward_hooks(hooks):
        model(_single_image(x).to(_device_of(model)))
    return records


def first_layer_filters(model: nn.Module) -> torch.Tensor:
    """Weights of the first convolution, shape (out, in, k, k), float on the CPU."""
    _, conv = _require_convs(model)[0]
    return _to_cpu_copy(conv.weight)


def _cam_layer(model: nn.Module, name: str | None, x: torch.Tensor) -> nn.Module:
    if name is not None:
        modules = dict(model.named_modules())
        if name not in modules:
            raise ValueError(text("inspect.no_layer", name=repr(name),
                                  layers=[n for n, _ in conv_layers(model)]))
        return modules[name]
    # A 1x1 map says nothing about *where*, and ResNet-18 shrinks 28-32 px images
    # to 1x1 by its last conv, so default to the last conv that still has a layout.
    convs = _require_convs(model)
    sizes = {}

    def recorder(conv_name):
        def hook(module, inputs, output):
            sizes[conv_name] = output.shape[-2:].numel()

        return hook

    with torch.no_grad(), _forward_hooks([(conv, recorder(n)) for n, conv in convs]):
        model(x)
    with_layout = [conv for n, conv in convs if sizes.get(n, 0) > 1]
    return with_layout[-1] if with_layout else convs[-1][1]


def _target_class(logits: torch.Tensor, target_class: int | None) -> int:
    """The class to explain: the predicted one when target_class is None."""
    if target_class is None:
        return int(logits[0].argmax())
    if not 0 <= target_class < logits.shape[1]:
        raise ValueError(text("inspect.target_class", target_class=target_class,
                              classes=logits.shape[1]))
    return target_class


class _CamCapture:
    """Swaps the CAM layer's output for a leaf tensor, so d(logit)/d(activation) can be taken.

    A fresh leaf that requires grad gives the gradient even when every parameter is frozen; its
    clone is what flows on, so an in-place ReLU downstream cannot modify the leaf. With
    `after_relu`, a conv's map is taken again at the first nn.ReLU of the same shape that runs
    after it (via BatchNorm or a residual add): the map as the next layer receives it, never
    negative. A conv followed by no ReLU module keeps its raw output.
    """

    def __init__(self, layer: nn.Module, after_relu: bool):
        self.layer = layer
        self.activation: torch.Tensor | None = None
        self._after_relu = after_relu and isinstance(layer, nn.Conv2d)
        self._waiting = False

    def _swap(self, output: torch.Tensor) -> torch.Tensor:
        self.activation = output.detach().requires_grad_(True)
        return self.activation.clone()

    def layer_hook(self, module, inputs, output):
        self._waiting = self._after_relu
        return self._swap(output)

    def relu_hook(self, module, inputs, output):
        if self._waiting and output.shape == self.activation.shape:
            self._waiting = False
            return self._swap(output)
        return None

    def hooks(self, model: nn.Module) -> list:
        relus = [m for m in model.modules() if isinstance(m, nn.ReLU)] if self._after_relu else []
        return [(self.layer, self.layer_hook)] + [(relu, self.relu_hook) for relu in relus]


def _layer_gradient(model: nn.Module, x: torch.Tensor, target_class: int | None, layer: str | None,
                    after_relu: bool = False):
    """(activation, d logit / d activation, class explained) at the CAM layer, for one image.

    The CAM layer is the one grad_cam documents (with `after_relu`, a conv's map after its ReLU:
    see _CamCapture); both tensors are detached, shaped (1, C, h, w).
    """
    # UI callbacks often run under no_grad or inference_mode; both are lifted here.
    with _eval_mode(model), torch.inference_mode(False):
        # clone: an input created under inference_mode cannot join an autograd graph.
        x = x.detach().clone().to(_device_of(model))
        capture = _CamCapture(_cam_layer(model, layer, x), after_relu)
        with torch.enable_grad(), _forward_hooks(capture.hooks(model)):
            logits = model(x)
            target_class = _target_class(logits, target_class)
            activation = capture.activation
            if activation.dim() != 4:
                raise ValueError(text("inspect.cam_layer", shape=tuple(activation.shape)))
            (gradient,) = torch.autograd.grad(logits[0, target_class], activation)
    return activation.detach(), gradient, target_class


def _cam_to_heatmap(cam: torch.Tensor, size) -> torch.Tensor:
    """A (1, 1, h, w) class activation map -> (H, W) in [0, 1] at the input's size, on the CPU."""
    cam = F.interpolate(F.relu(cam), size=size, mode="bilinear", align_corners=False)
    return _normalize01(cam[0, 0].float().cpu())


def grad_cam(model: nn.Module, x: torch.Tensor, target_class: int | None = None, layer: str | None = None) -> tuple[torch.Tensor, int]:
    """Grad-CAM heatmap for one image: where the evidence for a class lies.

    Uses the output of the last Conv2d whose output is larger than 1x1, or of the
    module named `layer` (any module with a (1, C, h, w) output). Returns
    (heatmap (H, W) in [0, 1] at the input's size, class index explained); the
    predicted class is explained when target_class is None.
    """
    x = _single_image(x)
    activation, gradient, target_class = _layer_gradient(model, x, target_class, layer)
    channel_weights = gradient.mean(dim=(2, 3), keepdim=True)
    cam = (channel_weights * activation).sum(dim=1, keepdim=True)
    return _cam_to_heatmap(cam, x.shape[-2:]), target_class


def denormalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    """Undo input normalisation: (C, H, W) or (1, C, H, W) float -> (C, H, W) uint8."""
    x = _single_image(x)[0].detach().float().cpu()
    mean = torch.as_tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    std = torch.as_tensor(std, dtype=torch.float32).view(-1, 1, 1)
    return (x * std + mean).clamp(0, 1).mul(255).round().to(torch.uint8)


def overlay_heatmap(image_uint8_chw, heatmap, alpha: float = 0.45) -> np.ndarray:
    """Blend a [0, 1] heatmap (jet colours) over an image; returns (H, W, 3) uint8."""
    image = torch.as_tensor(image_uint8_chw).cpu()
    if image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    image = image.permute(1, 2, 0).float().numpy() / 255
    heat = torch.as_tensor(heatmap).detach().float().cpu()
    if heat.shape != image.shape[:2]:
        heat = F.interpolate(heat[None, None], size=image.shape[:2], mode="bilinear", align_corners=False)[0, 0]
    colours = colormaps["jet"](heat.clamp(0, 1).numpy())[..., :3]
    blended = (1 - alpha) * image + alpha * colours
    return (blended * 255).round().clip(0, 255).astype(np.uint8)
