from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from vision_lab.checkpoints import load_checkpoint
from vision_lab.confusion import cell_indices, confusion_cell, confusion_matrix, predict_probabilities
from vision_lab.datasets import load_dataset
from vision_lab.preprocessing import Preprocessing

SHAPES_CNN = Path(__file__).resolve().parents[2] / "checkpoints" / "shapes_cnn.safetensors"

# Pixel values scaled to [0, 1]: mean 0, std 1.
PLAIN = Preprocessing(channels=1, image_size=4, mean=(0.0,), std=(1.0,))


class BrightnessNet(nn.Module):
    """Two classes, dark (0) and bright (1): logit 1 is 10 * (mean brightness - 0.5), through a conv."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(1, 2)
        with torch.no_grad():
            self.conv.weight.fill_(10.0)
            self.conv.bias.fill_(-5.0)
            self.head.weight.copy_(torch.tensor([[0.0], [1.0]]))
            self.head.bias.zero_()

    def forward(self, x):
        return self.head(self.pool(self.conv(x)).flatten(1))


def brightness_mlp():
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.stack([torch.zeros(16), torch.full((16,), 10 / 16)]))
        model[1].bias.copy_(torch.tensor([0.0, -5.0]))
    return model


# Flat grey images: values above 127.5 are called bright (class 1).
VALUES = [200, 30, 250, 140, 100, 180, 60, 230, 120, 160]
LABELS = torch.tensor([0, 0, 0, 1, 1, 1, 1, 1, 0, 0])


def flat_images():
    return torch.tensor(VALUES, dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, 1, 4, 4).contiguous()


def p_bright(value):
    return float(torch.sigmoid(torch.tensor(10 * value / 255 - 5)))


def test_off_diagonal_cell_lists_the_most_confidently_wrong_first():
    cell = confusion_cell(BrightnessNet(), PLAIN, flat_images(), LABELS, true_class=0, predicted_class=1)
    # Dark images called bright: values 200, 250, 160 -> brightest (most confident) first.
    assert (cell.true_class, cell.predicted_class, cell.total) == (0, 1, 3)
    assert [c.index for c in cell.images] == [2, 0, 9]
    for c in cell.images:
        assert c.confidence == pytest.approx(p_bright(VALUES[c.index]), abs=1e-6)
        assert c.probs == pytest.approx([1 - c.confidence, c.confidence], abs=1e-6)
        assert torch.equal(c.image, flat_images()[c.index])


def test_diagonal_cell_lists_the_least_confident_correct_first():
    cell = confusion_cell(BrightnessNet(), PLAIN, flat_images(), LABELS, true_class=1, predicted_class=1)
    # Bright images called bright: 140, 180, 230 -> the hesitant 140 first.
    assert [c.index for c in cell.images] == [3, 5, 7]
    confidences = [c.confidence for c in cell.images]
    assert confidences == sorted(confidences) and confidences[0] < 0.75


def test_limit_caps_the_images_but_total_counts_the_cell():
    cell = confusion_cell(BrightnessNet(), PLAIN, flat_images(), LABELS, 0, 1, limit=1)
    assert cell.total == 3 and [c.index for c in cell.images] == [2]
    empty = confusion_cell(BrightnessNet(), PLAIN, flat_images(), LABELS, 1, 0, limit=0)
    assert empty.total == 2 and empty.images == []  # 100 and 60: bright labels, dark pixels


def test_probabilities_are_batched_and_the_matrix_matches_the_cells():
    model = BrightnessNet()
    probs = predict_probabilities(model, PLAIN, flat_images(), batch_size=3)
    torch.testing.assert_close(probs, predict_probabilities(model, PLAIN, flat_images(), batch_size=100))
    expected_bright = torch.tensor([p_bright(v) for v in VALUES])
    torch.testing.assert_close(probs[:, 1], expected_bright)
    matrix = confusion_matrix(probs, LABELS)
    assert matrix.tolist() == [[2, 3], [2, 3]]
    for true in range(2):
        for predicted in range(2):
            assert len(cell_indices(probs, LABELS, true, predicted)) == matrix[true, predicted]


def test_precomputed_probabilities_skip_the_forward_pass():
    probs = predict_probabilities(brightness_mlp(), PLAIN, flat_images())

    class Refuses(nn.Sequential):
        def forward(self, x):
            raise AssertionError("the model ran")

    # An MLP gets no Grad-CAM, so with probabilities given nothing needs the model.
    cell = confusion_cell(Refuses(*brightness_mlp()), PLAIN, flat_images(), LABELS, 0, 1, probs=probs)
    assert [c.index for c in cell.images] == [2, 0, 9]


def test_overlays_for_conv_models_and_none_for_an_mlp():
    with_convs = confusion_cell(BrightnessNet(), PLAIN, flat_images(), LABELS, 0, 1)
    for c in with_convs.images:
        assert c.overlay.shape == (4, 4, 3) and c.overlay.dtype == np.uint8
    mlp = confusion_cell(brightness_mlp(), PLAIN, flat_images(), LABELS, 0, 1)
    assert [c.index for c in mlp.images] == [2, 0, 9]
    assert all(c.overlay is None for c in mlp.images)


def test_model_mode_is_restored():
    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(2, 2)).train()
    confusion_cell(model, PLAIN, flat_images(), LABELS, 0, 0)
    assert all(m.training for m in model.modules())


def test_bad_cells_and_limits_are_refused():
    model = BrightnessNet()
    with pytest.raises(ValueError, match="predicted_class 2 out of range for 2 classes"):
        confusion_cell(model, PLAIN, flat_images(), LABELS, 0, 2)
    with pytest.raises(ValueError, match="true_class -1"):
        confusion_cell(model, PLAIN, flat_images(), LABELS, -1, 0)
    with pytest.raises(ValueError, match="limit"):
        confusion_cell(model, PLAIN, flat_images(), LABELS, 0, 0, limit=-1)


def test_unpermute_puts_each_value_back_on_its_pixel():
    prep = Preprocessing(channels=1, image_size=4, mean=(0.0,), std=(1.0,), permutation_seed=3)
    picture = torch.arange(16.0).view(1, 1, 4, 4)
    shuffled = prep.permute(picture)
    assert not torch.equal(shuffled, picture)
    torch.testing.assert_close(prep.unpermute(shuffled), picture)
    torch.testing.assert_close(prep.unpermute(shuffled[0, 0]), picture[0, 0])  # a bare (S, S) map
    assert PLAIN.unpermute(picture) is picture


def test_shipped_shapes_cnn_cells_on_the_shapes_test_set():
    checkpoint = load_checkpoint(SHAPES_CNN)
    data = load_dataset("shapes", n_train=10, n_test=300)
    probs = predict_probabilities(checkpoint.model, checkpoint.preprocessing, data.test_images)
    matrix = confusion_matrix(probs, data.test_labels)
    assert matrix.sum() == 300 and matrix.diag().sum() >= 290
    cell = confusion_cell(checkpoint.model, checkpoint.preprocessing, data.test_images,
                          data.test_labels, 0, 0, limit=4, probs=probs)
    assert cell.total == matrix[0, 0] and len(cell.images) == 4
    confidences = [c.confidence for c in cell.images]
    assert confidences == sorted(confidences)
    assert confidences[0] == pytest.approx(float(probs[data.test_labels == 0, 0].min()))
    assert all(c.overlay.shape == (32, 32, 3) for c in cell.images)
