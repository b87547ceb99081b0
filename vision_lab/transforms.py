"""Data augmentation: specs, torchvision v2 pipelines and pasteable code.

An augmentation *spec* is plain JSON data: a list of ``{"op": <name>, **params}`` dicts that
use torchvision v2's own class and parameter names, e.g.::

    [{"op": "RandomCrop", "size": 32, "padding": 4},
     {"op": "RandomHorizontalFlip", "p": 0.5}]

- ``OPS`` describes every supported op and its parameters (default, type, UI range).
- ``PRESETS`` / ``preset()`` / ``list_presets()`` give ready-made specs for a given image size.
- ``validate_spec()`` checks a spec and fills in defaults (``ValueError`` with a precise message).
- ``build_transform()`` turns a spec into a ``v2.Compose`` for single images (tensor or PIL).
- ``to_code()`` renders the same pipeline as Python a student can paste into a notebook.
- ``batch_augment.BatchAugmenter`` applies a spec to a whole uint8 batch with independent random
  parameters per image, without a Python loop over images.

Normalising (and resizing at test time) is preprocessing.Preprocessing's job, for training and
prediction alike.
"""

import math
import numbers

import torch
from torchvision.transforms import v2

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

