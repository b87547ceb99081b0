"""The course CNN's own pretrained backbone: transfer learning that works offline.

The ImageNet ResNet18 needs a 45 MB download; this backbone is shipped. It is the `cnn` model's
convolutional part (`features`: three conv–BatchNorm–ReLU–pool blocks, 32/64/128 channels),
pretrained by `scripts/make_backbone.py` on **textures**, a procedural task this module makes:
12 classes of striped, checked, dotted, ringed, noisy … patterns in random colours. It is no target
task of the course (no shapes, digits or photos), yet it teaches the first layers what every
image task needs: edges and bars at each orientation, spots, frequencies, colour contrast.

`create_model("cnn", ..., pretrained=True)` loads it (`load_backbone`): the convolutions work at
any image size, so 28×28 and 32×32 inputs alike take them; a 1-channel model gets the first conv's
filters summed over R, G and B (a gray image copied into R, G and B meets each colour filter as
that sum, as timm does it). The classifier is new, sized for the task, and is what
`freeze_backbone` leaves trainable.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open

from .i18n import text

BACKBONE_PATH = Path(__file__).resolve().parent.parent / "checkpoints" / "backbones" / "cnn_textures.safetensors"
METADATA_KEY = "vision_lab_backbone"   # not a checkpoint's key: the pickers never list the file
TEXTURE_SIZE = 32
TEXTURES = ("stripes 0°", "stripes 45°", "stripes 90°", "stripes 135°", "checks", "dots", "rings",
            "spokes", "blotches", "speckle", "zigzag", "grid")


class BackboneUnavailable(RuntimeError):
    """The shipped backbone file is missing or does not fit the model asked for."""


# ---- the pretraining task: procedural textures ---------------------------------------------------

def _grid() -> tuple[torch.Tensor, torch.Tensor]:
    centres = torch.arange(TEXTURE_SIZE, dtype=torch.float32) + 0.5 - TEXTURE_SIZE / 2
    return centres.view(1, 1, TEXTURE_SIZE), centres.view(1, TEXTURE_SIZE, 1)


def _pattern(label: int, n: int, g: torch.Generator) -> torch.Tensor:
    """(n, 32, 32) values in [0, 1] of one texture class, at random scale, phase and angle."""
    x, y = _grid()
    rand = lambda low, high: low + (high - low) * torch.rand(n, 1, 1, generator=g)  # noqa: E731
    period = rand(3.0, 9.0)
    if label < 4:   # stripes at 0, 45, 90 or 135 degrees (± 12)
        angle = math.radians(45 * label) + rand(-0.2, 0.2)
    else:
        angle = rand(0, math.pi)
    u = x * angle.cos() + y * angle.sin() + rand(-16, 16)
    v = y * angle.cos() - x * angle.sin() + rand(-16, 16)
    wave = lambda t: 0.5 + 0.5 * torch.cos(2 * math.pi * t / period)  # noqa: E731
    if label < 4:
        return wave(u)
    if label == 4:
        return ((torch.floor(u / period) + torch.floor(v / period)) % 2).float()
    if label == 5:
        return (wave(u) * wave(v) > 0.6).float()
    if label == 6:
        return wave(torch.sqrt(u ** 2 + v ** 2))
    if label == 7:
        return 0.5 + 0.5 * torch.cos(torch.atan2(v, u) * torch.randint(3, 9, (n, 1, 1), generator=g))
    if label == 8:
        coarse = torch.rand(n, 1, 5, 5, generator=g)
        return F.interpolate(coarse, size=TEXTURE_SIZE, mode="bicubic", align_corners=False)[:, 0].clamp(0, 1)
    if label == 9:
        return (torch.rand(n, TEXTURE_SIZE, TEXTURE_SIZE, generator=g) < rand(0.1, 0.5)).float()
    if label == 10:
        return wave(u + period * 0.5 * (2 * (v / period - torch.floor(v / period + 0.5))).abs())
    return (torch.minimum((u % period), (v % period)) < 1.5).float()


def make_textures(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` uint8 (n, 3, 32, 32) texture images and their labels, the classes in turn; the same
    images for the same seed on any machine's CPU."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % len(TEXTURES)
    images = torch.empty(n, 3, TEXTURE_SIZE, TEXTURE_SIZE)
    for label in range(len(TEXTURES)):
        index = torch.nonzero(labels == label).flatten()
        k = len(index)
        pattern = _pattern(label, k, g).unsqueeze(1)
        # Two random colours at least a little apart in brightness, and a smooth colour wash.
        a, b = torch.rand(k, 3, 1, 1, generator=g), torch.rand(k, 3, 1, 1, generator=g)
        b = torch.where((b.mean(1, keepdim=True) - a.mean(1, keepdim=True)).abs() < 0.25, 1 - a, b)
        wash = F.interpolate(torch.rand(k, 3, 3, 3, generator=g), size=TEXTURE_SIZE, mode="bilinear",
                             align_corners=False)
        mix = 0.3 * torch.rand(k, 1, 1, 1, generator=g)
        image = (a + (b - a) * pattern) * (1 - mix) + wash * mix
        image += 0.05 * torch.randn(k, 3, TEXTURE_SIZE, TEXTURE_SIZE, generator=g)
        images[index] = image.clamp(0, 1)
    return (images * 255).round_().to(torch.uint8), labels


# ---- the shipped weights --------------------------------------------------------------------------

def backbone_metadata(path: Path = BACKBONE_PATH) -> dict:
    """What the file says about itself: its recipe, the pretraining accuracies, a weights checksum."""
    if not path.is_file():
        raise BackboneUnavailable(text("backbone.missing", path=str(path)))
    with safe_open(str(path), framework="pt") as f:
        return json.loads((f.metadata() or {}).get(METADATA_KEY, "{}"))


def read_backbone(path: Path = BACKBONE_PATH) -> dict[str, torch.Tensor]:
    """The backbone's tensors, by their names in the cnn's `features`."""
    if not path.is_file():
        raise BackboneUnavailable(text("backbone.missing", path=str(path)))
    with safe_open(str(path), framework="pt") as f:
        return {key: f.get_tensor(key) for key in f.keys()}


def weights_checksum(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over the tensors' names and float32 bytes, in name order."""
    digest = hashlib.sha256()
    for key in sorted(tensors):
        digest.update(key.encode())
        digest.update(tensors[key].float().contiguous().numpy().tobytes())
    return digest.hexdigest()


def load_backbone(features: torch.nn.Module, in_channels: int, path: Path = BACKBONE_PATH) -> None:
    """Copy the shipped weights into a cnn's `features` (with BatchNorm), for 1 or 3 channels."""
    state = read_backbone(path)
    first = state["0.weight"]
    if in_channels != first.shape[1]:
        # Summed over R, G, B, then shared out over the channels: a gray image meets the sum.
        state["0.weight"] = first.sum(dim=1, keepdim=True).repeat(1, in_channels, 1, 1) / in_channels
    try:
        features.load_state_dict(state)
    except RuntimeError:
        raise BackboneUnavailable(text("backbone.mismatch", path=str(path))) from None
