"""sketch.mnist_style: a mouse drawing becomes an MNIST-style digit an MNIST model recognises."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from vision_lab.sketch import EMPTY_MESSAGE, mnist_style

ROOT = Path(__file__).resolve().parents[2]
MNIST_CKPT = ROOT / "checkpoints" / "mnist_cnn.safetensors"


# Hand-drawn digits as polylines in a unit square (x right, y down), like mouse strokes.
STROKES = {
    "0": None,  # an ellipse, drawn separately
    "1": [[(0.5, 0.05), (0.5, 0.95)]],
    "2": [[(0.15, 0.25), (0.3, 0.08), (0.6, 0.05), (0.82, 0.2), (0.8, 0.42), (0.15, 0.93),
           (0.88, 0.93)]],
    "3": [[(0.15, 0.1), (0.8, 0.1), (0.45, 0.45), (0.8, 0.6), (0.82, 0.82), (0.55, 0.95),
           (0.15, 0.88)]],
    "4": [[(0.6, 0.05), (0.12, 0.62), (0.9, 0.62)], [(0.65, 0.3), (0.65, 0.95)]],
    "7": [[(0.1, 0.08), (0.9, 0.08), (0.4, 0.95)]],
}


def draw_digit(digit, size=400, box=(100, 60, 300, 340), width=24, ink=0, paper=255, mode="L"):
    """A digit drawn with thick strokes inside `box` on a `size`×`size` canvas."""
    if mode == "RGBA":
        img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
        colour = (0, 0, 0, 255)
    else:
        img = Image.new("L", (size, size), paper)
        colour = ink
    d = ImageDraw.Draw(img)
    x0, y0, x1, y1 = box
    if digit == "0":
        d.ellipse((x0 + (x1 - x0) * 0.1, y0, x1 - (x1 - x0) * 0.1, y1), outline=colour, width=width)
        return img
    for line in STROKES[digit]:
        pts = [(x0 + u * (x1 - x0), y0 + v * (y1 - y0)) for u, v in line]
        d.line(pts, fill=colour, width=width, joint="curve")
        r = width / 2
        for x, y in (pts[0], pts[-1]):  # round caps, like a round brush
            d.ellipse((x - r, y - r, x + r, y + r), fill=colour)
    return img


def check_mnist_like(t: torch.Tensor):
    assert t.dtype == torch.uint8 and t.shape == (1, 28, 28)
    a = t[0].numpy().astype(float)
    # white on black: the border is black, the digit is bright
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    assert border.max() == 0
    assert a.max() >= 200
    ys, xs = np.indices(a.shape)
    com = ((ys * a).sum() / a.sum(), (xs * a).sum() / a.sum())
    assert abs(com[0] - 13.5) <= 1.5 and abs(com[1] - 13.5) <= 1.5, com
    rows, cols = np.nonzero(a)
    assert rows.max() - rows.min() + 1 <= 20 and cols.max() - cols.min() + 1 <= 20
    assert max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 >= 19  # scaled up to the box


@pytest.mark.parametrize("digit, box, width", [
    ("7", (100, 60, 300, 340), 24),
    ("3", (20, 20, 120, 150), 10),      # small, in a corner
    ("7", (250, 200, 390, 390), 6),     # thin strokes, bottom right
    ("1", (150, 30, 250, 370), 30),     # tall and narrow
    ("0", (40, 150, 360, 250), 16),     # wide and flat
])
def test_drawings_become_mnist_like(digit, box, width):
    check_mnist_like(mnist_style(draw_digit(digit, box=box, width=width)))


def test_light_on_dark_and_transparent_sketches():
    dark = mnist_style(draw_digit("7", ink=255, paper=0))
    light = mnist_style(draw_digit("7"))
    transparent = mnist_style(draw_digit("7", mode="RGBA"))
    for t in (dark, light, transparent):
        check_mnist_like(t)
    assert torch.equal(dark, light)
    assert (transparent.int() - light.int()).abs().max() <= 2


def test_gradio_style_numpy_and_file_inputs(tmp_path):
    rgba = np.asarray(draw_digit("4", mode="RGBA"))  # Sketchpad's composite with type="numpy"
    check_mnist_like(mnist_style(rgba))
    path = tmp_path / "four.png"
    draw_digit("4").convert("RGB").save(path)
    check_mnist_like(mnist_style(path))


@pytest.mark.parametrize("blank", [
    Image.new("RGBA", (400, 400), (0, 0, 0, 0)),
    Image.new("L", (400, 400), 255),
    Image.new("RGB", (50, 80), (0, 0, 0)),
])
def test_empty_sketch_is_a_plain_error(blank):
    with pytest.raises(ValueError, match="^" + EMPTY_MESSAGE.replace(".", r"\.") + "$"):
        mnist_style(blank)


def test_a_single_dot_does_not_crash():
    img = Image.new("L", (400, 400), 255)
    ImageDraw.Draw(img).ellipse((195, 195, 205, 205), fill=0)
    t = mnist_style(img)
    assert t.shape == (1, 28, 28) and t.max() > 0


def test_the_mnist_checkpoint_reads_hand_drawn_digits():
    if not MNIST_CKPT.is_file():
        pytest.skip("checkpoints/mnist_cnn.safetensors has not been trained yet")
    from vision_lab.checkpoints import load_checkpoint
    from vision_lab.network_view import predict

    ckpt = load_checkpoint(MNIST_CKPT)
    drawings = {  # varied sizes, positions and stroke widths, like real mouse drawings
        "0": draw_digit("0", box=(120, 50, 300, 350), width=20),
        "1": draw_digit("1", box=(180, 80, 220, 330), width=18),
        "2": draw_digit("2", box=(60, 40, 260, 300), width=14),
        "3": draw_digit("3", box=(200, 150, 380, 380), width=22),
        "4": draw_digit("4", box=(90, 90, 310, 330), width=16),
        "7": draw_digit("7", box=(30, 30, 200, 250), width=12),
    }
    x = torch.stack([mnist_style(img) for img in drawings.values()])
    top = [row[0][0] for row in predict(ckpt.model, ckpt.preprocessing(x), ckpt.classes, top_k=1)]
    # torchvision names the classes "7 - seven"
    right = sum(label.split()[0] == digit for label, digit in zip(top, drawings))
    assert right >= len(drawings) - 1, dict(zip(drawings, top))
