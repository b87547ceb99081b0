import os

import pytest
import torch
from torch import nn
from torchvision.models import ResNet18_Weights, resnet18

from vision_lab.models import (
    MODEL_DESCRIPTIONS,
    PretrainedWeightsUnavailable,
    conv_layers,
    count_parameters,
    create_model,
    freeze_backbone,
    head_module_name,
    layer_summary,
    list_models,
    model_options,
    unfreeze_all,
)

NUM_CLASSES = 10
MODEL_NAMES = ["mlp", "cnn", "lenet", "vgg", "resnet18", "speedrun"]


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    """An empty torch hub folder, so no cached weights file can be found."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    directory = torch.hub.get_dir()
    assert directory.startswith(str(tmp_path)), "torch.hub.set_dir() overrides TORCH_HOME"
    return directory


def _weights_path(hub_directory):
    filename = os.path.basename(ResNet18_Weights.IMAGENET1K_V1.url)
    return os.path.join(hub_directory, "checkpoints", filename)


def test_list_models_order_and_descriptions():
    assert list_models() == MODEL_NAMES
    assert set(MODEL_DESCRIPTIONS) == set(MODEL_NAMES)
    for description in MODEL_DESCRIPTIONS.values():
        assert description and "\n" not in description


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("image_size", [28, 32, 64, 224])
def test_forward_and_backward(name, in_channels, image_size):
    model = create_model(name, NUM_CLASSES, in_channels=in_channels, image_size=image_size)
    # Batch 2: BatchNorm in training mode needs more than one value per channel.
    images = torch.randn(2, in_channels, image_size, image_size)

    logits = model(images)
    logits.sum().backward()

    assert logits.shape == (2, NUM_CLASSES)
    for param_name, param in model.named_parameters():
        assert param.grad is not None, f"no gradient for {param_name}"


def test_speedrun_is_small_and_pools_before_its_convs():
    """Sized for a CPU: a tenth of the course CNN's weights, and every conv after the first runs
    on a pooled (halved) image."""
    speedrun = create_model("speedrun", NUM_CLASSES, in_channels=1, image_size=28)
    assert count_parameters(speedrun) < count_parameters(create_model("cnn", NUM_CLASSES, 1, 28)) / 6
    kinds = [type(m).__name__ for m in speedrun.features]
    assert kinds[:3] == ["Conv2d", "BatchNorm2d", "ReLU"]
    assert kinds[3:].count("MaxPool2d") == 3 and kinds[3:][::4] == ["MaxPool2d"] * 3
    narrow = create_model("speedrun", NUM_CLASSES, widths=[8, 16])
    assert [conv.out_channels for _, conv in conv_layers(narrow)] == [8, 16]
    assert narrow.classifier[-1].in_features == 16


def test_mlp_parameter_count():
    model = create_model("mlp", 10, in_channels=1, image_size=28, hidden_sizes=(8, 8))
    assert count_parameters(model) == 6_442


def test_resnet18_parameter_count():
    assert count_parameters(create_model("resnet18", 10, in_channels=3)) == 11_181_642


def test_cnn_without_batch_norm_has_no_batch_norm():
    model = create_model("cnn", NUM_CLASSES, batch_norm=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert all(conv.bias is not None for _, conv in conv_layers(model))


def test_mlp_batch_norm_option():
    with_norm = create_model("mlp", NUM_CLASSES, batch_norm=True)
    without_norm = create_model("mlp", NUM_CLASSES)
    assert any(isinstance(m, nn.BatchNorm1d) for m in with_norm.modules())
    assert not any(isinstance(m, nn.BatchNorm1d) for m in without_norm.modules())


def test_mlp_without_dropout_has_no_dropout_layers():
    model = create_model("mlp", NUM_CLASSES, dropout=0)
    assert not any(isinstance(m, nn.Dropout) for m in model.modules())


def test_large_inputs_pool_before_flatten():
    cnn = create_model("cnn", NUM_CLASSES, image_size=224)
    # 128 channels pooled to 4x4 instead of 28x28.
    assert cnn.classifier[2].in_features == 128 * 4 * 4
    assert create_model("lenet", NUM_CLASSES, image_size=28).classifier[1].in_features == 16 * 4 * 4
    assert create_model("lenet", NUM_CLASSES, image_size=32).classifier[1].in_features == 16 * 5 * 5


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_freeze_backbone_and_unfreeze_all(name):
    model = create_model(name, NUM_CLASSES)
    head = model.get_submodule(head_module_name(model))

    freeze_backbone(model)
    assert count_parameters(model, trainable_only=True) == count_parameters(head)
    assert all(p.requires_grad for p in head.parameters())

    unfreeze_all(model)
    assert count_parameters(model, trainable_only=True) == count_parameters(model)


def test_head_module_name():
    assert head_module_name(create_model("resnet18", NUM_CLASSES)) == "fc"
    assert head_module_name(create_model("cnn", NUM_CLASSES)) == "classifier.4"
    assert head_module_name(create_model("mlp", NUM_CLASSES, hidden_sizes=(8,))) == "4"


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("in_channels, image_size", [(1, 28), (3, 32)])
def test_layer_summary(name, in_channels, image_size):
    model = create_model(name, NUM_CLASSES, in_channels=in_channels, image_size=image_size)

    rows = layer_summary(model, in_channels, image_size)

    last_name, last_class, last_shape, last_params = rows[-1]
    assert last_name == head_module_name(model)
    assert last_class == "Linear"
    assert last_shape == (NUM_CLASSES,)
    assert last_params == count_parameters(model.get_submodule(last_name))
    assert sum(row[3] for row in rows) == count_parameters(model)
    assert model.training, "layer_summary must restore training mode"


# The small VGG config [64,M,128,M,256,256,M,512,512,M,512,512,M] has eight convs.
@pytest.mark.parametrize(
    "name, expected", [("mlp", 0), ("cnn", 3), ("lenet", 2), ("vgg", 8), ("resnet18", 20), ("speedrun", 4)]
)
def test_conv_layers(name, expected):
    layers = conv_layers(create_model(name, NUM_CLASSES))
    assert len(layers) == expected
    assert all(isinstance(conv, nn.Conv2d) for _, conv in layers)


def test_conv_layers_are_in_forward_order():
    model = create_model("resnet18", NUM_CLASSES)
    called = []
    handles = [
        conv.register_forward_hook(lambda module, inputs, output, name=name: called.append(name))
        for name, conv in conv_layers(model)
    ]
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, 32, 32))
    for handle in handles:
        handle.remove()
    assert called == [name for name, _ in conv_layers(model)]


def test_model_options_defaults_and_copy():
    assert model_options("mlp") == {"hidden_sizes": [512, 256], "dropout": 0.2, "batch_norm": False}
    assert model_options("cnn") == {"batch_norm": True, "dropout": 0.5}
    assert model_options("vgg") == {"dropout": 0.0}
    assert model_options("lenet") == {}
    assert model_options("resnet18") == {}
    assert model_options("speedrun") == {"widths": [16, 32, 64, 128]}

    options = model_options("mlp")
    options["hidden_sizes"].append(3)
    assert model_options("mlp")["hidden_sizes"] == [512, 256]


def test_unknown_model():
    expected = r"Unknown model 'alexnet'\. Available: mlp, cnn, lenet, vgg, resnet18, speedrun"
    with pytest.raises(ValueError, match=expected):
        create_model("alexnet", NUM_CLASSES)
    with pytest.raises(ValueError, match="Unknown model"):
        model_options("alexnet")


def test_unknown_option():
    with pytest.raises(ValueError, match="'width'") as error:
        create_model("mlp", NUM_CLASSES, width=3)
    assert "hidden_sizes, dropout, batch_norm" in str(error.value)


def test_pretrained_only_for_resnet18_and_cnn():
    with pytest.raises(ValueError, match=r"only resnet18 \(ImageNet\) and cnn \(the shipped backbone\)"):
        create_model("lenet", NUM_CLASSES, pretrained=True)


def test_pretrained_offline_raises_helpful_error(hub_dir):
    # Tests run offline (conftest.py), so the download fails here, online or not.
    with pytest.raises(PretrainedWeightsUnavailable) as error:
        create_model("resnet18", NUM_CLASSES, pretrained=True)
    message = str(error.value)
    assert "resnet18-" in message
    assert os.path.join(hub_dir, "checkpoints") in message
    assert "could not be downloaded" in message


def test_pretrained_weights_are_downloaded_once_into_the_hub_folder(hub_dir, monkeypatch):
    """A faked download (the real one is 45 MB): the file lands where the offline error says to
    put it, and the next model loads it from there."""
    state_dict = resnet18(weights=None).state_dict()
    fetched = []

    def download_url_to_file(url, dst, hash_prefix=None, progress=True):
        fetched.append(url)
        torch.save(state_dict, dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", download_url_to_file)
    model = create_model("resnet18", NUM_CLASSES, pretrained=True)
    assert fetched == [ResNet18_Weights.IMAGENET1K_V1.url]
    assert os.path.isfile(_weights_path(hub_dir))
    assert torch.equal(model.layer1[0].conv1.weight, state_dict["layer1.0.conv1.weight"])
    create_model("resnet18", NUM_CLASSES, pretrained=True)
    assert len(fetched) == 1


@pytest.mark.parametrize("in_channels", [1, 3])
def test_pretrained_loads_file_from_hub_folder(hub_dir, in_channels):
    state_dict = resnet18(weights=None).state_dict()
    path = _weights_path(hub_dir)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.save(state_dict, path)

    model = create_model("resnet18", NUM_CLASSES, in_channels=in_channels, pretrained=True)

    rgb_filters = state_dict["conv1.weight"]
    expected = rgb_filters if in_channels == 3 else rgb_filters.sum(dim=1, keepdim=True)
    assert torch.allclose(model.conv1.weight, expected)
    assert torch.equal(model.layer4[1].conv2.weight, state_dict["layer4.1.conv2.weight"])
    assert model.fc.out_features == NUM_CLASSES
