"""The Feature maps tab's saliency picker and its two-checkpoint comparison, handlers in-process.

Checkpoints are made here (untrained, saved in a temp dir): an MLP for 28x28 grey digits and a
CNN for 32x32 colour images, so each side of a pair needs its own input."""
from pathlib import Path

import numpy as np
import pytest

from vision_lab.i18n import render, text

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
METHODS = ("grad_cam", "grad_cam_plus_plus", "occlusion", "input_gradient")


@pytest.fixture
def settings(tiny_checkpoints):
    return tiny_checkpoints


def _is_overlay(image, like):
    assert isinstance(image, np.ndarray) and image.shape == like.shape and image.dtype == np.uint8
    assert not np.array_equal(image, like)  # the heatmap's colours are on it


# ---- the saliency picker ------------------------------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
def test_every_method_draws_its_map_for_a_cnn_and_says_which(settings, method):
    from vision_lab.network_view import overlay_heatmap
    from vision_lab.saliency import saliency_map
    from vision_lab.ui.feature_maps import run_feature_maps
    from vision_lab.ui.model_view import OCCLUSION_FLOOR, load_cached, model_input, what_the_model_sees

    seen, maps, filters, cam, label, note = run_feature_maps(
        settings, "tiny_cnn", str(EXAMPLES / "shape_star.png"), method=method, cam_class="3")
    _is_overlay(cam, seen)
    assert f"{text(f'saliency.{method}.name')} explains **3**" in note
    # The overlay is the library's map for class 3.
    ckpt = load_cached(settings.checkpoint_dirs[0] + "/tiny_cnn.safetensors")
    x, shown = what_the_model_sees(ckpt, model_input(ckpt.metadata, str(EXAMPLES / "shape_star.png")))
    heat, explained = saliency_map(method, ckpt.model, x, target_class=3)
    assert explained == 3
    if method == "occlusion":  # probability drops: colours from no drop to the largest one
        heat = heat.clamp(min=0) / max(float(heat.max()), OCCLUSION_FLOOR)
    np.testing.assert_array_equal(cam, overlay_heatmap(shown.transpose(2, 0, 1), heat))


def test_an_mlp_gets_occlusion_and_the_input_gradient_and_a_sentence_for_the_cams(settings):
    from vision_lab.ui.feature_maps import run_feature_maps

    for method in ("occlusion", "input_gradient"):
        seen, maps, filters, cam, label, note = run_feature_maps(
            settings, "tiny_mlp", str(EXAMPLES / "digit_7.png"), method=method)
        _is_overlay(cam, seen)
        assert filters is None and maps.ndim == 3  # still the hidden-activation plot
    for method in ("grad_cam", "grad_cam_plus_plus"):
        seen, maps, filters, cam, label, note = run_feature_maps(
            settings, "tiny_mlp", str(EXAMPLES / "digit_7.png"), method=method)
        assert cam is None
        assert "reads a convolution's feature maps, and this network has none: pick occlusion" in note


def test_the_picker_offers_an_mlp_only_the_methods_that_work_for_it(settings):
    from vision_lab.ui.feature_maps import _controls

    layer, cam_class, method, idea, note = _controls(settings, "tiny_mlp", None, method="grad_cam")
    assert [value for _, value in method["choices"]] == ["occlusion", "input_gradient"]
    assert method["value"] == "occlusion"
    assert "Hide one patch at a time" in idea and "Grad-CAM and Grad-CAM++ are not offered" in idea
    layer, cam_class, method, idea, note = _controls(settings, "tiny_cnn", None,
                                                     method="input_gradient")
    assert [value for _, value in method["choices"]] == list(METHODS)
    assert "value" not in method  # kept as it is: a click made meanwhile is not undone
    assert idea == text("saliency.input_gradient.idea")
    assert render(idea, "zh") != idea  # said in the visitor's language


def test_an_unknown_method_is_a_plain_error(settings):
    from vision_lab.ui.feature_maps import run_feature_maps

    with pytest.raises(ValueError, match="Unknown saliency method 'lime'. Available: grad_cam"):
        run_feature_maps(settings, "tiny_cnn", str(EXAMPLES / "scene.png"), method="lime")


def test_occlusion_note_states_the_largest_probability_drop(settings):
    from vision_lab.saliency import occlusion
    from vision_lab.ui.feature_maps import run_feature_maps
    from vision_lab.ui.model_view import load_cached, model_input, what_the_model_sees

    *_, note = run_feature_maps(settings, "tiny_cnn", str(EXAMPLES / "scene.png"), method="occlusion")
    ckpt = load_cached(settings.checkpoint_dirs[0] + "/tiny_cnn.safetensors")
    x, _ = what_the_model_sees(ckpt, model_input(ckpt.metadata, str(EXAMPLES / "scene.png")))
    drop, _ = occlusion(ckpt.model, x)
    assert f"lowers its probability by {float(drop.max()):.1%}" in note


# ---- two checkpoints, one image -------------------------------------------------------------------

def test_a_pair_prepares_the_image_for_each_model_its_own_way(settings):
    from vision_lab.ui.pair import run_pair

    seen_a, saliency_a, top_a, seen_b, saliency_b, top_b, table, note = run_pair(
        settings, "tiny_mlp", "tiny_cnn", str(EXAMPLES / "shape_star.png"), method="occlusion")
    # A is a 1-channel 28 px model: a grey input, enlarged 8x; B a 3-channel 32 px one, 7x.
    assert seen_a.shape == (224, 224, 3) and seen_b.shape == (224, 224, 3)
    assert (seen_a[..., 0] == seen_a[..., 1]).all() and not (seen_b[..., 0] == seen_b[..., 1]).all()
    assert np.unique(seen_a[::8, ::8].reshape(-1, 3), axis=0).shape[0] > 1
    _is_overlay(saliency_a, seen_a)
    _is_overlay(saliency_b, seen_b)
    for top in (top_a, top_b):
        assert len(top) == 5 and 0 < sum(top.values()) <= 1 + 1e-6
    assert table["headers"][:2] == ["depth", "A layer"] and "B zeros %" in table["headers"]
    rows = table["data"]
    # The MLP's two hidden layers against the CNN's three conv blocks and its hidden layer.
    assert [row[1] for row in rows] == ["2", "5", "", ""]
    assert [row[6] for row in rows] == ["features.2", "features.6", "features.10", "classifier.2"]
    assert rows[0][7] == 32 * 32 * 32  # B's first conv saw a 32x32 input
    assert "**tiny_mlp**: mlp trained on mnist, input 1×28×28" in note
    assert "**tiny_cnn**: cnn trained on shapes, input 3×32×32" in note
    assert "What to look at" in note and "Hide one patch at a time" in note


def test_a_pair_with_grad_cam_says_why_the_mlp_has_no_map(settings):
    from vision_lab.ui.pair import run_pair

    seen_a, saliency_a, top_a, seen_b, saliency_b, top_b, table, note = run_pair(
        settings, "tiny_mlp", "tiny_cnn", str(EXAMPLES / "digit_7.png"))
    assert saliency_a is None and isinstance(saliency_b, np.ndarray)
    assert "Grad-CAM reads a convolution's feature maps, and this network has none" in note


def test_a_pair_of_a_drawing_and_an_unknown_checkpoint(settings):
    from vision_lab.ui.pair import run_pair

    sketch = np.full((400, 400, 4), 255, np.uint8)
    sketch[100:300, 190:210, :3] = 0  # a black "1" on the white page
    out = run_pair(settings, "tiny_mlp", "tiny_cnn", None, {"composite": sketch}, source="sketch",
                   method="input_gradient")
    assert out[0].shape == out[3].shape == (224, 224, 3)
    with pytest.raises(ValueError, match="No checkpoint named 'nope'"):
        run_pair(settings, "tiny_mlp", "nope", str(EXAMPLES / "digit_7.png"))
    with pytest.raises(ValueError, match="No image yet"):
        run_pair(settings, "tiny_mlp", "tiny_cnn", None)
