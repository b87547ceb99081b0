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

from ..i18n import text
from .base import ImageData, env_int, format_bytes, say, split_per_class

FOLDER_PREFIX = "folder:"
# Images keep their own size when they all share one square size up to this; larger ones are
# scaled down to it (ResNet18's ImageNet size: a batch of 64 such images is 38 MB of floats).
FOLDER_MAX_IMAGE_SIZE = 224
FOLDER_MIN_IMAGE_SIZE = 16   # the models' pooling needs a few pixels to work on
PEEK_BYTES = 64 * 1024       # an image header (with EXIF) nearly always fits

# Caps for reading zip files, so an uploaded archive cannot exhaust memory.
MAX_ARCHIVE_BYTES = env_int("VISION_LAB_MAX_ARCHIVE_MB", 1024) * 1024 * 1024
MAX_ARCHIVE_FILES = env_int("VISION_LAB_MAX_ARCHIVE_FILES", 50_000)


FOLDER_OPTIONS = frozenset({"test_fraction", "max_bytes", "max_files", "progress"})
_GRAYSCALE_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}

# Why files were skipped, in the order they are reported; each has a phrase for one file
# (datasets.folder.skip.<reason>.one) and one for several (.many) in the catalogue.
_SKIP_REASONS = ("not_image", "too_large", "unreadable", "nested_zip", "symlink", "outside")


@dataclass
class _Tree:
    """File and folder paths (as tuples of names) of a folder or zip, hidden ones left out."""
    # path -> opens it for PIL; with peek=True, only as much as its header needs
    files: dict[tuple[str, ...], Callable[..., Any]]
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
                tree.files[relative + (name,)] = lambda peek=False, path=path: path
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
        raise ValueError(text("datasets.zip.unsafe_path", name=repr(name)))
    return parts


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def _peek(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> io.BytesIO:
    """The first bytes of a member: enough for PIL to read an image's header (its size)."""
    with archive.open(info) as member:
        return io.BytesIO(member.read(PEEK_BYTES))


class _ReadBudget:
    """Bytes that may still be read from an archive, whatever its headers claim."""

    def __init__(self, limit: int):
        self.limit = limit
        self.remaining = limit

    def read(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> io.BytesIO:
        with archive.open(info) as member:
            data = member.read(self.remaining + 1)
        if len(data) > self.remaining:
            raise ValueError(text("datasets.zip.over_budget", limit=format_bytes(self.limit)))
        self.remaining -= len(data)
        return io.BytesIO(data)


def _scan_zip(archive: zipfile.ZipFile, max_bytes: int, max_files: int) -> _Tree:
    """Check every member before reading any, then map paths to in-memory readers."""
    members = [(info, _safe_member_parts(_zip_member_name(info))) for info in archive.infolist()]
    files = [info for info, _ in members if not info.is_dir()]
    if len(files) > max_files:
        raise ValueError(text("datasets.zip.too_many_files", count=len(files), limit=max_files))
    declared = sum(info.file_size for info in files)
    if declared > max_bytes:
        raise ValueError(text("datasets.zip.too_large", size=format_bytes(declared),
                              limit=format_bytes(max_bytes)))
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
            tree.files[parts] = (lambda peek=False, info=info:
                                 _peek(archive, info) if peek else budget.read(archive, info))
    return tree


@dataclass
class _Layout:
    """Where the images are: class name -> files, per split. `test` and `val` are None where the
    folder has no such split folder: they are then carved out of the training images."""
    train: dict[str, list[tuple[str, ...]]]
    test: dict[str, list[tuple[str, ...]]] | None
    val: dict[str, list[tuple[str, ...]]] | None = None

    def splits(self) -> dict[str, dict[str, list[tuple[str, ...]]]]:
        """Files of every split folder present, each labelled by the training classes' order."""
        present = {"train": self.train, "test": self.test, "val": self.val}
        return {split: {name: (files or {}).get(name, []) for name in self.train}
                for split, files in present.items() if files is not None}


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
    if "train" in by_lower and ("test" in by_lower or "val" in by_lower):
        split = {name: _class_files(tree, prefix + (by_lower[name],)) if name in by_lower else None
                 for name in ("train", "test", "val")}
        expected = text("datasets.folder.expected",
                        path=f"{shown_path}/{'/'.join(prefix + (by_lower['train'],))}")
        layout = _Layout(split["train"], split["test"], split["val"])
    else:
        layout = _Layout(_class_files(tree, prefix), None)
        expected = text("datasets.folder.expected", path="/".join([shown_path, *prefix]))
    _check_classes(layout, shown_path, expected)
    return layout


def _check_classes(layout: _Layout, shown_path: str, expected: str) -> None:
    train = layout.train
    if not train:
        raise ValueError(text("datasets.folder.no_classes", path=shown_path, expected=expected))
    names = sorted(set(train).union(layout.test or {}, layout.val or {}))
    by_lower: dict[str, str] = {}
    for name in names:
        if name.lower() in by_lower:
            raise ValueError(text("datasets.folder.case_clash", first=by_lower[name.lower()],
                                  second=name))
        by_lower[name.lower()] = name
    if len(train) < 2:
        raise ValueError(text("datasets.folder.one_class", path=shown_path, name=next(iter(train)),
                              expected=expected))
    for split in ("test", "val"):
        extra = sorted(set(getattr(layout, split) or {}) - set(train))
        if extra:
            raise ValueError(text("datasets.folder.extra_classes", split=split,
                                  classes=", ".join(extra)))


def _open_tree(path: Path, shown_path: str, max_bytes: int, max_files: int):
    """Scan a folder or zip; returns (tree, zip file to close or None)."""
    if not path.exists():
        raise ValueError(text("datasets.folder.missing", path=shown_path))
    if path.is_dir():
        return _scan_directory(path), None
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        raise ValueError(text("datasets.folder.not_folder_or_zip", path=shown_path)) from None
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
    count = sum(len(files) for split in layout.splits().values() for files in split.values())
    return {
        "name": FOLDER_PREFIX + path_text,
        "classes": list(layout.train),
        "channels": None,
        "image_size": None,  # chosen from the images' own sizes when they are loaded
        "description": text("datasets.folder.description", path=path_text,
                            classes=len(layout.train), count=count),
        "needs_download": False,
    }


def _header_size(source: Any) -> tuple[int, int] | None:
    """(width, height) from an image's header, without decoding it; None if PIL cannot tell."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a decompression bomb is refused when it is decoded
            with Image.open(source) as image:
                return image.size
    except Exception:  # noqa: BLE001 - not an image, or a header past PEEK_BYTES: decoding says
        return None


def choose_image_size(sizes: list[tuple[int, int]]) -> tuple[int, str | None]:
    """The side every image is resized to, and a sentence saying why when it is not simply the
    images' own size. One square size up to FOLDER_MAX_IMAGE_SIZE is kept as it is: upscaling
    32 px images to 64 px would cost four times the compute for no accuracy."""
    distinct = sorted(set(sizes))
    if len(distinct) == 1 and distinct[0][0] == distinct[0][1] <= FOLDER_MAX_IMAGE_SIZE:
        return max(distinct[0][0], FOLDER_MIN_IMAGE_SIZE), None
    shorter = sorted(min(w, h) for w, h in sizes)
    median = shorter[len(shorter) // 2]
    size = max(FOLDER_MIN_IMAGE_SIZE, min(median, FOLDER_MAX_IMAGE_SIZE))
    bound = ("" if size == median else
             text("datasets.size.raised", size=size) if size > median else
             text("datasets.size.lowered", size=size))
    if len(distinct) == 1:
        (w, h), = distinct
        found = text("datasets.size.all_square" if w == h else "datasets.size.all_not_square",
                     width=w, height=h)
        why = text("datasets.size.why_shorter_side", bound=bound)
    else:
        found = text("datasets.size.several", count=len(distinct), smallest=_by(distinct[0]),
                     largest=_by(distinct[-1]))
        why = (text("datasets.size.why_median_bounded", median=median, bound=bound) if bound
               else text("datasets.size.why_median"))
    return size, text("datasets.size.chosen", found=found, size=size, why=why)


def _by(size: tuple[int, int]) -> str:
    return f"{size[0]}×{size[1]}"


def _image_sizes(splits: dict[str, dict[str, list[tuple[str, ...]]]], tree: _Tree) -> list[tuple[int, int]]:
    sizes = []
    for classes in splits.values():
        for paths in classes.values():
            for path in paths:
                try:
                    size = _header_size(tree.files[path](peek=True))
                except (zipfile.BadZipFile, OSError, EOFError):
                    size = None
                if size is not None:
                    sizes.append(size)
    return sizes


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


def _skip_messages(skipped: dict[str, list[str]]) -> list[str]:
    messages = []
    for reason in _SKIP_REASONS:
        names = skipped.get(reason, [])
        if names:
            shown = ", ".join(names[:5])
            if len(names) > 5:
                shown = text("datasets.folder.and_more", names=shown, more=len(names) - 5)
            number = "one" if len(names) == 1 else "many"
            messages.append(text(f"datasets.folder.skipped.{number}", count=len(names),
                                 reason=text(f"datasets.folder.skip.{reason}.{number}"),
                                 names=shown))
    return messages


def load_folder(path_text: str, image_size: int | None, seed: int, test_fraction: float = 0.2,
                max_bytes: int | None = None, max_files: int | None = None,
                progress=None) -> ImageData:
    """Images of a folder or zip of class folders, resized to `image_size` (None: chosen from
    their own sizes, see choose_image_size). Without a test/ folder, `test_fraction` of each class
    is held out as the test set, chosen with `seed`; a val/ folder becomes the validation set."""
    if not 0 < test_fraction < 1:
        raise ValueError(text("datasets.folder.test_fraction", fraction=test_fraction))
    if image_size is not None and image_size < 1:
        raise ValueError(text("datasets.folder.image_size", size=image_size))
    max_bytes = MAX_ARCHIVE_BYTES if max_bytes is None else max_bytes
    max_files = MAX_ARCHIVE_FILES if max_files is None else max_files
    tree, archive = _open_tree(Path(path_text).expanduser(), path_text, max_bytes, max_files)
    messages = []
    try:
        layout = _find_layout(tree, path_text)
        splits = layout.splits()
        if image_size is None:
            image_size, why = choose_image_size(_image_sizes(splits, tree))
            messages += [why] if why else []
        total = sum(len(paths) for classes in splits.values() for paths in classes.values())
        say(progress, text("datasets.folder.reading", count=total, path=path_text))
        counter = iter(range(1, total + 1))

        def report():
            done = next(counter)
            if done % 500 == 0:
                say(progress, text("datasets.folder.read_so_far", done=done, count=total))

        decoded = {split: _decode_classes(classes, tree, image_size, report)
                   for split, classes in splits.items()}
    finally:
        if archive is not None:
            archive.close()

    classes = list(layout.train)
    train_labels = set(decoded["train"].labels)
    empty = [name for label, name in enumerate(classes) if label not in train_labels]
    if empty:
        key = "datasets.folder.empty_classes" if len(empty) > 1 else "datasets.folder.empty_class"
        raise ValueError(text(key, names=", ".join(map(repr, empty)), path=path_text))
    channels = 1 if all(g for d in decoded.values() for g in d.grayscale) else 3
    tensors = {split: d.tensors(channels, image_size) for split, d in decoded.items()}
    train_images, train_labels = tensors["train"]
    if "test" in tensors:
        test_images, test_labels = tensors["test"]
    else:
        keep, held = split_per_class(train_labels, test_fraction, seed)
        test_images, test_labels = train_images[held], train_labels[held]
        train_images, train_labels = train_images[keep], train_labels[keep]
    if len(test_images) == 0:
        raise ValueError(text("datasets.folder.nothing_to_test", path=path_text))
    val_images, val_labels = tensors.get("val", (None, None))
    if val_images is not None:
        messages.append(text("datasets.folder.val_folder", count=len(val_images)))
    # mean and std are measured on the training images once the splits are final (load_dataset).
    return ImageData(FOLDER_PREFIX + path_text, classes, channels, image_size, None, None,
                     train_images.contiguous(), train_labels, test_images.contiguous(),
                     test_labels, messages + _skip_messages(tree.skipped),
                     val_images=val_images, val_labels=val_labels)
