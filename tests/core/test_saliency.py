import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.models import resnet18

from vision_lab.checkpoints import load_checkpoint
from vision_lab.network_view import NoSpatialFeatures, grad_cam
from vision_lab.saliency import (
    METHODS,
    grad_cam_plus_plus,
    input_gradient,
    occlusion,
    occlusion_patch,
    saliency_map,
)

SHAPES_CNN = Path(__file__).resolve().parents[2] / "checkpoints" / "shapes_cnn.safetensors"


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def shapes_cnn():
    return load_checkpoint(SHAPES_CNN)


def tiny_cnn():
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    )


def tiny_mlp(size=16):
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * size * size, 32), nn.ReLU(), nn.Linear(32, 10))


def assert_left_alone(model, was_training):
    assert all(not m._forward_hooks for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    assert all(m.training == was_training for m in model.modules())


# --- occlusion --------------------------------------------------------------

# Inside tests of three shapes classes, in shape-local coordinates (radius 1), as the dataset draws them.
FILLED_SHAPES = {
    "circle": lambda u, v: u * u + v * v <= 1,
    "square": lambda u, v: torch.maximum(u.abs(), v.abs()) <= 0.78,
    "diamond": lambda u, v: u.abs() / 0.62 + v.abs() / 1.05 <= 1,
}


def plain_shape(kind, centre_x, centre_y, radius):
    """A yellow shape on a plain blue 32 px background: uint8 (3, 32, 32) and its (32, 32) mask."""
    centres = torch.arange(32) + 0.5
    inside = FILLED_SHAPES[kind]((centres.view(1, 32) - centre_x) / radius,
                                 (centres.view(32, 1) - centre_y) / radius)
    background = torch.tensor([40, 90, 150], dtype=torch.uint8).view(3, 1, 1)
    colour = torch.tensor([240, 220, 80], dtype=torch.uint8).view(3, 1, 1)
    return torch.where(inside, colour, background), inside


@pytest.mark.parametrize("kind", list(FILLED_SHAPES))
@pytest.mark.parametrize("centre", [(9, 22), (23, 10)])
def test_occlusion_peaks_on_the_shape_not_the_background(shapes_cnn, kind, centre):
    image, inside = plain_shape(kind, *centre, radius=7)
    drop, explained = occlusion(shapes_cnn.model, shapes_cnn.preprocessing(image[None]))
    assert shapes_cnn.classes[explained] == kind
    assert drop.shape == (32, 32)
    row, column = divmod(int(drop.argmax()), 32)
    assert inside[row, column], f"peak at {(row, column)} is on the background"
    assert drop.max() > 0.2  # hiding part of the shape costs the class real probability


def linear_model(weights: torch.Tensor) -> nn.Module:
    """Class 1's logit is sum(weights * x); class 0's is 0."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(weights.numel(), 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.stack([torch.zeros(weights.numel()), weights.flatten()]))
        model[1].bias.zero_()
    return model


def test_occlusion_is_the_probability_drop_averaged_over_covering_patches():
    # Only the top-left 4x4 pixels count; x is 1 there.
    weights = torch.zeros(1, 8, 8)
    weights[:, :4, :4] = 0.25
    x = torch.ones(1, 1, 8, 8)
    drop, explained = occlusion(linear_model(weights), x, patch=4, stride=2)
    assert explained == 1
    full = torch.sigmoid(torch.tensor(4.0))  # logit 16 * 0.25
    # Hiding a 4x4 patch that overlaps the counted block in k pixels leaves logit (16 - k) / 4.
    def patch_drop(top, left):
        overlap = max(0, 4 - top) * max(0, 4 - left)
        return full - torch.sigmoid(torch.tensor((16 - overlap) / 4))

    starts = [0, 2, 4]
    expected = torch.zeros(8, 8)
    for row in range(8):
        for col in range(8):
            covering = [patch_drop(t, l) for t in starts for l in starts
                        if t <= row < t + 4 and l <= col < l + 4]
            expected[row, col] = sum(covering) / len(covering)
    torch.testing.assert_close(drop, expected)


def test_occlusion_covers_every_pixel_of_an_oblong_image_in_any_batch_size():
    model, x = tiny_cnn(), torch.randn(1, 3, 20, 30)
    one_at_a_time, explained = occlusion(model, x, batch_size=1)
    together, _ = occlusion(model, x, batch_size=500)
    assert one_at_a_time.shape == (20, 30) and torch.isfinite(one_at_a_time).all()
    torch.testing.assert_close(one_at_a_time, together)
    assert explained == int(model.eval()(x).argmax())


def test_occlusion_patch_suits_the_image_size():
    assert occlusion_patch(32) == (6, 3)
    assert occlusion_patch(28) == (5, 2)
    assert occlusion_patch(224) == (44, 22)
    assert occlusion_patch(4) == (2, 1)


def test_occlusion_and_input_gradient_leave_the_model_as_it_was():
    model = tiny_cnn().train()
    running_mean = model[1].running_mean.clone()
    with torch.inference_mode():
        x = torch.randn(1, 3, 16, 16)
        occlusion(model, x, target_class=2)
        input_gradient(model, x, target_class=2)
    assert_left_alone(model, was_training=True)
    torch.testing.assert_close(model[1].running_mean, running_mean)


# --- input gradient ---------------------------------------------------------

def test_input_gradient_of_a_linear_model_is_its_weights():
    weights = torch.randn(3, 4, 5)
    saliency, explained = input_gradient(linear_model(weights), torch.ones(1, 3, 4, 5), target_class=1)
    assert explained == 1
    expected = weights.abs().amax(dim=0)
    torch.testing.assert_close(saliency, (expected - expected.min()) / (expected.max() - expected.min()))


def test_input_gradient_explains_the_predicted_class_by_default():
    model, x = tiny_mlp(), torch.randn(1, 3, 16, 16)
    saliency, explained = input_gradient(model, x)
    assert explained == int(model(x).argmax())
    assert saliency.shape == (16, 16) and saliency.min() == 0 and saliency.max() == 1


# --- Grad-CAM++ -------------------------------------------------------------

class TwoMapNet(nn.Module):
    """An identity 1x1 conv, a ReLU, global average pooling and a Linear with chosen weights."""

    def __init__(self, class_weights):
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 1, bias=False)
        self.relu = nn.ReLU()
        self.head = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(2).view(2, 2, 1, 1))
            self.head.weight.copy_(torch.tensor([[0.0, 0.0], class_weights]))

    def forward(self, x):
        return self.head(self.relu(self.conv(x)).mean(dim=(2, 3)))


def test_grad_cam_plus_plus_matches_the_formula_worked_by_hand():
    model = TwoMapNet([1.0, 3.0])
    x = torch.tensor([[[1.0, 2.0], [0.0, 3.0]],
                      [[2.0, -1.0], [1.0, 1.0]]])[None]  # the -1 is cut by the ReLU
    # After the ReLU the maps sum to S = 6 and 4; the gradient of logit 1 is g = 1/4 and 3/4 on
    # every pixel, so alpha = g^2 / (2 g^2 + S g^3) = 1 / (2 + S g) = 1/3.5 and 1/5, and the
    # weights sum_ij alpha * g = 4/3.5 * 1/4 = 2/7 and 4/5 * 3/4 = 3/5.
    cam = 2 / 7 * torch.tensor([[1.0, 2.0], [0.0, 3.0]]) + 3 / 5 * torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    expected = (cam - cam.min()) / (cam.max() - cam.min())
    heatmap, explained = grad_cam_plus_plus(model, x)
    assert explained == 1
    torch.testing.assert_close(heatmap, expected)
    torch.testing.assert_close(expected, torch.tensor([[1.0, 0.0], [1 / 32, 31 / 32]]))
    # Grad-CAM's weights are the mean gradients 1/4 and 3/4: a different map.
    assert not torch.allclose(grad_cam(model, x)[0], heatmap, atol=0.05)


class BrightSquareNet(nn.Module):
    """Logit 1 is the summed response of a bright-patch detector; logit 0 that of a dark one."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.relu = nn.ReLU()
        with torch.no_grad():
            self.conv.weight.copy_(torch.stack([-torch.ones(1, 3, 3), torch.ones(1, 3, 3)]) / 9)
            self.conv.bias.copy_(torch.tensor([0.5, -0.5]))

    def forward(self, x):
        return self.relu(self.conv(x)).sum(dim=(2, 3))


@pytest.mark.parametrize("top_left", [True, False])
def test_grad_cam_plus_plus_points_at_the_bright_square(top_left):
    x = torch.zeros(1, 1, 32, 32)
    square = (slice(3, 11), slice(3, 11)) if top_left else (slice(21, 29), slice(21, 29))
    x[(0, 0) + square] = 1.0
    heatmap, _ = grad_cam_plus_plus(BrightSquareNet(), x, target_class=1)
    quadrant = heatmap[:16, :16] if top_left else heatmap[16:, 16:]
    assert quadrant.sum() / heatmap.sum() > 0.9


def test_grad_cam_plus_plus_on_resnet_default_and_named_layer():
    model = resnet18(num_classes=10).eval()
    x = torch.randn(1, 3, 32, 32)
    for layer in (None, "layer3"):
        heatmap, explained = grad_cam_plus_plus(model, x, layer=layer)
        assert heatmap.shape == (32, 32) and heatmap.min() == 0 and heatmap.max() == 1
        assert explained == int(model(x).argmax())
    assert_left_alone(model, was_training=False)


def test_grad_cam_plus_plus_needs_convolutions_and_a_valid_class():
    with pytest.raises(NoSpatialFeatures):
        grad_cam_plus_plus(tiny_mlp(), torch.randn(1, 3, 16, 16))
    with pytest.raises(ValueError, match="out of range"):
        grad_cam_plus_plus(tiny_cnn(), torch.randn(1, 3, 16, 16), target_class=10)


# --- every method by name ----------------------------------------------------

def test_each_method_has_a_one_line_idea_and_runs_by_name():
    assert set(METHODS) == {"grad_cam", "grad_cam_plus_plus", "occlusion", "input_gradient"}
    model, x = tiny_cnn(), torch.randn(3, 16, 16)
    for method, idea in METHODS.items():
        assert idea and "\n" not in idea
        heatmap, explained = saliency_map(method, model, x, target_class=4)
        assert heatmap.shape == (16, 16) and explained == 4 and torch.isfinite(heatmap).all()
    with pytest.raises(ValueError, match="Unknown saliency method"):
        saliency_map("lime", model, x)


def test_mlp_gets_occlusion_and_input_gradient_but_no_cams():
    model, x = tiny_mlp(), torch.randn(1, 3, 16, 16)
    for method in ("occlusion", "input_gradient"):
        heatmap, _ = saliency_map(method, model, x)
        assert heatmap.shape == (16, 16) and not math.isnan(float(heatmap.sum()))
    for method in ("grad_cam", "grad_cam_plus_plus"):
        with pytest.raises(NoSpatialFeatures):
            saliency_map(method, model, x)
