"""The app's API as a Python user calls it (gradio_client): /augment, /train, /compare."""
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
gradio_client = pytest.importorskip("gradio_client")


@pytest.fixture(scope="module")
def client(app_url):
    return gradio_client.Client(app_url, verbose=False)


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
    status, summary = out[0], out[-1]
    assert summary["reason"] == "completed", status
    assert summary["test_acc"] > 0.2, summary      # chance is 0.1 on 10 classes
    assert len(summary["history"]) == 3 and summary["best_epoch"] >= 1
    assert summary["checkpoint"].endswith(".safetensors") and Path(summary["checkpoint"]).is_file()
    assert Path(out[9]).is_file()                  # the download
    assert "Finished 3 epoch" in status


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
    status, table, *_ = client.predict(experiment_name="MLP vs CNN", dataset_name="shapes",
                                       size_name="quick", api_name="/compare")
    assert "Done" in status
    rows = table["data"]
    assert [r[0] for r in rows] == ["MLP", "CNN"]
    headers = table["headers"]
    assert "best test acc (%)" in headers and "parameters" in headers
    for row in rows:
        record = dict(zip(headers, row))
        assert record["parameters"] > 0 and record["epochs"] == 2 and record["ended"] == "completed"


def test_compare_pretrained_offline_says_so(client, monkeypatch):
    """Offline, the pretrained lesson must fail before training with the library's sentence."""
    with pytest.raises(Exception) as info:
        client.predict(experiment_name="Pretrained vs from-scratch ResNet18", size_name="quick",
                       api_name="/compare")
    text = str(info.value)
    if "could not be downloaded" not in text:
        pytest.skip("the ImageNet weights are available here, so there is nothing to report")
    assert "resnet18" in text.lower() and "Traceback" not in text


def test_first_use_of_a_downloadable_dataset_says_it_downloads(tmp_path):
    from vision_lab.ui.train import loading_message

    assert loading_message("cifar10", str(tmp_path)).startswith("**Downloading cifar10**")
    assert loading_message("shapes", str(tmp_path)) == "Loading shapes …"
