"""The app's API as a Python user calls it (gradio_client): /augment, /train, /compare."""
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
gradio_client = pytest.importorskip("gradio_client")


def test_augment_returns_n_images_and_code(client):
    original, gallery, code = client.predict(image=None, size=32, count=12, seed_value=3,
                                             api_name="/augment")
    assert Path(original).is_file()
    assert len(gallery) == 12
    assert all(Path(item["image"]).is_file() for item in gallery)
    assert "v2.Compose" in code and "RandomCrop" in code   # the default preset is "standard"


def test_train_tiny_shapes_above_chance_with_checkpoint(client):
    out = client.predict(dataset="shapes", subset_train=600, subset_test=200, model="cnn", epochs=3,
                         api_name="/train")
    status, command, summary = out[0], out[10], out[-1]
    assert summary["reason"] == "completed", status
    assert summary["test_acc"] > 0.2, summary      # chance is 0.1 on 10 classes
    assert len(summary["history"]) == 3 and summary["best_epoch"] >= 1
    # Curves per epoch are train and validation; the test set is measured once, at the end.
    assert {"val_loss", "val_acc"} <= set(summary["history"][0])
    assert not any("test" in key for key in summary["history"][0])
    assert summary["checkpoint"].endswith(".safetensors") and Path(summary["checkpoint"]).is_file()
    assert Path(out[9]).is_file()                  # the download
    assert "Finished 3 epoch" in status and "measured once on the kept model" in status
    assert command == summary["command"] == ("python -m vision_lab train --subset-train 600 "
                                             "--subset-test 200 --epochs 3 --seed 0")
    # Inside the network: every epoch's internals, layer by layer (vision_lab/internals.py).
    inside = summary["internals"]
    assert [r["epoch"] for r in inside] == [1, 2, 3]
    names = [layer["name"] for layer in inside[0]["layers"]]
    assert names[0] == "features.0" and names[-1].startswith("classifier.")
    for layer in inside[-1]["layers"]:
        assert len(layer["weight"]["percentiles"]) == len(inside[-1]["percentiles"]) == 7
        assert layer["activation"]["std"] > 0 and layer["grad_norm"] > 0


def test_one_config_gives_the_same_first_epoch_in_the_app_and_the_cli(client, tmp_path):
    """The app and the CLI build the same data for the same config: the Train tab's command line
    repeats its run exactly (CPU training is deterministic for a config)."""
    import json
    import shlex
    import subprocess
    import sys

    from conftest import OFFLINE_ENV, ROOT

    summary = client.predict(dataset="shapes", subset_train=500, subset_test=100, model="cnn",
                             epochs=1, augment="standard", seed=2, api_name="/train")[-1]
    command = shlex.split(summary["command"])
    assert command[:4] == ["python", "-m", "vision_lab", "train"]
    cli = subprocess.run([sys.executable, *command[1:], "--json", "--out", str(tmp_path / "cli.safetensors")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**__import__("os").environ, **OFFLINE_ENV})
    assert cli.returncode == 0, cli.stderr
    events = [json.loads(line) for line in cli.stdout.splitlines()]
    epoch = next(e for e in events if e["event"] == "epoch")
    app_epoch = summary["history"][0]
    for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
        assert epoch[key] == pytest.approx(app_epoch[key], rel=1e-6), key


@pytest.mark.parametrize("kwargs, message", [
    ({"lr": 0}, "learning rate must be a positive number"),
    ({"batch_size": 0}, "batch size must be at least 1"),
    ({"dataset": "no_such_dataset"}, "no_such_dataset"),
])
def test_train_bad_input_gives_a_clear_message(client, kwargs, message):
    with pytest.raises(Exception) as info:
        client.predict(**{"subset_train": 64, "subset_test": 32, "epochs": 1, **kwargs}, api_name="/train")
    assert message in str(info.value)
    assert "Traceback" not in str(info.value)


def test_compare_quick_returns_one_row_per_run(client):
    status, verdict, table, *_, inside = client.predict(lesson_name="MLP vs CNN", dataset_name="shapes",
                                                        size_name="quick", api_name="/compare")
    assert "Done" in status
    # One seed at the quick size: a number, but no verdict on it.
    assert "with one seed" in verdict and "seed-to-seed noise" in verdict
    rows = table["data"]
    assert [r[0] for r in rows] == ["MLP", "CNN"]
    headers = table["headers"]
    assert {"best val acc (%)", "test acc (%)", "parameters", "seeds"} <= set(headers)
    for row in rows:
        record = dict(zip(headers, row))
        assert record["parameters"] > 0 and record["seeds"] == 1 and record["ended"] == "completed"
    assert inside is not None      # the layers of both runs at their last epoch (a figure)


def test_compare_on_fewer_images_than_the_lesson_asks_uses_them_all_and_says_so_once(client, tmp_path):
    from test_datasets import _class_folders

    folder = "folder:" + str(_class_folders(tmp_path / "pets", per_class=10))  # 16 train, 4 test
    status, verdict, table, *_ = client.predict(lesson_name="MLP vs CNN", dataset_name=folder,
                                                size_name="quick", api_name="/compare")
    assert "Done" in status and "Traceback" not in status
    assert status.count("Asked for 300 training images") == 1 and "has 16: all 16 are used" in status
    assert status.count("Asked for 100 test images") == 1 and "has 4: all 4 are used" in status
    assert [r[0] for r in table["data"]] == ["MLP", "CNN"]


def test_compare_pretrained_offline_says_so(client):
    """Offline, the pretrained lesson must fail before training with the library's sentence.
    (The app runs offline in tests, with an empty torch cache: conftest.LaunchedApp.)"""
    with pytest.raises(Exception) as info:
        client.predict(lesson_name="Pretrained vs from-scratch ResNet18", size_name="quick",
                       api_name="/compare")
    text = str(info.value)
    assert "could not be downloaded" in text and "resnet18" in text.lower() and "Traceback" not in text


def test_first_use_of_a_downloadable_dataset_says_it_downloads(tmp_path):
    from vision_lab.ui.live import loading_message

    assert loading_message("cifar10", str(tmp_path)).startswith("**Downloading cifar10**")
    assert loading_message("shapes", str(tmp_path)) == "Loading shapes …"
