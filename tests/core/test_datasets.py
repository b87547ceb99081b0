import io
import stat
import tarfile
import time
import zipfile
from pathlib import Path

import pytest
import torch
from PIL import Image

from vision_lab.datasets import folders
from vision_lab.datasets import (DEFAULT_DATASET, DatasetUnavailable, dataset_info, list_datasets,
                                 load_dataset, resolve_data_root, sample_grid)

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"

COLOURS = {"cat": (200, 30, 30), "dog": (30, 200, 30), "fox": (30, 30, 200)}


def _image_bytes(colour=(200, 30, 30), mode="RGB", size=(12, 10), fmt="PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, colour).save(buffer, fmt)
    return buffer.getvalue()


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _class_folders(root: Path, per_class=5, classes=("cat", "dog"), mode="RGB") -> Path:
    for name in classes:
        colour = COLOURS[name] if mode == "RGB" else sum(COLOURS[name]) // 3
        for i in range(per_class):
            fmt = "PNG" if i % 2 else "JPEG"
            _write(root / name / f"{i}.{fmt.lower()}", _image_bytes(colour, mode, fmt=fmt))
    return root


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _zip_members(prefix="", per_class=3) -> dict[str, bytes]:
    return {f"{prefix}{name}/{i}.png": _image_bytes(COLOURS[name])
            for name in ("cat", "dog") for i in range(per_class)}


# ---- registry -----------------------------------------------------------------------------------

def test_registry_names_and_info():
    assert list_datasets() == ["shapes", "mnist", "fashion_mnist", "cifar10"]
    assert DEFAULT_DATASET == "shapes"
    info = dataset_info("shapes")
    assert info["classes"][:3] == ["circle", "ring", "square"] and len(info["classes"]) == 10
    assert (info["channels"], info["image_size"], info["needs_download"]) == (3, 32, False)
    assert info["description"]
    cifar = dataset_info("cifar10")
    assert cifar["classes"][0] == "airplane" and cifar["channels"] == 3
    assert dataset_info("mnist")["channels"] == 1


def test_unknown_dataset_lists_available_ones():
    with pytest.raises(ValueError, match="shapes, mnist, fashion_mnist, cifar10"):
        load_dataset("imagenet")


def test_unknown_option_is_an_error():
    with pytest.raises(ValueError, match="Unknown option 'n_trian'"):
        load_dataset("shapes", n_trian=10)


def test_resolve_data_root(monkeypatch, tmp_path):
    assert resolve_data_root(tmp_path) == tmp_path
    monkeypatch.setenv("VISION_LAB_DATA", str(tmp_path / "env"))
    assert resolve_data_root() == tmp_path / "env"
    monkeypatch.delenv("VISION_LAB_DATA")
    assert resolve_data_root() == Path("data")


# ---- shapes -------------------------------------------------------------------------------------

def test_shapes_tensors_and_balance():
    data = load_dataset("shapes", n_train=503, n_test=100)
    assert data.name == "shapes" and data.channels == 3 and data.image_size == 32
    assert data.train_images.shape == (503, 3, 32, 32) and data.test_images.shape == (100, 3, 32, 32)
    assert data.train_images.dtype == torch.uint8 and data.train_labels.dtype == torch.int64
    assert data.train_images.is_contiguous() and data.test_images.is_contiguous()
    counts = torch.bincount(data.train_labels, minlength=10)
    assert len(data.classes) == 10 and int(counts.max() - counts.min()) <= 1
    assert torch.bincount(data.test_labels).tolist() == [10] * 10


def test_shapes_deterministic_per_seed():
    first = load_dataset("shapes", n_train=50, n_test=20, seed=1)
    again = load_dataset("shapes", n_train=50, n_test=20, seed=1)
    other = load_dataset("shapes", n_train=50, n_test=20, seed=2)
    assert torch.equal(first.train_images, again.train_images)
    assert torch.equal(first.test_images, again.test_images)
    assert not torch.equal(first.train_images, other.train_images)
    override = load_dataset("shapes", n_train=50, n_test=20, seed=2, shapes_seed=1)
    assert torch.equal(first.train_images, override.train_images)
    # Test images do not depend on the size of the training set.
    bigger = load_dataset("shapes", n_train=80, n_test=20, seed=1)
    assert torch.equal(first.test_images, bigger.test_images)


def test_shapes_default_size_generates_quickly():
    start = time.perf_counter()
    data = load_dataset("shapes")
    elapsed = time.perf_counter() - start
    print(f"shapes: 10,000 + 2,000 images in {elapsed:.2f} s")
    assert len(data.train_images) == 10_000 and len(data.test_images) == 2_000
    assert all(0.3 < m < 0.7 for m in data.mean) and all(0.15 < s < 0.45 for s in data.std)
    pixels = data.train_images.float() / 255
    assert torch.allclose(pixels.mean(dim=(0, 2, 3)), torch.tensor(data.mean), atol=1e-3)
    assert torch.allclose(pixels.std(dim=(0, 2, 3)), torch.tensor(data.std), atol=1e-3)


# ---- subsets ------------------------------------------------------------------------------------

def test_subset_first_and_random():
    full = load_dataset("shapes", n_train=200, n_test=50)
    first = load_dataset("shapes", n_train=200, n_test=50, subset_train=30, subset_test=10,
                         subset_mode="first")
    assert torch.equal(first.train_images, full.train_images[:30])
    assert torch.equal(first.test_labels, full.test_labels[:10])
    random_a = load_dataset("shapes", n_train=200, n_test=50, subset_train=30, seed=5, shapes_seed=0)
    random_b = load_dataset("shapes", n_train=200, n_test=50, subset_train=30, seed=5, shapes_seed=0)
    random_c = load_dataset("shapes", n_train=200, n_test=50, subset_train=30, seed=6, shapes_seed=0)
    assert len(random_a.train_images) == 30 and len(random_a.test_images) == 50
    assert torch.equal(random_a.train_images, random_b.train_images)
    assert not torch.equal(random_a.train_labels, random_c.train_labels)
    assert random_a.train_images.is_contiguous()


def test_subset_too_large_is_a_clear_error():
    with pytest.raises(ValueError) as error:
        load_dataset("shapes", n_train=1200, n_test=10, subset_train=5000)
    assert str(error.value) == "subset_train=5000 is larger than the 1200 training images of 'shapes'."
    with pytest.raises(ValueError, match="subset_test=11 is larger than the 10 test images"):
        load_dataset("shapes", n_train=20, n_test=10, subset_test=11)
    with pytest.raises(ValueError, match="subset_mode"):
        load_dataset("shapes", n_train=20, subset_mode="last")


# ---- sample_grid --------------------------------------------------------------------------------

def test_sample_grid_is_balanced():
    data = load_dataset("shapes", n_train=100, n_test=30)
    images, names = sample_grid(data, n=20)
    assert images.shape == (20, 3, 32, 32) and images.dtype == torch.uint8
    assert sorted(names) == sorted(data.classes * 2)
    images, names = sample_grid(data, n=7, split="test", seed=3)
    assert len(images) == 7 and len(set(names)) == 7
    images, names = sample_grid(data, n=500, split="test")
    assert len(images) == len(names) == 30


# ---- validation split ---------------------------------------------------------------------------

def test_validation_is_carved_from_training_data_per_class():
    full = load_dataset("shapes", subset_train=500, subset_test=100, seed=4)
    data = load_dataset("shapes", subset_train=500, subset_test=100, seed=4, val_fraction=0.2)
    assert len(data.train_images) == 400 and len(data.val_images) == 100
    assert torch.bincount(data.val_labels).tolist() == [10] * 10   # stratified
    # Validation images are training images held out: none of them is trained on, and the test
    # split is untouched.
    assert torch.equal(data.test_images, full.test_images)
    pool = {bytes(img.numpy()) for img in full.train_images}
    held = {bytes(img.numpy()) for img in data.val_images}
    kept = {bytes(img.numpy()) for img in data.train_images}
    assert held <= pool and kept <= pool and not held & kept
    again = load_dataset("shapes", subset_train=500, subset_test=100, seed=4, val_fraction=0.2)
    assert torch.equal(again.val_images, data.val_images)
    # Normalisation statistics come from the images trained on.
    assert data.mean != full.mean
    assert data.split("val")[0] is data.val_images


def test_a_training_set_too_small_to_split_gets_a_sentence():
    with pytest.raises(ValueError, match="too few to hold out a validation set: class '.*' has 1, "
                                         "and every class needs at least 2"):
        load_dataset("shapes", subset_train=15, subset_test=10, val_fraction=0.1)
    assert load_dataset("shapes", subset_train=15, subset_test=10).val_images is None  # no split asked
    with pytest.raises(ValueError, match="validation fraction must be at least 0 and below 1"):
        load_dataset("shapes", subset_train=100, val_fraction=1.0)


def test_shapes_subsets_are_generated_as_asked():
    # The app and the CLI ask for the same subset and get the same images: it is generated, not
    # sampled from a pool whose size could differ between them.
    a = load_dataset("shapes", subset_train=300, subset_test=50, seed=2)
    b = load_dataset("shapes", subset_train=300, subset_test=50, seed=2)
    assert a.train_images.shape == (300, 3, 32, 32) and len(a.test_images) == 50
    assert torch.equal(a.train_images, b.train_images)
    with pytest.raises(ValueError, match="larger than the 10000 training images of 'shapes'"):
        load_dataset("shapes", subset_train=10_001)


# ---- folder datasets ----------------------------------------------------------------------------

def test_folder_flat_class_folders_split_per_class(tmp_path):
    root = _class_folders(tmp_path / "pets", per_class=5)
    _write(root / "cat" / ".DS_Store", b"junk")
    data = load_dataset(f"folder:{root}", image_size=16, seed=3)
    assert data.name == f"folder:{root}" and data.classes == ["cat", "dog"]
    assert data.channels == 3 and data.image_size == 16
    assert data.train_images.shape == (8, 3, 16, 16) and data.test_images.shape == (2, 3, 16, 16)
    assert torch.bincount(data.train_labels).tolist() == [4, 4]
    assert torch.bincount(data.test_labels).tolist() == [1, 1]
    assert data.messages == []  # hidden files are ignored, not reported
    assert len(data.mean) == 3 and 0 < data.mean[0] < 1
    # A red cat stays red: channels are in RGB order.
    cat = data.train_images[data.train_labels == 0].float().mean(dim=(0, 2, 3))
    assert cat[0] > 150 and cat[1] < 80
    again = load_dataset(f"folder:{root}", image_size=16, seed=3)
    assert torch.equal(data.test_images, again.test_images)


def test_folder_of_one_square_size_keeps_it(tmp_path):
    root = tmp_path / "cifar"
    for name in ("cat", "dog"):
        for i in range(3):
            _write(root / name / f"{i}.png", _image_bytes(COLOURS[name], size=(32, 32)))
    data = load_dataset(f"folder:{root}")
    assert data.image_size == 32 and data.train_images.shape[-2:] == (32, 32)
    assert data.messages == []  # nothing was resized, so there is nothing to explain
    # As a zip too: the sizes come from each file's header.
    archive = _zip(tmp_path / "cifar.zip", {f"{n}/{i}.png": _image_bytes(COLOURS[n], size=(32, 32))
                                            for n in ("cat", "dog") for i in range(3)})
    assert load_dataset(f"folder:{archive}").image_size == 32


@pytest.mark.parametrize("sizes, expected, says", [
    ([(32, 32)] * 4, 32, None),
    ([(640, 640)] * 2, 224, "are all 640×640: each is resized to 224×224 (their shorter side, "
                            "lowered to the largest size used by default, 224 px)"),
    ([(12, 10)] * 3, 16, "are all 12×10, not square: each is resized to 16×16 (their shorter side, "
                         "raised to the smallest size used, 16 px)"),
    ([(64, 48)] * 3, 48, "are all 64×48, not square: each is resized to 48×48 (their shorter side)"),
    ([(28, 28), (28, 28), (96, 128)], 28, "come in 2 sizes, from 28×28 to 96×128: each is resized "
                                          "to 28×28 (the median of their shorter sides)"),
])
def test_choose_image_size_says_why(sizes, expected, says):
    size, why = folders.choose_image_size(sizes)
    assert size == expected
    assert (why is None) if says is None else why.startswith(f"Your images {says}.")


def test_folder_of_mixed_sizes_says_which_size_it_chose(tmp_path):
    root = tmp_path / "mixed"
    for i, size in enumerate([(40, 40), (40, 40), (80, 60)]):
        _write(root / "cat" / f"{i}.png", _image_bytes(size=size))
        _write(root / "dog" / f"{i}.png", _image_bytes(COLOURS["dog"], size=size))
    data = load_dataset(f"folder:{root}")
    assert data.image_size == 40
    assert any("come in 2 sizes" in m and "resized to 40×40" in m for m in data.messages)
    assert load_dataset(f"folder:{root}", image_size=24).image_size == 24  # a chosen size wins


def test_folder_val_folder_is_the_validation_set(tmp_path):
    root = tmp_path / "pets"
    _class_folders(root / "train", per_class=4)
    _class_folders(root / "val", per_class=2)
    data = load_dataset(f"folder:{root}", image_size=8, val_fraction=0.5)
    assert len(data.val_images) == 4 and len(data.train_images) + len(data.test_images) == 8
    assert torch.bincount(data.val_labels).tolist() == [2, 2]
    assert any("val/ folder" in m for m in data.messages)


def test_folder_keeps_a_training_image_per_class(tmp_path):
    root = _class_folders(tmp_path / "pets", per_class=1)
    _write(root / "cat" / "extra.png", _image_bytes())
    data = load_dataset(f"folder:{root}", image_size=8)
    assert torch.bincount(data.train_labels).tolist() == [1, 1]
    assert data.test_labels.tolist() == [0]


def test_folder_train_test_layout(tmp_path):
    root = tmp_path / "sneakers"
    _class_folders(root / "train", per_class=4, classes=("cat", "dog", "fox"))
    _class_folders(root / "test", per_class=2, classes=("cat", "fox"))
    data = load_dataset(f"folder:{root}", image_size=8)
    assert data.classes == ["cat", "dog", "fox"]
    assert len(data.train_images) == 12 and len(data.test_images) == 4
    assert sorted(set(data.test_labels.tolist())) == [0, 2]
    info = dataset_info(f"folder:{root}")
    assert info["classes"] == ["cat", "dog", "fox"] and info["needs_download"] is False


@pytest.mark.parametrize("prefix", ["", "pets/"])
def test_folder_zip_with_and_without_top_folder(tmp_path, prefix):
    members = _zip_members(prefix)
    members["__MACOSX/cat/._0.png"] = b"resource fork"
    archive = _zip(tmp_path / "pets.zip", members)
    data = load_dataset(f"folder:{archive}", image_size=8)
    assert data.classes == ["cat", "dog"] and data.messages == []
    assert len(data.train_images) + len(data.test_images) == 6
    assert dataset_info(f"folder:{archive}")["classes"] == ["cat", "dog"]


def test_folder_zip_train_test_layout(tmp_path):
    members = {f"shoes/{split}/{name}/{i}.png": _image_bytes(COLOURS[name])
               for split in ("train", "test") for name in ("cat", "dog") for i in range(2)}
    data = load_dataset(f"folder:{_zip(tmp_path / 'shoes.zip', members)}", image_size=8)
    assert len(data.train_images) == 4 and len(data.test_images) == 4


def test_folder_skips_and_counts_non_images(tmp_path):
    root = _class_folders(tmp_path / "pets", per_class=3)
    _write(root / "cat" / "notes.txt", b"not an image")
    _write(root / "dog" / "broken.jpg", b"\xff\xd8 definitely not a jpeg")
    _write(root / "README.md", b"about")
    data = load_dataset(f"folder:{root}", image_size=8)
    assert len(data.train_images) + len(data.test_images) == 6
    assert "Skipped 2 files that are not images: cat/notes.txt, dog/broken.jpg." in data.messages
    assert "Skipped 1 file that is not inside a class folder: README.md." in data.messages


def test_folder_grayscale_only_has_one_channel(tmp_path):
    root = _class_folders(tmp_path / "gray", per_class=3, mode="L")
    data = load_dataset(f"folder:{root}", image_size=8)
    assert data.channels == 1 and data.train_images.shape[1:] == (1, 8, 8)
    assert len(data.mean) == len(data.std) == 1
    _write(root / "dog" / "colour.png", _image_bytes((10, 200, 10)))
    assert load_dataset(f"folder:{root}", image_size=8).channels == 3


def test_folder_uses_exif_orientation_and_first_frame(tmp_path):
    root = _class_folders(tmp_path / "pets", per_class=2)
    # Left half red, right half blue, stored with "rotate 90°" in its EXIF data.
    image = Image.new("RGB", (16, 16), (255, 0, 0))
    image.paste((0, 0, 255), (8, 0, 16, 16))
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    image.save(buffer, "PNG", exif=exif)
    _write(root / "fox" / "rotated.png", buffer.getvalue())
    # An animation whose first frame is green.
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((0, 255, 0), (255, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    _write(root / "fox" / "animated.gif", buffer.getvalue())
    data = load_dataset(f"folder:{root}", image_size=16, test_fraction=0.5)
    fox = torch.cat([data.train_images[data.train_labels == 2], data.test_images[data.test_labels == 2]])
    rotated = next(img for img in fox if img[2].max() > 200)
    # After rotating, the colours are split top/bottom instead of left/right.
    assert rotated[:, 1, 8].float().sub(rotated[:, 14, 8].float()).abs().max() > 200
    assert rotated[:, 8, 1].float().sub(rotated[:, 8, 14].float()).abs().max() < 60
    animated = next(img for img in fox if img[2].max() < 50)
    assert animated[1].float().mean() > 200


def test_folder_skips_decompression_bombs(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    root = _class_folders(tmp_path / "pets", per_class=2)
    _write(root / "cat" / "warn.png", _image_bytes(size=(40, 40)))  # over the limit: PIL warns
    _write(root / "cat" / "error.png", _image_bytes(size=(50, 50)))  # over twice it: PIL raises
    data = load_dataset(f"folder:{root}", image_size=8)
    assert len(data.train_images) + len(data.test_images) == 4
    assert ("Skipped 2 files that are too large to decode safely: cat/error.png, cat/warn.png."
            in data.messages)


def test_folder_zip_rejects_path_traversal(tmp_path):
    for bad in ("../evil.png", "pets/../../evil.png", "/etc/evil.png"):
        archive = _zip(tmp_path / "bad.zip", {**_zip_members(), bad: _image_bytes()})
        with pytest.raises(ValueError, match="unsafe path") as error:
            load_dataset(f"folder:{archive}")
        assert repr(bad) in str(error.value)


def test_folder_zip_skips_symlinks_and_nested_zips(tmp_path):
    archive = _zip(tmp_path / "pets.zip", _zip_members())
    with zipfile.ZipFile(archive, "a") as writer:
        link = zipfile.ZipInfo("cat/link.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        writer.writestr(link, "/etc/passwd")
        writer.writestr("dog/more.zip", _zip(tmp_path / "inner.zip", _zip_members()).read_bytes())
    data = load_dataset(f"folder:{archive}", image_size=8)
    assert len(data.train_images) + len(data.test_images) == 6
    assert "Skipped 1 file that is a symbolic link: cat/link.png." in data.messages
    assert "Skipped 1 file that is a zip inside the zip (not opened): dog/more.zip." in data.messages


def test_folder_zip_limits(tmp_path, monkeypatch):
    archive = _zip(tmp_path / "pets.zip", _zip_members(per_class=3))
    with pytest.raises(ValueError, match="has 6 files, more than the limit of 5"):
        load_dataset(f"folder:{archive}", max_files=5)
    with pytest.raises(ValueError, match=r"unpacks to .*, more than the 100 bytes limit"):
        load_dataset(f"folder:{archive}", max_bytes=100)
    # The module-level caps apply when no option is given.
    monkeypatch.setattr(folders, "MAX_ARCHIVE_FILES", 2)
    with pytest.raises(ValueError, match="VISION_LAB_MAX_ARCHIVE_FILES"):
        load_dataset(f"folder:{archive}")


def test_folder_zip_header_that_understates_a_size_gets_nowhere(tmp_path):
    noise = Image.frombytes("RGB", (64, 64), bytes(range(256)) * 48)
    buffer = io.BytesIO()
    noise.save(buffer, "BMP")
    big = buffer.getvalue()
    members = {**_zip_members(per_class=2), "cat/big.bmp": big}
    archive = tmp_path / "lying.zip"
    _zip(archive, members)
    # Rewrite the central directory's uncompressed size of big.bmp to 10 bytes.
    raw = bytearray(archive.read_bytes())
    entry = raw.index(b"PK\x01\x02")
    while not raw[entry + 46:].startswith(b"cat/big.bmp"):
        entry = raw.index(b"PK\x01\x02", entry + 4)
    raw[entry + 24:entry + 28] = (10).to_bytes(4, "little")
    archive.write_bytes(bytes(raw))

    small_total = sum(len(data) for data in _zip_members(per_class=2).values())
    data = load_dataset(f"folder:{archive}", image_size=8, max_bytes=small_total + 100)
    assert len(data.train_images) + len(data.test_images) == 4
    assert "Skipped 1 file that could not be read from the zip file: cat/big.bmp." in data.messages


def test_folder_errors_are_clear_sentences(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_dataset(f"folder:{tmp_path / 'missing'}")
    flat = tmp_path / "flat"
    _write(flat / "a.png", _image_bytes())
    with pytest.raises(ValueError, match=r"found no class folders: expected .*<class name>/<images>"):
        load_dataset(f"folder:{flat}")
    one = _class_folders(tmp_path / "one", classes=("cat",))
    with pytest.raises(ValueError, match=r"only one class folder \('cat'\)"):
        load_dataset(f"folder:{one}")
    empty = _class_folders(tmp_path / "empty", per_class=2)
    (empty / "fox").mkdir()
    _write(empty / "owl" / "notes.txt", b"no images here")
    with pytest.raises(ValueError, match="Class folders 'fox', 'owl' in .* have no images"):
        load_dataset(f"folder:{empty}")
    not_zip = _write(tmp_path / "photo.png", _image_bytes())
    with pytest.raises(ValueError, match="neither a folder nor a readable zip"):
        load_dataset(f"folder:{not_zip}")


def test_folder_class_names_differing_only_by_case(tmp_path):
    archive = _zip(tmp_path / "pets.zip", {**_zip_members(), "Cat/x.png": _image_bytes()})
    with pytest.raises(ValueError, match="'Cat' and 'cat' differ only by upper/lower case"):
        load_dataset(f"folder:{archive}")


def test_folder_zip_with_utf8_names_without_the_flag(tmp_path):
    # Many tools store UTF-8 names without setting the zip's UTF-8 flag. zipfile
    # always sets the flag for non-ASCII names, so write ASCII stand-ins of the
    # same byte length and patch the real bytes in afterwards.
    stand_ins = {b"cafXY": "café".encode(), b"thXY": "thé".encode()}
    archive = _zip(tmp_path / "tea.zip", {f"{stand_in.decode()}/{i}.png": _image_bytes()
                                          for stand_in in stand_ins for i in range(2)})
    raw = archive.read_bytes()
    for stand_in, real in stand_ins.items():
        raw = raw.replace(stand_in, real)
    archive.write_bytes(raw)
    with zipfile.ZipFile(archive) as reader:
        assert not any(info.flag_bits & 0x800 for info in reader.infolist())
    assert load_dataset(f"folder:{archive}", image_size=8).classes == ["café", "thé"]


# ---- torchvision datasets -----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["cifar10", "mnist"])
def test_download_without_internet_is_a_clear_error(tmp_path, name):
    messages = []  # tests run offline (conftest.py), so the download fails here, online or not
    with pytest.raises(DatasetUnavailable, match="Could not download .*'shapes'"):
        load_dataset(name, data_root=tmp_path, progress=messages.append)
    assert messages and messages[0].startswith("Downloading")
    assert dataset_info(name, data_root=tmp_path)["needs_download"] is True


def _cifar_batch(n: int, generator) -> bytes:
    records = torch.randint(0, 256, (n, 3073), dtype=torch.uint8, generator=generator)
    records[:, 0] = torch.arange(n) % 10
    return records.numpy().tobytes()


def test_a_cifar10_download_is_unpacked_and_read(tmp_path, monkeypatch):
    """A faked download (the real one is 162 MB): the archive is unpacked, taking only the batch
    files, and read; the second load finds them on disk."""
    from vision_lab.datasets import downloads

    generator = torch.Generator().manual_seed(0)
    files = {f"data_batch_{i}.bin": _cifar_batch(2, generator) for i in range(1, 6)}
    files |= {"test_batch.bin": _cifar_batch(3, generator), "readme.html": b"<html></html>"}
    fetched = []

    def download_url(url, root, md5=None):
        fetched.append(url)
        with tarfile.open(Path(root) / Path(url).name, "w:gz") as archive:
            for name, data in files.items():
                member = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
                member.size = len(data)
                archive.addfile(member, io.BytesIO(data))

    monkeypatch.setattr(downloads, "download_url", download_url)
    data = load_dataset("cifar10", data_root=tmp_path)
    assert data.train_images.shape == (10, 3, 32, 32) and data.test_images.shape == (3, 3, 32, 32)
    assert data.test_images[0].flatten().tolist() == list(files["test_batch.bin"][1:3073])
    assert not (tmp_path / "cifar-10-batches-bin" / "readme.html").exists()
    assert len(fetched) == 1 and dataset_info("cifar10", data_root=tmp_path)["needs_download"] is False
    load_dataset("cifar10", data_root=tmp_path)
    assert len(fetched) == 1


def _idx(shape: tuple[int, ...], values: bytes) -> bytes:
    """An IDX file as MNIST ships them: 0x08 (unsigned bytes), the number of dimensions, sizes."""
    header = bytes([0, 0, 0x08, len(shape)]) + b"".join(n.to_bytes(4, "big") for n in shape)
    return header + values


def test_an_mnist_download_is_read(tmp_path, monkeypatch):
    """A faked download: each archive becomes its IDX file in torchvision's layout (MNIST/raw)."""
    from vision_lab.datasets import downloads

    sizes = {"train": 6, "t10k": 4}

    def download_and_extract_archive(url, download_root, filename, md5=None):
        stem = Path(filename).stem  # e.g. train-images-idx3-ubyte
        n = sizes[stem.split("-")[0]]
        content = (_idx((n, 28, 28), bytes(range(n)) * 784) if "images" in stem
                   else _idx((n,), bytes(i % 10 for i in range(n))))
        _write(Path(download_root) / stem, content)

    monkeypatch.setattr(downloads, "download_and_extract_archive", download_and_extract_archive)
    data = load_dataset("mnist", data_root=tmp_path)
    assert data.train_images.shape == (6, 1, 28, 28) and data.test_images.shape == (4, 1, 28, 28)
    assert data.train_labels.tolist() == [0, 1, 2, 3, 4, 5]
    assert dataset_info("mnist", data_root=tmp_path)["needs_download"] is False


def test_cifar10_reads_the_binary_version(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    generator = torch.Generator().manual_seed(0)
    for name, n in [(f"data_batch_{i}.bin", 3) for i in range(1, 6)] + [("test_batch.bin", 2)]:
        (folder / name).write_bytes(_cifar_batch(n, generator))
    data = load_dataset("cifar10", data_root=tmp_path)
    assert data.train_images.shape == (15, 3, 32, 32) and data.test_images.shape == (2, 3, 32, 32)
    assert data.train_labels.tolist()[:3] == [0, 1, 2] and data.classes[9] == "truck"
    first = (folder / "data_batch_1.bin").read_bytes()
    assert data.train_images[0].flatten().tolist() == list(first[1:3073])
    assert data.mean == (0.4914, 0.4822, 0.4465)
    assert dataset_info("cifar10", data_root=tmp_path)["needs_download"] is False


@pytest.mark.skipif(not (SHARED_DATA / "MNIST" / "raw").is_dir(), reason="no ../shared/data")
def test_mnist_from_shared_data():
    data = load_dataset("mnist", data_root=SHARED_DATA)
    # As many images as the files hold: 60,000 in real MNIST, fewer in a partial copy.
    with open(SHARED_DATA / "MNIST" / "raw" / "train-images-idx3-ubyte", "rb") as f:
        train_count = int.from_bytes(f.read(8)[4:], "big")
    assert data.train_images.shape == (train_count, 1, 28, 28)
    assert data.test_images.shape == (10_000, 1, 28, 28)
    assert data.train_images.dtype == torch.uint8 and data.train_labels.dtype == torch.int64
    assert data.channels == 1 and data.image_size == 28
    assert data.classes[0] == "0 - zero" and data.classes[9] == "9 - nine"
    assert data.mean == (0.1307,) and data.std == (0.3081,)
    assert sorted(data.test_labels.unique().tolist()) == list(range(10))
    assert dataset_info("mnist", data_root=SHARED_DATA)["needs_download"] is False
