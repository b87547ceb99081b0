"""/feature_maps and /classify through gradio_client, plus their handlers in-process."""
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vision_lab.checkpoints import save_checkpoint
from vision_lab.network_view import NO_SPATIAL_MESSAGE
from vision_lab.models import create_model
from conftest import api_client, checkpoint_meta, shipped

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "checkpoints"
EXAMPLES = ROOT / "examples"


def _is_image(path):
    assert path and Path(path).is_file(), path
    with Image.open(path) as im:
        assert min(im.size) >= 64
        return np.asarray(im.convert("RGB"))


# ---- through the running app -------------------------------------------------------------------

@pytest.mark.parametrize("name, example", [("shapes_cnn", "shape_star.png"), ("mnist_cnn", "digit_7.png")])
def test_feature_maps_api(client, name, example):
    from gradio_client import handle_file

    shipped(name)
    start = time.perf_counter()
    seen, maps, filters, cam, label, note = client.predict(
        name, handle_file(str(EXAMPLES / example)), api_name="/feature_maps")
    print(f"/feature_maps {name}: {time.perf_counter() - start:.2f} s")
    for path in (seen, maps, filters, cam):
        _is_image(path)
    assert _is_image(maps).std() > 5  # a real plot, not a blank image
    assert label["label"] and len(label["confidences"]) == 5
    assert "Grad-CAM" in note
    if name == "mnist_cnn":
        assert label["label"].split()[0] == "7"  # torchvision names MNIST classes "7 - seven"


def test_feature_maps_api_with_a_chosen_layer_and_class(client):
    from gradio_client import handle_file

    shipped("shapes_cnn")
    seen, maps, filters, cam, label, note = client.predict(
        "shapes_cnn", handle_file(str(EXAMPLES / "shape_ring.png")), layer="features.4", channels=8,
        cam_class="circle", api_name="/feature_maps")
    _is_image(maps)
    assert "**circle**" in note


def test_classify_api_returns_all_probabilities(client):
    from gradio_client import handle_file

    names = [shipped("mnist_cnn"), shipped("shapes_cnn")]
    start = time.perf_counter()
    results, *outputs = client.predict(handle_file(str(EXAMPLES / "digit_3.png")), names,
                                       api_name="/classify")
    print(f"/classify two models: {time.perf_counter() - start:.2f} s")
    assert [r["checkpoint"] for r in results] == names
    for r in results:
        probs = [t["prob"] for t in r["top"]]
        assert len(probs) == 10 and abs(sum(probs) - 1) < 1e-3
        assert probs == sorted(probs, reverse=True)
    assert results[0]["top"][0]["label"].split()[0] == "3"
    # The other outputs are the page's panels: values only (their titles follow the picker).
    labels, seen = outputs[:3], outputs[3:]
    top5 = labels[0]
    assert top5["label"].split()[0] == "3" and len(top5["confidences"]) == 5
    assert labels[1]["confidences"] and not labels[2]
    _is_image(seen[0])
    _is_image(seen[1])
    assert not seen[2]


def test_classify_api_explains_a_broken_image(client, tmp_path):
    from gradio_client import handle_file

    name = shipped("mnist_cnn")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    with pytest.raises(Exception, match="is not an image file PIL can read|damaged or truncated"):
        client.predict(handle_file(str(broken)), [name], api_name="/classify")
    text = tmp_path / "notes.png"
    text.write_text("hello")
    with pytest.raises(Exception, match="notes.png is not an image file PIL can read"):
        client.predict(handle_file(str(text)), [name], api_name="/classify")


def test_many_visitors_sending_the_same_image_at_once_all_get_answers(app_url):
    """gr.Image rewrote each upload in place under a name from its content, so one of several
    visitors sending the same picture could read it half-written (0 bytes). The app's image
    input now hands the uploaded file itself to the handler; 4 clients x 8 calls all succeed."""
    import threading

    from gradio_client import handle_file

    name = shipped("mnist_cnn")
    answers, errors = [], []

    def visitor():
        client = api_client(app_url)
        for _ in range(8):
            try:
                results, *_ = client.predict(handle_file(str(EXAMPLES / "digit_7.png")), [name],
                                             api_name="/classify")
                answers.append(results[0]["top"][0]["label"].split()[0])
            except Exception as e:  # noqa: BLE001 - collected and shown below
                errors.append(str(e))

    threads = [threading.Thread(target=visitor) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert answers == ["7"] * 32


def test_classify_api_unknown_checkpoint(client):
    from gradio_client import handle_file

    with pytest.raises(Exception, match="No checkpoint named 'nope'"):
        client.predict(handle_file(str(EXAMPLES / "digit_7.png")), ["nope"], api_name="/classify")


# ---- the handlers in-process, with checkpoints made here -------------------------------------------

@pytest.fixture
def settings(tiny_checkpoints):
    return tiny_checkpoints


def test_mlp_says_it_has_no_feature_maps_and_shows_hidden_activations(settings):
    from vision_lab.ui.feature_maps import run_feature_maps

    seen, maps, filters, cam, label, note = run_feature_maps(
        settings, "tiny_mlp", str(EXAMPLES / "digit_7.png"))
    assert NO_SPATIAL_MESSAGE in note
    assert filters is None and cam is None
    assert maps.ndim == 3 and maps.shape[2] == 3  # the hidden-activation plot
    assert len(label) == 5 and 0 < sum(label.values()) <= 1 + 1e-6  # top 5 of 10 classes


def test_cnn_handler_outputs_and_latency(settings):
    from vision_lab.ui.feature_maps import checkpoint_controls, run_feature_maps

    layers, classes, _ = checkpoint_controls(settings, "tiny_cnn")
    assert layers == ["features.0", "features.4", "features.8"] and classes[1:] == [str(i) for i in range(10)]
    run_feature_maps(settings, "tiny_cnn", str(EXAMPLES / "scene.png"))  # warm up: load, first plots
    start = time.perf_counter()
    seen, maps, filters, cam, label, note = run_feature_maps(
        settings, "tiny_cnn", str(EXAMPLES / "scene.png"), layer="features.8", channels=4, cam_class="3")
    print(f"run_feature_maps (warm, with plots): {time.perf_counter() - start:.3f} s")
    assert seen.shape[:2] == cam.shape[:2] and seen.shape[0] >= 200
    assert "**3**" in note


def test_the_model_sees_permuted_pixels(settings):
    from vision_lab.ui.model_view import load_cached, model_input, what_the_model_sees

    ckpt = load_cached(settings.checkpoint_dirs[0] + "/perm_cnn.safetensors")
    x, shown = what_the_model_sees(ckpt, model_input(ckpt.metadata, str(EXAMPLES / "digit_7.png")))
    assert x.shape == (1, 1, 28, 28)
    plain = ckpt.preprocessing.__class__(1, 28, (0.5,), (0.25,))
    assert not torch.equal(x, plain(model_input(ckpt.metadata, str(EXAMPLES / "digit_7.png"))[None]))


def test_sketches_go_to_digit_models_mnist_style(settings):
    from vision_lab.ui.classify import classify

    sketch = np.zeros((400, 400, 4), np.uint8)
    sketch[100:300, 190:210, 3] = 255  # a black "1" on a transparent canvas
    results, seen = classify(settings, None, {"composite": sketch}, ["tiny_cnn", "perm_cnn"],
                             source="sketch")
    assert [r["checkpoint"] for r in results] == ["tiny_cnn", "perm_cnn"]
    for r in results:
        assert abs(sum(t["prob"] for t in r["top"]) - 1) < 1e-3
    # perm_cnn is a 1-channel 28 px digit model: it gets MNIST's conversion (white on black).
    assert seen[1].shape[2] == 3


def test_empty_sketch_and_missing_image_are_plain_errors(settings):
    import gradio as gr

    from vision_lab.ui.classify import classify

    blank = {"composite": np.zeros((400, 400, 4), np.uint8)}
    with pytest.raises(ValueError, match="The sketch is empty: draw a digit first."):
        classify(settings, None, blank, ["tiny_cnn"], source="sketch")
    with pytest.raises(ValueError, match="No image yet"):
        classify(settings, None, None, ["tiny_cnn"])
    with pytest.raises(gr.Error):
        classify(settings, str(EXAMPLES / "digit_7.png"), None, [])


# ---- the Draw tab's first touch: a white page and a digit model -----------------------------------

def test_a_blank_page_is_an_empty_sketch_and_a_stroke_is_not():
    from vision_lab.ui.model_view import sketch_image

    page = np.full((400, 400, 4), 255, np.uint8)
    assert sketch_image({"composite": page}) is None
    page[100:300, 190:210, :3] = 0
    assert sketch_image({"composite": page}) is page


def test_a_drawing_switches_to_a_digit_model_when_none_is_picked(settings):
    from vision_lab.ui.model_view import digit_model_instead

    folder = Path(settings.checkpoint_dirs[0])
    digit = digit_model_instead(settings, str(folder / "tiny_cnn.safetensors"))
    assert Path(digit).stem in ("tiny_mlp", "perm_cnn")  # 1 channel, 28 px, trained on mnist
    assert digit_model_instead(settings, ["tiny_cnn", "nope"]) == [digit]
    assert digit_model_instead(settings, ["tiny_cnn", "perm_cnn"]) is None  # one is a digit model
    assert digit_model_instead(settings, None) == digit

    # The shipped mnist_cnn comes first, whatever the order of the folder.
    torch.manual_seed(0)
    save_checkpoint(folder / "mnist_cnn.safetensors", create_model("cnn", 10, 1, 28), checkpoint_meta("cnn", 1, 28))
    assert Path(digit_model_instead(settings, "tiny_cnn")).stem == "mnist_cnn"


def test_no_digit_model_leaves_the_pick_alone(settings):
    from vision_lab.ui.model_view import digit_model_instead, pick_digit_model

    folder = Path(settings.checkpoint_dirs[0])
    for name in ("tiny_mlp", "perm_cnn"):
        (folder / f"{name}.safetensors").unlink()
    assert digit_model_instead(settings, "tiny_cnn") is None
    picked, note = pick_digit_model(settings, ["tiny_cnn"])
    assert picked == note == {"__type__": "update"}  # gr.skip(): nothing changes


def test_opening_draw_says_which_model_it_picked(settings):
    from vision_lab.ui.model_view import pick_digit_model

    picked, note = pick_digit_model(settings, ["tiny_cnn"])
    assert len(picked) == 1 and f"**{Path(picked[0]).stem}**" in note


def test_grad_cam_for_a_class_the_model_does_not_have_says_so(settings):
    from vision_lab.ui.feature_maps import run_feature_maps

    with pytest.raises(ValueError, match="tiny_cnn has no such class; its classes are 0, 1, 2"):
        run_feature_maps(settings, "tiny_cnn", str(EXAMPLES / "scene.png"), cam_class="circle")


def test_classify_panels_follow_the_picker_and_forget_other_models_answers():
    from vision_lab.ui.classify import new_panels, panel_titles

    labels_and_seens = new_panels([str(ROOT / "checkpoints" / "mnist_cnn.safetensors"), "shapes_cnn"])
    labels, seens = labels_and_seens[:3], labels_and_seens[3:]
    assert [u["visible"] for u in labels] == [True, True, False]
    assert [u["label"] for u in labels[:2]] == ["mnist_cnn", "shapes_cnn"]
    assert seens[1]["label"] == "What shapes_cnn sees"
    assert all(u["value"] is None for u in labels_and_seens)
    # Opening the tab again titles the panels without clearing what they show.
    assert all("value" not in u for u in panel_titles(["mnist_cnn"]))
    assert [u["visible"] for u in panel_titles([])[:3]] == [True, False, False]
