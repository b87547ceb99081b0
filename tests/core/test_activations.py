"""vision_lab.activations: each layer's activity for one image, and two models side by side."""
import pytest
import torch
from torch import nn

from vision_lab.activations import LayerActivity, layer_activity, side_by_side
from vision_lab.datasets import load_dataset
from vision_lab.models import create_model


def test_statistics_are_those_of_the_relu_outputs_worked_by_hand():
    # Hidden unit i of the first layer computes x_i - 1: the inputs 0, 1, 3, 5 give 0, 0, 2, 4
    # after the ReLU (mean 1.5, std sqrt(2.75), half of them zero).
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2), nn.ReLU())
    with torch.no_grad():
        model[1].weight.copy_(torch.eye(4))
        model[1].bias.fill_(-1)
        model[3].weight.copy_(torch.tensor([[1.0, 1, 1, 1], [-1, -1, -1, -1]]))
        model[3].bias.zero_()
    first, second = layer_activity(model, torch.tensor([[0.0, 1.0], [3.0, 5.0]])[None])
    assert first == LayerActivity("2", 4, 1.5, pytest.approx(2.75 ** 0.5), 0.5)
    assert (second.layer, second.units, second.mean, second.zeros) == ("4", 2, 3.0, 0.5)


def test_a_network_without_relus_is_summed_up_at_its_linear_layers():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.Tanh(), nn.Linear(5, 3))
    records = layer_activity(model, torch.randn(3, 2, 2))
    assert [(r.layer, r.units) for r in records] == [("1", 5), ("3", 3)]


def test_mlp_and_cnn_layers_in_forward_order_and_the_model_left_as_it_was():
    torch.manual_seed(0)
    cnn = create_model("cnn", 10, 3, 32, batch_norm=True).train()
    running_mean = cnn.features[1].running_mean.clone()
    cnn_records = layer_activity(cnn, torch.randn(1, 3, 32, 32))
    # After each conv block's ReLU: 32x32x32, 64x16x16, 128x8x8, then the 512 hidden units.
    assert [(r.layer, r.units) for r in cnn_records] == [
        ("features.2", 32 * 32 * 32), ("features.6", 64 * 16 * 16), ("features.10", 128 * 8 * 8),
        ("classifier.2", 512)]
    assert all(m.training for m in cnn.modules()) and all(not m._forward_hooks for m in cnn.modules())
    torch.testing.assert_close(cnn.features[1].running_mean, running_mean)
    mlp = create_model("mlp", 10, 1, 28, hidden_sizes=[64, 32])
    mlp_records = layer_activity(mlp, torch.randn(1, 28, 28))
    assert [(r.layer, r.units) for r in mlp_records] == [("2", 64), ("5", 32)]  # 3: Dropout
    for r in cnn_records + mlp_records:
        assert 0 <= r.zeros <= 1 and r.std >= 0 and r.mean >= 0  # after a ReLU: never negative


def test_batchnorm_keeps_every_layers_spread_where_without_it_the_spread_drifts():
    """The sentence the app shows ("with BatchNorm every layer's activations keep a similar
    spread, without it the spread drifts"), checked on the course's CNN: the same initial
    weights, with BatchNorm calibrated on 256 shapes images as training would, or without it."""
    data = load_dataset("shapes", n_train=256, n_test=10)
    mean, std = (torch.tensor(s).view(1, 3, 1, 1) for s in (data.mean, data.std))
    images = (data.train_images.float() / 255 - mean) / std
    spreads = {}
    for batch_norm in (True, False):
        torch.manual_seed(0)
        model = create_model("cnn", len(data.classes), 3, 32, batch_norm=batch_norm)
        if batch_norm:
            for module in model.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.momentum = None  # the plain mean over the calibration batch
            with torch.no_grad():
                model.train()(images)
        convs = layer_activity(model, images[:1])[:3]  # the three conv blocks
        spreads[batch_norm] = [r.std for r in convs]
    with_bn, without = spreads[True], spreads[False]
    assert max(with_bn) / min(with_bn) < 1.3, with_bn
    assert max(without) / min(without) > 3, without
    assert without == sorted(without, reverse=True)  # it shrinks from layer to layer


def test_side_by_side_lines_layers_up_by_depth_and_leaves_the_shallower_model_blank():
    a = [LayerActivity("features.2", 100, 0.12345, 0.5, 0.25), LayerActivity("classifier.2", 8, 1, 2, 0.5)]
    b = [LayerActivity("2", 64, 0.3, 0.4, 0.123)]
    rows = side_by_side(a, b)
    assert rows == [[1, "features.2", 100, 0.123, 0.5, 25.0, "2", 64, 0.3, 0.4, 12.3],
                    [2, "classifier.2", 8, 1, 2, 50.0, "", "", "", "", ""]]
