"""A dataset the class draws: drawings kept MNIST-style, written as class folders, split into the
drawings a model learns from and those it is measured on, and the shipped MNIST model compared
with one trained on the class's own drawings (domain shift, measured).

Every drawing is checked like an uploaded image (`preprocessing.open_image`: not an image, damaged,
too many pixels) and made MNIST-style on arrival (`sketch.mnist_style`: white on black, cropped,
20 px box, centred by mass, 28x28): the class model and the MNIST model then see the same kind of
image, and what differs between them is only what they learned from. The database
(serving.class_db) keeps the drawings; this module never writes to it except through `add_drawing`.

Class names are whatever the lecturer typed (plain text, `class_db.plain_name`); folders on disk
and in a zip get safe names made from them (`folder_names`), and a tree keeps the mapping back in
a hidden `.classes.json` (hidden files are skipped by the folder loader).
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import unicodedata
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from .datasets import FOLDER_PREFIX
from .datasets.base import split_per_class
from .i18n import text
from .serving.class_db import ClassDB, ClassError, Collection, Drawing

HELD_OUT = 0.25     # of each class's drawings, never trained on: the comparison is measured on them
SPLIT_SEED = 0      # the same drawings give the same split, every time and on every machine
# A class trains only with at least this many drawings: one held out, and two to train on, of
# which training keeps one for its validation set (datasets._hold_out_validation needs two).
MIN_PER_CLASS = 3
TREES = "trees"     # under the class folder: the folder datasets the class model trains on
CLASSES_FILE = ".classes.json"
WRONG_SHOWN = 8     # drawings a model got wrong, shown beside its accuracy
# Characters no file system takes in a name (Windows' list, which includes the others'), and the
# names Windows keeps for devices.
_UNSAFE = re.compile(r'[/\\:*?"<>|\x00-\x1f]')
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)),
             *(f"lpt{i}" for i in range(10))}


# ---- drawings in -----------------------------------------------------------------------------

def drawing_png(image) -> bytes:
    """A drawing or photo (path, bytes, numpy or PIL) as an MNIST-style 28x28 grayscale PNG.
    Raises ImageError (not an image, damaged, too large) or ValueError (nothing drawn)."""
    from .sketch import mnist_style

    pixels = mnist_style(image)[0].numpy()
    out = io.BytesIO()
    Image.fromarray(pixels, "L").save(out, format="PNG")
    return out.getvalue()


def add_drawing(db: ClassDB, collection_id: int, label: str, visitor: str, image) -> Drawing:
    """Check and convert a drawing, then keep it under `label` (the database checks the label,
    the caps and the visitor's pace)."""
    return db.add_drawing(collection_id, label, visitor, drawing_png(image))


def read_drawing(db: ClassDB, drawing: Drawing) -> torch.Tensor:
    """A kept drawing as a uint8 tensor (1, 28, 28)."""
    with Image.open(db.drawing_path(drawing)) as img:
        return torch.frombuffer(bytearray(img.convert("L").tobytes()), dtype=torch.uint8
                                ).view(1, img.height, img.width)


# ---- drawings out: class folders -----------------------------------------------------------------

def folder_names(classes: list[str]) -> dict[str, str]:
    """A safe folder name for each class name: characters no file system takes become "_",
    leading dots (hidden) and trailing dots or spaces (Windows drops them) go, a device name
    gets a "_" before it, and names that end up alike (ignoring case) get "-2", "-3"..."""
    names, taken = {}, set()
    for name in classes:
        safe = _UNSAFE.sub("_", unicodedata.normalize("NFC", name)).strip().lstrip(".").rstrip(". ")
        safe = safe or "_"
        if safe.split(".")[0].lower() in _RESERVED:
            safe = "_" + safe
        unique, n = safe, 1
        while unique.casefold() in taken:
            n += 1
            unique = f"{safe}-{n}"
        taken.add(unique.casefold())
        names[name] = unique
    return names


def write_zip(db: ClassDB, collection: Collection, path) -> Path:
    """The collection as a zip of class folders, `<collection>/<class>/<drawing id>.png`, every
    class a folder (an empty one too): what the Train tab's folder upload and
    `python -m vision_lab train --dataset folder:FILE.zip` read. Written to a temp name and
    renamed, so a half-written zip is never found under `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    top = folder_names([collection.name])[collection.name]
    folders = folder_names(collection.classes)
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:   # PNGs: compressed
        for name in collection.classes:
            archive.writestr(zipfile.ZipInfo(f"{top}/{folders[name]}/"), b"")
        for drawing in db.drawings(collection.id):
            if drawing.label in folders:
                archive.write(db.drawing_path(drawing), f"{top}/{folders[drawing.label]}/{drawing.id}.png")
    tmp.replace(path)
    return path


def split(drawings: list[Drawing], fraction: float = HELD_OUT,
          seed: int = SPLIT_SEED) -> tuple[list[Drawing], list[Drawing]]:
    """(train, held out): `fraction` of each class's drawings held out, chosen with `seed`, at
    least one of every class that has two or more (datasets.base.split_per_class)."""
    if not drawings:
        return [], []
    drawings = sorted(drawings, key=lambda d: d.id)
    labels = sorted({d.label for d in drawings})
    index = torch.tensor([labels.index(d.label) for d in drawings])
    kept, held = split_per_class(index, fraction, seed)
    return [drawings[i] for i in kept.tolist()], [drawings[i] for i in held.tolist()]


@dataclass
class Tree:
    """A collection written as a folder dataset: `train/` and `test/` class folders."""
    path: Path
    classes: list[str]                         # the classes it trains on, in the lecturer's order
    left_out: list[str] = field(default_factory=list)   # classes with too few drawings
    train: int = 0
    held_out: int = 0

    @property
    def dataset(self) -> str:
        return FOLDER_PREFIX + str(self.path)


def write_tree(db: ClassDB, collection: Collection) -> Tree:
    """The collection's drawings as a folder dataset under the class folder, split into train/
    and test/ (the held-out drawings). Classes with fewer than MIN_PER_CLASS drawings are left
    out (named in `left_out`); fewer than two classes left is an error saying so. The folder is
    named by its contents, so the same drawings give the same folder (and the same run key: the
    run cache replays a training already made)."""
    drawings = db.drawings(collection.id)
    per_class = {name: [d for d in drawings if d.label == name] for name in collection.classes}
    classes = [name for name, found in per_class.items() if len(found) >= MIN_PER_CLASS]
    left_out = [name for name in collection.classes if name not in classes]
    if len(classes) < 2:
        raise ClassError(text("class.data.too_few", count=MIN_PER_CLASS))
    train, held = split([d for name in classes for d in per_class[name]])
    folders = folder_names(classes)
    digest = hashlib.sha256(json.dumps(
        [collection.id, folders, [(d.id, d.label) for d in train], [(d.id, d.label) for d in held]],
        ensure_ascii=False).encode()).hexdigest()[:12]
    root = db.folder / TREES / f"{collection.id}-{digest}"
    if not (root / CLASSES_FILE).is_file():
        tmp = root.with_name(root.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        for part, members in (("train", train), ("test", held)):
            for name in classes:
                (tmp / part / folders[name]).mkdir(parents=True, exist_ok=True)
            for d in members:
                shutil.copyfile(db.drawing_path(d), tmp / part / folders[d.label] / f"{d.id}.png")
        (tmp / CLASSES_FILE).write_text(json.dumps({folders[n]: n for n in classes},
                                                   ensure_ascii=False), encoding="utf-8")
        shutil.rmtree(root, ignore_errors=True)
        tmp.rename(root)
    return Tree(root, classes, left_out, len(train), len(held))


def forget_drawing(db: ClassDB, drawing_id: int) -> None:
    """Remove a deleted drawing's copies from the trees (a lecturer deletes a drawing so that
    nobody sees it again)."""
    for copy in (db.folder / TREES).glob(f"*/*/*/{int(drawing_id)}.png"):
        copy.unlink(missing_ok=True)


# ---- the comparison ----------------------------------------------------------------------------

@dataclass
class Score:
    """One model on the held-out drawings."""
    name: str
    acc: float | None                 # None: no held-out drawing is of a class it knows
    measured: int                     # drawings it was measured on
    per_class: dict[str, float | None]
    wrong: list[tuple[torch.Tensor, str, str]]   # (image, true class, predicted class)


@dataclass
class Comparison:
    mnist: Score
    class_model: Score
    held_out: int
    classes: list[str]


def tree_of(db: ClassDB, checkpoint_metadata: dict) -> Path:
    """The tree a class model was trained on, from its checkpoint's metadata; a model trained on
    anything else is refused (its "held-out" drawings would not be the class's)."""
    dataset = str(checkpoint_metadata.get("dataset", ""))
    trees = (db.folder / TREES).resolve()
    path = Path(dataset[len(FOLDER_PREFIX):]).resolve() if dataset.startswith(FOLDER_PREFIX) else None
    if path is None or path.parent != trees or not (path / CLASSES_FILE).is_file():
        raise ClassError(text("class.data.not_class_model"))
    return path


def held_out_drawings(tree: Path) -> tuple[torch.Tensor, list[str]]:
    """The held-out drawings of a tree (uint8 N x 1 x 28 x 28) and their class names."""
    names = json.loads((tree / CLASSES_FILE).read_text(encoding="utf-8"))
    images, labels = [], []
    for folder, name in names.items():
        for png in sorted((tree / "test" / folder).glob("*.png"), key=lambda p: int(p.stem)):
            with Image.open(png) as img:
                gray = img.convert("L")
                images.append(torch.frombuffer(bytearray(gray.tobytes()), dtype=torch.uint8
                                               ).view(1, gray.height, gray.width))
            labels.append(name)
    if not images:
        raise ClassError(text("class.data.nothing_held_out"))
    return torch.stack(images), labels


def _index_in(name: str, classes: list[str]) -> int | None:
    """The index of class `name` among a model's classes: the same name, or MNIST's "7 - seven"
    for "7"."""
    for i, known in enumerate(classes):
        if name == known or known.split(" - ")[0] == name:
            return i
    return None


def score(ckpt, images: torch.Tensor, names: list[str], shown_name: str) -> Score:
    """A loaded checkpoint on held-out drawings named by class; drawings of classes the model
    does not know are left out of its score."""
    from .evaluation import evaluate

    index = [_index_in(n, ckpt.classes) for n in names]
    known = [i for i, k in enumerate(index) if k is not None]
    per_class = dict.fromkeys(dict.fromkeys(names), None)
    if not known:
        return Score(shown_name, None, 0, per_class, [])
    x, y = images[known], torch.tensor([index[i] for i in known])
    result = evaluate(ckpt.model, x, y, ckpt.preprocessing, len(ckpt.classes), worst_k=WRONG_SHOWN)
    for name in per_class:
        if index[names.index(name)] is not None:
            per_class[name] = result.per_class_acc[index[names.index(name)]]
    wrong = [(x[m["index"]], names[known[m["index"]]], ckpt.classes[m["predicted"]])
             for m in result.most_confused]
    return Score(shown_name, result.acc, len(known), per_class, wrong)


def compare(db: ClassDB, mnist_path, class_path) -> Comparison:
    """The shipped MNIST model and the class model, each on the drawings the class model never
    saw (the held-out part of the tree it was trained on)."""
    from .checkpoints import load_checkpoint

    class_ckpt = load_checkpoint(class_path)
    tree = tree_of(db, class_ckpt.metadata)
    images, names = held_out_drawings(tree)
    # The class model's classes are the tree's folder names: say them as the lecturer typed them.
    typed = json.loads((tree / CLASSES_FILE).read_text(encoding="utf-8"))
    class_ckpt.metadata["classes"] = [typed.get(c, c) for c in class_ckpt.classes]
    mnist = score(load_checkpoint(mnist_path), images, names, Path(mnist_path).stem)
    mine = score(class_ckpt, images, names, Path(class_path).stem)
    return Comparison(mnist, mine, len(names), list(dict.fromkeys(names)))
