"""What a model sees: turning a user's image into the tensor the model was trained on.

Training and inference share `Preprocessing`, so a checkpoint's metadata alone rebuilds the exact
input pipeline (resize, normalize, and the pixel permutation of the permutation lesson).
"""
from __future__ import annotations

import io
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from .i18n import text


class ImageError(ValueError):
    """An image a user gave us cannot be used; the message says why in one sentence."""


def pixel_permutation(image_size: int, seed: int) -> torch.Tensor:
    """A fixed shuffle of pixel positions, the same for every channel and every image."""
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(image_size * image_size, generator=g)


@dataclass(frozen=True)
class Preprocessing:
    channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    permutation_seed: int | None = None  # None: pixels stay where they are

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (N,C,H,W) -> normalized float32 (N,C,S,S). Test time only resizes and normalizes."""
        return self.normalize_pixels_(x.float())

    def normalize_pixels_(self, x: torch.Tensor) -> torch.Tensor:
        """float32 pixel values in [0, 255] (N,C,H,W) -> normalized float32 (N,C,S,S).

        Works in place on `x` where it can: training passes the float pixels it has just
        augmented (BatchAugmenter.pixels) and skips converting them to uint8 and back.
        """
        scale = torch.tensor([1 / (255 * s) for s in self.std], dtype=x.dtype).view(1, -1, 1, 1)
        shift = torch.tensor([-m / s for m, s in zip(self.mean, self.std)], dtype=x.dtype).view(1, -1, 1, 1)
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                              antialias=True, align_corners=False)
        # (x / 255 - mean) / std as one multiply and one add over the pixels (interpolation is
        # linear, so scaling after it is the same).
        x = x.mul_(scale).add_(shift)
        if self.permutation_seed is not None:
            x = self.permute(x)
        return x

    def permute(self, x: torch.Tensor) -> torch.Tensor:
        perm = _cached_permutation(self.image_size, self.permutation_seed)
        n, c, h, w = x.shape
        return x.reshape(n, c, h * w)[:, :, perm].reshape(n, c, h, w)

    def unpermute(self, x: torch.Tensor) -> torch.Tensor:
        """Undo `permute` on anything shaped (..., S, S), e.g. a saliency map over the model's input,
        so that each value lands on the image pixel it came from. Unchanged without a permutation."""
        if self.permutation_seed is None:
            return x
        perm = _cached_permutation(self.image_size, self.permutation_seed)
        flat = x.reshape(*x.shape[:-2], -1)
        restored = torch.empty_like(flat)
        restored[..., perm] = flat  # permute took position perm[j] to j
        return restored.reshape(x.shape)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocessing":
        return cls(channels=int(d["channels"]), image_size=int(d["image_size"]),
                   mean=tuple(float(v) for v in d["mean"]), std=tuple(float(v) for v in d["std"]),
                   permutation_seed=d.get("permutation_seed"))


_PERMUTATIONS: dict[tuple[int, int], torch.Tensor] = {}


def _cached_permutation(image_size: int, seed: int) -> torch.Tensor:
    key = (image_size, seed)
    if key not in _PERMUTATIONS:
        _PERMUTATIONS[key] = pixel_permutation(image_size, seed)
    return _PERMUTATIONS[key]


def open_image(source) -> Image.Image:
    """Open a path, bytes, numpy array or PIL image as a decoded PIL image (first frame, EXIF upright)."""
    if isinstance(source, Image.Image):
        img = source
    elif isinstance(source, np.ndarray):
        img = Image.fromarray(source)
    else:
        if isinstance(source, (bytes, bytearray)):
            data, name = bytes(source), text("preprocessing.the_image")
        else:
            path = Path(source)
            if not path.is_file():
                raise ImageError(text("preprocessing.no_such_file", name=path.name))
            data, name = path.read_bytes(), path.name
        if not data:
            raise ImageError(text("preprocessing.empty", name=name))
        try:
            with warnings.catch_warnings():
                # PIL only warns between 1x and 2x its pixel limit; refuse those images too.
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(io.BytesIO(data))
                img.seek(0)  # animated GIF/WebP: the first frame
                img.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageError(text("preprocessing.too_large", name=name,
                                  pixels=Image.MAX_IMAGE_PIXELS)) from None
        except UnidentifiedImageError:
            raise ImageError(text("preprocessing.not_an_image", name=name)) from None
        except (OSError, SyntaxError, ValueError) as e:
            raise ImageError(text("preprocessing.damaged", name=name, reason=str(e))) from None
    return ImageOps.exif_transpose(img)


def to_mode(img: Image.Image, channels: int) -> Image.Image:
    """Convert any PIL mode to 'L' (1 channel) or 'RGB' (3 channels)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16/32-bit images: stretch their real range to 8 bits instead of clipping at 255.
        a = np.asarray(img, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(a)
        img = Image.fromarray(a.astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Transparent areas become white, as they look in a browser or viewer.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("L" if channels == 1 else "RGB")


def image_to_tensor(source, channels: int, image_size: int) -> torch.Tensor:
    """Any image -> uint8 (C, S, S), converted to the model's channel count and size."""
    img = to_mode(open_image(source), channels)
    if img.size != (image_size, image_size):
        img = img.resize((image_size, image_size), Image.BILINEAR)
    a = np.asarray(img, dtype=np.uint8)
    if a.ndim == 2:
        a = a[:, :, None]
    return torch.from_numpy(a.copy()).permute(2, 0, 1).contiguous()
