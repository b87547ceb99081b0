"""Helpers shared by the tabs: binding settings to a handler, a small dataset cache, checkpoint
picker choices and images from an upload, a bundled example or a dataset sample."""
from __future__ import annotations

import functools
import inspect
import threading
from pathlib import Path

from ..i18n import t, text
from ..lru import LRU
# Handlers speak the visitor's language and turn library errors into sentences: language.py
# (imported from here by the tabs).
from .language import USER_ERRORS, friendly_errors, user_error  # noqa: F401

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")
# The dataset picker's choice for an uploaded zip. Its value is the English text, a plain str
# (API callers send it, and a handler's output must not translate it); folder_upload_choice()
# pairs it with its label in the current language.
FOLDER_UPLOAD = str(text("common.folder_upload"))


def folder_upload_choice() -> tuple[str, str]:
    """(label in the current language, value) of the upload choice, for a dataset Dropdown."""
    return t("common.folder_upload"), FOLDER_UPLOAD


def with_settings(fn, settings):
    """`fn` with `settings` filled in as its first argument, for an event listener.

    functools.partial would hide fn's signature from gradio, which reads it to pass the
    gr.Request (who is asking) and to name the API's parameters."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def bound(*args, **kwargs):
            yield from fn(settings, *args, **kwargs)
    else:
        @functools.wraps(fn)
        def bound(*args, **kwargs):
            return fn(settings, *args, **kwargs)
    signature = inspect.signature(fn)
    bound.__signature__ = signature.replace(parameters=list(signature.parameters.values())[1:])
    return bound


# ---- datasets -----------------------------------------------------------------------------------

_DATA = LRU(3)  # datasets built by load_data, by (data_key, fit_subsets)


# The shipped sample of class folders, drawn by examples/make_folder_sample.py.
SAMPLE_FOLDER_ZIP = "sneakers.zip"


def sample_folder_choice(settings) -> list[tuple]:
    """The sample as a dataset choice (label, "folder:PATH"), its path as the CLI takes it from the
    app's folder (what the Train tab's command line shows); none where it is not shipped."""
    from .language import ui_text

    path = (Path(settings.examples_dir) / SAMPLE_FOLDER_ZIP).resolve()
    if not path.is_file():
        return []
    here = Path.cwd().resolve()
    shown = path.relative_to(here) if path.is_relative_to(here) else path
    return [(ui_text("common.folder_sample"), f"folder:{shown}")]


def dataset_choices() -> list[str]:
    from ..datasets import list_datasets

    return list_datasets()


def load_data(config, fit_subsets: bool = False):
    """The data a TrainConfig trains on (train_config.load_data, as the CLI builds it), remembering the
    last few (the same data is asked for again and again: a second run, a comparison, the Augment
    tab's samples). Callers must not modify it."""
    from ..train_config import data_key, load_data as build

    return _DATA.get_or_make((data_key(config), fit_subsets),
                             lambda: build(config, fit_subsets=fit_subsets))


def sample_data(name: str, data_root: str | None = None):
    """A dataset to show examples from: all of a downloaded one, a few hundred generated shapes."""
    from ..train_config import TrainConfig

    sizes = {"subset_train": 400, "subset_test": 200} if name == "shapes" else {}
    return load_data(TrainConfig(dataset=name, data_root=data_root, val_fraction=0, **sizes))


# ---- checkpoints --------------------------------------------------------------------------------

def checkpoint_choices(settings, owner=None) -> list[tuple[str, str]]:
    """(label, path) for every checkpoint this visitor may pick (shipped, shared and their own
    runs), newest first."""
    from ..checkpoints import list_checkpoints
    from .storage import visible_dirs

    return [(checkpoint_label(info), str(info.path))
            for info in list_checkpoints(*visible_dirs(settings, owner))]


def checkpoint_label(info) -> str:
    """A picker's label for a checkpoint, in the current language (choices are not rendered later:
    the handlers that list checkpoints run in the visitor's language)."""
    if info.test_acc is None:
        return t("common.checkpoint", name=info.name, model=info.model, dataset=info.dataset)
    return t("common.checkpoint_with_acc", name=info.name, model=info.model, dataset=info.dataset,
             acc=info.test_acc)


# ---- images -------------------------------------------------------------------------------------

def example_images(settings) -> list[str]:
    """Paths of the bundled example images (whatever is in examples/ right now)."""
    folder = Path(settings.examples_dir)
    if not folder.is_dir():
        return []
    return sorted(str(p) for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
                  and not p.name.startswith("."))


def dataset_sample(name: str, index: int, data_root: str | None = None, split: str = "test"):
    """One uint8 (C, H, W) image of a dataset and its class name."""
    data = sample_data(name, data_root)
    images, labels = data.split(split)
    i = int(index) % len(images)
    return images[i], data.classes[int(labels[i])]


def chw_to_numpy(image):
    """uint8 (C, H, W) tensor -> (H, W, 3) numpy array for gr.Image / gr.Gallery."""
    a = image.permute(1, 2, 0).numpy()
    if a.shape[2] == 1:
        a = a.repeat(3, axis=2)
    return a


def enlarge(array, min_side: int = 128):
    """Nearest-neighbour upscale of small images so 28 or 32 px stay crisp in the browser."""
    factor = max(1, -(-min_side // max(array.shape[0], array.shape[1])))
    return array.repeat(factor, axis=0).repeat(factor, axis=1) if factor > 1 else array


# ---- requests ------------------------------------------------------------------------------------

def session_of(request) -> str:
    return getattr(request, "session_hash", None) or "anonymous"


def check_server_folder(settings, dataset: str) -> None:
    """On a public server a typed `folder:PATH` must lie inside the data folder (or be the shipped
    sample): otherwise a visitor could read any images on the machine, other visitors' uploads
    among them."""
    from ..datasets import FOLDER_PREFIX, resolve_data_root

    if not (settings.public and dataset.startswith(FOLDER_PREFIX)):
        return
    root = Path(resolve_data_root(settings.data_root)).resolve()
    shipped = Path(settings.examples_dir).resolve()   # the sample class folders: public anyway
    try:
        target = Path(dataset[len(FOLDER_PREFIX):]).resolve()
        inside = target.is_relative_to(root) or target.is_relative_to(shipped)
    except (OSError, ValueError):
        inside = False
    if not inside:
        raise ValueError(text("common.folder_outside_data", folder=root.name))


def format_seconds(seconds: float) -> str:
    """A duration for a status line (a catalogue Text: "42 s", "3 min 05 s")."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return text("common.seconds", seconds=seconds)
    return text("common.minutes_seconds", minutes=seconds // 60, seconds=seconds % 60)


# ---- files made from a checkpoint for download ----------------------------------------------------

_MADE_FOLDERS: dict[str, Path] = {}
_MADE_LOCK = threading.Lock()


def made_from(settings, checkpoint_name, owner, kind: str, suffix: str) -> tuple[Path, Path]:
    """(the checkpoint this visitor may see by that name, where a `suffix` file made from it goes:
    a bundle, an ONNX file). The files wait in one temp folder per `kind` for gradio to copy them,
    one sub-folder per checkpoint file, so two visitors' runs of the same name never share one."""
    import hashlib
    import tempfile

    from .storage import resolve_checkpoint

    path = Path(resolve_checkpoint(settings, checkpoint_name, owner))
    with _MADE_LOCK:
        if kind not in _MADE_FOLDERS:
            _MADE_FOLDERS[kind] = Path(tempfile.mkdtemp(prefix=f"vision-lab-{kind}-"))
    folder = _MADE_FOLDERS[kind] / hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:16]
    return path, folder / f"{path.stem}{suffix}"
