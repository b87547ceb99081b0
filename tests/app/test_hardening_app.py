"""Hostile and odd requests straight to the app's API (issue #4): each gets the library's own
sentence, and the app keeps serving. Inputs are made here, in a temp dir."""
import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import api_client

pytestmark = pytest.mark.slow
pytest.importorskip("gradio_client")
from gradio_client import handle_file  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
SHAPES = "shapes_cnn"


@pytest.fixture(scope="module")
def client(app_url):
    if not (ROOT / "checkpoints" / f"{SHAPES}.safetensors").is_file():
        pytest.skip(f"checkpoints/{SHAPES}.safetensors has not been trained yet")
    return api_client(app_url)


def classify(client, path, checkpoints=(SHAPES,)):
    results, *_ = client.predict(handle_file(str(path)), list(checkpoints), api_name="/classify")
    return results


def still_serving(client):
    """A normal request right after a bad one succeeds."""
    results = classify(client, EXAMPLES / "shape_star.png")
    assert results[0]["checkpoint"] == SHAPES and len(results[0]["top"]) == 10


def error_text(call) -> str:
    with pytest.raises(Exception) as info:
        call()
    text = str(info.value)
    assert "Traceback" not in text
    return text


def _png_claiming(width, height) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    at = data.index(b"IHDR")
    data[at + 4:at + 12] = struct.pack(">II", width, height)
    data[at + 17:at + 21] = struct.pack(">I", zlib.crc32(bytes(data[at:at + 17])) & 0xFFFFFFFF)
    return bytes(data)


# ---- /classify with bad and odd images ----------------------------------------------------------

def test_classify_refuses_bad_images_with_the_library_sentence(client, tmp_path):
    photo = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 30)).save(photo, "JPEG")
    cases = {
        "empty.png": (b"", "empty.png is empty (0 bytes)."),
        "cut.jpg": (photo.getvalue()[:300], "cut.jpg is damaged or truncated"),
        "bomb.png": (_png_claiming(30_000, 30_000), "bomb.png is too large to open safely"),
        "notes.png": (b"not a picture\n" * 20, "notes.png is not an image file PIL can read."),
    }
    for name, (data, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        text = error_text(lambda: classify(client, path))
        assert message in text, (name, text)
        still_serving(client)


def test_classify_accepts_odd_but_valid_images(client, tmp_path):
    star = Image.open(EXAMPLES / "shape_star.png").convert("RGB")
    expected = classify(client, EXAMPLES / "shape_star.png")[0]["top"][0]["label"]
    variants = {
        "star_cmyk.jpg": (star.convert("CMYK"), {"quality": 95}),
        "star_rgba.png": (star.convert("RGBA"), {}),
        "star_p.png": (star.convert("P"), {}),
        "star_l.png": (star.convert("L"), {}),
        "star_i16.png": (Image.fromarray(np.asarray(star.convert("L"), dtype=np.uint16) * 257), {}),
    }
    for name, (img, save) in variants.items():
        path = tmp_path / name
        img.save(path, **save)
        top = classify(client, path)[0]["top"]
        assert abs(sum(t["prob"] for t in top) - 1) < 1e-3, name
        if not name.endswith(("_l.png", "_i16.png", "_p.png")):
            assert top[0]["label"] == expected, (name, top[:2])
    dot = tmp_path / "dot.png"
    Image.new("RGB", (1, 1), (255, 255, 255)).save(dot)
    assert len(classify(client, dot)[0]["top"]) == 10
    # An animated GIF: frame 0 is the star, frame 1 blank; the answer is the star's.
    gif = tmp_path / "anim.gif"
    star.save(gif, save_all=True, append_images=[Image.new("RGB", star.size, "white")], duration=100)
    assert classify(client, gif)[0]["top"][0]["label"] == expected


# ---- wrong, missing and out-of-range values -----------------------------------------------------

def test_classify_and_feature_maps_with_unknown_or_missing_checkpoints(client):
    star = handle_file(str(EXAMPLES / "shape_star.png"))
    text = error_text(lambda: client.predict(star, ["no_such_ckpt"], api_name="/classify"))
    assert "No checkpoint named 'no_such_ckpt'." in text and SHAPES in text
    text = error_text(lambda: client.predict("no_such_ckpt", star, api_name="/feature_maps"))
    assert "No checkpoint named 'no_such_ckpt'." in text
    text = error_text(lambda: client.predict(star, [], api_name="/classify"))
    assert "Choose at least one checkpoint." in text
    text = error_text(lambda: client.predict(None, [SHAPES], api_name="/classify"))
    assert "No image yet" in text
    # A path outside the app's checkpoint folders is never opened.
    text = error_text(lambda: client.predict("/etc/passwd", star, api_name="/feature_maps"))
    assert "No checkpoint named 'passwd'." in text
    still_serving(client)


@pytest.mark.parametrize("kwargs, message", [
    ({"lr": "abc"}, "Learning rate must be a number, got 'abc'."),
    ({"seed": "x"}, "Seed must be a number, got 'x'."),
    ({"epochs": 2.5}, "Epochs must be a whole number, got 2.5."),
    ({"dropout": 5}, "Dropout must be at most 0.9, got 5."),
    ({"epochs": -1}, "epochs must be a whole number of at least 1, got -1."),
    ({"batch_size": 0}, "batch size must be at least 1, got 0."),
    ({"subset_train": 10**7}, "subset_train=10000000 is larger than the 10000 training images"),
    ({"model": "transformer"}, "Value: transformer is not in the list of choices"),  # Gradio's check
    ({"optimizer": "lbfgs"}, "Value: lbfgs is not in the list of choices"),
    ({"scheduler": "multistep", "milestones": "2, 9", "epochs": 5}, "MultiStepLR milestone 9 is not before"),
    ({"scheduler": "multistep", "milestones": "two"}, "milestones must be whole numbers"),
    ({"dataset": "cifar10"}, "shapes"),
])
def test_train_rejects_bad_values_and_keeps_serving(client, kwargs, message):
    request = {"dataset": "shapes", "subset_train": 64, "subset_test": 32, "epochs": 1, **kwargs}
    text = error_text(lambda: client.predict(**request, api_name="/train"))
    assert message in text, text
    still_serving(client)


@pytest.mark.parametrize("kwargs, message", [
    ({"count": 10_000}, "N (augmented copies) must be at most 32, got 10000."),
    ({"count": 0}, "N (augmented copies) must be at least 8, got 0."),
    ({"count": "many"}, "N (augmented copies) must be a number, got 'many'."),
    ({"size": 0}, "Image size (px) must be at least 16, got 0."),
    ({"size": 100_000}, "Image size (px) must be at most 256, got 100000."),
    ({"seed_value": "nan"}, "Seed must be a finite number, got nan."),
])
def test_augment_rejects_out_of_range_values(client, kwargs, message):
    text = error_text(lambda: client.predict(**{"image": None, "size": 32, "count": 8,
                                                "seed_value": 0, **kwargs}, api_name="/augment"))
    assert message in text, text
    original, gallery, code = client.predict(image=None, size=32, count=8, seed_value=0,
                                             api_name="/augment")
    assert len(gallery) == 8


def test_a_normal_training_after_the_bad_requests_succeeds(client):
    out = client.predict(dataset="shapes", subset_train=64, subset_test=32, model="mlp", epochs=1,
                         batch_size=10_000, api_name="/train")
    status, summary = out[0], out[-1]
    assert summary["reason"] == "completed", status
    assert "Batch size lowered to 64" in status or summary["config"]["batch_size"] == 10_000
