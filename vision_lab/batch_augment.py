"""Batch augmentation for training: a spec (transforms.py) applied to a whole uint8 batch at once.

``BatchAugmenter`` gives every image of the batch its own random parameters, drawn as torchvision
v2 draws them, without a Python loop over images; each op is written as a few batched tensor ops
whose rounding matches torchvision's uint8 kernels (tests/core/test_transforms.py compares them).
Training augments several batches at a time with it (training_batches).
"""

import math

import torch
import torch.nn.functional as nnf
from torchvision.transforms.v2 import functional as TF

from .i18n import text
from .transforms import _check_image_size, validate_spec


def _resize_square(x, image_size):
    """Resize a batch to image_size x image_size unless it already is (bilinear, antialiased,
    the same kernel v2.Resize uses, so uint8 in gives the same uint8 out)."""
    if tuple(x.shape[-2:]) == (image_size, image_size):
        return x
    return TF.resize(x, [image_size, image_size], antialias=True)


# Random draws are made on the generator's device, whatever it is, then moved to the batch.


def _uniform(gen, shape, low, high, device, dtype=torch.float32):
    u = torch.rand(shape, generator=gen, device=gen.device, dtype=dtype).to(device)
    return low + (high - low) * u


def _randint_below(gen, n, high, device):
    """One integer in [0, high) per image; ``high`` may differ per image. float64 so the
    product never rounds up to ``high``."""
    return (_uniform(gen, n, 0.0, 1.0, device, torch.float64) * high).long()


def _pair(size):
    return (size, size) if isinstance(size, int) else tuple(size)


# All batch ops take and return float32 batches holding whole numbers in [0, 255]: each one
# rounds or truncates like torchvision's uint8 kernel, so the result matches a uint8 pipeline.


def _crop(x, top, left, height, width):
    """Crop a (height, width) window at a per-image (top, left) with a single gather."""
    n, c, h, w = x.shape
    rows = top[:, None] + torch.arange(height, device=x.device)
    cols = left[:, None] + torch.arange(width, device=x.device)
    index = (rows[:, :, None] * w + cols[:, None, :]).reshape(n, 1, height * width)
    return x.reshape(n, c, h * w).gather(2, index.expand(n, c, -1)).reshape(n, c, height, width)


def _random_crop(x, gen, size, padding):
    height, width = _pair(size)
    if padding:
        x = nnf.pad(x, [padding] * 4)  # zeros, like v2.RandomCrop's default fill
    n, _, h, w = x.shape
    if h < height or w < width:
        raise ValueError(text("transforms.crop_too_large", crop=str((height, width)), image=str((h, w))))
    top = _randint_below(gen, n, h - height + 1, x.device)
    left = _randint_below(gen, n, w - width + 1, x.device)
    return _crop(x, top, left, height, width)


def _select(x, y, chosen):
    """``y`` where ``chosen`` else ``x``. A lerp with 0/1 weights is exact and, on CPU, several
    times faster than torch.where."""
    return torch.lerp(x, y, chosen.float())


def _chosen_images(gen, x, p):
    """A (N, 1, 1, 1) mask of the images an op with probability ``p`` applies to."""
    return (_uniform(gen, x.shape[0], 0.0, 1.0, x.device) < p).reshape(-1, 1, 1, 1)


def _flip_some(x, gen, p, dim):
    return _select(x, x.flip(dim), _chosen_images(gen, x, p))


def _random_horizontal_flip(x, gen, p):
    return _flip_some(x, gen, p, -1)


def _random_vertical_flip(x, gen, p):
    return _flip_some(x, gen, p, -2)


def _grayscale(x):
    """(N, 1, H, W) luma, truncated to whole values as torchvision does for uint8 images."""
    r, g, b = x.unbind(1)
    return r.mul(0.2989).add_(g, alpha=0.587).add_(b, alpha=0.114).floor_().unsqueeze(1)


def _blend(image, other, ratio):
    """torchvision's uint8 blend: image * ratio + other * (1 - ratio), clamped and truncated."""
    return torch.lerp(other, image, ratio).clamp_(0, 255).floor_()


def _adjust_brightness(x, factor):
    return (x * factor).clamp_(0, 255).floor_()


def _adjust_contrast(x, factor):
    grey = _grayscale(x) if x.shape[1] == 3 else x
    mean = grey.mean(dim=(1, 2, 3), keepdim=True)
    # _blend with one value per image, written out: a broadcast lerp is 2x slower on CPU.
    return (x * factor).add_(mean * (1 - factor)).clamp_(0, 255).floor_()


def _adjust_saturation(x, factor):
    if x.shape[1] == 1:  # grey images have no saturation (torchvision leaves them as they are)
        return x
    return _blend(x, _grayscale(x), factor)


def _below(high, channel):
    """1.0 where ``channel`` is below the pixel's largest channel ``high``, 0.0 where it is the
    largest. Pixels are whole numbers, so the gap is 0 or at least 1: this is ``high != channel``
    in two float ops, several times cheaper on CPU than a comparison and its bool tensor."""
    return (high - channel).clamp_(max=1)


def _adjust_hue(x, shift):
    """Rotate each image's hue by ``shift`` turns, like v2.functional.adjust_hue's RGB -> HSV ->
    RGB round trip, written out as a few batched ops (torchvision's is several times slower)."""
    if x.shape[1] == 1:  # grey images have no hue (torchvision leaves them as they are)
        return x
    r, g, b = x.unbind(1)
    # Not torch.aminmax: over the channel dimension it is over 10x slower on CPU than these two.
    high, low = x.amax(dim=1), x.amin(dim=1)
    spread = high - low  # V * S in HSV terms
    # Hue in sixths of a turn, from the largest channel; red wins ties, then green, as in torchvision.
    hue = torch.lerp(torch.add(b - r, spread, alpha=2), torch.add(r - g, spread, alpha=4), _below(high, g))
    hue = torch.lerp(g - b, hue, _below(high, r))
    # Greys have spread 0 and an arbitrary hue; the clamp only avoids 0 / 0.
    hue = hue.div_(spread.clamp(min=1e-6)).add_(6 * shift.reshape(-1, 1, 1))
    hue.sub_(torch.floor(hue / 6).mul_(6))  # mod 6 (cheaper than torch.remainder on CPU)
    # Back to RGB: a channel is at `high` within 1 sixth of its own hue (R 0, G 2, B 4), at `low`
    # beyond 2 sixths, and linear in between: `fade` = clamp(circular distance - 1, 0, 1),
    # where the circular distance is 3 - ||hue - home| - 3|.
    # One image-sized tensor from here on, reused in place: on CPU each fresh one costs page faults.
    home = torch.tensor([0.0, 2.0, 4.0], device=x.device).reshape(1, 3, 1, 1)
    fade = (hue.unsqueeze(1) - home).abs_().sub_(3).abs_().neg_().add_(2).clamp_(0, 1)
    rgb = torch.addcmul(high.unsqueeze(1), fade, spread.unsqueeze(1), value=-1, out=fade)
    # torchvision's float -> uint8 conversion: scale [0, 1] by 255.999 and truncate.
    return rgb.mul_(255.999 / 255).floor_()


def _color_jitter(x, gen, brightness, contrast, saturation, hue):
    n = x.shape[0]
    jitters = [
        (brightness, max(0.0, 1 - brightness), 1 + brightness, _adjust_brightness),
        (contrast, max(0.0, 1 - contrast), 1 + contrast, _adjust_contrast),
        (saturation, max(0.0, 1 - saturation), 1 + saturation, _adjust_saturation),
        (hue, -hue, hue, _adjust_hue),
    ]
    # torchvision draws one order per call, i.e. per image. One order per batch keeps this
    # vectorised; each image's order is still uniformly random, only a batch shares it.
    for i in torch.randperm(4, generator=gen, device=gen.device).tolist():
        amount, low, high, adjust = jitters[i]
        if amount:
            x = adjust(x, _uniform(gen, n, low, high, x.device).reshape(n, 1, 1, 1))
    return x


def _rotate(x, degrees):
    """Rotate each image counter-clockwise by its own angle about the centre (nearest, fill 0),
    like v2.functional.rotate.

    Each output pixel's source is computed directly, with the arithmetic of torchvision's path
    (affine_grid + grid_sample, nearest, align_corners=False) in pixel units, then fetched with
    one gather: about 2x cheaper on CPU than affine_grid's batched matmul and grid_sample.
    """
    n, c, h, w = x.shape
    angle = torch.deg2rad(degrees)
    cos, sin = angle.cos().reshape(n, 1, 1), angle.sin().reshape(n, 1, 1)
    # Output pixel centres relative to the image centre, mapped back into the input image.
    dx = (torch.arange(w, device=x.device) + (0.5 - w / 2)).reshape(1, 1, w)
    dy = (torch.arange(h, device=x.device) + (0.5 - h / 2)).reshape(1, h, 1)
    col = (cos * dx - sin * dy).add_(w / 2 - 0.5).round_()  # round half to even, as grid_sample
    row = (sin * dx + cos * dy).add_(h / 2 - 0.5).round_()
    # Sources outside the image are clamped onto a one-pixel border of zeros: that is the fill,
    # with no mask (comparisons and bool tensors are slow on CPU).
    col = col.clamp_(-1, w).add_(1)
    row = row.clamp_(-1, h).add_(1)
    index = torch.addcmul(col, row, torch.tensor(w + 2.0)).long().reshape(n, 1, h * w)
    padded = nnf.pad(x, [1, 1, 1, 1]).reshape(n, c, (h + 2) * (w + 2))
    return padded.gather(2, index.expand(n, c, -1)).reshape(n, c, h, w)


def _random_rotation(x, gen, degrees):
    return _rotate(x, _uniform(gen, x.shape[0], -degrees, degrees, x.device))


def _resize_weights(start, length, in_size, out_size):
    """Per-image (N, out_size, in_size) matrices resizing the window [start, start + length).

    These are the weights of PyTorch's antialiased bilinear interpolation (the kernel behind
    v2.functional.resized_crop): a triangle filter, widened when shrinking, limited to the window
    and normalised. So a resized crop is two batched matrix products, exact for any crop size.
    """
    scale = (length / out_size)[:, None, None]  # input pixels per output pixel
    centre = start[:, None, None] + scale * (torch.arange(out_size, device=start.device) + 0.5)[:, None]
    pixel = torch.arange(in_size, device=start.device) + 0.5
    weights = (pixel - centre).abs_().div_(scale.clamp(min=1.0)).neg_().add_(1).clamp_(min=0)
    weights.mul_((pixel >= start[:, None, None]) & (pixel < (start + length)[:, None, None]))
    return weights.div_(weights.sum(dim=-1, keepdim=True))


def _resized_crop(x, top, left, height, width, size):
    """Crop a per-image box and resize it to ``size`` (bilinear, antialiased, rounded)."""
    n, c, h, w = x.shape
    out_h, out_w = _pair(size)
    rows = _resize_weights(top.float(), height.float(), h, out_h)
    cols = _resize_weights(left.float(), width.float(), w, out_w)
    # Resample along the width for all channels and rows in one product, then along the height.
    out = torch.bmm(x.reshape(n, c * h, w), cols.transpose(1, 2)).reshape(n, c, h, out_w)
    return torch.matmul(rows.unsqueeze(1), out).round_()


def _random_boxes(gen, n, area, scale, ratio, device):
    """``n`` x 10 candidate box sides drawn like RandomResizedCrop / RandomErasing do: uniform
    area fraction, log-uniform aspect ratio r, rounded. Returns (sqrt(area / r), sqrt(area * r))."""
    target = area * _uniform(gen, (n, 10), scale[0], scale[1], device, torch.float64)
    aspect = torch.exp(_uniform(gen, (n, 10), math.log(ratio[0]), math.log(ratio[1]), device, torch.float64))
    return torch.sqrt(target / aspect).round(), torch.sqrt(target * aspect).round()


def _first_valid(values, valid):
    """Per row, the value at the first valid attempt (torchvision tries up to 10 times)."""
    return values.gather(1, valid.int().argmax(dim=1, keepdim=True)).squeeze(1)


def _random_resized_crop(x, gen, size, scale, ratio):
    n, _, height, width = x.shape
    h, w = _random_boxes(gen, n, height * width, scale, ratio, x.device)
    valid = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    found = valid.any(dim=1)
    h, w = _first_valid(h, valid).long(), _first_valid(w, valid).long()

    # When all 10 attempts fail, torchvision takes the largest central crop within `ratio`.
    if width / height < ratio[0]:
        fallback_w, fallback_h = width, int(round(width / ratio[0]))
    elif width / height > ratio[1]:
        fallback_w, fallback_h = int(round(height * ratio[1])), height
    else:
        fallback_w, fallback_h = width, height
    h = torch.where(found, h, fallback_h)
    w = torch.where(found, w, fallback_w)
    top = torch.where(found, _randint_below(gen, n, height - h + 1, x.device), (height - fallback_h) // 2)
    left = torch.where(found, _randint_below(gen, n, width - w + 1, x.device), (width - fallback_w) // 2)
    return _resized_crop(x, top, left, h, w, size)


def _random_grayscale(x, gen, p):
    if x.shape[1] == 1:  # already grey; torchvision returns it unchanged
        return x
    return _select(x, _grayscale(x), _chosen_images(gen, x, p))


def _blur(x, sigma, kernel_size):
    """Gaussian blur with a per-image sigma: torchvision's kernel and reflect padding, applied
    as two 1-D grouped convolutions (one group per image and channel)."""
    n, c, h, w = x.shape
    limit = (kernel_size - 1) / (2 * math.sqrt(2))
    taps = torch.linspace(-limit, limit, kernel_size, device=x.device)
    kernels = torch.softmax(-((taps / sigma[:, None]) ** 2), dim=1).repeat_interleave(c, dim=0)
    pad = kernel_size // 2
    planes = nnf.pad(x, [pad] * 4, mode="reflect").reshape(1, n * c, h + 2 * pad, w + 2 * pad)
    planes = nnf.conv2d(planes, kernels.reshape(n * c, 1, 1, kernel_size), groups=n * c)
    planes = nnf.conv2d(planes, kernels.reshape(n * c, 1, kernel_size, 1), groups=n * c)
    return planes.reshape(n, c, h, w).round_()


def _gaussian_blur(x, gen, kernel_size, sigma):
    return _blur(x, _uniform(gen, x.shape[0], sigma[0], sigma[1], x.device), kernel_size)


def _random_erasing(x, gen, p, scale, ratio, value):
    n, _, height, width = x.shape
    # RandomErasing's ratio is height / width, the inverse of RandomResizedCrop's.
    w, h = _random_boxes(gen, n, height * width, scale, ratio, x.device)
    valid = (h < height) & (w < width)
    # torchvision erases nothing when all 10 attempts fail.
    erase = (_uniform(gen, n, 0.0, 1.0, x.device) < p) & valid.any(dim=1)
    h, w = _first_valid(h, valid).long(), _first_valid(w, valid).long()
    top = _randint_below(gen, n, height - h + 1, x.device)
    left = _randint_below(gen, n, width - w + 1, x.device)

    rows = torch.arange(height, device=x.device)
    cols = torch.arange(width, device=x.device)
    in_rows = (rows >= top[:, None]) & (rows < (top + h)[:, None])
    in_cols = (cols >= left[:, None]) & (cols < (left + w)[:, None])
    mask = in_rows[:, :, None] & in_cols[:, None, :] & erase[:, None, None]
    return x.masked_fill(mask[:, None], value)


def _resize(x, gen, size):
    return TF.resize(x, size, antialias=True).round_()


def _center_crop(x, gen, size):
    return TF.center_crop(x, list(_pair(size)))


_BATCH_OPS = {
    "Resize": _resize,
    "CenterCrop": _center_crop,
    "RandomCrop": _random_crop,
    "RandomHorizontalFlip": _random_horizontal_flip,
    "RandomVerticalFlip": _random_vertical_flip,
    "ColorJitter": _color_jitter,
    "RandomRotation": _random_rotation,
    "RandomResizedCrop": _random_resized_crop,
    "RandomGrayscale": _random_grayscale,
    "GaussianBlur": _gaussian_blur,
    "RandomErasing": _random_erasing,
}


class BatchAugmenter:
    """Apply a spec to a uint8 batch (N, C, H, W) with independent random parameters per image.

    Every op is vectorised over the batch and draws its parameters from the same distributions
    as the torchvision v2 transform of the same name, and rounds/truncates like its uint8
    kernel, so each augmented image is distributed as ``build_transform(spec)(image)`` would be
    (given the same parameters, pixels agree to within one grey level).
    The random numbers come from ``generator`` (not torch's global RNG), so they differ from
    torchvision's for the same seed, but a given generator state always gives the same batch.

    Differences from the per-image pipeline, all deliberate:

    - Batches whose size is not ``image_size`` x ``image_size`` are first resized to it (as
      ``Preprocessing`` does at test time), so specs written for ``image_size`` fit.
    - ``Normalize`` is skipped: normalizing belongs to the single uint8 -> float step of
      training (``Preprocessing.normalize_pixels_``), so batches stay uint8 until then.
    - ``ColorJitter`` uses one random order of its four adjustments per batch instead of per
      image (each image's order is still uniformly random; images of a batch share it).
    """

    def __init__(self, spec, image_size):
        self.spec = validate_spec(spec)
        self.image_size = _check_image_size(image_size)
        self._steps = [
            (_BATCH_OPS[step["op"]], {k: v for k, v in step.items() if k != "op"})
            for step in self.spec
            if step["op"] != "Normalize"
        ]

    def __call__(self, x, generator):
        """The augmented uint8 batch."""
        return self.pixels(x, generator).to(torch.uint8)

    def pixels(self, x, generator):
        """The augmented batch as float32 pixel values (whole numbers in [0, 255]), the same
        values ``__call__`` returns as uint8. Training normalises these directly (see
        ``Preprocessing.normalize_pixels_``) and so skips a uint8 round trip."""
        if x.dtype != torch.uint8 or x.ndim != 4:
            raise ValueError(text("transforms.not_uint8_batch", dtype=str(x.dtype), shape=str(tuple(x.shape))))
        out = _resize_square(x, self.image_size).float()
        for apply, params in self._steps:
            out = apply(out, generator, **params)
        return out.contiguous()  # CenterCrop returns a view
