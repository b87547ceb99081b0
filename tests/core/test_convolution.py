"""vision_lab.convolution: the arithmetic behind one feature-map value adds up to the value the
forward pass really made (own forward hooks here), at an interior and a zero-padded edge position,
for a first and a deeper layer of both shipped CNNs; the parameter counts; bad input."""
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import shipped
from vision_lab.convolution import conv_arithmetic, parameter_counts
from vision_lab.network_view import NoSpatialFeatures, feature_maps
from vision_lab.models import create_model

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
IMAGES = {"mnist_cnn": "digit_7.png", "shapes_cnn": "shape_star.png"}


def _shipped_input(name):
    from vision_lab.checkpoints import load_checkpoint
    from vision_lab.ui.model_view import model_input

    ckpt = load_checkpoint(ROOT / "checkpoints" / f"{shipped(name)}.safetensors")
    x = ckpt.preprocessing(model_input(ckpt.metadata, str(EXAMPLES / IMAGES[name]))[None])
    return ckpt.model, x


def _recorded(model, x, names):
    """Each named module's output for x (clones: the in-place ReLU cannot touch them)."""
    out, modules = {}, dict(model.named_modules())
    handles = [modules[n].register_forward_hook(
        lambda m, i, o, n=n: out.__setitem__(n, o[0].detach().clone())) for n in names]
    model.eval()
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    return out


@pytest.mark.parametrize("name", ["mnist_cnn", "shapes_cnn"])
@pytest.mark.parametrize("conv, bn, relu", [("features.0", "features.1", "features.2"),
                                            ("features.8", "features.9", "features.10")])
def test_the_shown_arithmetic_is_the_maps_value(name, conv, bn, relu):
    model, x = _shipped_input(name)
    hooked = _recorded(model, x, [conv, bn, relu])
    (_, maps), = feature_maps(model, x, layers=[conv], max_channels=1000)
    assert torch.equal(maps, hooked[relu])  # the tab's map is the ReLU's output
    channels, height, width = maps.shape
    # Interior: the strongest response (a positive value, so the ReLU passes it on); edge: the
    # top-left corner, where a 3x3 kernel with padding 1 hangs over two sides.
    channel = int(maps.amax(dim=(1, 2)).argmax())
    inner = maps[channel, 1:-1, 1:-1]
    row, col = divmod(int(inner.argmax()), width - 2)
    for r, c, edge in ((row + 1, col + 1, False), (0, 0, True)):
        found = conv_arithmetic(model, x, conv, channel, r, c)
        assert found.padded.any() == edge
        if edge:  # the first row and column of the window lie outside: zeros there
            assert found.padded[0].all() and found.padded[:, 0].all() and found.padded.sum() == 5
            assert (found.patch[:, found.padded] == 0).all()
        assert found.total == pytest.approx(found.products.sum())
        assert found.partial_sums.sum() == pytest.approx(found.total)
        assert found.bias is None  # BatchNorm follows: the shipped convs have no bias
        assert found.conv_output == pytest.approx(float(hooked[conv][channel, r, c]), abs=1e-5)
        assert found.batch_norm.name == bn
        assert found.batch_norm.output == pytest.approx(float(hooked[bn][channel, r, c]), abs=1e-5)
        assert found.relu and found.value == max(found.batch_norm.output, 0.0)
        assert found.value == pytest.approx(float(maps[channel, r, c]), abs=1e-5)
        assert found.map_value == float(maps[channel, r, c])
    assert found.value == 0.0 or found.batch_norm.output > 0  # the edge case ran through the ReLU
    assert maps[channel, row + 1, col + 1] > 0


def test_bias_stride_dilation_groups_and_padding_are_read_from_the_layer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(4, 6, 3, stride=2, padding=2, dilation=2, groups=2), nn.ReLU())
    x = torch.randn(1, 4, 9, 9)
    with torch.no_grad():
        out = model[0](x)[0]
    assert out.shape == (6, 5, 5)
    for channel, row, col in ((4, 2, 2), (1, 0, 4), (5, 4, 0)):
        found = conv_arithmetic(model, x, "0", channel, row, col)
        assert found.input_channels == ([2, 3] if channel >= 3 else [0, 1])  # its group's inputs
        assert found.stride == (2, 2) and found.dilation == (2, 2) and found.padding == (2, 2)
        assert found.origin == (2 * row - 2, 2 * col - 2)
        assert found.bias == pytest.approx(float(model[0].bias.detach()[channel]))
        assert found.batch_norm is None and found.relu
        assert found.conv_output == pytest.approx(float(out[channel, row, col]), abs=1e-5)
        assert found.value == pytest.approx(max(float(out[channel, row, col]), 0.0), abs=1e-5)
    # row 0 of the output: the window's rows are -2, 0, 2, so only its first row is padding
    edge = conv_arithmetic(model, x, "0", 1, 0, 2)
    assert edge.padded[0].all() and not edge.padded[1:].any()


def test_lenet_has_a_bias_no_batchnorm_and_no_padding():
    torch.manual_seed(0)
    model = create_model("lenet", 10, 1, 28)
    x = torch.randn(1, 1, 28, 28)
    (_, maps), = feature_maps(model, x, layers=["features.3"], max_channels=16)
    found = conv_arithmetic(model, x, "features.3", 7, 7, 7)
    assert found.map_shape == (8, 8) and not found.padded.any() and found.batch_norm is None
    assert found.bias is not None and found.conv_output == pytest.approx(found.total + found.bias)
    assert found.value == pytest.approx(float(maps[7, 7, 7]), abs=1e-5)


def test_parameter_counts_against_the_layer():
    model, x = _shipped_input("shapes_cnn")
    first = conv_arithmetic(model, x, "features.0", 0, 3, 3)
    counts = parameter_counts(model, "features.0", first.input_shape, first.map_shape)
    layer = model.features[0]
    assert counts["conv"] == sum(p.numel() for p in layer.parameters()) == 32 * 3 * 3 * 3
    assert counts["in_features"] == 3 * 32 * 32 and counts["out_features"] == 32 * 32 * 32
    assert counts["dense"] == nn.Linear(3 * 32 * 32, 32 * 32 * 32, device="meta").weight.numel() \
        + 32 * 32 * 32
    deeper = conv_arithmetic(model, x, "features.8", 0, 3, 3)
    counts = parameter_counts(model, "features.8", deeper.input_shape, deeper.map_shape)
    assert deeper.input_shape == (64, 8, 8) and counts["conv"] == 128 * 64 * 9
    assert counts["uses"] == 64 and counts["dense"] == 4096 * 8192 + 8192


def test_bad_input_is_a_clear_sentence():
    model, x = _shipped_input("mnist_cnn")
    with pytest.raises(ValueError, match=r"Row 28, column 3 is outside this feature map: it has "
                                         r"28 rows and 28 columns"):
        conv_arithmetic(model, x, "features.0", 0, 28, 3)
    with pytest.raises(ValueError, match="Row -1, column 0 is outside"):
        conv_arithmetic(model, x, "features.0", 0, -1, 0)
    with pytest.raises(ValueError, match="Channel 32 does not exist: this layer has 32 channels"):
        conv_arithmetic(model, x, "features.0", 32, 0, 0)
    with pytest.raises(ValueError, match="no conv layer named 'features.1'; its conv layers are: "
                                         "features.0, features.4, features.8"):
        conv_arithmetic(model, x, "features.1", 0, 0, 0)
    with pytest.raises(NoSpatialFeatures):
        conv_arithmetic(create_model("mlp", 10, 1, 28), x, "0", 0, 0, 0)


def test_a_click_on_the_mosaic_finds_its_channel_row_and_column():
    from vision_lab.image_plots import feature_map_mosaic, mosaic_cell

    maps = torch.arange(10 * 7 * 5, dtype=torch.float32).reshape(10, 7, 5)
    mosaic = feature_map_mosaic(maps, ncols=4, tile=28, gap=3)  # 7×5 maps at 4× in 28-px tiles
    assert mosaic.shape == (3 * 28 + 2 * 3, 4 * 20 + 3 * 3, 3)
    assert mosaic_cell(maps.shape, 0, 0, ncols=4, tile=28, gap=3) == (0, 0, 0)
    # channel 6 is the third tile of the second row; its cell (row 5, column 2) starts at
    # x = 2 * (20 + 3) + 2 * 4, y = (28 + 3) + 5 * 4
    assert mosaic_cell(maps.shape, 54 + 3, 51 + 3, ncols=4, tile=28, gap=3) == (6, 5, 2)
    assert mosaic_cell(maps.shape, 21, 5, ncols=4, tile=28, gap=3) is None  # a gap
    assert mosaic_cell(maps.shape, 2 * 23 + 1, 2 * 31 + 1, ncols=4, tile=28, gap=3) is None  # past 10
