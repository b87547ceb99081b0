"""Find a learning rate (/lr_find): the learning-rate range test (lr_finder.find_lr) for the Train
form's run, under its lr field: the loss against the lr, two suggested lrs with what each means,
and a button for each that puts it in the lr field.
"""
from __future__ import annotations

from functools import partial

import gradio as gr

from ..i18n import join, render, text
from .common import FOLDER_UPLOAD, check_server_folder, friendly_errors, with_settings
from .language import ui_text
from .live import loading_message, run_data
from .train_form import ADVANCED, make_config, size_augmentation


def layout(view: dict) -> None:
    """The learning-rate range test under the lr field: a button, and what it found (hidden until
    a sweep has run): the curve, the two suggestions, and a button for each that puts it in the
    lr field."""
    view["lr_find"] = gr.Button(ui_text("train.lr_find"), size="sm", variant="secondary",
                                elem_id="train-lr-find")
    with gr.Column(visible=False, elem_id="train-lr-find-box") as view["lr_find_box"]:
        view["lr_find_plot"] = gr.Plot(label=ui_text("train.lr_find_plot"))
        view["lr_find_note"] = gr.Markdown(elem_id="train-lr-find-note")
        with gr.Row():
            view["use_steepest"] = gr.Button(ui_text("train.lr_find_use_steepest"), size="sm",
                                             elem_id="train-use-steepest")
            view["use_min_div_10"] = gr.Button(ui_text("train.lr_find_use_min_div_10"), size="sm",
                                               elem_id="train-use-min-div-10")
        with gr.Accordion(ui_text("train.lr_find_values_group"), open=False, elem_classes=ADVANCED):
            view["lr_find_values"] = gr.JSON(label=ui_text("train.lr_find_values"))


# The learning-rate range test trains LR_FIND_STEPS batches in a child process, as runs train
# (serving.worker), on at most LR_FIND_IMAGES training images, one sweep at a time (build()). It is
# not a run: it neither waits in RUNS's line nor saves anything, and takes seconds to a minute.
LR_FIND_IMAGES = 2000
LR_FIND_STEPS = 100
LR_FIND_RANGE = (1e-6, 1.0)
LR_FIND_OUTPUTS = ("lr_find_box", "lr_find_plot", "lr_find_note", "use_steepest",
                   "use_min_div_10", "lr_find_values")


@friendly_errors
def find_learning_rate(settings, request: gr.Request = None, *, folder_zip: str | None = None,
                       **form):
    """The learning-rate range test (lr_finder.find_lr) for the form's run: its curve, the two
    suggested lrs with what each means, and a button for each that puts it in the lr field.

    Takes the same form as /train. Nothing is trained for keeps and nothing is saved; the sweep
    uses at most LR_FIND_IMAGES training images, which the note says when it cuts the form's.
    A closed page stops the sweep."""
    import queue
    import threading

    from ..serving.worker import lr_find_in_process

    form["folder_zip"] = folder_zip
    config = make_config(form)
    if form.get("dataset") != FOLDER_UPLOAD:
        check_server_folder(settings, config.dataset)
    config.data_root = settings.data_root
    capped = config.subset_train is None or config.subset_train > LR_FIND_IMAGES
    if capped:
        config.subset_train = LR_FIND_IMAGES
    hidden = gr.update(visible=False)
    yield (gr.update(visible=True), None, loading_message(config.dataset, settings.data_root),
           hidden, hidden, None)
    data = run_data(config)
    size_augmentation(config, data.image_size)
    yield (gr.skip(), gr.skip(), text("train.lr_find_running", steps=LR_FIND_STEPS), hidden,
           hidden, gr.skip())
    stop = threading.Event()
    start_lr, end_lr = LR_FIND_RANGE
    try:
        run = lr_find_in_process(config, data, start_lr, end_lr, LR_FIND_STEPS, stop=stop)
        result = None
        while True:
            try:
                item = run.events.get(timeout=2)
            except queue.Empty:
                # Nothing to show yet; yielding lets gradio close this handler if the page is gone.
                yield (gr.skip(),) * len(LR_FIND_OUTPUTS)
                continue
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            result = item
    finally:
        stop.set()  # the page was closed (or the sweep ended): the child stops within a step
    if result is None:
        raise gr.Error(render(text("train.no_result")), print_exception=False)
    yield lr_find_outputs(result, config, data, capped)


def lr_find_outputs(result, config, data, capped: bool) -> tuple:
    """What the tab shows of a finished sweep (LR_FIND_OUTPUTS)."""
    from ..curve_plots import lr_finder_figure
    from ..plot_style import font_notice

    start_lr, end_lr = LR_FIND_RANGE
    train_images = len(data.split("train")[0])
    notes = [text("train.lr_find_done", start_lr=start_lr, end_lr=end_lr, steps=len(result.lrs),
                  images=train_images, dataset=data.name, model=config.model,
                  optimizer=config.optimizer)]
    if capped:
        notes.append(text("train.lr_find_capped", images=LR_FIND_IMAGES))
    found = result.steepest is not None and result.min_div_10 is not None
    if found:
        notes += [text("train.lr_find_steepest_note", lr=result.steepest),
                  text("train.lr_find_min_div_10_note", lr=result.min_div_10)]
    else:
        notes.append(text("lr_finder.no_suggestion", steps=len(result.lrs)))
    if result.diverged_at is not None:
        notes.append(text("lr_finder.diverged", lr=result.diverged_at))
    notes.append(font_notice())
    values = {"steepest": result.steepest, "min_div_10": result.min_div_10,
              "diverged_at": result.diverged_at, "start_lr": start_lr, "end_lr": end_lr,
              "steps": len(result.lrs), "train_images": train_images}
    return (gr.update(visible=True), lr_finder_figure(result), join(*notes, sep="\n\n"),
            gr.update(visible=found, value=text("train.lr_find_use_steepest_lr",
                                                 lr=result.steepest or 0)),
            gr.update(visible=found, value=text("train.lr_find_use_min_div_10_lr",
                                                 lr=result.min_div_10 or 0)),
            values)


def use_suggestion(which: str, values):
    """The suggested lr `which` ("steepest" or "min_div_10") for the lr field, to the two
    significant digits its button shows; nothing when there is none."""
    lr = (values or {}).get(which)
    return float(f"{lr:.2g}") if lr else gr.skip()


def wire(settings, form: dict, view: dict) -> None:
    # One sweep at a time: it trains on the request thread, with all the CPU's threads.
    view["lr_find"].click(with_settings(find_learning_rate, settings), inputs_kwargs=form,
                          outputs=[view[name] for name in LR_FIND_OUTPUTS], api_name="lr_find",
                          concurrency_limit=1, concurrency_id="lr_find")
    for which in ("steepest", "min_div_10"):
        view[f"use_{which}"].click(partial(use_suggestion, which), view["lr_find_values"],
                                   form["lr"], queue=False, api_visibility="private")
