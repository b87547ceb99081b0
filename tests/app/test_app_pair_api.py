"""/feature_maps with a saliency method, and /feature_maps_pair, through gradio_client."""
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from conftest import shipped

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def _pixels(path):
    assert path and Path(path).is_file(), path
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def test_feature_maps_api_takes_a_saliency_method_and_still_defaults_to_grad_cam(client):
    from gradio_client import handle_file

    shipped("mnist_cnn")
    image = handle_file(str(EXAMPLES / "digit_7.png"))
    *_, default_cam, _, default_note = client.predict("mnist_cnn", image, api_name="/feature_maps")
    assert "Grad-CAM explains" in default_note
    seen, maps, filters, cam, label, note = client.predict(
        "mnist_cnn", image, method="occlusion", api_name="/feature_maps")
    assert "Occlusion explains **7 - seven** (the predicted class)" in note
    assert "lowers its probability by" in note
    assert _pixels(cam).shape == _pixels(seen).shape
    assert not np.array_equal(_pixels(cam), _pixels(default_cam))  # another map


def test_feature_maps_pair_api_two_models_with_different_inputs(client):
    from gradio_client import handle_file

    shipped("mnist_cnn")
    shipped("shapes_cnn")
    start = time.perf_counter()
    seen_a, saliency_a, top_a, seen_b, saliency_b, top_b, table, note = client.predict(
        "mnist_cnn", "shapes_cnn", handle_file(str(EXAMPLES / "digit_7.png")),
        method="input_gradient", api_name="/feature_maps_pair")
    print(f"/feature_maps_pair (input gradient): {time.perf_counter() - start:.2f} s")
    grey, colour = _pixels(seen_a), _pixels(seen_b)
    assert (grey[..., 0] == grey[..., 1]).all()  # MNIST's 1 channel
    assert _pixels(saliency_a).shape == grey.shape and _pixels(saliency_b).shape == colour.shape
    assert top_a["label"].split()[0] == "7" and len(top_a["confidences"]) == 5
    assert top_b["label"] and len(top_b["confidences"]) == 5
    headers, rows = table["headers"], table["data"]
    assert headers[:2] == ["depth", "A layer"] and len(rows) == 4
    # Each model got its own input: 32 channels of 28x28 in A's first block, of 32x32 in B's.
    assert rows[0][2] == 32 * 28 * 28 and rows[0][7] == 32 * 32 * 32
    assert "input 1×28×28" in note and "input 3×32×32" in note and "What to look at" in note


def test_feature_maps_pair_api_refuses_an_unknown_method_and_checkpoint(client):
    from gradio_client import handle_file

    shipped("mnist_cnn")
    image = handle_file(str(EXAMPLES / "digit_7.png"))
    # Gradio's own check of the picker's choices, which names the valid ones (the handler's
    # "Unknown saliency method" sentence is tested in-process).
    with pytest.raises(Exception, match="'lime'.* is not in the list of choices: .*'occlusion'"):
        client.predict("mnist_cnn", "mnist_cnn", image, method="lime", api_name="/feature_maps_pair")
    with pytest.raises(Exception, match="No checkpoint named 'nope'"):
        client.predict("mnist_cnn", "nope", image, api_name="/feature_maps_pair")
    # Only checkpoints this visitor may see are opened, never a path the caller names.
    with pytest.raises(Exception, match="No checkpoint named 'passwd'"):
        client.predict("/etc/passwd", "mnist_cnn", image, api_name="/feature_maps_pair")
