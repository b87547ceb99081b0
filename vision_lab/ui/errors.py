"""The Feature maps tab's "Errors" accordion: the images behind a confusion-matrix cell.

The picked checkpoint's confusion matrix on its own dataset's test set (the test images its run was
measured on, rebuilt from the checkpoint's config) as a table, rows the true class and columns the
predicted one. Clicking a cell, or naming one with the two pickers (the /errors API), shows the test
images in it, sorted as `vision_lab.confusion` sorts them (off the diagonal the most confidently
wrong first, on it the least confident right), each with its probability and, for a model with
convolutions, its Grad-CAM overlay beside it.

The forward pass over the test set is the slow part and does not depend on the cell: it is done
once per checkpoint and kept (`_PREDICTIONS`, a small LRU), so clicks only pay for the Grad-CAMs.

What it says comes from the catalogue (`errors.*`): static text through `ui_text`, what the handlers
write as `text(...)`, said in the visitor's language by `friendly_errors`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np

from ..datasets.class_names import class_label, class_labels, class_text
from ..i18n import join, t, text
from ..lru import LRU
from . import common
from .common import friendly_errors, with_settings
from .language import ui_text
from .model_view import load_cached
from .storage import owner_of, resolve_checkpoint

CELL_LIMIT = 32        # images shown from one cell (the note says how many it holds)
SHAPES_TRAIN_MADE = 10  # shapes makes its test set apart from its training images: make few


@dataclass
class Predictions:
    """A checkpoint's predictions on its dataset's test set."""
    ckpt: object          # checkpoints.Checkpoint
    dataset: str
    images: object        # uint8 (N, C, H, W)
    labels: object        # (N,) class indices
    probs: object         # (N, K) softmax probabilities
    matrix: object        # (K, K) counts, rows true, columns predicted


_PREDICTIONS = LRU(4)


def _test_config(meta: dict, data_root):
    """The TrainConfig whose test set is the one the checkpoint's run was measured on (its dataset,
    subsets and data seed), loading as little else as that allows."""
    from ..train_config import TrainConfig

    saved = meta.get("config") or {}
    dataset = str(meta.get("dataset") or saved.get("dataset") or "")
    subset_train = saved.get("subset_train")
    if dataset == "shapes":
        subset_train = SHAPES_TRAIN_MADE  # its test images do not depend on the training ones
    return TrainConfig(dataset=dataset, data_root=data_root, subset_train=subset_train,
                       subset_test=saved.get("subset_test"),
                       data_seed=int(saved.get("data_seed", 0)),
                       image_size=saved.get("image_size"), val_fraction=0.0)


def _check_available(settings, dataset: str) -> None:
    """Raise one sentence when the checkpoint's dataset cannot be loaded here."""
    from ..datasets import DatasetUnavailable, dataset_info

    if not dataset:
        raise ValueError(text("errors.no_dataset"))
    common.check_server_folder(settings, dataset)
    try:
        missing = dataset_info(dataset, settings.data_root).get("needs_download")
    except (ValueError, OSError):
        raise DatasetUnavailable(text("errors.dataset_unavailable", dataset=dataset)) from None
    if missing:
        raise DatasetUnavailable(text("errors.dataset_offline", dataset=dataset))


def predictions(settings, checkpoint, owner=None) -> Predictions:
    """The checkpoint's predictions on its test set, computed once and kept (the key holds the
    file's modification time, so a retrained checkpoint is predicted again)."""
    path = Path(resolve_checkpoint(settings, checkpoint, owner))
    ckpt = load_cached(path)
    config = _test_config(ckpt.metadata, settings.data_root)
    key = (str(path.resolve()), path.stat().st_mtime_ns, config.dataset, str(settings.data_root))
    return _PREDICTIONS.get_or_make(key, lambda: _predict(settings, path, ckpt, config))


def _predict(settings, path, ckpt, config) -> Predictions:
    """The forward pass over the checkpoint's test set that `predictions` keeps."""
    from ..confusion import confusion_matrix, predict_probabilities

    _check_available(settings, config.dataset)
    data = common.load_data(config)
    images, labels = data.split("test")
    if len(data.classes) != len(ckpt.classes) or images.shape[1] != ckpt.preprocessing.channels:
        raise ValueError(text("errors.dataset_mismatch", name=path.stem, dataset=config.dataset))
    probs = predict_probabilities(ckpt.model, ckpt.preprocessing, images)
    return Predictions(ckpt, config.dataset, images, labels, probs,
                       confusion_matrix(probs, labels))


def _class_index(classes: list[str], value, which: str) -> int:
    """A class named by the picker (or an API caller: its name, or its index) -> its index."""
    if value in classes:
        return classes.index(value)
    try:
        index = int(str(value).strip())
    except (TypeError, ValueError):
        index = -1
    if 0 <= index < len(classes):
        return index
    raise ValueError(text("errors.no_such_class", which=text(f"errors.which.{which}"),
                          value=repr(value), classes=", ".join(classes)))


def _shown(image_chw, overlay) -> np.ndarray:
    """The test image enlarged, with its Grad-CAM overlay beside it when there is one."""
    image = common.enlarge(common.chw_to_numpy(image_chw))
    if overlay is None:
        return image
    overlay = common.enlarge(np.asarray(overlay))
    gap = np.full((image.shape[0], max(4, image.shape[1] // 32), 3), 255, dtype=np.uint8)
    return np.concatenate([image, gap, overlay], axis=1)


def cell_gallery(settings, checkpoint, true_class, predicted_class, owner=None) -> tuple:
    """(gallery items (image, caption), note) for one cell of the checkpoint's confusion matrix."""
    from ..confusion import confusion_cell
    from ..models import conv_layers

    found = predictions(settings, checkpoint, owner)
    ckpt, classes = found.ckpt, found.ckpt.classes
    true = _class_index(classes, true_class, "true")
    predicted = _class_index(classes, predicted_class, "predicted")
    cell = confusion_cell(ckpt.model, ckpt.preprocessing, found.images, found.labels, true,
                          predicted, limit=CELL_LIMIT, probs=found.probs)
    names = dict(true=class_text(classes[true]), predicted=class_text(classes[predicted]))
    if cell.total == 0:
        return [], text("errors.empty_cell", **names)
    items = [(_shown(image.image, image.overlay),
              text("errors.caption", index=image.index, predicted=names["predicted"],
                   prob=image.confidence))
             for image in cell.images]
    order = "errors.order_right" if true == predicted else "errors.order_wrong"
    notes = [text("errors.cell_note", total=cell.total, shown=len(items), **names), text(order)]
    if conv_layers(ckpt.model):
        notes.append(text("errors.cam_note"))
    return items, join(*notes)


def matrix_table(found: Predictions) -> dict:
    """The confusion matrix as the table's value: the first column the true class, then one column
    per predicted class (headers in the visitor's language: tables are not rendered later)."""
    classes = class_labels(found.ckpt.classes)  # shown in the visitor's language
    rows = [[name, *map(int, counts)] for name, counts in zip(classes, found.matrix.tolist())]
    return {"headers": [t("errors.true_vs_predicted"), *classes], "data": rows}


# ---- this accordion -----------------------------------------------------------------------------

def layout() -> dict:
    """Draw the accordion (in the Feature maps tab, below its images). Returns its components."""
    view = {"open": gr.State(False)}  # whether the accordion is open (a new pick then shows)
    with gr.Accordion(ui_text("errors.group"), open=False, elem_id="fm-errors") as view["group"]:
        gr.Markdown(ui_text("errors.intro"))
        view["show_matrix"] = gr.Button(ui_text("errors.show_matrix"), size="sm",
                                        elem_id="fm-errors-matrix-button")
        view["matrix_note"] = gr.Markdown(elem_id="fm-errors-matrix-note")
        view["matrix"] = gr.Dataframe(label=ui_text("errors.matrix"), interactive=False,
                                      elem_id="fm-errors-matrix")
        with gr.Row():
            view["true_class"] = gr.Dropdown(label=ui_text("errors.true_class"), choices=[],
                                             allow_custom_value=True)
            view["predicted_class"] = gr.Dropdown(label=ui_text("errors.predicted_class"),
                                                  choices=[], allow_custom_value=True)
            view["show_cell"] = gr.Button(ui_text("errors.show_cell"), variant="primary",
                                          elem_id="fm-errors-show")
        view["cell_note"] = gr.Markdown(elem_id="fm-errors-cell-note")
        view["gallery"] = gr.Gallery(label=ui_text("errors.gallery"), columns=4, height="auto",
                                     object_fit="contain", elem_id="fm-errors-gallery")
    return view


MATRIX_OUTPUTS = ("matrix", "matrix_note", "true_class", "predicted_class", "gallery", "cell_note")


@friendly_errors
def show_matrix(settings, checkpoint, request: gr.Request = None):
    """The checkpoint's confusion matrix on its test set, and the class pickers for its cells;
    a checkpoint whose test set cannot be loaded here gets the sentence saying why instead."""
    try:
        found = predictions(settings, checkpoint, owner_of(request))
    except common.USER_ERRORS as e:
        # The library's own sentence (a catalogue Text when it has one), where the matrix goes.
        said = e.args[0] if e.args and isinstance(e.args[0], str) else str(e)
        return cleared()[:1] + (said,) + cleared()[2:]
    classes = found.ckpt.classes
    total = int(found.matrix.sum())
    right = int(found.matrix.trace())
    note = text("errors.matrix_note", name=Path(str(checkpoint)).stem, dataset=found.dataset,
                total=total, right=right, acc=right / max(total, 1))
    wrong = found.matrix.numpy().copy()
    np.fill_diagonal(wrong, 0)
    true, predicted = np.unravel_index(int(wrong.argmax()), wrong.shape)  # the most common error
    if wrong.max() == 0:
        true = predicted = 0
    choices = [(class_label(name), name) for name in classes]  # the values stay the names
    return (matrix_table(found), note,
            gr.update(choices=choices, value=classes[true]),
            gr.update(choices=choices, value=classes[predicted]), [], "")


@friendly_errors
def show_errors(settings, checkpoint, true_class, predicted_class, request: gr.Request = None):
    """The test images in one cell of the checkpoint's confusion matrix (true class, predicted
    class: names, or indices), each captioned with its probability; an empty cell says so."""
    return cell_gallery(settings, checkpoint, true_class, predicted_class, owner_of(request))


@friendly_errors
def on_cell(settings, checkpoint, table, evt: gr.SelectData, request: gr.Request = None):
    """A click on the table: the pickers name its cell and the gallery shows it (a click on the
    first column, the true class's name, changes nothing)."""
    row, column = evt.index
    if column == 0 or not _first_column(table):
        return (gr.skip(),) * 4
    # The table names the classes in the visitor's language; the pickers take the names.
    classes = predictions(settings, checkpoint, owner_of(request)).ckpt.classes
    true, predicted = classes[row], classes[column - 1]
    items, note = cell_gallery(settings, checkpoint, true, predicted, owner_of(request))
    return true, predicted, items, note


def _first_column(table) -> list:
    if table is None:
        return []
    if hasattr(table, "iloc"):  # a pandas DataFrame
        return list(table.iloc[:, 0]) if table.shape[1] else []
    return [row[0] for row in table.get("data", [])] if isinstance(table, dict) else []


def cleared() -> tuple:
    """No matrix, no pickers' classes, no images (MATRIX_OUTPUTS)."""
    return (None, "", gr.update(choices=[], value=None), gr.update(choices=[], value=None), [], "")


@friendly_errors
def on_checkpoint(settings, checkpoint, is_open, request: gr.Request = None):
    """Another checkpoint: the matrix shown is not its own. With the accordion open, show its
    matrix; closed, clear it (opening the accordion shows it)."""
    if is_open:
        return show_matrix(settings, checkpoint, request)
    return cleared()


def wire(settings, view: dict, picker) -> None:
    private = dict(api_visibility="private")
    outputs = [view[name] for name in MATRIX_OUTPUTS]
    matrix = with_settings(show_matrix, settings)
    view["show_matrix"].click(matrix, picker, outputs, **private)
    view["group"].expand(matrix, picker, outputs, **private)
    view["group"].expand(lambda: True, None, view["open"], queue=False, **private)
    view["group"].collapse(lambda: False, None, view["open"], queue=False, **private)
    picker.change(with_settings(on_checkpoint, settings), [picker, view["open"]], outputs,
                  **private)
    view["matrix"].select(with_settings(on_cell, settings), [picker, view["matrix"]],
                          [view["true_class"], view["predicted_class"], view["gallery"],
                           view["cell_note"]], **private)
    view["show_cell"].click(with_settings(show_errors, settings),
                            [picker, view["true_class"], view["predicted_class"]],
                            [view["gallery"], view["cell_note"]], api_name="errors",
                            concurrency_limit=2)
