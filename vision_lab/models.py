"""Registry of the image classifiers that Vision Lab can train and inspect.

Every model takes a normalized float tensor of shape (N, C, H, W) and returns
logits of shape (N, num_classes). The small convolutional models (cnn, lenet,
vgg, speedrun) keep their convolutions in ``features`` and the rest in ``classifier`` so
the UI can hook into them.
"""

import copy
import os
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlparse

import torch
from torch import nn
from torchvision.models import ResNet18_Weights, resnet18

from .i18n import Text, text

# Up to this size the small CNNs flatten their final feature map directly, as
# in the course; larger inputs are pooled first.
_LARGEST_DIRECT_FLATTEN = 32

_VGG_CONFIG = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]


class PretrainedWeightsUnavailable(RuntimeError):
    """Pretrained weights were requested but could not be downloaded."""


def _dropout_layers(dropout: float) -> list[nn.Module]:
    # A Dropout with p=0 does nothing, so it is left out of the summary too.
    return [nn.Dropout(dropout)] if dropout > 0 else []


# --- mlp ---------------------------------------------------------------------


def _build_mlp(num_classes, in_channels, image_size, hidden_sizes, dropout, batch_norm):
    layers: list[nn.Module] = [nn.Flatten()]
    in_features = in_channels * image_size * image_size
    for size in hidden_sizes:
        layers.append(nn.Linear(in_features, size))
        if batch_norm:
            layers.append(nn.BatchNorm1d(size))
        layers.append(nn.ReLU())
        layers.extend(_dropout_layers(dropout))
        in_features = size
    layers.append(nn.Linear(in_features, num_classes))
    return nn.Sequential(*layers)


# --- cnn, lenet, vgg -----------------------------------------------------------


class _ConvClassifier(nn.Module):
    """A convolutional feature extractor followed by a classifier head."""

    def __init__(self, features: nn.Sequential, classifier: nn.Sequential):
        super().__init__()
        self.features = features
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def _build_cnn(num_classes, in_channels, image_size, batch_norm, dropout, pretrained=False):
    if pretrained and not batch_norm:
        raise ValueError(text("models.backbone_needs_batch_norm"))
    features: list[nn.Module] = []
    channels = in_channels
    for out_channels in (32, 64, 128):
        # The BatchNorm shift makes a conv bias redundant.
        features.append(nn.Conv2d(channels, out_channels, 3, padding=1, bias=not batch_norm))
        if batch_norm:
            features.append(nn.BatchNorm2d(out_channels))
        features += [nn.ReLU(), nn.MaxPool2d(2)]
        channels = out_channels

    pooling: list[nn.Module] = []
    map_size = image_size // 8
    if image_size > _LARGEST_DIRECT_FLATTEN:
        # Flattening a 28x28 map at 224 px would give a ~200 MB first Linear;
        # pooling to 4x4 keeps the model at a few MB.
        map_size = 4
        pooling.append(nn.AdaptiveAvgPool2d(map_size))
    classifier = nn.Sequential(
        *pooling,
        nn.Flatten(),
        nn.Linear(128 * map_size * map_size, 512),
        nn.ReLU(),
        *_dropout_layers(dropout),
        nn.Linear(512, num_classes),
    )
    model = _ConvClassifier(nn.Sequential(*features), classifier)
    if pretrained:
        from .backbone import load_backbone

        # The shipped backbone (backbone.py) covers the convolutions; the classifier is new, so
        # it is what trains while the backbone is frozen.
        load_backbone(model.features, in_channels)
        model.new_layers = ["classifier"]
    return model


def _build_lenet(num_classes, in_channels, image_size):
    features = nn.Sequential(
        nn.Conv2d(in_channels, 6, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
    )
    pooling: list[nn.Module] = []
    # Each stage is an unpadded 5x5 conv (-4) then a 2x2 pool (//2).
    map_size = ((image_size - 4) // 2 - 4) // 2
    if image_size > _LARGEST_DIRECT_FLATTEN:
        map_size = 5
        pooling.append(nn.AdaptiveAvgPool2d(map_size))
    classifier = nn.Sequential(
        *pooling,
        nn.Flatten(),
        nn.Linear(16 * map_size * map_size, 120),
        nn.ReLU(),
        nn.Linear(120, 84),
        nn.ReLU(),
        nn.Linear(84, num_classes),
    )
    return _ConvClassifier(features, classifier)


def _build_vgg(num_classes, in_channels, image_size, dropout):
    features: list[nn.Module] = []
    channels = in_channels
    for item in _VGG_CONFIG:
        if item == "M":
            # ceil_mode lets 28 px inputs survive five halvings (28-14-7-4-2-1).
            features.append(nn.MaxPool2d(2, ceil_mode=True))
        else:
            features += [
                # No bias: the BatchNorm that follows would cancel it.
                nn.Conv2d(channels, item, 3, padding=1, bias=False),
                nn.BatchNorm2d(item),
                nn.ReLU(),
            ]
            channels = item
    classifier = nn.Sequential(
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        *_dropout_layers(dropout),
        nn.Linear(channels, num_classes),
    )
    return _ConvClassifier(nn.Sequential(*features), classifier)


# --- speedrun ------------------------------------------------------------------


def _build_speedrun(num_classes, in_channels, image_size, widths):
    """airbench's kind of network, sized for a CPU: a conv-BatchNorm-ReLU stage per width, each
    after a 2x2 max pool that halves the image, then global max pooling and one Linear.

    On a CPU a conv costs in proportion to the pixels it slides over, so each stage pools first
    and only the narrow first conv sees the full image; no big Linear head either (the course's
    CNN spends about half its weights on one). It trains with its own recipe (recipes.py).
    """
    features: list[nn.Module] = []
    channels = in_channels
    for i, width in enumerate(widths):
        if i:
            # ceil_mode: 28 px halves to 14, 7, 4 without dropping a row.
            features.append(nn.MaxPool2d(2, ceil_mode=True))
        # No bias: the BatchNorm that follows would cancel it.
        features += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
        channels = width
    classifier = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))
    return _ConvClassifier(nn.Sequential(*features), classifier)


# --- resnet18 ------------------------------------------------------------------


def _load_pretrained_state_dict(weights: ResNet18_Weights) -> dict[str, torch.Tensor]:
    filename = os.path.basename(urlparse(weights.url).path)
    folder = os.path.join(torch.hub.get_dir(), "checkpoints")
    try:
        # torchvision reads the file from `folder` when it is already there.
        return weights.get_state_dict(progress=True, check_hash=True, weights_only=True)
    except (OSError, RuntimeError) as error:
        raise PretrainedWeightsUnavailable(
            text("models.pretrained_unavailable", filename=filename, folder=folder)
        ) from error


def _build_resnet18(num_classes, in_channels, image_size, pretrained):
    # image_size is not needed: adaptive average pooling accepts any size.
    model = resnet18(weights=None)
    if pretrained:
        model.load_state_dict(_load_pretrained_state_dict(ResNet18_Weights.IMAGENET1K_V1))
    if in_channels != 3:
        rgb_conv = model.conv1
        model.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        if pretrained:
            # A gray image copied into R, G and B meets each RGB filter as its
            # channel-summed filter, so summing keeps what ImageNet taught it.
            # Sharing the sum out over several channels keeps that for any count.
            summed = rgb_conv.weight.detach().sum(dim=1, keepdim=True)
            with torch.no_grad():
                model.conv1.weight.copy_(summed.repeat(1, in_channels, 1, 1) / in_channels)
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


# --- registry -----------------------------------------------------------------


@dataclass(frozen=True)
class _ModelSpec:
    build: Callable[..., nn.Module]
    description: Text
    defaults: dict[str, Any]
    has_pretrained: bool = False


_REGISTRY: dict[str, _ModelSpec] = {
    "mlp": _ModelSpec(
        _build_mlp,
        text("models.description.mlp"),
        {"hidden_sizes": [512, 256], "dropout": 0.2, "batch_norm": False},
    ),
    "cnn": _ModelSpec(
        _build_cnn,
        text("models.description.cnn"),
        {"batch_norm": True, "dropout": 0.5},
        has_pretrained=True,
    ),
    "lenet": _ModelSpec(
        _build_lenet,
        text("models.description.lenet"),
        {},
    ),
    "vgg": _ModelSpec(
        _build_vgg,
        text("models.description.vgg"),
        {"dropout": 0.0},
    ),
    "resnet18": _ModelSpec(
        _build_resnet18,
        text("models.description.resnet18"),
        {},
        has_pretrained=True,
    ),
    "speedrun": _ModelSpec(
        _build_speedrun,
        text("models.description.speedrun"),
        {"widths": [16, 32, 64, 128]},
    ),
}

# What the Train tab says about each model (a Text: the app renders it in the visitor's language).
MODEL_DESCRIPTIONS: dict[str, Text] = {name: spec.description for name, spec in _REGISTRY.items()}


def list_models() -> list[str]:
    return list(_REGISTRY)


def _spec(name: str) -> _ModelSpec:
    if name not in _REGISTRY:
        raise ValueError(text("models.unknown", name=name, models=", ".join(_REGISTRY)))
    return _REGISTRY[name]


def has_pretrained(name: str) -> bool:
    """Whether the model can start from pretrained weights (resnet18: ImageNet's, downloaded;
    cnn: the textures backbone shipped in checkpoints/backbones/, see backbone.py)."""
    return _spec(name).has_pretrained


def model_options(name: str) -> dict[str, Any]:
    """Default options of a model; a fresh copy the caller may modify."""
    return copy.deepcopy(_spec(name).defaults)


def create_model(
    name: str,
    num_classes: int,
    in_channels: int = 3,
    image_size: int = 32,
    pretrained: bool = False,
    **options: Any,
) -> nn.Module:
    spec = _spec(name)
    unknown = [key for key in options if key not in spec.defaults]
    if unknown:
        valid = ", ".join(spec.defaults) or text("models.no_options")
        key = "models.unknown_option" if len(unknown) == 1 else "models.unknown_options"
        raise ValueError(text(key, options=", ".join(map(repr, unknown)), name=name, valid=valid))
    if pretrained and not spec.has_pretrained:
        raise ValueError(text("models.no_pretrained", name=name))

    kwargs = {**model_options(name), **options}
    if spec.has_pretrained:
        kwargs["pretrained"] = pretrained
    return spec.build(num_classes, in_channels, image_size, **kwargs)


# --- inspection -----------------------------------------------------------------


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if not trainable_only or p.requires_grad)


def layer_summary(
    model: nn.Module, in_channels: int, image_size: int
) -> list[tuple[str, str, tuple[int, ...], int]]:
    """(name, class name, output shape without batch, parameter count) per leaf module."""
    rows: dict[str, tuple[str, str, tuple[int, ...], int]] = {}

    def make_hook(name: str):
        def hook(module, inputs, output):
            # Modules called twice (ResNet reuses its ReLU) are listed once,
            # at the place where they first run.
            if name not in rows:
                params = sum(p.numel() for p in module.parameters())
                rows[name] = (name, type(module).__name__, tuple(output.shape[1:]), params)
        return hook

    leaves = [(name, m) for name, m in model.named_modules() if not any(m.children())]
    handles = [module.register_forward_hook(make_hook(name)) for name, module in leaves]
    reference = next(model.parameters())
    dummy = torch.zeros(1, in_channels, image_size, image_size,
                        device=reference.device, dtype=reference.dtype)
    was_training = model.training
    try:
        # Eval mode: BatchNorm must not update its statistics or reject batch 1.
        model.eval()
        with torch.no_grad():
            model(dummy)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return list(rows.values())


def conv_layers(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    # All registered models declare their modules in the order they run them.
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def head_module_name(model: nn.Module) -> str:
    # The classifier layer is the last Linear in every registered model
    # ("fc" for resnet18).
    linear_names = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linear_names:
        raise ValueError(text("models.no_head", model=type(model).__name__))
    return linear_names[-1]


def freeze_backbone(model: nn.Module) -> None:
    """Train only what pretrained weights did not cover, e.g. for fine-tuning them: the layers a
    model lists in `new_layers` (the pretrained cnn's whole classifier), else the classifier layer."""
    for parameter in model.parameters():
        parameter.requires_grad = False
    for name in getattr(model, "new_layers", None) or [head_module_name(model)]:
        for parameter in model.get_submodule(name).parameters():
            parameter.requires_grad = True


def unfreeze_all(model: nn.Module) -> None:
    for parameter in model.parameters():
        parameter.requires_grad = True
