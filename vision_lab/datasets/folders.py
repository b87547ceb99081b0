"""Your own images: a folder or zip of class folders, loaded as "folder:PATH".

Zips are read in memory and never extracted: every member's path is checked (no absolute paths,
no "..", no symlinks) and the total size and file count are capped before anything is read.
"""
from __future__ import annotations

import io
import os
import re
import stat
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image, ImageOps

from .base import ImageData, channel_stats, env_int, format_bytes, plural, say

FOLDER_PREFIX = "folder:"
DEFAULT_FOLDER_IMAGE_SIZE = 64

# Caps for reading zip files, so an uploaded archive cannot exhaust memory.
MAX_ARCHIVE_BYTES = env_int("VISION_LAB_MAX_ARCHIVE_MB", 1024) * 1024 * 1024
MAX_ARCHIVE_FILES = env_int("VISION_LAB_MAX_ARCHIVE_FILES", 50_000)


FOLDER_OPTIONS = frozenset({"test_fraction", "max_bytes", "max_files", "progress"})
_GRAYSCALE_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}

# Why files were skipped, as (one file, several files) phrases.
_SKIP_REASONS = {
    "not_image": ("that is not an image", "that are not images"),
    "too_large": ("that is too large to decode safely", "that are too large to decode safely"),
    "unreadable": ("that could not be read from the zip file",
                   "that could not be read from the zip file"),
    "nested_zip": ("that is a zip inside the zip (not opened)",
                   "that are zips inside the zip (not opened)"),
    "symlink": ("that is a symbolic link", "that are symbolic links"),
    "outside": ("that is not inside a class folder", "that are not inside a class folder"),
}


@dataclass
class _Tree:
    """File and folder paths (as tuples of names) of a folder or zip, hidden ones left out."""
    files: dict[tuple[str, ...], Callable[[], Any]]  # path -> opens it for PIL
    folders: set[tuple[str, ...]]
    skipped: dict[str, list[str]] = field(default_factory=dict)

    def skip(self, reason: str, name: str) -> None:
        self.skipped.setdefault(reason, []).append(name)


def _ignored(parts: tuple[str, ...]) -> bool:
    # Hidden files, and the resource forks macOS adds to the zips it makes.
    return any(part.startswith(".") or part == "__MACOSX" for part in parts)


def _scan_directory(root: Path) -> _Tree:
    tree = _Tree({}, set())
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = [sub for sub in subfolders if not _ignored((sub,))]  # don't descend
        relative = Path(folder).relative_to(root).parts
        tree.folders.update(relative + (sub,) for sub in subfolders)
        for name in names:
            if not _ignored((name,)):
                path = Path(folder, name)
                tree.files[relative + (name,)] = lambda path=path: path
    return tree


def _zip_member_name(info: zipfile.ZipInfo) -> str:
    # Zips without the UTF-8 flag get cp437 names from zipfile, but most such
    # zips (macOS, Linux tools) really hold UTF-8; recover it where it decodes.
    if info.flag_bits & 0x800:
        return info.filename
    try:
        return info.filename.encode("cp437").decode("utf-8")
    except UnicodeError:
        return info.filename


def _safe_member_parts(name: str) -> tuple[str, ...]:
    unified = name.replace("\\", "/")
    parts = tuple(p for p in unified.split("/") if p not in ("", "."))
    if unified.startswith("/") or re.match(r"[A-Za-z]:", unified) or ".." in parts:
        raise ValueError(f"The zip file contains an unsafe path {name!r} (absolute or with '..'); "
                         f"refusing to read it.")
    return parts


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


class _ReadBudget:
    """Bytes that may still be read from an archive, whatever its headers claim."""

    def __init__(self, limit: int):
        self.limit = limit
        self.remaining = limit

    def read(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> io.BytesIO:
        with archive.open(info) as member:
            data = member.read(self.remaining + 1)
        if len(data) > self.remaining:
            raise ValueError(f"The zip file unpacks to more than {format_bytes(self.limit)}, the "
                             f"limit (set VISION_LAB_MAX_ARCHIVE_MB to raise it).")
        self.remaining -= len(data)
        return io.BytesIO(data)


def _scan_zip(archive: zipfile.ZipFile, max_bytes: int, max_files: int) -> _Tree:
    """Check every member before reading any, then map paths to in-memory readers."""
    members = [(info, _safe_member_parts(_zip_member_name(info))) for info in archive.infolist()]
    files = [info for info, _ in members if not info.is_dir()]
    if len(files) > max_files:
        raise ValueError(f"The zip file has {len(files):,} files, more than the limit of "
                         f"{max_files:,} (set VISION_LAB_MAX_ARCHIVE_FILES to raise it).")
    declared = sum(info.file_size for info in files)
    if declared > max_bytes:
        raise ValueError(f"The zip file unpacks to {format_bytes(declared)}, more than the "
                         f"{format_bytes(max_bytes)} limit (set VISION_LAB_MAX_ARCHIVE_MB to "
                         f"raise it).")
    budget = _ReadBudget(max_bytes)
    tree = _Tree({}, set())
    for info, parts in members:
        if not parts or _ignored(parts):
            continue
        name = "/".join(parts)
        if info.is_dir():
            tree.folders.add(parts)
        elif _is_symlink(info):
            tree.skip("symlink", name)
        elif name.lower().endswith(".zip"):
            tree.skip("nested_zip", name)
        else:
            tree.files[parts] = lambda info=info: budget.read(archive, info)
    return tree


@dataclass
class _Layout:
    """Where the images are: class name -> files, per split (test is None to split them)."""
    train: dict[str, list[tuple[str, ...]]]
    test: dict[str, list[tuple[str, ...]]] | None


def _children(tree: _Tree, prefix: tuple[str, ...]) -> tuple[set[str], bool]:
    """Folder names directly under prefix, and whether files sit there directly."""
    depth = len(prefix)
    folders = {p[depth] for p in tree.folders if len(p) > depth and p[:depth] == prefix}
    folders |= {p[depth] for p in tree.files if len(p) > depth + 1 and p[:depth] == prefix}
    has_files = any(len(p) == depth + 1 and p[:depth] == prefix for p in tree.files)
    return folders, has_files


def _class_files(tree: _Tree, prefix: tuple[str, ...]) -> dict[str, list[tuple[str, ...]]]:
    depth = len(prefix)
    classes: dict[str, list[tuple[str, ...]]] = {}
    for folder in tree.folders:
        if len(folder) == depth + 1 and folder[:depth] == prefix:
            classes.setdefault(folder[depth], [])
    for path in sorted(tree.files):
        if path[:depth] != prefix:
            continue
        if len(path) == depth + 1:
            tree.skip("outside", "/".join(path))
        else:
            # Images in subfolders of a class folder belong to that class.
            classes.setdefault(path[depth], []).append(path)
    return dict(sorted(classes.items()))


def _find_layout(tree: _Tree, shown_path: str) -> _Layout:
    prefix: tuple[str, ...] = ()
    folders, has_files = _children(tree, prefix)
    # Step through lone wrapper folders (like the one a zip of a folder has):
    # a lone folder that holds folders and no files is no class folder.
    while len(folders) == 1 and not has_files:
        inner, inner_has_files = _children(tree, prefix + tuple(folders))
        if not inner or inner_has_files:
            break
        prefix += tuple(folders)
        folders, has_files = inner, inner_has_files
    by_lower = {name.lower(): name for name in folders}
    if "train" in by_lower and "test" in by_lower:
        train_prefix, test_prefix = prefix + (by_lower["train"],), prefix + (by_lower["test"],)
        train, test = _class_files(tree, train_prefix), _class_files(tree, test_prefix)
        expected = f"{shown_path}/{'/'.join(train_prefix)}/<class name>/<images>"
    else:
        train, test = _class_files(tree, prefix), None
        expected = "/".join([shown_path, *prefix, "<class name>/<images>"])
    _check_classes(train, test, shown_path, expected)
    return _Layout(train, test)


def _check_classes(train: dict, test: dict | None, shown_path: str, expected: str) -> None:
    if not train:
        raise ValueError(f"Looked in '{shown_path}' but found no class folders: expected {expected}.")
    names = sorted(set(train) | set(test or {}))
    by_lower: dict[str, str] = {}
    for name in names:
        if name.lower() in by_lower:
            raise ValueError(f"Class folders '{by_lower[name.lower()]}' and '{name}' differ only "
                             f"by upper/lower case; rename or merge them.")
        by_lower[name.lower()] = name
    if len(train) < 2:
        raise ValueError(f"'{shown_path}' has only one class folder ('{next(iter(train))}'); a "
                         f"classifier needs at least 2 classes: expected {expected}.")
    extra = sorted(set(test or {}) - set(train))
    if extra:
        raise ValueError(f"The test folder has class folders that the train folder lacks: "
                         f"{', '.join(extra)}.")


def _open_tree(path: Path, shown_path: str, max_bytes: int, max_files: int):
    """Scan a folder or zip; returns (tree, zip file to close or None)."""
    if not path.exists():
        raise ValueError(f"The folder or zip file '{shown_path}' does not exist.")
    if path.is_dir():
        return _scan_directory(path), None
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        raise ValueError(f"'{shown_path}' is neither a folder nor a readable zip file.") from None
    try:
        return _scan_zip(archive, max_bytes, max_files), archive
    except BaseException:
        archive.close()
        raise


def folder_info(path_text: str) -> dict:
    tree, archive = _open_tree(Path(path_text).expanduser(), path_text, MAX_ARCHIVE_BYTES,
                               MAX_ARCHIVE_FILES)
    if archive is not None:
        archive.close()
    layout = _find_layout(tree, path_text)
    count = sum(len(files) for files in layout.train.values())
    if layout.test is not None:
        count += sum(len(files) for files in layout.test.values())
    return {
        "name": FOLDER_PREFIX + path_text,
        "classes": list(layout.train),
        "channels": None,
        "image_size": DEFAULT_FOLDER_IMAGE_SIZE,
        "description": f"Your images from {path_text}: {len(layout.train)} class folders, "
                       f"{count:,} files.",
        "needs_download": False,
    }


def _flatten(image: Image.Image) -> Image.Image:
    """RGB, with any transparency shown over white (as a viewer would), not over black."""
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def _decode(source: Any, size: int) -> tuple[np.ndarray, bool]:
    """(size, size, 3) uint8 pixels and whether the file was grayscale."""
    with warnings.catch_warnings():
        # PIL only warns between 1x and 2x its pixel limit; refuse those too.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(source) as image:  # the first frame of an animation
            # JPEGs can decode straight at a fraction of their size: far faster for photos.
            image.draft(image.mode, (size, size))
            grayscale = image.mode in _GRAYSCALE_MODES
            image = ImageOps.exif_transpose(image)
            image = _flatten(image).resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(image), grayscale


@dataclass
class _Decoded:
    pixels: list[np.ndarray] = field(default_factory=list)  # (size, size, 3) uint8 each
    grayscale: list[bool] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)

    def tensors(self, channels: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.pixels:
            return (torch.zeros(0, channels, size, size, dtype=torch.uint8),
                    torch.zeros(0, dtype=torch.int64))
        images = torch.from_numpy(np.stack(self.pixels)).permute(0, 3, 1, 2)[:, :channels]
        return images.contiguous(), torch.tensor(self.labels, dtype=torch.int64)


def _decode_classes(classes: dict[str, list[tuple[str, ...]]], tree: _Tree, size: int,
                    report: Callable[[], None]) -> _Decoded:
    decoded = _Decoded()
    for label, paths in enumerate(classes.values()):
        for path in paths:
            name = "/".join(path)
            try:
                source = tree.files[path]()
            except (zipfile.BadZipFile, OSError, EOFError):
                tree.skip("unreadable", name)
                continue
            try:
                pixels, grayscale = _decode(source, size)
            except (Image.DecompressionBombError, Image.DecompressionBombWarning):
                tree.skip("too_large", name)
                continue
            except Exception:  # PIL raises many kinds of errors on files it cannot read
                tree.skip("not_image", name)
                continue
            decoded.pixels.append(pixels)
            decoded.grayscale.append(grayscale)
            decoded.labels.append(label)
            report()
    return decoded


def _split_per_class(labels: list[int], test_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices of a random train/test split that keeps each class in both where it can."""
    generator = torch.Generator().manual_seed(seed)
    by_class: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(label, []).append(i)
    train, test = [], []
    for label in sorted(by_class):
        members = by_class[label]
        order = torch.randperm(len(members), generator=generator).tolist()
        # At least one test image where there are two, and always one training image.
        n_test = min(max(1, round(len(members) * test_fraction)), len(members) - 1)
        test += sorted(members[i] for i in order[:n_test])
        train += sorted(members[i] for i in order[n_test:])
    return train, test


def _skip_messages(skipped: dict[str, list[str]]) -> list[str]:
    messages = []
    for reason, (one, several) in _SKIP_REASONS.items():
        names = skipped.get(reason, [])
        if names:
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5:,} more" if len(names) > 5 else "")
            phrase = one if len(names) == 1 else several
            messages.append(f"Skipped {plural(len(names), 'file')} {phrase}: {shown}.")
    return messages


def load_folder(path_text: str, image_size: int, seed: int, test_fraction: float = 0.2,
                 max_bytes: int | None = None, max_files: int | None = None,
                 progress=None) -> ImageData:
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be between 0 and 1, not {test_fraction}.")
    if image_size < 1:
        raise ValueError(f"image_size must be a positive number of pixels, not {image_size}.")
    max_bytes = MAX_ARCHIVE_BYTES if max_bytes is None else max_bytes
    max_files = MAX_ARCHIVE_FILES if max_files is None else max_files
    tree, archive = _open_tree(Path(path_text).expanduser(), path_text, max_bytes, max_files)
    try:
        layout = _find_layout(tree, path_text)
        # Test class folders are labelled by their position among the training classes.
        test_files = {name: (layout.test or {}).get(name, []) for name in layout.train}
        total = sum(len(paths) for paths in [*layout.train.values(), *test_files.values()])
        say(progress, f"Reading {total:,} files from {path_text} …")
        done = 0

        def report():
            nonlocal done
            done += 1
            if done % 500 == 0:
                say(progress, f"Read {done:,} of {total:,} files …")

        train = _decode_classes(layout.train, tree, image_size, report)
        test = _decode_classes(test_files, tree, image_size, report)
    finally:
        if archive is not None:
            archive.close()

    classes = list(layout.train)
    empty = [name for label, name in enumerate(classes) if label not in set(train.labels)]
    if empty:
        raise ValueError(f"Class folder{'s' if len(empty) > 1 else ''} {', '.join(map(repr, empty))} "
                         f"in '{path_text}' {'have' if len(empty) > 1 else 'has'} no images.")
    channels = 1 if all(train.grayscale + test.grayscale) else 3
    train_images, train_labels = train.tensors(channels, image_size)
    test_images, test_labels = test.tensors(channels, image_size)
    if layout.test is None:
        train_index, test_index = _split_per_class(train.labels, test_fraction, seed)
        test_images, test_labels = train_images[test_index], train_labels[test_index]
        train_images, train_labels = train_images[train_index], train_labels[train_index]
    if len(test_images) == 0:
        raise ValueError(f"'{path_text}' has no images to test on: add images to its test folder, "
                         f"or at least 2 images to a class folder.")
    mean, std = channel_stats(train_images)
    return ImageData(FOLDER_PREFIX + path_text, classes, channels, image_size, mean, std,
                     train_images.contiguous(), train_labels, test_images.contiguous(),
                     test_labels, _skip_messages(tree.skipped))
