import threading

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.models import resnet18

from vision_lab.network_view import (
    NoSpatialFeatures,
    denormalize,
    feature_maps,
    first_layer_filters,
    grad_cam,
    hidden_activations,
    overlay_heatmap,
    predict,
)

CLASSES = [f"class {i}" for i in range(10)]


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)


def tiny_cnn():
    # The in-place ReLU after the second conv checks that stored maps are copies.
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 20, 3, padding=1), nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(20, 10),
    )


def tiny_mlp():
    return nn.Sequential(
        nn.Flatten(), nn.Linear(3 * 16 * 16, 32), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(32, 24), nn.ReLU(), nn.Linear(24, 10),
    )


def image(size=16):
    return torch.randn(1, 3, size, size)


def assert_no_hooks(model):
    assert all(not m._forward_hooks for m in model.modules())


class BrightSquareNet(nn.Module):
    """Logit 0 = how much of the image is dark, logit 1 = how much is bright.

    Conv channel 0 fires on dark 3x3 patches, channel 1 on bright ones; each
    logit is the spatial sum of its channel after ReLU.
    """

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1, bias=True)
        with torch.no_grad():
            self.conv.weight.copy_(torch.stack([-torch.ones(1, 3, 3), torch.ones(1, 3, 3)]) / 9)
            self.conv.bias.copy_(torch.tensor([0.5, -0.5]))

    def forward(self, x):
        return torch.relu(self.conv(x)).sum(dim=(2, 3))


def square_image(top_left: bool):
    x = torch.zeros(1, 1, 32, 32)
    if top_left:
        x[..., 3:11, 3:11] = 1.0
    else:
        x[..., 21:29, 21:29] = 1.0
    return x


def quadrant_share(heatmap, top_left: bool):
    quadrant = heatmap[:16, :16] if top_left else heatmap[16:, 16:]
    return float(quadrant.sum() / heatmap.sum())


# --- predict ----------------------------------------------------------------


def test_predict_returns_sorted_probabilities_that_sum_to_one():
    model = tiny_cnn()
    results = predict(model, torch.randn(4, 3, 16, 16), CLASSES, top_k=10)
    assert len(results) == 4
    for ranking in results:
        probs = [p for _, p in ranking]
        assert probs == sorted(probs, reverse=True)
        assert sum(probs) == pytest.approx(1.0, abs=1e-5)
        assert {label for label, _ in ranking} == set(CLASSES)


def test_predict_clips_top_k_and_restores_train_mode():
    model = tiny_cnn().train()
    results = predict(model, image(), CLASSES, top_k=50)
    assert len(results[0]) == len(CLASSES)
    assert model.training and all(m.training for m in model.modules())


def test_predict_rejects_wrong_number_of_class_names():
    with pytest.raises(ValueError, match="10 outputs"):
        predict(tiny_cnn(), image(), CLASSES[:3])


# --- feature maps -----------------------------------------------------------


def test_feature_maps_one_entry_per_conv_with_channel_and_spatial_size():
    model = tiny_cnn()
    maps = feature_maps(model, image(16), max_channels=16)
    assert [name for name, _ in maps] == ["0", "4"]
    assert maps[0][1].shape == (8, 16, 16)
    assert maps[1][1].shape == (16, 8, 8)  # 20 channels clipped to 16
    assert_no_hooks(model)


def test_feature_maps_are_taken_after_the_relu():
    model = tiny_cnn().eval()
    x = image(16)
    (_, first), (_, second) = feature_maps(model, x, max_channels=32)
    with torch.no_grad():
        expected_first = model[2](model[1](model[0](x)))[0]
        expected_second = torch.relu(model[4](model[3](expected_first[None])))[0]
    torch.testing.assert_close(first, expected_first)
    torch.testing.assert_close(second, expected_second)
    assert first.min() >= 0 and second.min() >= 0


def test_feature_maps_of_resnet_cover_every_conv_and_remove_hooks():
    model = resnet18(num_classes=10)
    maps = feature_maps(model, image(32))
    conv_names = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    assert [name for name, _ in maps] == conv_names
    assert dict(maps)["conv1"].shape == (16, 16, 16)
    assert dict(maps)["layer4.1.conv2"].shape == (16, 1, 1)
    assert_no_hooks(model)


def test_feature_maps_for_named_layers_only():
    model = tiny_cnn()
    maps = feature_maps(model, image(), layers=["4"], max_channels=4)
    assert [name for name, _ in maps] == ["4"]
    assert maps[0][1].shape == (4, 8, 8)
    with pytest.raises(ValueError, match="not Conv2d"):
        feature_maps(model, image(), layers=["8"])
    assert_no_hooks(model)


def test_feature_maps_of_mlp_explain_why_there_are_none():
    with pytest.raises(NoSpatialFeatures, match="fully connected network has no spatial feature maps") as info:
        feature_maps(tiny_mlp(), image())
    assert isinstance(info.value, ValueError)
    assert "each hidden unit sees every pixel" in str(info.value)


def test_first_layer_filters():
    model = tiny_cnn()
    filters = first_layer_filters(model)
    assert filters.shape == (8, 3, 3, 3) and filters.dtype == torch.float32
    filters.zero_()  # a copy: the model's weights stay intact
    assert model[0].weight.abs().sum() > 0
    with pytest.raises(NoSpatialFeatures):
        first_layer_filters(tiny_mlp())


def test_hidden_activations_of_mlp():
    model = tiny_mlp()
    activations = hidden_activations(model, image())
    assert [(name, t.shape) for name, t in activations] == [("2", (32,)), ("5", (24,))]
    assert all(t.min() >= 0 for _, t in activations)
    assert_no_hooks(model)


# --- Grad-CAM ---------------------------------------------------------------


@pytest.mark.parametrize("top_left", [True, False])
def test_grad_cam_points_at_the_bright_square(top_left):
    heatmap, used = grad_cam(BrightSquareNet(), square_image(top_left), target_class=1)
    assert used == 1
    assert quadrant_share(heatmap, top_left) > 0.9


def test_grad_cam_for_the_dark_class_points_away_from_the_square():
    heatmap, _ = grad_cam(BrightSquareNet(), square_image(top_left=True), target_class=0)
    assert quadrant_share(heatmap, top_left=True) < 0.25


def test_grad_cam_shape_range_and_predicted_class():
    model = resnet18(num_classes=10)
    x = image(64)
    heatmap, used = grad_cam(model, x)
    assert heatmap.shape == (64, 64)
    assert 0 <= heatmap.min() and heatmap.max() <= 1
    assert used == predict(model, x, list(range(10)), top_k=1)[0][0][0]
    assert_no_hooks(model)


def test_grad_cam_on_small_resnet_input_skips_the_1x1_last_conv():
    # At 32 px ResNet-18's last conv is 1x1, which would give a blank heatmap.
    heatmap, _ = grad_cam(resnet18(num_classes=10), image(32))
    assert heatmap.max() == 1.0


def test_grad_cam_on_a_named_block():
    heatmap, _ = grad_cam(resnet18(num_classes=10), image(64), layer="layer3")
    assert heatmap.shape == (64, 64) and heatmap.max() == 1.0


def test_grad_cam_keeps_train_mode_batchnorm_stats_and_frozen_params():
    model = tiny_cnn().train()
    for p in model.parameters():
        p.requires_grad_(False)
    running_mean = model[1].running_mean.clone()
    heatmap, _ = grad_cam(model, image(16), target_class=3)
    assert heatmap.shape == (16, 16) and torch.isfinite(heatmap).all()
    assert model.training and all(m.training for m in model.modules())
    assert not any(p.requires_grad for p in model.parameters())
    assert all(p.grad is None for p in model.parameters())
    torch.testing.assert_close(model[1].running_mean, running_mean)
    assert_no_hooks(model)


def test_grad_cam_does_not_touch_trainable_parameter_grads():
    model = tiny_cnn()
    grad_cam(model, image(16), layer="0")
    assert all(p.requires_grad and p.grad is None for p in model.parameters())


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_grad_cam_works_inside_no_grad_and_inference_mode(context):
    model = BrightSquareNet()
    with context():
        x = square_image(top_left=True)  # under inference_mode, an inference tensor
        heatmap, _ = grad_cam(model, x, target_class=1)
    assert quadrant_share(heatmap, top_left=True) > 0.9


class TrainedMeanwhile(BrightSquareNet):
    """Runs one training step in another thread in the middle of its first forward."""

    def __init__(self):
        super().__init__()
        self.step_done = False

    def forward(self, x):
        if not self.step_done:
            self.step_done = True
            step = threading.Thread(target=self.training_step)
            step.start()
            step.join()
        return super().forward(x)

    def training_step(self):
        with torch.enable_grad():
            super().forward(torch.rand(1, 1, 32, 32)).sum().backward()


def test_grad_cam_hooks_leave_other_threads_alone():
    model = TrainedMeanwhile()
    heatmap, _ = grad_cam(model, square_image(top_left=True), target_class=1, layer="conv")
    assert model.conv.weight.grad is not None  # the other thread's backward reached the weights
    assert quadrant_share(heatmap, top_left=True) > 0.9


def test_grad_cam_errors():
    with pytest.raises(NoSpatialFeatures):
        grad_cam(tiny_mlp(), image())
    with pytest.raises(ValueError, match="out of range"):
        grad_cam(tiny_cnn(), image(), target_class=10)
    with pytest.raises(ValueError, match="no layer named"):
        grad_cam(tiny_cnn(), image(), layer="nope")


# --- display helpers --------------------------------------------------------


def test_denormalize_round_trips_to_uint8():
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    original = torch.randint(0, 256, (3, 8, 8), dtype=torch.uint8)
    normalized = (original / 255 - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    restored = denormalize(normalized[None], mean, std)
    assert restored.dtype == torch.uint8 and restored.shape == (3, 8, 8)
    assert (restored.int() - original.int()).abs().max() <= 1


@pytest.mark.parametrize("channels", [1, 3])
def test_overlay_heatmap(channels):
    picture = torch.full((channels, 20, 20), 128, dtype=torch.uint8)
    overlay = overlay_heatmap(picture, torch.rand(10, 10), alpha=0.5)
    assert overlay.shape == (20, 20, 3) and overlay.dtype == np.uint8
    plain = overlay_heatmap(picture, torch.rand(20, 20), alpha=0.0)
    assert (plain == 128).all()
