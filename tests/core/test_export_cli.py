"""`python -m vision_lab export CKPT --onnx OUT`: the shipped shapes CNN, exported by the CLI and run
with onnxruntime, gives PyTorch's logits."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vision_lab.checkpoints import load_checkpoint
from vision_lab.cli import main

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "checkpoints" / "shapes_cnn.safetensors"


def test_the_cli_exports_a_file_onnxruntime_runs_like_pytorch(tmp_path):
    pytest.importorskip("onnx", reason="onnx is not installed (requirements-dev.txt)")
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (requirements-dev.txt)")
    from vision_lab.export import run_onnx

    out = tmp_path / "shapes_cnn.onnx"
    r = subprocess.run([sys.executable, "-m", "vision_lab", "export", str(SHIPPED), "--onnx", str(out),
                        "--opset", "17", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    (line,) = [json.loads(x) for x in r.stdout.splitlines() if x.strip()]
    assert Path(line["onnx"]) == out and out.exists()
    assert line["input"].startswith("uint8 0-255 pixels (N, 3, 32, 32)")

    checkpoint = load_checkpoint(SHIPPED)
    prep = checkpoint.preprocessing
    pixels = torch.randint(0, 256, (6, prep.channels, prep.image_size, prep.image_size),
                           dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = checkpoint.model(prep(pixels)).numpy()
    assert float(np.abs(run_onnx(out, pixels) - expected).max()) <= 1e-4


def test_without_onnx_the_cli_says_so_in_one_sentence(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes `import onnx` fail
    code = main(["export", str(SHIPPED), "--onnx", str(tmp_path / "model.onnx")])
    err = capsys.readouterr().err
    assert code == 1 and not (tmp_path / "model.onnx").exists()
    assert err.startswith("error: Exporting to ONNX needs the onnx package: pip install 'onnx>=")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_missing_checkpoint_is_one_sentence(tmp_path, capsys):
    code = main(["export", str(tmp_path / "nothing.safetensors"), "--onnx", str(tmp_path / "m.onnx")])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: ") and "Traceback" not in err
