"""The Feature maps tab's "Errors" accordion as an API user calls it (gradio_client): /errors gives
the test images behind one cell of a checkpoint's confusion matrix, captioned with probabilities."""
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
gradio_client = pytest.importorskip("gradio_client")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def shapes_matrix():
    """shapes_cnn's confusion matrix on the shapes test set, computed here with the library."""
    from vision_lab.checkpoints import load_checkpoint
    from vision_lab.confusion import confusion_matrix, predict_probabilities
    from vision_lab.datasets import load_dataset

    ckpt = load_checkpoint(ROOT / "checkpoints" / "shapes_cnn.safetensors")
    data = load_dataset("shapes", subset_train=10)
    probs = predict_probabilities(ckpt.model, ckpt.preprocessing, data.test_images)
    return ckpt.classes, confusion_matrix(probs, data.test_labels)


def _probabilities(gallery) -> list[float]:
    return [float(re.search(r"(\d+)%", item["caption"]).group(1)) / 100 for item in gallery]


def test_errors_off_the_diagonal_most_confident_mistakes_first(client, shapes_matrix):
    classes, matrix = shapes_matrix
    off = matrix.clone()
    off.fill_diagonal_(0)
    if off.max() == 0:
        pytest.skip("shapes_cnn makes no mistake on the shapes test set")
    true, predicted = divmod(int(off.argmax()), len(classes))
    gallery, note = client.predict(checkpoint="shapes_cnn", true_class=classes[true],
                                   predicted_class=classes[predicted], api_name="/errors")
    assert len(gallery) == min(int(off.max()), 32), note
    assert all(Path(item["image"]).is_file() for item in gallery)
    probs = _probabilities(gallery)
    assert all(0 < p <= 1 for p in probs) and probs == sorted(probs, reverse=True)
    assert all(classes[predicted] in item["caption"] for item in gallery)
    assert f"{int(off.max())} test image(s) of class {classes[true]}" in note


def test_errors_on_the_diagonal_least_confident_first_with_grad_cam(client, shapes_matrix):
    classes, matrix = shapes_matrix
    gallery, note = client.predict(checkpoint="shapes_cnn", true_class=classes[0],
                                   predicted_class=classes[0], api_name="/errors")
    assert len(gallery) == min(int(matrix[0, 0]), 32)
    probs = _probabilities(gallery)
    assert all(0 < p <= 1 for p in probs) and probs == sorted(probs)
    assert "least confident" in note and "Grad-CAM" in note
    from PIL import Image

    width, height = Image.open(gallery[0]["image"]).size
    assert width > 2 * height * 0.9  # the image and its Grad-CAM overlay side by side


def test_an_empty_cell_gives_a_sentence_not_an_error(client, shapes_matrix):
    classes, matrix = shapes_matrix
    empty = (matrix == 0).nonzero()
    if len(empty) == 0:
        pytest.skip("every cell holds an image")
    true, predicted = empty[0].tolist()
    gallery, note = client.predict(checkpoint="shapes_cnn", true_class=classes[true],
                                   predicted_class=classes[predicted], api_name="/errors")
    assert gallery == [] and "this cell is empty" in note


def test_errors_names_a_wrong_class_clearly(client):
    with pytest.raises(Exception) as info:
        client.predict(checkpoint="shapes_cnn", true_class="dragon", predicted_class="circle",
                       api_name="/errors")
    assert "'dragon' is not one of this checkpoint's classes" in str(info.value)
    assert "Traceback" not in str(info.value)


def test_a_checkpoint_whose_dataset_is_missing_gets_a_sentence(tmp_path):
    """mnist_cnn's dataset is not in the (empty) data folder: the matrix's place says so."""
    from vision_lab.ui import Settings
    from vision_lab.ui.errors import show_matrix

    out = show_matrix(Settings(runs_dir=str(tmp_path), data_root=str(tmp_path / "data")),
                      "mnist_cnn")
    assert out[0] is None and "mnist" in out[1] and "not available offline" in out[1]
