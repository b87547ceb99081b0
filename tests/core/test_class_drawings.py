"""The class dataset's library (vision_lab/class_drawings.py): drawings kept MNIST-style, the
collection as a zip of safely named class folders, the stratified held-out split, and the
comparison of the shipped MNIST model with a model trained on the class's drawings."""
from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from class_sketches import sketch, sketch_png
from conftest import ROOT
from vision_lab import class_drawings
from vision_lab.preprocessing import ImageError
from vision_lab.serving.class_db import ClassDB, ClassError

MNIST = ROOT / "checkpoints" / "mnist_cnn.safetensors"


@pytest.fixture
def db(tmp_path):
    return ClassDB(tmp_path / "class")


def _fill(db, collection, per_class: int, visitors=("a", "b")):
    for i in range(per_class):
        for label in ("0", "1"):
            class_drawings.add_drawing(db, collection.id, label, visitors[i % len(visitors)],
                                       sketch(label, i))


def test_a_drawing_is_kept_mnist_style(db):
    collection = db.open_collection("digits", ["0", "1"])
    drawing = class_drawings.add_drawing(db, collection.id, "0", "a", sketch_png("0", 1))
    with Image.open(db.drawing_path(drawing)) as img:
        assert (img.format, img.mode, img.size) == ("PNG", "L", (28, 28))
        pixels = np.array(img)
    # White ink on black, the ring inside MNIST's 20 px box and centred by mass, as sketch.py makes it.
    assert pixels[0].max() == pixels[-1].max() == pixels[:, 0].max() == 0
    assert pixels.max() == 255 and 0.05 < (pixels > 0).mean() < 0.6
    ys, xs = np.indices(pixels.shape)
    assert abs((ys * pixels).sum() / pixels.sum() - 13.5) < 1.5
    assert abs((xs * pixels).sum() / pixels.sum() - 13.5) < 1.5
    assert torch.equal(class_drawings.read_drawing(db, drawing)[0], torch.from_numpy(pixels))


def test_a_drawing_is_checked_like_an_upload(db):
    collection = db.open_collection("digits", ["0", "1"])
    with pytest.raises(ImageError, match="not an image"):
        class_drawings.add_drawing(db, collection.id, "0", "a", b"<script>alert(1)</script>")
    with pytest.raises(ValueError, match="empty|draw"):
        class_drawings.add_drawing(db, collection.id, "0", "a", Image.new("RGB", (50, 50), "white"))
    huge = io.BytesIO()
    Image.new("L", (1, 1)).save(huge, format="PNG")
    data = bytearray(huge.getvalue())
    data[16:24] = (200_000).to_bytes(4, "big") * 2   # the header claims 200,000 x 200,000 pixels
    with pytest.raises(ImageError):
        class_drawings.add_drawing(db, collection.id, "0", "a", bytes(data))
    assert db.drawings(collection.id) == []


def test_folder_names_are_safe_and_distinct():
    names = class_drawings.folder_names(["a/b", "a_b", "..", "CON", "猫", "A/B", " x. ", 'q"?'])
    assert names["a/b"] == "a_b" and names["a_b"] == "a_b-2" and names["A/B"] == "A_B-3"
    assert names[".."] == "_" and names["CON"] == "_CON" and names["猫"] == "猫"
    assert names[" x. "] == "x" and names['q"?'] == "q__"
    for safe in names.values():
        assert safe and not safe.startswith(".") and not set(safe) & set('/\\:*?"<>|')
    assert len({n.casefold() for n in names.values()}) == len(names)


def test_the_zip_holds_class_folders_named_safely(db, tmp_path):
    collection = db.open_collection("Our ../digits", ["0", "1", "a/b"])
    _fill(db, collection, 2)
    path = class_drawings.write_zip(db, collection, tmp_path / "out" / "class.zip")
    with zipfile.ZipFile(path) as archive:
        names = sorted(archive.namelist())
        first = archive.read(names[1])
    ids = [d.id for d in db.drawings(collection.id)]
    assert names == sorted(["Our .._digits/0/", "Our .._digits/1/", "Our .._digits/a_b/"]
                           + [f"Our .._digits/{d.label}/{d.id}.png" for d in db.drawings(collection.id)])
    assert len(ids) == 4 and Image.open(io.BytesIO(first)).size == (28, 28)
    assert not (tmp_path / "out" / "class.zip.tmp").exists()
    # The folder loader reads it as a dataset of the classes that have drawings... and says why not
    # when one is empty.
    from vision_lab.datasets import load_dataset

    with pytest.raises(ValueError, match="a_b"):
        load_dataset(f"folder:{path}")


def test_the_split_is_stratified_fixed_and_held_out(db):
    collection = db.open_collection("digits", ["0", "1"])
    _fill(db, collection, 8)
    drawings = db.drawings(collection.id)
    train, held = class_drawings.split(drawings)
    assert sorted(d.id for d in train + held) == sorted(d.id for d in drawings)
    assert not {d.id for d in train} & {d.id for d in held}
    assert sorted(d.label for d in held) == ["0", "0", "1", "1"]   # a quarter of each class
    again = class_drawings.split(list(reversed(drawings)))
    assert [d.id for d in again[1]] == [d.id for d in held]
    assert [d.id for d in class_drawings.split(drawings, seed=1)[1]] != [d.id for d in held]


def test_the_tree_trains_only_classes_with_enough_drawings(db):
    collection = db.open_collection("digits", ["0", "1", "2"])
    with pytest.raises(ClassError, match="two classes"):
        class_drawings.write_tree(db, collection)
    _fill(db, collection, 4)
    class_drawings.add_drawing(db, collection.id, "2", "c", sketch("1", 99))
    tree = class_drawings.write_tree(db, collection)
    assert tree.classes == ["0", "1"] and tree.left_out == ["2"]
    assert (tree.train, tree.held_out) == (6, 2)
    assert sorted(p.relative_to(tree.path).parts[:2] for p in tree.path.rglob("*.png")).count(("test", "0")) == 1
    assert class_drawings.write_tree(db, collection).path == tree.path   # same drawings, same folder
    held = next((tree.path / "test" / "0").glob("*.png"))
    class_drawings.forget_drawing(db, int(held.stem))
    assert not held.exists()


@pytest.mark.skipif(not MNIST.is_file(), reason="checkpoints/mnist_cnn.safetensors is not there")
def test_the_comparison_measures_both_models_on_held_out_drawings(db, tmp_path):
    from vision_lab.train_config import RunEnd, TrainConfig
    from vision_lab.training import train

    collection = db.open_collection("digits", ["0", "1"])
    _fill(db, collection, 12)
    tree = class_drawings.write_tree(db, collection)
    config = TrainConfig(dataset=tree.dataset, model="cnn", epochs=4, batch_size=16, val_fraction=0.2,
                         record_internals=False, out=str(tmp_path / "class_cnn.safetensors"))
    end = [e for e in train(config) if isinstance(e, RunEnd)][0]
    assert end.reason == "completed", end.message
    result = class_drawings.compare(db, MNIST, end.checkpoint)
    assert result.held_out == 6 and result.classes == ["0", "1"]
    assert result.mnist.measured == result.class_model.measured == 6
    # Both accuracies are measured on the same six drawings the class model never saw: the class
    # model's equals its own test accuracy from training (the held-out drawings are its test set).
    assert result.class_model.acc == pytest.approx(end.metrics["test_acc"])
    assert 0 <= result.mnist.acc <= 1 and set(result.mnist.per_class) == {"0", "1"}
    assert len(result.mnist.wrong) == round((1 - result.mnist.acc) * 6)
    for image, true, predicted in result.mnist.wrong:
        assert image.shape == (1, 28, 28) and true in ("0", "1") and predicted.split(" - ")[0] != true
    # A model trained on anything else has no held-out class drawings to be measured on.
    with pytest.raises(ClassError):
        class_drawings.compare(db, MNIST, MNIST)
