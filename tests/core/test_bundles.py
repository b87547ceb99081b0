"""Run bundles (bundles.py): a finished run as one zip, opened again with every member checked."""
import io
import json
import pickle
import zipfile

import pytest
import torch

from vision_lab import bundles
from vision_lab.bundles import BundleError, open_bundle, write_bundle
from vision_lab.checkpoints import load_checkpoint
from vision_lab.command_line import command_for
from vision_lab.train_config import TrainConfig
from vision_lab.training import run_to_end


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny finished run: 2 epochs of an MLP on 200 shapes (a few seconds)."""
    folder = tmp_path_factory.mktemp("run")
    config = TrainConfig(dataset="shapes", model="mlp", epochs=2, subset_train=200, subset_test=100,
                         lr=0.005, seed=3, data_root=str(folder / "data"),
                         out=str(folder / "mlp_shapes.safetensors"))
    end = run_to_end(config)
    assert end.reason == "completed"
    return config, end


@pytest.fixture
def bundle(run, tmp_path):
    return write_bundle(run[1].checkpoint, tmp_path / "run.zip")


def members(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def rewrite(path, files: dict, compression=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def test_a_bundle_holds_the_five_files_and_opens_as_the_same_run(run, bundle, tmp_path):
    config, end = run
    files = members(bundle)
    assert list(files) == list(bundles.MEMBERS)
    written = json.loads(files["config.json"])
    assert written["data_root"] is None and written["out"] is None  # no paths of this machine
    assert "python -m vision_lab train" in files["README.txt"].decode()

    opened = open_bundle(bundle, tmp_path / "kept" / "mlp_shapes.safetensors")
    assert opened.config.to_dict() == {**config.to_dict(), "data_root": None, "out": None}
    # The checkpoint's own figures: the test set's, and which epoch was kept (most_confused names
    # test images by index in this machine's data: it stays home).
    shown = {k: v for k, v in end.metrics.items() if k != "most_confused"}
    assert opened.metrics == {**json.loads(json.dumps(shown)), "kept_epoch": 2}
    assert opened.metrics["test_acc"] == end.metrics["test_acc"] and opened.metrics["confusion"]
    assert [e["epoch"] for e in opened.history] == [1, 2]
    assert opened.history[1]["val_loss"] == end.history[1]["val_loss"]
    assert opened.command == command_for(config) and "--lr 0.005" in opened.command
    assert opened.classes == load_checkpoint(end.checkpoint).classes
    theirs, ours = load_checkpoint(opened.checkpoint).model, load_checkpoint(end.checkpoint).model
    for (name, a), (_, b) in zip(theirs.state_dict().items(), ours.state_dict().items()):
        assert torch.equal(a, b), name
    assert [p.name for p in (tmp_path / "kept").iterdir()] == ["mlp_shapes.safetensors"]


def _open(path, tmp_path):
    with pytest.raises(BundleError) as info:
        open_bundle(path, tmp_path / "kept" / "x.safetensors")
    assert not (tmp_path / "kept" / "x.safetensors").exists()  # nothing kept from a refused one
    return str(info.value)


def test_path_traversal_is_refused(bundle, tmp_path):
    files = members(bundle)
    hostile = rewrite(tmp_path / "evil.zip", {**files, "../config.json": b"{}"})
    assert "unsafe path" in _open(hostile, tmp_path)


def test_extra_or_missing_members_are_refused(bundle, tmp_path):
    files = members(bundle)
    extra = rewrite(tmp_path / "extra.zip", {**files, "run.py": b"print('hi')"})
    assert "'run.py', which is not part of a run bundle" in _open(extra, tmp_path)
    folder = rewrite(tmp_path / "folder.zip", {**files, "sub/config.json": b"{}"})
    assert "'sub/config.json', which is not part of a run bundle" in _open(folder, tmp_path)
    missing = rewrite(tmp_path / "missing.zip", {k: v for k, v in files.items() if k != "history.json"})
    assert "not a complete run bundle" in _open(missing, tmp_path)
    twice = rewrite(tmp_path / "twice.zip", files)
    with zipfile.ZipFile(twice, "a") as archive, pytest.warns(UserWarning):
        archive.writestr("metrics.json", b"{}")
    assert "not a complete run bundle" in _open(twice, tmp_path)


def test_oversized_members_and_zip_bombs_are_refused_before_they_are_read(bundle, tmp_path,
                                                                          monkeypatch):
    files = members(bundle)
    bomb = rewrite(tmp_path / "bomb.zip", {**files, "history.json": b" " * (3 * 2**20)})
    assert "more than 100 times its packed size" in _open(bomb, tmp_path)
    monkeypatch.setattr(bundles, "MAX_TEXT_BYTES", 1000)
    big = rewrite(tmp_path / "big.zip", {**files, "history.json": b" " * 2000})
    assert "history.json unpacks to" in _open(big, tmp_path)


def test_a_header_that_understates_a_size_is_refused(bundle, tmp_path):
    """A header may lie: sizes are checked on the headers, and what is read is what they claim
    (zipfile stops there and the checksum then fails), never more."""
    import struct

    path = rewrite(tmp_path / "liar.zip", {**members(bundle), "metrics.json": b"{}" + b" " * 5000},
                   compression=zipfile.ZIP_STORED)
    data = bytearray(path.read_bytes())
    for signature, size_at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # local, central
        name_at = 30 if signature == b"PK\x03\x04" else 46
        at = data.find(signature)
        while data[at + name_at:at + name_at + 12] != b"metrics.json":
            at = data.find(signature, at + 4)
        struct.pack_into("<I", data, at + size_at, 2)
    path.write_bytes(bytes(data))
    assert zipfile.ZipFile(path).getinfo("metrics.json").file_size == 2
    assert "damaged zip file" in _open(path, tmp_path)


@pytest.mark.parametrize("member, content, message", [
    ("config.json", b"{not json", "config.json is not valid JSON"),
    ("config.json", b"[1, 2]", "should be a JSON object"),
    ("config.json", json.dumps({"model": "mlp", "lr": "fast"}).encode(), "lr has a value of the wrong type"),
    ("config.json", json.dumps({"model": "mlp", "epochs": True}).encode(), "epochs has a value of the wrong type"),
    ("config.json", json.dumps({"model": "mlp", "shell": "rm -rf"}).encode(), "shell is not a training option"),
    ("config.json", json.dumps({"model": "mlp", "lr": -1}).encode(), "learning rate must be a positive"),
    ("metrics.json", json.dumps({"test_acc": "97%"}).encode(), "test_acc should be a number"),
    ("metrics.json", json.dumps({"confusion": [[1, 2], [3]]}).encode(), "confusion matrix is not a square"),
    ("history.json", json.dumps([{"epoch": 1, "train_loss": None}]).encode(), "epoch record 1"),
    ("history.json", json.dumps({"epoch": 1}).encode(), "should be a list of epoch records"),
])
def test_bad_json_is_refused_with_what_is_wrong(bundle, tmp_path, member, content, message):
    hostile = rewrite(tmp_path / "bad.zip", {**members(bundle), member: content})
    said = _open(hostile, tmp_path)
    assert message in said and member in said


class Boom:
    def __reduce__(self):
        return (print, ("pwned",))


def test_a_pickle_checkpoint_is_refused_and_never_unpickled(bundle, tmp_path, capsys):
    torch_file = io.BytesIO()
    torch.save({"weight": torch.zeros(2), "boom": Boom()}, torch_file)
    for data in (torch_file.getvalue(), pickle.dumps(Boom())):
        hostile = rewrite(tmp_path / "pickle.zip", {**members(bundle), "model.safetensors": data})
        assert "model.safetensors cannot be used: model.safetensors looks like a PyTorch pickle" \
            in _open(hostile, tmp_path)
    assert "pwned" not in capsys.readouterr().out


def test_a_checkpoint_of_another_model_is_refused(bundle, tmp_path):
    files = members(bundle)
    config = {**json.loads(files["config.json"]), "model": "cnn"}
    hostile = rewrite(tmp_path / "other.zip", {**files, "config.json": json.dumps(config).encode()})
    assert "the checkpoint is a mlp model but config.json trains a cnn" in _open(hostile, tmp_path)


def test_not_a_zip_is_refused(tmp_path):
    path = tmp_path / "run.zip"
    path.write_bytes(b"\x80\x04K\x01.")
    assert "is not a run bundle" in _open(path, tmp_path)


def test_metadata_asking_for_a_huge_model_is_refused_before_it_is_built(bundle, tmp_path):
    """Loading builds the model the metadata describes: two 200,000-unit layers are 150 GB of float32."""
    from safetensors import safe_open
    from safetensors.torch import load, save

    files = members(bundle)
    (tmp_path / "m.safetensors").write_bytes(files["model.safetensors"])
    with safe_open(str(tmp_path / "m.safetensors"), framework="pt") as f:
        meta = json.loads(f.metadata()["vision_lab"])
    meta["model_options"] = {"hidden_sizes": [200_000, 200_000]}
    huge = save(load(files["model.safetensors"]), metadata={"vision_lab": json.dumps(meta)})
    hostile = rewrite(tmp_path / "huge.zip", {**files, "model.safetensors": huge})
    message = _open(hostile, tmp_path)
    assert "model.safetensors cannot be used: its metadata describes a model of 154,941 MB" in message
    assert "but the file holds only 6.5 MB of weights" in message
