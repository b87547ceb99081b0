"""Helpers shared by the tabs: library errors as gr.Error, a small dataset cache, checkpoint
picker choices and images from an upload, a bundled example or a dataset sample."""
from __future__ import annotations

import functools
import inspect
import threading
from collections import OrderedDict
from pathlib import Path

import gradio as gr

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")
FOLDER_UPLOAD = "your own images (upload a zip)"
# Errors the library raises for things a user did (RuntimeError covers DatasetUnavailable,
# PretrainedWeightsUnavailable; ValueError covers CheckpointError, ImageError and bad options).
USER_ERRORS = (ValueError, RuntimeError, OSError)


def user_error(e: BaseException) -> gr.Error:
    message = str(e).strip() or type(e).__name__
    return gr.Error(message, print_exception=False)


def friendly_errors(fn):
    """Turn the library's errors into gr.Error with the library's own sentence (no traceback)."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except gr.Error:
                raise
            except USER_ERRORS as e:
                raise user_error(e) from None
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except USER_ERRORS as e:
            raise user_error(e) from None
    return wrapper


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

_CACHE: OrderedDict = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 3


def dataset_choices() -> list[str]:
    from ..datasets import list_datasets

    return list_datasets()


def load_data(config):
    """The data a TrainConfig trains on (training.load_data, as the CLI builds it), remembering the
    last few (the same data is asked for again and again: a second run, a comparison, the Augment
    tab's samples). Callers must not modify it."""
    from ..training import data_key, load_data as build

    key = data_key(config)
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    data = build(config)
    with _CACHE_LOCK:
        _CACHE[key] = data
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return data


def sample_data(name: str, data_root: str | None = None):
    """A dataset to show examples from: all of a downloaded one, a few hundred generated shapes."""
    from ..training import TrainConfig

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
    acc = f", test acc {info.test_acc:.1%}" if info.test_acc is not None else ""
    return f"{info.name} ({info.model} on {info.dataset}{acc})"


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
    import numpy as np

    factor = max(1, -(-min_side // max(array.shape[0], array.shape[1])))
    return np.kron(array, np.ones((factor, factor, 1), dtype=array.dtype)) if factor > 1 else array


# ---- requests ------------------------------------------------------------------------------------

def session_of(request) -> str:
    return getattr(request, "session_hash", None) or "anonymous"


def check_server_folder(settings, dataset: str) -> None:
    """On a public server a typed `folder:PATH` must lie inside the data folder: otherwise a visitor
    could read any images on the machine, other visitors' uploads among them."""
    from ..datasets import FOLDER_PREFIX, resolve_data_root

    if not (settings.public and dataset.startswith(FOLDER_PREFIX)):
        return
    root = Path(resolve_data_root(settings.data_root)).resolve()
    try:
        inside = Path(dataset[len(FOLDER_PREFIX):]).resolve().is_relative_to(root)
    except (OSError, ValueError):
        inside = False
    if not inside:
        raise ValueError(f"On this shared server, folder: datasets must be inside the data folder "
                         f"({root.name}/). Upload a zip of class folders instead.")


def format_seconds(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    return f"{seconds // 60} min {seconds % 60:02d} s"
