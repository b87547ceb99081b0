"""The shipped backbone (vision_lab/backbone.py): a real pretrained model, loadable for gray 28×28
and colour 32×32 inputs, the file its recipe says; and the transfer-learning lesson built on it."""
import json

import pytest
import torch

from vision_lab.backbone import (BACKBONE_PATH, TEXTURES, BackboneUnavailable, backbone_metadata,
                                 load_backbone, make_textures, read_backbone, weights_checksum)
from vision_lab.checkpoints import list_checkpoints
from vision_lab.lessons import build_plan, check_requirements
from vision_lab.models import count_parameters, create_model, freeze_backbone

LESSON = "Transfer learning: pretrained CNN vs from scratch"


@pytest.mark.parametrize("in_channels, image_size", [(1, 28), (3, 32)])
def test_the_backbone_loads_for_gray_28_and_colour_32_inputs(in_channels, image_size):
    torch.manual_seed(0)
    model = create_model("cnn", 10, in_channels=in_channels, image_size=image_size, pretrained=True)
    shipped = read_backbone()
    first = model.features[0].weight.detach()
    # A gray image copied into R, G and B meets each filter as the sum over its colours.
    assert torch.allclose(first, shipped["0.weight"].sum(1, keepdim=True) if in_channels == 1
                          else shipped["0.weight"])
    for name, tensor in shipped.items():
        if name != "0.weight":
            assert torch.equal(model.features.state_dict()[name], tensor), name
    model.eval()
    assert model(torch.randn(2, in_channels, image_size, image_size)).shape == (2, 10)
    random = create_model("cnn", 10, in_channels=in_channels, image_size=image_size)
    assert not torch.allclose(random.features[4].weight, model.features[4].weight)


def test_the_shipped_weights_are_what_their_metadata_says():
    meta = backbone_metadata()
    tensors = read_backbone()
    assert {k: list(v.shape) for k, v in tensors.items()} == meta["shapes"]
    assert weights_checksum(tensors) == meta["sha256"]
    assert meta["classes"] == list(TEXTURES) and meta["script"] == "scripts/make_backbone.py"
    assert BACKBONE_PATH.stat().st_size < 1_000_000
    # It is no checkpoint of a classifier: the pickers do not list it.
    assert BACKBONE_PATH not in [info.path.resolve() for info in list_checkpoints(BACKBONE_PATH.parent.parent)]


def _probe_accuracy(features: torch.nn.Module) -> float:
    """A linear classifier on the frozen features' (pooled) outputs: 480 textures to fit, 240 to test."""
    images, labels = make_textures(720, seed=12345)      # not the pretraining images (seeds 0, 1)
    features.eval()
    with torch.no_grad():
        x = features((images.float() / 255 - 0.5) / 0.25)
        x = torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)
    x = (x - x[:480].mean(0)) / (x[:480].std(0) + 1e-6)
    torch.manual_seed(0)
    probe = torch.nn.Linear(x.shape[1], len(TEXTURES))
    optimizer = torch.optim.Adam(probe.parameters(), lr=0.01, weight_decay=1e-3)
    for _ in range(200):
        loss = torch.nn.functional.cross_entropy(probe(x[:480]), labels[:480])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return (probe(x[480:]).argmax(1) == labels[480:]).float().mean().item()


def test_the_backbone_is_really_pretrained_its_features_linear_probe_its_own_task():
    torch.manual_seed(0)
    pretrained = _probe_accuracy(create_model("cnn", 12, pretrained=True).features)
    random = _probe_accuracy(create_model("cnn", 12).features)
    # Measured: 0.86 against 0.52 (12 classes: chance is 0.08).
    assert pretrained >= 0.75 and pretrained > random + 0.2, (pretrained, random)


def test_freezing_the_pretrained_cnn_trains_its_whole_new_classifier():
    model = create_model("cnn", 10, pretrained=True)
    freeze_backbone(model)
    assert count_parameters(model, trainable_only=True) == count_parameters(model.classifier)
    assert not any(p.requires_grad for p in model.features.parameters())


def test_the_backbone_asks_for_batch_norm_and_a_missing_file_says_how_to_make_it(tmp_path):
    with pytest.raises(ValueError, match="turn batch_norm on"):
        create_model("cnn", 10, pretrained=True, batch_norm=False)
    model = create_model("cnn", 10)
    with pytest.raises(BackboneUnavailable, match="scripts/make_backbone.py"):
        load_backbone(model.features, 3, tmp_path / "nope.safetensors")


def test_the_transfer_lesson_compares_what_it_says():
    runs = build_plan(LESSON, "mnist").runs
    (_, scratch), (_, fine_tune), (_, freeze) = runs
    assert [str(label) for label, _ in runs] == [
        "CNN from scratch", "CNN pretrained, fine-tune all", "CNN pretrained, freeze then unfreeze"]
    assert {c.model for _, c in runs} == {"cnn"}
    assert not scratch.pretrained and fine_tune.pretrained and freeze.pretrained
    assert fine_tune.freeze_epochs == 0 < freeze.freeze_epochs < freeze.epochs
    assert freeze.unfreeze_lr < freeze.lr
    # Few images, and the same for every run; only the start (and the freezing) differs.
    assert scratch.subset_train == 200
    same = lambda c: {**json.loads(c.to_json()), "pretrained": None, "freeze_epochs": None,  # noqa: E731
                      "unfreeze_lr": None}
    assert same(scratch) == same(fine_tune) == same(freeze)
    plan = build_plan(LESSON, "shapes")
    # Starting from the backbone: the mean of both pretrained runs, against from scratch.
    assert {str(k): w for k, w in plan.claim.weights.items()} == {
        "CNN pretrained, fine-tune all": 0.5, "CNN pretrained, freeze then unfreeze": 0.5, "CNN from scratch": -1}
    assert build_plan(LESSON, "cifar10").runs[0][1].subset_train == 500
    check_requirements(plan)   # offline: the backbone is shipped
    quick = build_plan(LESSON, "shapes", "quick")
    assert all(c.freeze_epochs < c.epochs for _, c in quick.runs)
