"""The Class tab's class dataset: students draw and label, the lecturer trains on the drawings
and compares the shipped MNIST model with the class's own (domain shift, measured).

Students: a sketchpad (touch works: its canvas takes pointer events with `touch-action: none`)
or a photo, a class picker and "Add drawing" (/class_add); the counts per class refresh every few
seconds while the Class tab is open (/class_counts). The lecturer, with the key: open a collection
(/class_open), close it (/class_close), see recent drawings (/class_recent) and delete some
(/class_delete), train on the drawings through the Train tab's own run queue and live view
(/class_train), the comparison (/class_compare) and the class-folder zip (/class_zip). The library
side is vision_lab/class_drawings.py; the data is kept by serving/class_db.py.

Class names and collection names are what people typed: they are shown only as plain text
(Textbox values, Dataframe cells, picker choices, gallery captions), never in Markdown.
"""
from __future__ import annotations

import re
import shutil
import tempfile
import time
from pathlib import Path

import gradio as gr
import numpy as np

from ..i18n import join, listing, t, text
from ..serving.class_db import DEFAULT_PER_STUDENT, DEFAULT_TOTAL, ClassError, class_db
from ..serving.lecturer_key import require_lecturer
from .common import chw_to_numpy, enlarge, friendly_errors, with_settings
from .language import ui_text
from .model_view import LenientImage, sketch_image
from .storage import owner_of, resolve_checkpoint, visitor_of

MNIST_MODEL = "mnist_cnn"        # the shipped model the class's drawings are compared with
MODELS = ("cnn", "lenet", "mlp")
DEFAULT_EPOCHS, MAX_EPOCHS = 10, 30
COUNTS_EVERY = 5.0               # seconds between count refreshes (one SQLite GROUP BY each)
RECENT = 24                      # drawings the lecturer's gallery shows
CANVAS = (400, 400)
# The page the sketchpad starts on, and returns to after each drawing: white, so that the editor
# starts with its brush chosen (gradio 6.31 chooses no tool while its value is empty).
BLANK = np.full((*CANVAS, 4), 255, dtype=np.uint8)


def _blank_page_js() -> str:
    """Browser code giving the sketchpad a new white page after a drawing was added: in the
    browser, because a page sent by the server costs a PNG encoding and a download per drawing
    (the add took twice as long)."""
    import base64
    import io

    from PIL import Image

    png = io.BytesIO()
    Image.fromarray(BLANK, "RGBA").save(png, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(png.getvalue()).decode("ascii")
    return (f"() => ({{background: {{url: '{url}', path: null, meta: {{_type: 'gradio.FileData'}}}}, "
            f"layers: [], composite: null}})")
TRAIN_OUTPUTS = (0, 1, 2, 8)     # of the Train tab's outputs: status, loss, accuracy, checkpoint


def _db(settings):
    return class_db(settings.runs_dir)


def _latest(settings):
    """The collection the lecturer works on: the newest, open or closed."""
    collections = _db(settings).collections()
    if not collections:
        raise ClassError(text("class.data.none_yet"))
    return collections[-1]


def parse_classes(value) -> list[str]:
    """Class names typed one per line or separated by commas (either language's)."""
    return [part.strip() for part in re.split(r"[,，、\n]", str(value or "")) if part.strip()]


# ---- what everyone sees -------------------------------------------------------------------------

def _counts_table(counts) -> dict:
    return {"headers": [t("class.data.col_class"), t("class.data.col_count")],
            "data": [[name, n] for name, n in counts.by_label.items()]}


def _collection_line(collection, counts) -> str:
    if collection is None:
        return text("class.data.no_collection")
    return text("class.data.collection_line", name=collection.name, total=counts.total,
                limit=collection.total)


@friendly_errors
def show_counts(settings, shown_id=None, request: gr.Request = None):
    """The open collection: its name, drawings per class, how many are this visitor's, and (when
    the collection changed since `shown_id`) its classes for the picker."""
    db = _db(settings)
    collection = db.current_collection()
    if collection is None:
        empty = {"headers": [t("class.data.col_class"), t("class.data.col_count")], "data": []}
        picker = gr.update(choices=[], value=None) if shown_id is not None else gr.skip()
        return _collection_line(None, None), empty, "", picker, None
    counts = db.counts(collection.id, visitor_of(request))
    picker = (gr.update(choices=collection.classes, value=collection.classes[0])
              if shown_id != collection.id else gr.skip())
    mine = text("class.data.mine", count=counts.mine, limit=collection.per_student)
    return _collection_line(collection, counts), _counts_table(counts), mine, picker, collection.id


@friendly_errors
def add(settings, label, sketch=None, image=None, request: gr.Request = None):
    """Keep one drawing (the sketchpad's, else an uploaded image) under `label` in the open
    collection. Returns the sentence saying so, the counts, and no photo (the page gives the
    sketchpad a new page: _blank_page_js)."""
    from ..class_drawings import add_drawing
    from ..sketch import EMPTY_MESSAGE

    db = _db(settings)
    collection = db.current_collection()
    if collection is None:
        raise ClassError(text("class.collection.closed"))
    drawn = sketch_image(sketch)
    source = drawn if drawn is not None else image
    if source is None:
        raise ValueError(EMPTY_MESSAGE)
    if not label:
        raise ClassError(text("class.data.pick_class"))
    visitor = visitor_of(request)
    drawing = add_drawing(db, collection.id, str(label), visitor, source)
    counts = db.counts(collection.id, visitor)
    return (text("class.data.added", label=drawing.label, id=drawing.id),
            _collection_line(collection, counts), _counts_table(counts),
            text("class.data.mine", count=counts.mine, limit=collection.per_student), None)


# ---- the lecturer ---------------------------------------------------------------------------------

@friendly_errors
def open_collection(settings, key, name, classes, per_student=DEFAULT_PER_STUDENT,
                    total=DEFAULT_TOTAL, request: gr.Request = None):
    """Open a new collection (the one open before is closed, its drawings kept)."""
    require_lecturer(key, settings.lecturer_key)
    collection = _db(settings).open_collection(name, parse_classes(classes),
                                               int(per_student or 0), int(total or 0))
    return text("class.data.opened", name=collection.name, count=len(collection.classes),
                per_student=collection.per_student, total=collection.total)


@friendly_errors
def close_collection(settings, key, request: gr.Request = None):
    require_lecturer(key, settings.lecturer_key)
    db = _db(settings)
    collection = db.current_collection()
    if collection is None:
        raise ClassError(text("class.collection.closed"))
    db.close_collection(collection.id)
    return text("class.data.closed", name=collection.name,
                total=db.counts(collection.id).total)


@friendly_errors
def recent(settings, key, request: gr.Request = None):
    """The newest drawings of the lecturer's collection, each captioned with its number and class,
    and a table of them (number, class, which student: a short tag, not their token)."""
    require_lecturer(key, settings.lecturer_key)
    return _recent(settings)


def _recent(settings) -> tuple:
    from ..class_drawings import read_drawing

    db = _db(settings)
    drawings = db.drawings(_latest(settings).id)[-RECENT:][::-1]
    tags = {}
    gallery = [(enlarge(chw_to_numpy(read_drawing(db, d)), 84), f"#{d.id} · {d.label}")
               for d in drawings]
    rows = [[d.id, d.label, tags.setdefault(d.visitor, len(tags) + 1)] for d in drawings]
    table = {"headers": [t("class.data.col_id"), t("class.data.col_class"),
                         t("class.data.col_student")], "data": rows}
    return gallery, table


@friendly_errors
def delete(settings, key, ids, request: gr.Request = None):
    """Delete drawings by number ("12, 15"); says how many were deleted."""
    require_lecturer(key, settings.lecturer_key)
    from ..class_drawings import forget_drawing

    wanted = re.findall(r"\d+", str(ids or ""))
    if not wanted:
        raise ClassError(text("class.data.no_ids"))
    db = _db(settings)
    deleted = [int(i) for i in wanted if db.delete_drawing(int(i))]
    for drawing_id in deleted:
        forget_drawing(db, drawing_id)
    missing = [i for i in wanted if int(i) not in deleted]
    message = text("class.data.deleted", count=len(deleted))
    if missing:
        message = join(message, text("class.data.not_found", ids=listing(*missing)))
    return (message, *_recent(settings))


@friendly_errors
def train(settings, key, model="cnn", epochs=DEFAULT_EPOCHS, request: gr.Request = None):
    """Train a model on the collection's drawings as on any folder dataset: the Train tab's
    run queue, run cache and live view (ui/train.train_config). The held-out drawings are its
    test set, measured once at the end. Yields (what it trains on, status, loss curve,
    accuracy curves, the class model's name)."""
    from ..class_drawings import write_tree
    from ..train_config import TrainConfig
    from .train import train_config

    require_lecturer(key, settings.lecturer_key)
    if model not in MODELS:
        raise ClassError(text("class.data.unknown_model", model=str(model)[:40], models=", ".join(MODELS)))
    epochs = int(epochs or 0)
    if not 1 <= epochs <= MAX_EPOCHS:
        raise ClassError(text("class.data.epochs", high=MAX_EPOCHS))
    collection = _latest(settings)
    tree = write_tree(_db(settings), collection)
    about = text("class.data.trains_on", train=tree.train, held_out=tree.held_out,
                 classes=len(tree.classes))
    if tree.left_out:
        about = join(about, text("class.data.left_out", classes=listing(*tree.left_out)))
    # Small and quick: a lecture waits for it. Validation (for the kept epoch) is a fifth of the
    # training drawings; the held-out ones stay unseen until the end.
    config = TrainConfig(dataset=tree.dataset, model=model, epochs=epochs, batch_size=32,
                         val_fraction=0.2, augment="none", seed=0, data_seed=0)
    for outputs in train_config(settings, request, config):
        yield (about, *(outputs[i] for i in TRAIN_OUTPUTS))


def _mnist_path(settings) -> Path:
    for folder in settings.checkpoint_dirs:
        path = Path(folder) / f"{MNIST_MODEL}.safetensors"
        if path.is_file():
            return path
    raise ClassError(text("class.data.no_mnist", name=MNIST_MODEL))


@friendly_errors
def compare(settings, key, class_model, request: gr.Request = None):
    """The shipped MNIST model and the class model on the drawings the class model never saw:
    both accuracies (large), per class, the drawings each got wrong, and the numbers as JSON."""
    from ..class_drawings import compare as measure

    require_lecturer(key, settings.lecturer_key)
    if not class_model:
        raise ClassError(text("class.data.train_first"))
    result = measure(_db(settings), _mnist_path(settings),
                     resolve_checkpoint(settings, class_model, owner_of(request)))
    mnist, mine = result.mnist, result.class_model

    def cell(value):
        return "—" if value is None else f"{value:.0%}"

    table = {"headers": [t("class.data.col_class"), t("class.data.mnist_model"),
                         t("class.data.class_model")],
             "data": [[name, cell(mnist.per_class[name]), cell(mine.per_class[name])]
                      for name in result.classes]}
    wrong = [(enlarge(chw_to_numpy(image), 84), f"{who}: {true} → {predicted}")
             for who, score in ((t("class.data.mnist_model"), mnist), (t("class.data.class_model"), mine))
             for image, true, predicted in score.wrong]
    summary = {"held_out": result.held_out, "mnist_model": mnist.name, "class_model": mine.name,
               "mnist_acc": mnist.acc, "class_acc": mine.acc, "mnist_measured": mnist.measured,
               "per_class": {name: {"mnist": mnist.per_class[name], "class": mine.per_class[name]}
                             for name in result.classes}}
    note = text("class.data.compare_note", count=result.held_out)
    if mnist.measured < result.held_out:
        note = join(note, text("class.data.mnist_unknown", count=result.held_out - mnist.measured))
    return (text("class.data.score_mnist", acc=cell(mnist.acc)),
            text("class.data.score_class", acc=cell(mine.acc)), note, table, wrong, summary)


_ZIPS: list[Path] = []   # this process's folder for zips, made on first use


@friendly_errors
def download_zip(settings, key, request: gr.Request = None):
    """The lecturer's collection as a zip of class folders (class_drawings.write_zip)."""
    from ..class_drawings import folder_names, write_zip

    require_lecturer(key, settings.lecturer_key)
    collection = _latest(settings)
    if not _ZIPS:
        _ZIPS.append(Path(tempfile.mkdtemp(prefix="vision-lab-class-zips-")))
    for old in _ZIPS[0].iterdir():   # gradio copied each into its cache when it was returned
        if time.time() - old.stat().st_mtime > 600:
            shutil.rmtree(old, ignore_errors=True)
    folder = Path(tempfile.mkdtemp(dir=_ZIPS[0]))   # the file keeps the collection's own name
    name = folder_names([collection.name])[collection.name]
    return str(write_zip(_db(settings), collection, folder / f"{name}.zip"))


# ---- the tab --------------------------------------------------------------------------------------

def layout() -> dict:
    """Draw the class dataset: the students' part, then the lecturer's (folded). Returns its
    components by name."""
    view = {"shown": gr.State(None)}   # the collection whose classes the picker holds
    gr.Markdown(ui_text("class.data.intro"))
    view["collection"] = gr.Textbox(label=ui_text("class.data.collection"), interactive=False,
                                    elem_id="class-collection", elem_classes="vl-class-big")
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=300):
            view["sketch"] = gr.Sketchpad(
                value=BLANK, label=ui_text("class.data.sketch"), type="numpy", image_mode="RGBA",
                canvas_size=CANVAS, height=420, layers=False, transforms=(),
                brush=gr.Brush(default_size=18, colors=["#000000"], color_mode="fixed"),
                elem_id="class-sketch")
            with gr.Accordion(ui_text("class.data.photo"), open=False):
                view["image"] = LenientImage(label=ui_text("class.data.photo_label"), type="filepath",
                                             format="png", height=220, elem_id="class-image",
                                             sources=["upload", "webcam", "clipboard"])
            # Any value passes the picker: the database checks it against the open collection's
            # classes (an API caller's label never went through the page's choices).
            view["label"] = gr.Dropdown(choices=[], label=ui_text("class.data.label"),
                                        allow_custom_value=True, elem_id="class-label")
            view["add"] = gr.Button(ui_text("class.data.add"), variant="primary", elem_id="class-add")
            view["added"] = gr.Textbox(label=ui_text("class.data.added_label"), interactive=False,
                                       elem_id="class-added")
        with gr.Column(scale=1, min_width=300):
            view["counts"] = gr.Dataframe(label=ui_text("class.data.counts"), interactive=False,
                                          elem_id="class-counts", elem_classes="vl-class-big")
            view["mine"] = gr.Textbox(label=ui_text("class.data.mine_label"), interactive=False,
                                      elem_id="class-mine", elem_classes="vl-class-big")
    with gr.Accordion(ui_text("class.data.lecturer"), open=False, elem_id="class-data-lecturer"):
        _collection_layout(view)
        _train_layout(view)
    return view


def _collection_layout(view: dict) -> None:
    with gr.Row():
        view["name"] = gr.Textbox(value="0–9", label=ui_text("class.data.name"), max_lines=1,
                                  elem_id="class-name")
        view["classes"] = gr.Textbox(value=", ".join(map(str, range(10))), max_lines=3,
                                     label=ui_text("class.data.classes"),
                                     info=ui_text("class.data.classes_info"), elem_id="class-classes")
        view["per_student"] = gr.Number(value=DEFAULT_PER_STUDENT, precision=0, minimum=1,
                                        label=ui_text("class.data.per_student"),
                                        elem_id="class-per-student")
        view["total"] = gr.Number(value=DEFAULT_TOTAL, precision=0, minimum=1,
                                  label=ui_text("class.data.total"), elem_id="class-total")
    with gr.Row():
        view["open"] = gr.Button(ui_text("class.data.open"), variant="primary", elem_id="class-open")
        view["close"] = gr.Button(ui_text("class.data.close"), elem_id="class-close")
        view["zip"] = gr.Button(ui_text("class.data.zip"), elem_id="class-zip")
    view["lecturer_status"] = gr.Textbox(label=ui_text("class.data.lecturer_status"),
                                         interactive=False, elem_id="class-lecturer-status")
    view["zip_file"] = gr.File(label=ui_text("class.data.zip_file"), interactive=False,
                               elem_id="class-zip-file")
    with gr.Accordion(ui_text("class.data.recent"), open=False, elem_id="class-recent-group"):
        with gr.Row():
            view["recent"] = gr.Button(ui_text("class.data.show_recent"), elem_id="class-recent")
            view["ids"] = gr.Textbox(label=ui_text("class.data.ids"), max_lines=1,
                                     elem_id="class-ids")
            view["delete"] = gr.Button(ui_text("class.data.delete"), variant="stop",
                                       elem_id="class-delete")
        view["gallery"] = gr.Gallery(label=ui_text("class.data.recent"), columns=8, height="auto",
                                     object_fit="contain", elem_id="class-gallery")
        view["recent_table"] = gr.Dataframe(interactive=False, elem_id="class-recent-table")


def _train_layout(view: dict) -> None:
    gr.Markdown(ui_text("class.data.train_intro"))
    with gr.Row():
        view["model"] = gr.Dropdown(choices=list(MODELS), value="cnn",
                                    label=ui_text("class.data.model"), elem_id="class-model-kind")
        view["epochs"] = gr.Number(value=DEFAULT_EPOCHS, precision=0, minimum=1, maximum=MAX_EPOCHS,
                                   label=ui_text("class.data.epochs_label"), elem_id="class-epochs")
        view["train"] = gr.Button(ui_text("class.data.train"), variant="primary",
                                  elem_id="class-train")
    view["about"] = gr.Textbox(label=ui_text("class.data.about"), interactive=False,
                               elem_id="class-train-about")
    view["status"] = gr.Markdown(elem_id="class-train-status", elem_classes="vl-status")
    with gr.Row():
        view["loss_plot"] = gr.Image(label=ui_text("train.loss_plot"), interactive=False,
                                     format="png", elem_id="class-loss-plot")
        view["acc_plot"] = gr.Image(label=ui_text("train.acc_plot"), interactive=False,
                                    format="png", elem_id="class-acc-plot")
    with gr.Row():
        view["class_model"] = gr.Textbox(label=ui_text("class.data.class_model_label"),
                                         max_lines=1, elem_id="class-model")
        view["compare"] = gr.Button(ui_text("class.data.compare"), variant="primary",
                                    elem_id="class-compare")
    with gr.Row(elem_classes="vl-class-scores"):
        view["score_mnist"] = gr.Markdown(elem_id="class-score-mnist", elem_classes="vl-class-score")
        view["score_class"] = gr.Markdown(elem_id="class-score-class", elem_classes="vl-class-score")
    view["compare_note"] = gr.Markdown(elem_id="class-compare-note")
    view["per_class"] = gr.Dataframe(label=ui_text("class.data.per_class"), interactive=False,
                                     elem_id="class-per-class", elem_classes="vl-class-big")
    view["wrong"] = gr.Gallery(label=ui_text("class.data.wrong"), columns=8, height="auto",
                               object_fit="contain", elem_id="class-wrong")
    with gr.Accordion(ui_text("class.data.numbers"), open=False):
        view["summary"] = gr.JSON(label=ui_text("class.data.numbers"))


def build(settings, key, tab=None) -> None:
    view = layout()
    bound = lambda fn: with_settings(fn, settings)   # noqa: E731
    counted = [view["collection"], view["counts"], view["mine"], view["label"], view["shown"]]
    # Counts refresh while the Class tab is open (the Timer starts when it is first opened): one
    # small SQLite query a visitor every COUNTS_EVERY seconds, outside gradio's queue.
    timer = gr.Timer(COUNTS_EVERY, active=False)
    timer.tick(bound(show_counts), view["shown"], counted, api_name="class_counts", queue=False,
               show_progress="hidden")
    private = dict(queue=False, api_visibility="private")
    if tab is not None:
        tab.select(lambda: gr.Timer(active=True), None, timer, **private)
        tab.select(bound(show_counts), view["shown"], counted, **private)
    view["add"].click(bound(add), [view["label"], view["sketch"], view["image"]],
                      [view["added"], view["collection"], view["counts"], view["mine"],
                       view["image"]], api_name="class_add", concurrency_limit=2
                      ).success(None, None, view["sketch"], js=_blank_page_js(), **private)
    refresh = dict(fn=bound(show_counts), inputs=view["shown"], outputs=counted, **private)
    view["open"].click(bound(open_collection),
                       [key, view["name"], view["classes"], view["per_student"], view["total"]],
                       view["lecturer_status"], api_name="class_open", concurrency_limit=1
                       ).success(**refresh)
    view["close"].click(bound(close_collection), key, view["lecturer_status"],
                        api_name="class_close", concurrency_limit=1).success(**refresh)
    view["recent"].click(bound(recent), key, [view["gallery"], view["recent_table"]],
                         api_name="class_recent", concurrency_limit=2)
    view["delete"].click(bound(delete), [key, view["ids"]],
                         [view["lecturer_status"], view["gallery"], view["recent_table"]],
                         api_name="class_delete", concurrency_limit=1).success(**refresh)
    view["zip"].click(bound(download_zip), key, view["zip_file"], api_name="class_zip",
                      concurrency_limit=1)
    # No gradio limit: the run waits in the run queue, where it shows its place (as Train does).
    view["train"].click(bound(train), [key, view["model"], view["epochs"]],
                        [view["about"], view["status"], view["loss_plot"], view["acc_plot"],
                         view["class_model"]], api_name="class_train", concurrency_limit=None,
                        show_progress="hidden")
    view["compare"].click(bound(compare), [key, view["class_model"]],
                          [view["score_mnist"], view["score_class"], view["compare_note"],
                           view["per_class"], view["wrong"], view["summary"]],
                          api_name="class_compare", concurrency_limit=1)
