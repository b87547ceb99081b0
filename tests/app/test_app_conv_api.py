"""/conv_arithmetic through gradio_client: the numbers behind one feature-map value."""
from pathlib import Path

import pytest
from PIL import Image

from conftest import shipped

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_conv_arithmetic_api(client):
    from gradio_client import handle_file

    shipped("shapes_cnn")
    marked, table, note, numbers = client.predict(
        "shapes_cnn", handle_file(str(EXAMPLES / "shape_star.png")), layer="features.4",
        channel=3, row=0, col=5, api_name="/conv_arithmetic")
    with Image.open(marked) as im:
        assert im.size[0] >= 256  # the enlarged map of channel 3
    assert numbers["layer"] == "features.4" and (numbers["channel"], numbers["row"],
                                                 numbers["col"]) == (3, 0, 5)
    assert len(numbers["input_channels"]) == 32 and len(numbers["partial_sums"]) == 32
    assert numbers["value"] == pytest.approx(numbers["map_value"], abs=1e-5)
    assert numbers["batch_norm"]["name"] == "features.5" and numbers["relu"]
    assert numbers["padded"][0] == [True, True, True]  # row 0: the kernel's top row hangs over
    assert numbers["parameters"]["conv"] == 64 * 32 * 9
    assert numbers["parameters"]["dense"] == 8192 * 16384 + 16384
    assert f"{numbers['map_value']:.4f}" in note and "**features.4**" in note
    for words in ("Products", "Grey cells", "BatchNorm features.5", "parameter sharing",
                  "18,432"):
        assert words in table


def test_conv_arithmetic_api_says_what_is_wrong(client):
    from gradio_client import handle_file

    shipped("mnist_cnn")
    with pytest.raises(Exception, match="Row 30, column 0 is outside this feature map"):
        client.predict("mnist_cnn", handle_file(str(EXAMPLES / "digit_7.png")),
                       layer="features.0", channel=0, row=30, col=0, api_name="/conv_arithmetic")
    with pytest.raises(Exception, match="no conv layer named 'conv9'"):
        client.predict("mnist_cnn", handle_file(str(EXAMPLES / "digit_7.png")), layer="conv9",
                       api_name="/conv_arithmetic")


# ---- the click handlers in-process, with checkpoints made here ----------------------------------

def test_a_click_picks_the_position_and_an_mlp_plot_is_not_explained(tiny_checkpoints):
    from vision_lab.ui.conv_view import MAP_TILE, _clicked

    image = str(EXAMPLES / "scene.png")
    form = dict(checkpoint="tiny_cnn", image=image, sketch=None, layer="features.4")
    # features.4 of a 32-px cnn: 16×16 maps in 96-px tiles (scale 6, gap 6); the second tile's
    # pixel (10, 40) is channel 1, row 6, column 1.
    channel, row, col, marked, table, note, numbers = _clicked(
        tiny_checkpoints, None, (102 + 10, 40), channels=16, **form)
    assert (channel, row, col) == (1, 6, 1) == (numbers["channel"], numbers["row"], numbers["col"])
    assert marked.shape[:2] == (16 * round(MAP_TILE / 16),) * 2
    assert numbers["value"] == pytest.approx(numbers["map_value"], abs=1e-5)
    # The enlarged map: its cell under (x, y) = (15 * 20 + 3, 2), in the channel already chosen.
    channel, row, col, *_ = _clicked(tiny_checkpoints, None, (15 * 20 + 3, 2), channel=5, **form)
    assert (channel, row, col) == (5, 0, 15)
    skipped = _clicked(tiny_checkpoints, None, (97, 5), channels=16, **form)  # between two tiles
    mlp = _clicked(tiny_checkpoints, None, (10, 10), channels=16,
                   **{**form, "checkpoint": "tiny_mlp", "layer": None})
    for nothing in (skipped, mlp):  # gr.skip() everywhere: the panel keeps what it shows
        assert nothing == ({"__type__": "update"},) * 7
