"""MNIST, Fashion-MNIST and CIFAR-10: downloaded once into the data root, then read from disk.

Nothing here unpickles files: MNIST-style data is read from its raw IDX files and CIFAR-10 from its
binary version, because a pickle from a data folder can run arbitrary code.
"""
from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import torch
from torchvision.datasets.mnist import read_image_file, read_label_file
from torchvision.datasets.utils import download_and_extract_archive, download_url

from ..i18n import text
from .base import DatasetUnavailable, ImageData, say


def _download_failed(title: str, data_root: Path, what_to_put: str) -> DatasetUnavailable:
    return DatasetUnavailable(text("datasets.download.failed", dataset=title, root=str(data_root),
                                   what=what_to_put))


def _idx_folder(dataset_class, data_root: Path) -> Path:
    # torchvision's layout, e.g. data/MNIST/raw/, so files it downloaded load here too.
    return data_root / dataset_class.__name__ / "raw"


def _idx_names(dataset_class) -> list[str]:
    return [Path(archive).stem for archive, _ in dataset_class.resources]


def idx_present(dataset_class, data_root: Path) -> bool:
    folder = _idx_folder(dataset_class, data_root)
    return all((folder / name).is_file() for name in _idx_names(dataset_class))


def _download_idx(dataset_class, data_root: Path) -> None:
    folder = _idx_folder(dataset_class, data_root)
    for archive, md5 in dataset_class.resources:
        errors = []
        for mirror in dataset_class.mirrors:
            try:
                download_and_extract_archive(mirror + archive, download_root=folder,
                                             filename=archive, md5=md5)
                break
            except Exception as error:
                errors.append(error)
        else:
            raise errors[-1]


def load_idx(data_root: Path, seed: int, progress=None, *, dataset_class, name: str, title: str,
              size_mb: int, mean: tuple[float, ...], std: tuple[float, ...]) -> ImageData:
    folder = _idx_folder(dataset_class, data_root)
    if not idx_present(dataset_class, data_root):
        say(progress, text("datasets.download.progress", dataset=title, size_mb=size_mb,
                           root=str(data_root)))
        try:
            _download_idx(dataset_class, data_root)
        except Exception as error:
            files = ", ".join(_idx_names(dataset_class))
            where = folder.relative_to(data_root)
            what = text("datasets.download.idx_files", files=files, where=str(where))
            raise _download_failed(title, data_root, what) from error
    splits = []
    for prefix in ("train", "t10k"):
        images = read_image_file(str(folder / f"{prefix}-images-idx3-ubyte"))
        labels = read_label_file(str(folder / f"{prefix}-labels-idx1-ubyte"))
        splits += [images.unsqueeze(1).contiguous(), labels.to(torch.int64)]
    return ImageData(name, list(dataset_class.classes), 1, 28, mean, std, *splits, [])


_CIFAR_TITLE = "CIFAR-10"
_CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
_CIFAR_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
_CIFAR_FOLDER = "cifar-10-batches-bin"
_CIFAR_TRAIN = [f"data_batch_{i}.bin" for i in range(1, 6)]
_CIFAR_TEST = ["test_batch.bin"]
_CIFAR_RECORD = 1 + 3 * 32 * 32  # one label byte, then the red, green and blue planes
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
                  "dog", "frog", "horse", "ship", "truck"]  # as torchvision names them


def cifar_present(data_root: Path) -> bool:
    return all((data_root / _CIFAR_FOLDER / name).is_file() for name in _CIFAR_TRAIN + _CIFAR_TEST)


def _download_cifar(data_root: Path) -> None:
    download_url(_CIFAR_URL, str(data_root), md5=_CIFAR_MD5)
    wanted = {f"{_CIFAR_FOLDER}/{name}" for name in _CIFAR_TRAIN + _CIFAR_TEST}
    with tarfile.open(data_root / Path(_CIFAR_URL).name) as archive:
        members = [m for m in archive.getmembers() if m.name in wanted]
        archive.extractall(data_root, members=members, filter="data")


def _read_cifar(paths: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
    records = []
    for path in paths:
        data = np.fromfile(path, dtype=np.uint8)
        if data.size == 0 or data.size % _CIFAR_RECORD:
            raise DatasetUnavailable(text("datasets.cifar10.damaged", path=str(path)))
        records.append(data.reshape(-1, _CIFAR_RECORD))
    records = torch.from_numpy(np.concatenate(records))
    return records[:, 1:].reshape(-1, 3, 32, 32).contiguous(), records[:, 0].to(torch.int64)


def load_cifar10(data_root: Path, seed: int, progress=None) -> ImageData:
    if not cifar_present(data_root):
        say(progress, text("datasets.download.progress", dataset=_CIFAR_TITLE, size_mb=162,
                           root=str(data_root)))
        try:
            _download_cifar(data_root)
        except Exception as error:
            what = text("datasets.cifar10.what_to_put", folder=_CIFAR_FOLDER)
            if (data_root / "cifar-10-batches-py").is_dir():
                what = text("datasets.cifar10.what_to_put_not_python", folder=_CIFAR_FOLDER)
            raise _download_failed(_CIFAR_TITLE, data_root, what) from error
    folder = data_root / _CIFAR_FOLDER
    train_images, train_labels = _read_cifar([folder / name for name in _CIFAR_TRAIN])
    test_images, test_labels = _read_cifar([folder / name for name in _CIFAR_TEST])
    return ImageData("cifar10", list(CIFAR_CLASSES), 3, 32, (0.4914, 0.4822, 0.4465),
                     (0.2470, 0.2435, 0.2616), train_images, train_labels, test_images,
                     test_labels, [])

