import json
import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

from vision_lab.checkpoints import (CheckpointError, list_checkpoints, load_checkpoint,
                                    read_metadata, save_checkpoint)
from vision_lab.models import create_model


def meta(**kw):
    m = {"model": "cnn", "model_options": {}, "classes": [str(i) for i in range(10)], "channels": 3,
         "image_size": 32, "mean": [0.5] * 3, "std": [0.25] * 3, "dataset": "shapes",
         "metrics": {"test_acc": 0.5}}
    m.update(kw)
    return m


@pytest.mark.parametrize("name, channels, size, options", [
    ("cnn", 3, 32, {}), ("mlp", 1, 28, {"hidden_sizes": [8, 8]}), ("lenet", 1, 28, {}),
    ("cnn", 1, 64, {"batch_norm": False}),
])
def test_round_trip_gives_identical_logits(tmp_path, name, channels, size, options):
    torch.manual_seed(0)
    model = create_model(name, 10, in_channels=channels, image_size=size, **options).eval()
    x = torch.randn(4, channels, size, size)
    path = save_checkpoint(tmp_path / "m.safetensors", model,
                           meta(model=name, model_options=options, channels=channels, image_size=size,
                                mean=[0.5] * channels, std=[0.25] * channels))
    loaded = load_checkpoint(path)
    with torch.no_grad():
        assert torch.equal(model(x), loaded.model(x))
    assert loaded.metadata["vision_lab_version"] and loaded.metadata["created"]
    assert loaded.preprocessing.image_size == size
    assert not loaded.model.training


class _RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "pwned"
    evil = _RunsCode()
    evil.marker = marker
    for name in ("evil.safetensors", "evil.pt"):
        path = tmp_path / name
        path.write_bytes(pickle.dumps(evil))
        with pytest.raises(CheckpointError, match="pickle"):
            load_checkpoint(path)
    # torch.save's zip format too
    torch.save({"x": evil}, tmp_path / "evil2.safetensors")
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(tmp_path / "evil2.safetensors")
    assert not marker.exists(), "loading must never execute code from a file"


def test_truncated_and_empty_files_are_refused(tmp_path):
    model = create_model("cnn", 10)
    good = save_checkpoint(tmp_path / "good.safetensors", model, meta())
    data = good.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        load_checkpoint(tmp_path / "cut.safetensors")
    (tmp_path / "empty.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(tmp_path / "empty.safetensors")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_mismatched_weights_or_metadata_are_refused(tmp_path):
    model = create_model("cnn", 5)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    # weights for 5 classes, metadata claiming 10
    save_file(state, tmp_path / "shape.safetensors", metadata={"vision_lab": json.dumps(meta())})
    with pytest.raises(CheckpointError, match="has shape"):
        load_checkpoint(tmp_path / "shape.safetensors")
    # weights of another architecture
    save_file(state, tmp_path / "arch.safetensors",
              metadata={"vision_lab": json.dumps(meta(model="lenet", classes=list("abcde")))})
    with pytest.raises(CheckpointError, match="do not match a 'lenet' model"):
        load_checkpoint(tmp_path / "arch.safetensors")
    # no metadata at all
    save_file(state, tmp_path / "bare.safetensors")
    with pytest.raises(CheckpointError, match="no Vision Lab metadata"):
        load_checkpoint(tmp_path / "bare.safetensors")
    # metadata missing a required key
    save_file(state, tmp_path / "half.safetensors",
              metadata={"vision_lab": json.dumps({"model": "cnn"})})
    with pytest.raises(CheckpointError, match="lacks classes"):
        load_checkpoint(tmp_path / "half.safetensors")
    # unknown model name
    save_file(state, tmp_path / "unknown.safetensors",
              metadata={"vision_lab": json.dumps(meta(model="transformer"))})
    with pytest.raises(CheckpointError, match="Unknown model 'transformer'"):
        load_checkpoint(tmp_path / "unknown.safetensors")


def test_sidecar_json_metadata_is_accepted(tmp_path):
    model = create_model("lenet", 10, in_channels=1, image_size=28).eval()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "s.safetensors")
    (tmp_path / "s.json").write_text(json.dumps(meta(model="lenet", channels=1, image_size=28,
                                                     mean=[0.1], std=[0.3])))
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(load_checkpoint(tmp_path / "s.safetensors").model(x), model(x))


def test_listing_skips_temp_and_invalid_files(tmp_path):
    model = create_model("mlp", 10, in_channels=1, image_size=28, hidden_sizes=[8, 8])
    m = meta(model="mlp", model_options={"hidden_sizes": [8, 8]}, channels=1, image_size=28,
             mean=[0.1], std=[0.3])
    save_checkpoint(tmp_path / "a.safetensors", model, {**m, "created": "2026-01-01T00:00:00"})
    save_checkpoint(tmp_path / "sub" / "b.safetensors", model, {**m, "created": "2026-02-01T00:00:00"})
    (tmp_path / ".c.safetensors.123.tmp").write_bytes(b"partial")
    (tmp_path / ".d.safetensors").write_bytes((tmp_path / "a.safetensors").read_bytes()[:100])
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    (tmp_path / ".private" / "visitor").mkdir(parents=True)
    save_checkpoint(tmp_path / ".private" / "visitor" / "e.safetensors", model, m)
    names = [c.name for c in list_checkpoints(tmp_path)]
    assert names == ["b", "a"]
    assert read_metadata(tmp_path / "a.safetensors")["metrics"]["test_acc"] == 0.5
    # Headers are remembered between listings; a checkpoint written again is read again.
    save_checkpoint(tmp_path / "a.safetensors", model, {**m, "metrics": {"test_acc": 0.75}})
    assert read_metadata(tmp_path / "a.safetensors")["metrics"]["test_acc"] == 0.75
    assert {c.name: c.test_acc for c in list_checkpoints(tmp_path)}["a"] == 0.75


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model = create_model("mlp", 10, in_channels=1, image_size=28, hidden_sizes=[8, 8])
    m = meta(model="mlp", model_options={"hidden_sizes": [8, 8]}, channels=1, image_size=28,
             mean=[0.1], std=[0.3])
    path = save_checkpoint(tmp_path / "a.safetensors", model, m)
    before = path.read_bytes()

    def crash(*a):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        save_checkpoint(path, create_model("mlp", 10, in_channels=1, image_size=28,
                                           hidden_sizes=[8, 8]), m)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.safetensors"], "temp file cleaned up"
