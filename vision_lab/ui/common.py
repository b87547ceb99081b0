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


# ---- datasets -----------------------------------------------------------------------------------

_CACHE: OrderedDict = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 3
SHAPES_FULL = (10_000, 2_000)


def dataset_choices() -> list[str]:
    from ..datasets import list_datasets

    return list_datasets()


def load_data(name: str, data_root: str | None = None, subset_train: int | None = None,
              subset_test: int | None = None, seed: int = 0, image_size: int | None = None):
    """`load_dataset`, remembering the last few results (the same data is asked for again and
    again: a second run, a comparison, the Augment tab's samples). Callers must not modify it."""
    from ..datasets import load_dataset

    subset_train = int(subset_train) if subset_train else None
    subset_test = int(subset_test) if subset_test else None
    key = (name, data_root, subset_train, subset_test, seed, image_size)
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    options = {}
    if name == "shapes":
        # shapes is generated on the fly: make only as many images as asked for, not 12,000
        # to then throw most away (generation is the slow part). A subset is never larger than the
        # full dataset, or one API call could make the server generate millions of images.
        for split, size, full in (("train", subset_train, SHAPES_FULL[0]),
                                  ("test", subset_test, SHAPES_FULL[1])):
            if size and size > full:
                kind = "training" if split == "train" else "test"
                raise ValueError(f"subset_{split}={size} is larger than the {full} {kind} images "
                                 f"of 'shapes'.")
        options = {"n_train": subset_train or SHAPES_FULL[0], "n_test": subset_test or SHAPES_FULL[1]}
        subset_train = subset_test = None
    if name.startswith("folder:") and image_size:
        options["image_size"] = int(image_size)
    data = load_dataset(name, data_root=data_root, subset_train=subset_train,
                        subset_test=subset_test, seed=seed, **options)
    with _CACHE_LOCK:
        _CACHE[key] = data
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return data


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
    data = load_data(name, data_root, subset_train=None if name != "shapes" else 200,
                     subset_test=None if name != "shapes" else 200)
    images = data.test_images if split == "test" else data.train_images
    labels = data.test_labels if split == "test" else data.train_labels
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


def figure(fig):
    """Hand a matplotlib figure to gr.Plot (kept as one function in case we switch to images)."""
    return fig


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


# What showing a run live costs the run (benchmarks/app_overhead.py): on a 2-core machine every CPU
# second the server spends is taken from one of the training's two threads, and those two wait for
# each other at every op, so the run loses about twice what the server uses. Hence the Train and
# Compare tabs send their status line every STATUS_EVERY seconds, and redraw their figures only
# while drawing them (and gradio's handling of the result) stays within RENDER_BUDGET of the wall
# time, but at least every RENDER_MAX seconds. A loss curve takes ~0.13 s to draw and an epoch's
# three figures ~0.4 s. Measured side by side: with a status line every second and a 3% budget
# the app used 6.5% of the machine while a run trained, and the run went at 0.74 of the CLI's
# speed; with these, 2.0% and 1.01.
STATUS_EVERY, RENDER_BUDGET, RENDER_MAX = 2.0, 0.01, 15.0


def redraw_wait(draw_cost: float) -> float:
    """Seconds from one redraw to the next, after one that took `draw_cost` seconds."""
    return min(RENDER_MAX, max(STATUS_EVERY, draw_cost / RENDER_BUDGET))


def drain(q, timeout: float):
    """Events waiting in q, blocking up to `timeout` for the first one."""
    import queue as _queue

    items = []
    try:
        items.append(q.get(timeout=timeout))
        while True:
            items.append(q.get_nowait())
    except _queue.Empty:
        pass
    return items
