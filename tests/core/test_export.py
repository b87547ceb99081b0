import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vision_lab.checkpoints import load_checkpoint, save_checkpoint
from vision_lab.export import OnnxUnavailable, WithPreprocessing, export_onnx, run_onnx
from vision_lab.models import create_model
from vision_lab.preprocessing import pixel_permutation

SHIPPED = Path(__file__).resolve().parents[2] / "checkpoints"
# export_onnx uses torch's TorchScript exporter on purpose (see vision_lab/export.py); its
# deprecation notices are known and would repeat once per export.
pytestmark = [
    pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:The feature will be removed:DeprecationWarning"),
]


@pytest.fixture
def onnx_tools():
    pytest.importorskip("onnx", reason="onnx is not installed")
    return pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")


def saved_model(folder, name, channels=3, image_size=32, permutation_seed=None):
    """A freshly initialised model saved as a checkpoint, its metadata as training writes it."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_channels=channels, image_size=image_size)
    return save_checkpoint(folder / f"{name}.safetensors", model, {
        "model": name, "model_options": {}, "classes": [f"class {i}" for i in range(10)],
        "channels": channels, "image_size": image_size, "mean": [0.5, 0.4, 0.3][:channels],
        "std": [0.2, 0.3, 0.25][:channels], "permutation_seed": permutation_seed})


def pixels_for(checkpoint, count=5):
    prep = checkpoint.preprocessing
    generator = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (count, prep.channels, prep.image_size, prep.image_size),
                         dtype=torch.uint8, generator=generator)


def torch_logits(checkpoint, pixels):
    with torch.no_grad():
        return checkpoint.model(checkpoint.preprocessing(pixels)).numpy()


def max_difference(a, b):
    return float(np.abs(a - b).max())


@pytest.mark.parametrize("source", ["mnist_cnn", "shapes_cnn", "permuted_mlp"])
def test_exported_model_with_preprocessing_matches_pytorch(onnx_tools, tmp_path, source):
    if source == "permuted_mlp":
        path = saved_model(tmp_path, "mlp", channels=1, image_size=28, permutation_seed=7)
    else:
        path = SHIPPED / f"{source}.safetensors"
    checkpoint = load_checkpoint(path)
    out = export_onnx(path, tmp_path / "model.onnx")
    pixels = pixels_for(checkpoint)
    expected = torch_logits(checkpoint, pixels)
    assert max_difference(run_onnx(out, pixels), expected) <= 1e-4
    assert max_difference(run_onnx(out, pixels[:1]), expected[:1]) <= 1e-4  # any batch size


@pytest.mark.parametrize("name", ["lenet", "vgg", "resnet18"])
def test_every_other_registered_model_exports(onnx_tools, tmp_path, name):
    path = saved_model(tmp_path, name)
    checkpoint = load_checkpoint(path)
    pixels = pixels_for(checkpoint, count=2)
    out = export_onnx(path, tmp_path / "model.onnx")
    assert max_difference(run_onnx(out, pixels), torch_logits(checkpoint, pixels)) <= 1e-4


def test_float_pixels_and_bare_model_inputs(onnx_tools, tmp_path):
    path = saved_model(tmp_path, "mlp", channels=1, image_size=28, permutation_seed=7)
    checkpoint = load_checkpoint(path)
    pixels = pixels_for(checkpoint)
    expected = torch_logits(checkpoint, pixels)
    as_float = export_onnx(path, tmp_path / "float.onnx", pixels="float")
    assert max_difference(run_onnx(as_float, pixels.float() / 255), expected) <= 1e-4
    bare = export_onnx(path, tmp_path / "bare.onnx", include_preprocessing=False)
    # Without the preprocessing in the graph, the caller normalises and permutes.
    assert max_difference(run_onnx(bare, checkpoint.preprocessing(pixels)), expected) <= 1e-4


def test_the_file_describes_its_input_and_preprocessing(onnx_tools, tmp_path):
    path = saved_model(tmp_path, "mlp", channels=1, image_size=28, permutation_seed=7)
    out = export_onnx(path, tmp_path / "model.onnx", opset=17)
    session = onnx_tools.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (model_input,) = session.get_inputs()
    assert model_input.name == "pixels" and model_input.type == "tensor(uint8)"
    assert isinstance(model_input.shape[0], str) and model_input.shape[1:] == [1, 28, 28]
    props = session.get_modelmeta().custom_metadata_map
    assert props["input"].startswith("uint8 0-255 pixels (N, 1, 28, 28)")
    assert json.loads(props["classes"]) == [f"class {i}" for i in range(10)]
    assert json.loads(props["mean"]) == [0.5] and json.loads(props["std"]) == [0.2]
    assert json.loads(props["image_size"]) == 28 and json.loads(props["channels"]) == 1
    assert json.loads(props["permutation_seed"]) == 7
    assert json.loads(props["pixel_permutation"]) == pixel_permutation(28, 7).tolist()
    import onnx

    assert onnx.load(str(out)).opset_import[0].version == 17


def test_missing_onnx_is_one_sentence_with_the_pip_command(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes `import onnx` fail
    with pytest.raises(OnnxUnavailable, match=r"^Exporting to ONNX needs the onnx package: "
                                              r"pip install 'onnx>=[\d.]+'$"):
        export_onnx(SHIPPED / "shapes_cnn.safetensors", tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()


def test_missing_onnxruntime_is_one_sentence_with_the_pip_command(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match=r"^Running an ONNX file needs the onnxruntime package: "
                                          r"pip install 'onnxruntime>=[\d.]+'$"):
        run_onnx(tmp_path / "model.onnx", np.zeros((1, 1, 28, 28), np.uint8))


def test_unknown_pixel_format_is_refused():
    checkpoint = load_checkpoint(SHIPPED / "mnist_cnn.safetensors")
    with pytest.raises(ValueError, match="pixels must be one of uint8, float"):
        WithPreprocessing(checkpoint.model, checkpoint.preprocessing, pixels="int16")
