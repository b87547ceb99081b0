"""Shareable runs as an API user calls them (gradio_client): /download_run and /open_run."""
import json
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
gradio_client = pytest.importorskip("gradio_client")


def test_a_run_downloads_as_a_bundle_and_opens_again(client, tmp_path):
    bundle = client.predict(checkpoint_name="shapes_cnn", api_name="/download_run")
    assert Path(bundle).name == "shapes_cnn.zip"
    with zipfile.ZipFile(bundle) as archive:
        assert sorted(archive.namelist()) == ["README.txt", "config.json", "history.json",
                                              "metrics.json", "model.safetensors"]
        config = json.loads(archive.read("config.json"))
        metrics = json.loads(archive.read("metrics.json"))
    assert config["model"] == "cnn" and config["dataset"] == "shapes"

    out = client.predict(bundle=gradio_client.handle_file(bundle), api_name="/open_run")
    status, name, command, summary = out[0], out[8], out[10], out[-1]
    assert "Opened a run bundle: cnn on shapes" in status and "Start training" in status
    assert summary["reason"] == "opened" and summary["config"]["model"] == "cnn"
    assert summary["test_acc"] == metrics["test_acc"] and len(summary["classes"]) == 10
    assert command.startswith("python -m vision_lab train") and command == summary["command"]
    assert Path(out[1]).is_file() and Path(out[2]).is_file()  # its loss and accuracy curves
    assert Path(out[5]).is_file() and Path(out[6]).is_file()  # its confusion matrix, per class
    # The opened checkpoint is now among this visitor's runs (and only theirs): the app finds it
    # by its name.
    assert name == "shapes_cnn_opened"
    again = client.predict(checkpoint_name=name, api_name="/download_run")
    assert Path(again).name == f"{name}.zip"


def test_a_hostile_bundle_is_refused_with_what_is_wrong(client, tmp_path):
    hostile = tmp_path / "evil.zip"
    with zipfile.ZipFile(hostile, "w") as archive:
        archive.writestr("config.json", "{}")
        archive.writestr("../../outside.txt", "x")
    with pytest.raises(Exception) as info:
        client.predict(bundle=gradio_client.handle_file(str(hostile)), api_name="/open_run")
    assert "unsafe path" in str(info.value) and "Traceback" not in str(info.value)


def test_nothing_to_download_says_to_train_first(client):
    with pytest.raises(Exception) as info:
        client.predict(checkpoint_name="", api_name="/download_run")
    assert "train a model (or open a bundle) first" in str(info.value)
