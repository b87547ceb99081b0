"""Export a checkpoint to ONNX, to run it without PyTorch (onnxruntime, a browser, a phone).

The file carries what a checkpoint's metadata says about preprocessing in its metadata_props
(classes, channels, image_size, mean, std, permutation_seed and the permutation itself, all as
JSON strings), and by default the preprocessing is part of the graph too, so the file is usable
alone. The input it expects is written in its "input" property and on the graph's input:

- include_preprocessing=True, pixels="uint8" (the default): input "pixels", uint8 (N, C, S, S)
  with values 0-255, RGB order for 3 channels; the graph normalises and permutes.
- include_preprocessing=True, pixels="float": the same, float32 in [0, 1].
- include_preprocessing=False: input "input", float32 (N, C, S, S) already normalised with
  mean/std (and pixel-permuted when permutation_seed is set), as the model was trained on.

N, the batch, may be any size; S is image_size: resize images before feeding them. The output is
"logits", float32 (N, number of classes); a softmax turns them into probabilities.

onnx (to write the file) and onnxruntime (to run one) are optional: they are imported only here,
and a missing one is named in one sentence with the pip command that installs it.
"""
from __future__ import annotations

import importlib
from inspect import signature
import io
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .checkpoints import atomic_write_bytes, load_checkpoint
from .i18n import text
from .preprocessing import Preprocessing, pixel_permutation

ONNX_REQUIREMENT = "onnx>=1.23"
ONNXRUNTIME_REQUIREMENT = "onnxruntime>=1.32"
PIXEL_FORMATS = ("uint8", "float")


class OnnxUnavailable(ImportError):
    """An optional ONNX package is not installed; the message names the pip command."""


def _optional_import(module: str, requirement: str, purpose: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise OnnxUnavailable(text("export.missing_package", purpose=purpose, module=module,
                                   requirement=requirement)) from None


class WithPreprocessing(nn.Module):
    """A model with its test-time preprocessing in front: pixels in, logits out.

    The same arithmetic as Preprocessing (one multiply and one add, then the permutation), so the
    exported graph matches the library to float rounding; it does not resize.
    """

    def __init__(self, model: nn.Module, prep: Preprocessing, pixels: str = "uint8"):
        super().__init__()
        if pixels not in PIXEL_FORMATS:
            raise ValueError(text("export.pixel_format", choices=", ".join(PIXEL_FORMATS),
                                  pixels=repr(pixels)))
        top = 255.0 if pixels == "uint8" else 1.0
        self.model = model
        self.register_buffer("scale", torch.tensor([1 / (top * s) for s in prep.std]).view(1, -1, 1, 1))
        self.register_buffer("shift", torch.tensor([-m / s for m, s in zip(prep.mean, prep.std)]).view(1, -1, 1, 1))
        seed = prep.permutation_seed
        self.register_buffer("permutation", None if seed is None else pixel_permutation(prep.image_size, seed))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels.float() * self.scale + self.shift
        if self.permutation is not None:
            x = x.flatten(2).index_select(2, self.permutation).reshape(x.shape)
        return self.model(x)


def _input_description(prep: Preprocessing, include_preprocessing: bool, pixels: str) -> str:
    shape = f"(N, {prep.channels}, {prep.image_size}, {prep.image_size})"
    if not include_preprocessing:
        permuted = ", then pixel-permuted" if prep.permutation_seed is not None else ""
        return f"float32 {shape}, normalised with mean and std{permuted}; output: logits (N, classes)"
    values = "uint8 0-255" if pixels == "uint8" else "float32 in [0, 1]"
    return f"{values} pixels {shape}, preprocessing included; output: logits (N, classes)"


def _metadata(meta: dict, prep: Preprocessing, description: str) -> dict[str, str]:
    seed = prep.permutation_seed
    permutation = None if seed is None else pixel_permutation(prep.image_size, seed).tolist()
    values = {"model": meta["model"], "classes": list(meta["classes"]), "channels": prep.channels,
              "image_size": prep.image_size, "mean": list(prep.mean), "std": list(prep.std),
              "permutation_seed": seed, "pixel_permutation": permutation}
    return {"input": description, **{key: json.dumps(value) for key, value in values.items()}}


def _onnx_bytes(module: nn.Module, example: torch.Tensor, input_name: str, opset: int) -> bytes:
    buffer = io.BytesIO()
    # The TorchScript exporter needs only torch; the newer dynamo exporter (the default since
    # torch 2.9) would also need the onnxscript package and takes about twice as long. torch
    # before 2.5 has no `dynamo` argument and uses the TorchScript exporter anyway.
    # Its DeprecationWarning is hidden outside tests (Python shows those only for __main__).
    choice = {"dynamo": False} if "dynamo" in signature(torch.onnx.export).parameters else {}
    torch.onnx.export(module, (example,), buffer, input_names=[input_name], output_names=["logits"],
                      dynamic_axes={input_name: {0: "batch"}, "logits": {0: "batch"}},
                      opset_version=opset, **choice)
    return buffer.getvalue()


def export_onnx(checkpoint_path, out_path, opset: int = 17, include_preprocessing: bool = True,
                pixels: str = "uint8") -> Path:
    """Write a checkpoint's model as an ONNX file; returns the path written (atomically).

    See the module docstring for the input each option gives the file.
    """
    onnx = _optional_import("onnx", ONNX_REQUIREMENT, text("export.purpose.export"))
    checkpoint = load_checkpoint(checkpoint_path)
    prep = checkpoint.preprocessing
    size = (1, prep.channels, prep.image_size, prep.image_size)
    if include_preprocessing:
        module, input_name = WithPreprocessing(checkpoint.model, prep, pixels), "pixels"
        example = torch.zeros(size, dtype=torch.uint8 if pixels == "uint8" else torch.float32)
    else:
        module, input_name, example = checkpoint.model, "input", torch.zeros(size)
    description = _input_description(prep, include_preprocessing, pixels)
    module.eval()
    proto = onnx.load_from_string(_onnx_bytes(module, example, input_name, opset))
    proto.graph.input[0].doc_string = description
    proto.doc_string = f"Vision Lab {checkpoint.metadata['model']} exported from {Path(checkpoint_path).name}"
    for key, value in _metadata(checkpoint.metadata, prep, description).items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto)
    out_path = Path(out_path)
    atomic_write_bytes(out_path, proto.SerializeToString())
    return out_path


def run_onnx(path, inputs) -> np.ndarray:
    """Logits (N, classes) from an exported file run with onnxruntime on the CPU.

    `inputs` is a numpy array or tensor of the type and shape the file expects (see its "input"
    metadata property).
    """
    onnxruntime = _optional_import("onnxruntime", ONNXRUNTIME_REQUIREMENT, text("export.purpose.run"))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    array = inputs.numpy() if isinstance(inputs, torch.Tensor) else np.asarray(inputs)
    (logits,) = session.run(None, {session.get_inputs()[0].name: array})
    return logits
