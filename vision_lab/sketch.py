"""Turn a digit drawn with a mouse into an MNIST-style image, the way MNIST itself was made.

MNIST digits are white on black. LeCun et al. scaled each NIST digit to fit a 20×20 box keeping
its aspect ratio (with antialiasing, hence the grey edges), then pasted it into a 28×28 field so
that its centre of mass sits at the centre. A network trained on MNIST expects exactly that, so a
raw sketch (a black line on a big white canvas) has to go through the same steps before it can be
recognised.
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from .i18n import text
from .preprocessing import open_image

EMPTY_MESSAGE = text("sketch.empty")  # a catalogue Text: the app says it in the visitor's language
CANVAS = 28
BOX = 20
# Relative stroke width of an MNIST digit (about 2.5 px in the 20 px box). Mouse strokes on a big
# canvas are often much thinner; they are thickened up to this before shrinking.
STROKE_FRACTION = 0.12
_INK = 0.1  # ink below 10 % of the strongest stroke is background noise (JPEG, antialiasing)
_WORK = 112  # working resolution of the longer side while thickening


def ink_map(image) -> np.ndarray:
    """Ink strength in [0, 1] per pixel, whatever the sketch's colours.

    Transparent canvases (Gradio's sketchpad): ink is wherever something was painted (alpha > 0).
    Opaque images: the background is the border's typical brightness, and ink is how far a pixel
    is from it — so dark-on-light and light-on-dark drawings both work.
    """
    img = open_image(image)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        alpha = np.asarray(img.convert("RGBA"), dtype=np.float32)[..., 3] / 255
        if alpha.min() < 1:  # some transparency: the painted pixels are the strokes
            return alpha
    gray = np.asarray(img.convert("L"), dtype=np.float32) / 255
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    background = float(np.median(border))
    ink = np.abs(gray - background)
    strongest = float(ink.max())
    return ink / strongest if strongest > 0 else ink


def _resize(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a float map (antialiased: area averaging when shrinking)."""
    img = Image.fromarray(a.astype(np.float32), "F")
    shrinking = size[0] < img.width or size[1] < img.height
    return np.asarray(img.resize(size, Image.BOX if shrinking else Image.BILINEAR), dtype=np.float32)


def _square_filter(a: np.ndarray, size: int, pick) -> np.ndarray:
    """`pick` (np.maximum: dilate, np.minimum: erode) over the size×size square around each
    pixel, edges repeated as PIL's MinFilter/MaxFilter do. A pass along the rows then one along
    the columns, each over shifted copies: 2·size steps per pixel instead of PIL's size², which
    made thickening most of a classify call's time."""
    r = size // 2
    a = np.pad(a, r, mode="edge")
    h, w = a.shape[0] - 2 * r, a.shape[1] - 2 * r
    rows = a[:h]
    for k in range(1, size):
        rows = pick(rows, a[k: k + h])
    out = rows[:, :w]
    for k in range(1, size):
        out = pick(out, rows[:, k: k + w])
    return out


def _stroke_width(mask: np.ndarray) -> float:
    """Approximate stroke width in pixels: twice the number of 3×3 erosions that erase the ink."""
    erosions = 0
    while mask.any() and erosions < 50:
        mask = _square_filter(mask, 3, np.minimum)
        erosions += 1
    return max(1.0, 2.0 * erosions - 1)


def _thicken(ink: np.ndarray) -> np.ndarray:
    """Dilate thin strokes so their width relative to the digit matches MNIST's."""
    target = STROKE_FRACTION * max(ink.shape)
    missing = target - _stroke_width(ink > 0.5)
    if missing < 2:
        return ink
    size = int(missing) | 1  # an odd square, centred on each pixel
    return _square_filter((ink * 255).astype(np.uint8), size, np.maximum).astype(np.float32) / 255


def _crop_to_ink(mask: np.ndarray, ink: np.ndarray) -> np.ndarray:
    """`ink` cut to the bounding box of `mask` (found from the rows and columns that hold any:
    a tenth of the time np.nonzero takes to list every inked pixel)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return ink[rows[0]: rows[-1] + 1, cols[0]: cols[-1] + 1]


def mnist_style(image, thicken: bool = True) -> torch.Tensor:
    """A sketch (path, bytes, numpy or PIL) -> uint8 tensor (1, 28, 28), white digit on black.

    Steps: ink map -> crop to the ink's bounding box -> (optionally) thicken thin strokes ->
    scale the longer side to 20 px keeping the aspect ratio -> paste into 28×28 with the centre of
    mass at the centre. Raises ValueError for an empty sketch.
    """
    ink = ink_map(image)
    if ink.size == 0 or ink.max() <= _INK:
        raise ValueError(EMPTY_MESSAGE)
    ink = np.where(ink > _INK, ink, 0.0).astype(np.float32)
    ink = _crop_to_ink(ink > 0, ink)

    if thicken:
        # Work at a moderate resolution: thickening a 1000 px crop would be slow for no gain.
        h, w = ink.shape
        scale = _WORK / max(h, w)
        if scale < 1:
            ink = _resize(ink, (max(1, round(w * scale)), max(1, round(h * scale))))
        # A margin so dilation does not get clipped at the crop's edge.
        pad = int(STROKE_FRACTION * max(ink.shape)) + 1
        ink = _thicken(np.pad(ink, pad))
        ink = _crop_to_ink(ink > _INK, ink)

    h, w = ink.shape
    scale = BOX / max(h, w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    digit = np.clip(_resize(ink, (new_w, new_h)), 0, 1)

    # Centre of mass of the scaled digit, moved to the centre of the 28×28 field (13.5, 13.5 in
    # pixel coordinates), keeping the digit inside the field.
    total = float(digit.sum())
    ys, xs = np.indices(digit.shape)
    com_y, com_x = float((ys * digit).sum()) / total, float((xs * digit).sum()) / total
    top = int(np.clip(round((CANVAS - 1) / 2 - com_y), 0, CANVAS - new_h))
    left = int(np.clip(round((CANVAS - 1) / 2 - com_x), 0, CANVAS - new_w))
    canvas = np.zeros((CANVAS, CANVAS), dtype=np.float32)
    canvas[top: top + new_h, left: left + new_w] = digit
    out = np.round(canvas * 255).astype(np.uint8)
    return torch.from_numpy(out)[None]
