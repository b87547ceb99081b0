"""Data augmentation: specs, torchvision v2 pipelines, pasteable code and fast batch augmentation.

An augmentation *spec* is plain JSON data: a list of ``{"op": <name>, **params}`` dicts that
use torchvision v2's own class and parameter names, e.g.::

    [{"op": "RandomCrop", "size": 32, "padding": 4},
     {"op": "RandomHorizontalFlip", "p": 0.5}]

- ``OPS`` describes every supported op and its parameters (default, type, UI range).
- ``PRESETS`` / ``preset()`` / ``list_presets()`` give ready-made specs for a given image size.
- ``validate_spec()`` checks a spec and fills in defaults (``ValueError`` with a precise message).
- ``build_transform()`` turns a spec into a ``v2.Compose`` for single images (tensor or PIL).
- ``to_code()`` renders the same pipeline as Python a student can paste into a notebook.
- ``BatchAugmenter`` applies a spec to a whole uint8 batch with independent random parameters
  per image, without a Python loop over images.

Normalising (and resizing at test time) is preprocessing.Preprocessing's job, for training and
prediction alike.
"""

import math
import numbers

import torch
import torch.nn.functional as nnf
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from .i18n import text


def _param(kind, default, ui_min, ui_max, step, limits, *, required=False, exclusive_min=False):
    """Describe one op parameter.

    ``ui_min``/``ui_max``/``step`` are a sensible slider range; ``limits`` = [lo, hi] (None means
    unbounded) is what ``validate_spec`` accepts, which is often wider than the slider.
    """
    return {
        "type": kind,
        "default": default,
        "required": required,
        "min": ui_min,
        "max": ui_max,
        "step": step,
        "limits": list(limits),
        "exclusive_min": exclusive_min,
    }


def _size_param():
    # The right size depends on the dataset, so there is no default: the UI should offer
    # the model's image size.
    return _param("size", None, 8, 512, 1, [1, None], required=True)


def _probability(default):
    return _param("float", default, 0.0, 1.0, 0.05, [0, 1])


def _jitter(ui_max=1.0, limits=(0, None), step=0.05):
    return _param("float", 0.0, 0.0, ui_max, step, limits)


# Parameter types: "int", "float", "size" (an int, or a [height, width] pair), "range" (a
# [min, max] pair; a single number x means [x, x]) and "floats" (one number per channel).
OPS = {
    "Resize": {
        "description": "Resize so the shorter side is `size` pixels (bilinear, antialiased).",
        "params": {"size": _size_param()},
    },
    "CenterCrop": {
        "description": "Cut out the central `size` x `size` square.",
        "params": {"size": _size_param()},
    },
    "RandomCrop": {
        "description": "Pad every border with `padding` black pixels, then cut out a random `size` square.",
        "params": {
            "size": _size_param(),
            "padding": _param("int", 0, 0, 16, 1, [0, None]),
        },
    },
    "RandomHorizontalFlip": {
        "description": "Mirror the image left-right with probability `p`.",
        "params": {"p": _probability(0.5)},
    },
    "RandomVerticalFlip": {
        "description": "Flip the image upside down with probability `p`.",
        "params": {"p": _probability(0.5)},
    },
    "ColorJitter": {
        "description": "Randomly change brightness, contrast, saturation and hue, in a random order.",
        "params": {
            "brightness": _jitter(),
            "contrast": _jitter(),
            "saturation": _jitter(),
            "hue": _jitter(ui_max=0.5, limits=(0, 0.5), step=0.01),
        },
    },
    "RandomRotation": {
        "description": "Rotate by a random angle in [-degrees, degrees]; corners become black.",
        "params": {"degrees": _param("float", 15.0, 0.0, 180.0, 1.0, [0, 180])},
    },
    "RandomResizedCrop": {
        "description": "Cut out a random area (fraction `scale`, aspect `ratio`) and resize it to `size`.",
        "params": {
            "size": _size_param(),
            "scale": _param("range", [0.08, 1.0], 0.05, 1.0, 0.05, [0, 1], exclusive_min=True),
            "ratio": _param("range", [3 / 4, 4 / 3], 0.25, 4.0, 0.05, [0, None], exclusive_min=True),
        },
    },
    "RandomGrayscale": {
        "description": "Convert the image to grayscale with probability `p`.",
        "params": {"p": _probability(0.1)},
    },
    "GaussianBlur": {
        "description": "Blur with a `kernel_size` Gaussian whose sigma is drawn from `sigma`.",
        "params": {
            "kernel_size": _param("int", 3, 1, 15, 2, [1, None]),
            "sigma": _param("range", [0.1, 2.0], 0.1, 5.0, 0.1, [0, None], exclusive_min=True),
        },
    },
    "RandomErasing": {
        "description": "With probability `p`, fill a random rectangle with the pixel value `value`.",
        "params": {
            "p": _probability(0.5),
            "scale": _param("range", [0.02, 0.33], 0.0, 1.0, 0.01, [0, 1]),
            "ratio": _param("range", [0.3, 3.3], 0.1, 10.0, 0.1, [0, None], exclusive_min=True),
            "value": _param("int", 0, 0, 255, 1, [0, 255]),
        },
    },
    "Normalize": {
        "description": "Scale pixels to [0, 1], subtract `mean`, divide by `std` per channel (must be last).",
        "params": {
            "mean": _param("floats", None, 0.0, 1.0, 0.001, [0, 1], required=True),
            "std": _param("floats", None, 0.001, 1.0, 0.001, [0, None], required=True, exclusive_min=True),
        },
    },
}


# ---------------------------------------------------------------------------------------------
# Presets


def _none(image_size):
    """No augmentation."""
    return []


def _light(image_size):
    """Random crop with padding plus horizontal flip."""
    return [
        {"op": "RandomCrop", "size": image_size, "padding": image_size // 8},
        {"op": "RandomHorizontalFlip", "p": 0.5},
    ]


def _standard(image_size):
    """The course's CIFAR-10 recipe: crop with padding, flip, colour jitter, small rotation."""
    return _light(image_size) + [
        {"op": "ColorJitter", "brightness": 0.2, "contrast": 0.2, "saturation": 0.2, "hue": 0.1},
        {"op": "RandomRotation", "degrees": 15},
    ]


def _strong(image_size):
    """Aggressive: random resized crop, flip, strong jitter, rotation and random erasing."""
    return [
        {"op": "RandomResizedCrop", "size": image_size, "scale": [0.6, 1.0]},
        {"op": "RandomHorizontalFlip", "p": 0.5},
        {"op": "ColorJitter", "brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1},
        {"op": "RandomRotation", "degrees": 20},
        {"op": "RandomErasing", "p": 0.25},
    ]


def _digits(image_size):
    """For digits (MNIST): small rotation and shift, no flips (a flipped digit is another symbol)."""
    return [
        {"op": "RandomRotation", "degrees": 10},
        # 2 pixels at MNIST's 28, scaled for other sizes.
        {"op": "RandomCrop", "size": image_size, "padding": max(1, image_size // 14)},
    ]


def _translate(image_size):
    """The speedrun's augmentation for digits: shift by up to 2 pixels (at 28 or 32 px), no flips."""
    return [{"op": "RandomCrop", "size": image_size, "padding": max(1, round(image_size / 16))}]


def _flip_translate(image_size):
    """airbench's augmentation: shift by up to 2 pixels (at 32 px) and mirror half the images."""
    return _translate(image_size) + [{"op": "RandomHorizontalFlip", "p": 0.5}]


PRESETS = {"none": _none, "light": _light, "standard": _standard, "strong": _strong, "digits": _digits,
           "translate": _translate, "flip_translate": _flip_translate}


def list_presets():
    """Names of the available presets."""
    return list(PRESETS)


def preset(name, image_size):
    """The spec of preset ``name`` sized for ``image_size`` x ``image_size`` images (validated)."""
    if name not in PRESETS:
        raise ValueError(text("transforms.unknown_preset", name=repr(name), presets=", ".join(PRESETS)))
    return validate_spec(PRESETS[name](_check_image_size(image_size)))


def _check_image_size(image_size):
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(text("transforms.image_size", value=repr(image_size)))
    return image_size


# ---------------------------------------------------------------------------------------------
# Validation


def _limits_text(lo, hi, exclusive_min):
    if exclusive_min:
        return (text("transforms.limits.above", lo=lo) if hi is None else
                text("transforms.limits.above_at_most", lo=lo, hi=hi))
    return text("transforms.limits.at_least", lo=lo) if hi is None else text("transforms.limits.between", lo=lo, hi=hi)


def _number(label, value, info, integer=False):
    """Check one number against the parameter's limits; returns it as int or float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(text("transforms.not_number", label=label, value=repr(value)))
    if integer and value != int(value):
        raise ValueError(text("transforms.not_whole", label=label, value=repr(value)))
    lo, hi = info["limits"]
    exclusive = info["exclusive_min"]
    if (value <= lo if exclusive else value < lo) or (hi is not None and value > hi):
        raise ValueError(text("transforms.out_of_limits", label=label, limits=_limits_text(lo, hi, exclusive),
                              value=repr(value)))
    # Keep ints as ints so the spec (and the generated code) reads the way it was written.
    return int(value) if integer or isinstance(value, int) else float(value)


def _is_pair(value):
    return isinstance(value, (list, tuple)) and len(value) == 2


def _check_size(label, value, info):
    if _is_pair(value):
        return [_number(label, v, info, integer=True) for v in value]
    if isinstance(value, (list, tuple)):
        raise ValueError(text("transforms.not_size", label=label, value=repr(value)))
    return _number(label, value, info, integer=True)


def _check_range(label, value, info):
    if isinstance(value, (list, tuple)) and not _is_pair(value):
        raise ValueError(text("transforms.not_range", label=label, value=repr(value)))
    low, high = value if _is_pair(value) else (value, value)
    low, high = _number(label, low, info), _number(label, high, info)
    if low > high:
        raise ValueError(text("transforms.range_order", label=label, value=repr(list(value))))
    return [low, high]


def _check_floats(label, value, info):
    if not isinstance(value, (list, tuple)) or len(value) not in (1, 3):
        raise ValueError(text("transforms.not_floats", label=label, value=repr(value)))
    return [_number(label, v, info) for v in value]


_CHECKS = {
    "int": lambda label, value, info: _number(label, value, info, integer=True),
    "float": _number,
    "size": _check_size,
    "range": _check_range,
    "floats": _check_floats,
}


def _validate_step(position, step):
    if not isinstance(step, dict) or "op" not in step:
        raise ValueError(text("transforms.not_step", position=position, value=repr(step)))
    name = step["op"]
    if name not in OPS:
        raise ValueError(text("transforms.unknown_op", name=repr(name), ops=", ".join(OPS)))
    params = OPS[name]["params"]
    unknown = sorted(set(step) - {"op"} - set(params))
    if unknown:
        raise ValueError(text("transforms.unknown_param", op=name, param=repr(unknown[0]),
                              params=", ".join(params)))

    normalised = {"op": name}
    for pname, info in params.items():
        if pname in step:
            normalised[pname] = _CHECKS[info["type"]](f"{name}: {pname}", step[pname], info)
        elif info["required"]:
            raise ValueError(text("transforms.missing_param", op=name, param=repr(pname)))
        else:
            default = info["default"]
            normalised[pname] = list(default) if isinstance(default, list) else default

    if name == "GaussianBlur" and normalised["kernel_size"] % 2 == 0:
        raise ValueError(text("transforms.kernel_odd", value=normalised["kernel_size"]))
    if name == "Normalize" and len(normalised["mean"]) != len(normalised["std"]):
        raise ValueError(text("transforms.normalize_lengths", mean=len(normalised["mean"]),
                              std=len(normalised["std"])))
    return normalised


def validate_spec(spec):
    """Check a spec and return a normalised copy: defaults filled in, pairs as lists.

    Raises ValueError with a sentence naming the op and parameter at fault.
    """
    if not isinstance(spec, (list, tuple)):
        raise ValueError(text("transforms.not_spec", type=type(spec).__name__))
    steps = [_validate_step(i, step) for i, step in enumerate(spec)]
    for i, step in enumerate(steps[:-1]):
        # Normalize turns pixels into floats around 0, so anything after it (e.g. erasing with
        # value 0) would mean something different in BatchAugmenter, which works on pixels.
        if step["op"] == "Normalize":
            raise ValueError(text("transforms.normalize_last", position=i + 1, count=len(steps)))
    return steps


# ---------------------------------------------------------------------------------------------
# Per-image pipelines and code


def _v2_calls(spec):
    """The (class name, kwargs) list that both build_transform and to_code use, so the code a
    student pastes is exactly the pipeline the app runs."""
    calls = []
    for step in validate_spec(spec):
        if step["op"] == "Normalize":
            # v2.Normalize needs a float tensor; convert uint8 tensors or PIL images to [0, 1] first.
            calls += [("ToImage", {}), ("ToDtype", {"dtype": torch.float32, "scale": True})]
        calls.append((step["op"], {k: v for k, v in step.items() if k != "op"}))
    # v2.Compose refuses an empty list.
    return calls or [("Identity", {})]


def build_transform(spec):
    """A ``v2.Compose`` applying ``spec`` to one image: a uint8 (C, H, W) tensor or a PIL image."""
    return v2.Compose([getattr(v2, name)(**kwargs) for name, kwargs in _v2_calls(spec)])


def to_code(spec):
    """Python source that builds the same pipeline as ``build_transform(spec)``."""
    lines = ["import torch", "from torchvision.transforms import v2", "", "transform = v2.Compose(["]
    for name, kwargs in _v2_calls(spec):
        args = ", ".join(f"{key}={value!r}" for key, value in kwargs.items())
        lines.append(f"    v2.{name}({args}),")
    lines.append("])")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Batches


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
