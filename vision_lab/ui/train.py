"""Train tab: every TrainConfig option, live curves while it trains, results when it ends.

`layout` draws the form and names each field once (`form`, field name -> component); the Start
button hands the whole form to `start_training` by those names (gradio's `inputs_kwargs`), which
are also the /train API's parameters. `make_config` turns the form into a TrainConfig. The run
trains in a child process (serving.worker) and `live.follow` shows it; it waits for a free slot
first (serving.run_queue), showing its place in line. Stop ends it within one batch.
"Find a learning rate" (/lr_find, the same form) runs the learning-rate range test in a child
process too and offers its two suggestions for the lr field; "Download as ONNX" (/export_onnx)
exports the finished run's checkpoint. Sharing a run or a setup (a bundle, a link) is share.py's.

What the tab says comes from the catalogue (`train.*` keys in i18n/en.json): static text through
`ui_text`, what the handlers write as `text(...)`, said in the visitor's language. Choice values
(dataset, model, optimizer, scheduler and preset names, the Augment tab's choice) stay English:
they are what the API and the CLI take.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from functools import partial
from pathlib import Path

import gradio as gr

from ..i18n import join, render, text
from ..serving.run_queue import RUNS
from . import resume, share, your_runs
from .common import (FOLDER_UPLOAD, check_server_folder, chw_to_numpy, dataset_choices, enlarge,
                     sample_folder_choice,
                     format_seconds, friendly_errors, load_data, session_of, with_settings)
from .fields import Number, Slider
from .language import ui_text
from .live import follow, left_message, static_text
from .storage import check_quota, owner_dir, owner_of

# The augmentation picker's value for "use the Augment tab's transforms": the English text (API
# callers send it); the picker shows it in the page's language.
AUGMENT_TAB = str(text("train.augment_tab"))
LIVE_POINTS = 1000  # the live loss curve is thinned to this many points (drawing cost grows with them)
STOPPING = text("train.stopping")


# ---- the form -----------------------------------------------------------------------------------

def layout(settings, augment_spec) -> tuple[dict, dict]:
    """Draw the tab. Returns (form, view): the input fields and the other components, by name.
    Controls a lecture folds away (lecture.py) carry the class `vl-advanced`."""
    form, view = {"augment_spec": augment_spec}, {}
    gr.Markdown(ui_text("train.intro"))
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=340):
            _data_fields(form, settings)
            _model_fields(form, view)
            _optimizer_fields(form)
            _lr_finder_layout(view)
            _more_fields(form, view)
            with gr.Row():
                view["start"] = gr.Button(ui_text("train.start"), variant="primary",
                                          elem_id="train-start")
                view["stop"] = gr.Button(ui_text("train.stop"), variant="stop",
                                         elem_id="train-stop")
            view["link"] = share.link_box("train-link")
            share.open_layout(view)
        with gr.Column(scale=2):
            _results_layout(settings, view)
    return form, view


ADVANCED = "vl-advanced"


def _data_fields(form: dict, settings) -> None:
    from ..training import TrainConfig

    d = TrainConfig()
    with gr.Group():
        # Dataset names are what the CLI and the API take: shown as they are.
        form["dataset"] = gr.Dropdown(
            dataset_choices() + sample_folder_choice(settings)
            + [(ui_text("common.folder_upload"), FOLDER_UPLOAD)], value="shapes",
            label=ui_text("train.dataset"), allow_custom_value=True,
            info=ui_text("train.dataset_info"), elem_id="train-dataset")
        with gr.Row():
            form["subset_train"] = Number(2000, precision=0, label=ui_text("train.subset_train"),
                                          info=ui_text("train.subset_train_info"),
                                          elem_id="train-subset-train")
            form["subset_test"] = Number(500, precision=0, label=ui_text("train.subset_test"),
                                         elem_id="train-subset-test")
        with gr.Row(elem_classes=ADVANCED):
            form["val_fraction"] = Number(d.val_fraction, minimum=0, maximum=0.5,
                                          label=ui_text("train.val_fraction"),
                                          info=ui_text("train.val_fraction_info"))
            form["data_seed"] = Number(d.data_seed, precision=0, label=ui_text("train.data_seed"),
                                       info=ui_text("train.data_seed_info"))
        form["folder_zip"] = gr.File(label=ui_text("train.folder_zip"),
                                     file_types=[".zip"], type="filepath", visible=False)
        form["folder_image_size"] = Slider(0, 256, value=0, step=8, visible=False,
                                           label=ui_text("train.folder_image_size"))


def _model_fields(form: dict, view: dict) -> None:
    from ..models import MODEL_DESCRIPTIONS, list_models, model_options

    cnn = model_options("cnn")
    with gr.Group():
        form["model"] = gr.Dropdown(list_models(), value="cnn", label=ui_text("train.model"),
                                    info=static_text(MODEL_DESCRIPTIONS["cnn"]),
                                    elem_id="train-model")
        form["hidden_sizes"] = gr.Textbox("512, 256", label=ui_text("train.hidden_sizes"),
                                          visible=False, max_lines=1, elem_id="train-hidden-sizes")
        with gr.Row():
            form["dropout"] = Slider(0, 0.9, value=cnn.get("dropout", 0.0), step=0.05,
                                     label=ui_text("train.dropout"))
            form["batch_norm"] = gr.Checkbox(value=cnn.get("batch_norm", False),
                                             label=ui_text("train.batch_norm"))
        with gr.Row(visible=False) as view["resnet_row"]:
            form["pretrained"] = gr.Checkbox(value=False, label=ui_text("train.pretrained"))
            form["freeze_epochs"] = Number(0, precision=0, label=ui_text("train.freeze_epochs"),
                                           info=ui_text("train.freeze_epochs_info"))
            form["unfreeze_lr"] = Number(0, label=ui_text("train.unfreeze_lr"))


def _optimizer_fields(form: dict) -> None:
    from ..training import OPTIMIZERS, TrainConfig

    d = TrainConfig()
    with gr.Group():
        with gr.Row():
            form["epochs"] = Number(3, precision=0, label=ui_text("train.epochs"),
                                    elem_id="train-epochs")
            form["batch_size"] = Number(d.batch_size, precision=0,
                                        label=ui_text("train.batch_size"))
        with gr.Row():
            # Optimizer and scheduler names are PyTorch's (and the CLI's): shown as they are.
            form["optimizer"] = gr.Dropdown(list(OPTIMIZERS), value=d.optimizer,
                                            label=ui_text("train.optimizer"))
            form["lr"] = Number(d.lr, label=ui_text("train.lr"), elem_id="train-lr")
        with gr.Row(elem_classes=ADVANCED):
            form["momentum"] = Number(d.momentum, label=ui_text("train.momentum"))
            form["weight_decay"] = Number(d.weight_decay, label=ui_text("train.weight_decay"))
            form["l1"] = Number(d.l1, label=ui_text("train.l1"))


def _lr_finder_layout(view: dict) -> None:
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


def _more_fields(form: dict, view: dict) -> None:
    from ..training import SCHEDULERS
    from ..transforms import list_presets

    with gr.Accordion(ui_text("train.scheduler_group"), open=False, elem_classes=ADVANCED):
        form["scheduler"] = gr.Dropdown(list(SCHEDULERS), value="none",
                                        label=ui_text("train.scheduler"),
                                        info=ui_text("train.scheduler_info"))
        with gr.Row():
            for name, key, value, extra in SCHEDULER_FIELDS:
                maker = gr.Textbox if name == "milestones" else Number
                form[name] = maker(value, label=ui_text(key), visible=False, **extra)
    with gr.Accordion(ui_text("train.more_group"), open=False, elem_classes=ADVANCED):
        with gr.Row():
            form["early_stopping_patience"] = Number(
                0, precision=0, label=ui_text("train.early_stopping_patience"),
                info=ui_text("train.early_stopping_patience_info"))
            form["early_stopping_min_delta"] = Number(
                0.0, label=ui_text("train.early_stopping_min_delta"))
            form["restore_best"] = gr.Checkbox(True, label=ui_text("train.restore_best"))
        form["augment"] = gr.Dropdown(
            list_presets() + [(ui_text("train.augment_tab"), AUGMENT_TAB)], value="none",
            label=ui_text("train.augment"))
        view["augment_note"] = gr.Markdown(visible=False)
        with gr.Row():
            form["permute_pixels"] = gr.Checkbox(False, label=ui_text("train.permute_pixels"))
            form["permutation_seed"] = Number(0, precision=0,
                                              label=ui_text("train.permutation_seed"))
            form["seed"] = Number(0, precision=0, label=ui_text("train.seed"),
                                  info=ui_text("train.seed_info"))


# Scheduler parameters: (field, catalogue key of its label, default, extra arguments); shown for
# the schedulers that use them (SCHEDULER_USES). The defaults are TrainConfig's own
# (training.SCHEDULER_DEFAULTS). The labels name the parameters as PyTorch does (gamma, T_max).
def _scheduler_default(scheduler: str, option: str):
    from ..training import SCHEDULER_DEFAULTS

    value = SCHEDULER_DEFAULTS[scheduler][option]
    return ", ".join(map(str, value)) if isinstance(value, list) else value or 0


SCHEDULER_FIELDS = [
    ("step_size", "train.step_size", _scheduler_default("step", "step_size"), {"precision": 0}),
    ("gamma", "train.gamma", _scheduler_default("step", "gamma"), {}),
    ("milestones", "train.milestones", _scheduler_default("multistep", "milestones"), {}),
    ("t_max", "train.t_max", _scheduler_default("cosine", "t_max"), {"precision": 0}),
    ("eta_min", "train.eta_min", _scheduler_default("cosine", "eta_min"), {}),
    ("plateau_factor", "train.plateau_factor", _scheduler_default("plateau", "factor"), {}),
    ("plateau_patience", "train.plateau_patience", _scheduler_default("plateau", "patience"),
     {"precision": 0}),
]
SCHEDULER_USES = {"step": {"step_size", "gamma"}, "multistep": {"milestones", "gamma"},
                  "exponential": {"gamma"}, "cosine": {"t_max", "eta_min"},
                  "plateau": {"plateau_factor", "plateau_patience"}}


def _results_layout(settings, view: dict) -> None:
    view["status"] = gr.Markdown(ui_text("train.ready"), elem_id="train-status",
                                 elem_classes="vl-status")
    # Curves and results are PNG files drawn by the drawing helper (serving.drawing), not gr.Plot:
    # gradio would encode a figure under the server's GIL, and the redraw budget in live.py counts
    # the whole wait for a drawing.
    view["loss_plot"] = _live_image(ui_text("train.loss_plot"), elem_id="train-loss-plot")
    with gr.Tabs():
        with gr.Tab(ui_text("train.acc_plot")):
            view["acc_plot"] = _live_image(ui_text("train.acc_plot"), elem_id="train-acc-plot")
        with gr.Tab(ui_text("train.epoch_loss_plot")):
            view["epoch_loss_plot"] = _live_image(ui_text("train.epoch_loss_plot"))
        with gr.Tab(ui_text("train.lr_plot")):
            view["lr_plot"] = _live_image(ui_text("train.lr_plot"))
    # The test set waits until training is over (the heading says why).
    gr.Markdown(ui_text("train.results"))
    with gr.Tabs():
        with gr.Tab(ui_text("train.confusion")):
            view["confusion_plot"] = _live_image(ui_text("train.confusion"))
        with gr.Tab(ui_text("train.per_class")):
            view["per_class_plot"] = _live_image(ui_text("train.per_class"))
        with gr.Tab(ui_text("train.wrong_tab")):
            view["wrong"] = gr.Gallery(label=ui_text("train.wrong"),
                                       columns=8, height="auto", object_fit="contain")
    _inside_layout(view)
    with gr.Row():
        with gr.Column(min_width=200):
            view["checkpoint_name"] = gr.Textbox(label=ui_text("train.checkpoint"),
                                                 interactive=False)
            view["export_onnx"] = gr.Button(ui_text("train.export_onnx"), size="sm",
                                            elem_id="train-export-onnx")
            share.download_layout(view)
        view["checkpoint_file"] = gr.File(label=ui_text("train.checkpoint_file"), interactive=False)
        view["onnx_file"] = gr.File(label=ui_text("train.onnx_file"), interactive=False,
                                    elem_id="train-onnx-file")
    resume.layout(view)
    view["command"] = gr.Code(label=ui_text("train.command"), language="shell",
                              interactive=False, elem_id="train-command")
    with gr.Accordion(ui_text("train.summary_group"), open=False, elem_classes=ADVANCED):
        view["result"] = gr.JSON(label=ui_text("train.summary"))
    view["your_runs"] = your_runs.layout(settings)


def _inside_layout(view: dict) -> None:
    """Inside the network (internals.py), drawn when a run ends from the /train summary's
    `internals`: a histogram over epochs of each layer's weights and activations, and the
    layers' gradient norms."""
    with gr.Accordion(ui_text("internals.train.group"), open=False, elem_id="train-inside"):
        view["inside_note"] = gr.Markdown(ui_text("internals.train.waiting"),
                                          elem_id="train-inside-note")
        with gr.Tabs():
            with gr.Tab(ui_text("internals.train.weights"), elem_id="train-inside-weights-tab"):
                view["inside_weights"] = gr.Plot(label=ui_text("internals.train.weights"),
                                                 elem_id="train-inside-weights")
            with gr.Tab(ui_text("internals.train.activations"), elem_id="train-inside-activations-tab"):
                view["inside_activations"] = gr.Plot(label=ui_text("internals.train.activations"),
                                                     elem_id="train-inside-activations")
            with gr.Tab(ui_text("internals.train.grad_norms"), elem_id="train-inside-grad-tab"):
                view["inside_grad"] = gr.Plot(label=ui_text("internals.train.grad_norms"))


INSIDE_OUTPUTS = ("inside_note", "inside_weights", "inside_activations", "inside_grad")


@friendly_errors
def show_internals(summary, request: gr.Request = None):
    """The finished run's insides (INSIDE_OUTPUTS), from its /train summary; before any run
    (no summary) the tab stays as it is."""
    from ..internals import ACTIVATION_IMAGES, GRAD_EVERY
    from ..plots import gradient_norms, internals_over_epochs

    if not isinstance(summary, dict) or "reason" not in summary:
        return (gr.skip(),) * len(INSIDE_OUTPUTS)
    records = summary.get("internals") or []
    if not records:
        return text("internals.train.none"), None, None, None
    images = max(r.get("activation_images", 0) for r in records) or ACTIVATION_IMAGES
    return (text("internals.train.note", images=images, every=GRAD_EVERY),
            internals_over_epochs(records, "weight"), internals_over_epochs(records, "activation"),
            gradient_norms(records))


def internals_of(history: list[dict]) -> list[dict]:
    """Each epoch's internals with its epoch number, for the summary (epochs without any, such
    as those of a replay recorded before they existed, are left out)."""
    return [{"epoch": h["epoch"], **h["internals"]} for h in history if h.get("internals")]


def _live_image(label, **kwargs) -> gr.Image:
    return gr.Image(label=label, interactive=False, format="png", **kwargs)


OUTPUTS = ("status", "loss_plot", "acc_plot", "epoch_loss_plot", "lr_plot", "confusion_plot",
           "per_class_plot", "wrong", "checkpoint_name", "checkpoint_file", "command", "result")


# ---- from the form to a TrainConfig ---------------------------------------------------------------

def _what(name: str):
    """A form field's name in a sentence about it (train.what.<name>)."""
    return text(f"train.what.{name}")


def _number(value, what, whole=False):
    """A form or API value as a float (or int), or ValueError naming the field: API callers can
    send anything, e.g. lr="abc". `what` is the field's name (train.what.<what>)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(text("train.not_a_number", what=_what(what), value=repr(value))) from None
    if whole:
        if not number.is_integer():
            raise ValueError(text("train.not_whole", what=_what(what), value=repr(value)))
        return int(number)
    return number


def _whole(value, what):
    return _number(value, what, whole=True)


def _count_or_none(value, what):
    """A number of images; 0 or empty means all of them."""
    if value in (None, ""):
        return None
    number = _whole(value, what)
    return number if number > 0 else None


def _int_list(value, what):
    try:
        return [int(v) for v in str(value).replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise ValueError(text("train.not_whole_numbers", what=_what(what),
                              value=repr(value))) from None


# Fields that map one to one onto TrainConfig: field -> how to read it (and the name in errors).
# The field's own name is its name in errors (train.what.<field>).
PLAIN_FIELDS = {
    "subset_train": partial(_count_or_none, what="subset_train"),
    "subset_test": partial(_count_or_none, what="subset_test"),
    "val_fraction": partial(_number, what="val_fraction"),
    "data_seed": partial(_whole, what="data_seed"),
    "epochs": partial(_whole, what="epochs"),
    "batch_size": partial(_whole, what="batch_size"),
    "optimizer": str,
    "lr": partial(_number, what="lr"),
    "momentum": partial(_number, what="momentum"),
    "weight_decay": partial(_number, what="weight_decay"),
    "l1": partial(_number, what="l1"),
    "scheduler": str,
    "early_stopping_patience": partial(_whole, what="early_stopping_patience"),
    "early_stopping_min_delta": partial(_number, what="early_stopping_min_delta"),
    "restore_best": bool,
    "permute_pixels": bool,
    "permutation_seed": partial(_whole, what="permutation_seed"),
    "seed": partial(_whole, what="seed"),
    "model": str,
}


def _model_options(model: str, form: dict) -> dict:
    """The model's options as the form sets them, those that differ from its defaults (so a
    default model is `{}`, as the CLI builds it)."""
    from ..models import model_options

    defaults, options = model_options(model), {}
    if "hidden_sizes" in defaults:
        sizes = _int_list(form.get("hidden_sizes", "512, 256"), "hidden_sizes")
        if not sizes or min(sizes) < 1:
            raise ValueError(text("train.mlp_needs_a_layer", value=repr(form.get("hidden_sizes"))))
        options["hidden_sizes"] = sizes
    if "dropout" in defaults:
        # Its range is checked with the config's (TrainConfig.validate), as the CLI's is.
        options["dropout"] = _number(form.get("dropout", defaults["dropout"]), "dropout")
    if "batch_norm" in defaults:
        options["batch_norm"] = bool(form.get("batch_norm", defaults["batch_norm"]))
    return {name: value for name, value in options.items() if value != defaults[name]}


def _scheduler_options(scheduler: str, form: dict) -> dict:
    read = {"step_size": _whole, "gamma": _number, "t_max": _whole, "eta_min": _number,
            "plateau_factor": _number, "plateau_patience": _whole,
            "milestones": lambda v, what: _int_list(v, what)}
    options = {}
    for name in sorted(SCHEDULER_USES.get(scheduler, ())):
        default = next(value for field, _, value, _ in SCHEDULER_FIELDS if field == name)
        value = read[name](form.get(name, default), name)
        options[name.removeprefix("plateau_")] = value
    if scheduler == "cosine":
        options["t_max"] = options["t_max"] or None
    return options


def make_config(form: dict):
    """A TrainConfig from the form's values by field name (raises ValueError with one sentence if
    one is wrong). Fields left out keep the form's defaults."""
    from ..models import has_pretrained
    from ..training import TrainConfig

    dataset = form.get("dataset", "shapes")
    if dataset == FOLDER_UPLOAD:
        if not form.get("folder_zip"):
            raise ValueError(text("train.upload_first"))
        dataset = f"folder:{form['folder_zip']}"
    values = {name: read(form[name]) for name, read in PLAIN_FIELDS.items() if name in form}
    model = values.get("model", "cnn")
    pretrained = has_pretrained(model) and bool(form.get("pretrained"))
    augment = form.get("augment", "none")
    config = TrainConfig(**{
        **values, "dataset": dataset,
        "image_size": (_whole(form.get("folder_image_size") or 0, "folder_image_size") or None
                       if dataset.startswith("folder:") else None),
        "model_options": _model_options(model, form), "pretrained": pretrained,
        "freeze_epochs": (_whole(form.get("freeze_epochs") or 0, "freeze_epochs")
                          if pretrained else 0),
        "unfreeze_lr": (_number(form["unfreeze_lr"], "unfreeze_lr")
                        if pretrained and form.get("unfreeze_lr") else None),
        "scheduler_options": _scheduler_options(values.get("scheduler", "none"), form),
        "augment": list(form.get("augment_spec") or []) if augment == AUGMENT_TAB else augment,
    })
    config.validate()
    return config


def cli_command(config) -> str:
    """The command line that repeats this run; an uploaded zip is named by its own file name."""
    from dataclasses import replace

    from ..cli import command_for

    if config.dataset.startswith("folder:") and "gradio" in config.dataset:
        config = replace(config, dataset=f"folder:{Path(config.dataset[7:]).name}")
    if config.resume:  # the checkpoint as the visitor downloads it
        config = replace(config, resume=Path(config.resume).name)
    return command_for(config)


# ---- a run as it goes ---------------------------------------------------------------------------

class LiveRun:
    """What the Train tab shows of a run, collected from its events (a live.Watcher)."""

    def __init__(self, config, data):
        self.config, self.data = config, data
        self.label = text("train.run_label", model=config.model, dataset=data.name)
        self.steps, self.losses, self.history = [], [], []
        self.messages, self.last_batch, self.end = list(data.messages), None, None
        self.started, self.first_batch_at = time.perf_counter(), None
        self.new_epoch = False
        self.folder, self.images, self.old_images, self.draws = None, {}, [], 0
        self.command = cli_command(config)

    def add(self, ev) -> None:
        from ..training import BatchEnd, EpochEnd, RunEnd, Status

        if isinstance(ev, BatchEnd):
            if self.first_batch_at is None:
                self.first_batch_at = time.perf_counter()
            self.steps.append(ev.step)
            self.losses.append(ev.loss)
            self.last_batch = ev
        elif isinstance(ev, EpochEnd):
            self.history.append(vars(ev).copy())
            self.new_epoch = True
        elif isinstance(ev, Status):
            self.messages.append(ev.message)
        elif isinstance(ev, RunEnd):
            self.end = ev

    def died(self, message: str) -> None:
        """The process ended without a RunEnd: its finished epochs are on disk as they were."""
        from ..training import RunEnd

        kept = Path(self.config.out) if self.history and self.config.out else None
        if kept is None or not kept.is_file():
            kept = None
            message = join(message, text("train.nothing_saved"))
        self.end = RunEnd(reason="failed", message=message, best_epoch=None, history=self.history,
                          checkpoint=str(kept) if kept else None, metrics={})

    def finished(self) -> bool:
        return self.end is not None

    def needs_redraw(self) -> bool:
        return bool(self.steps)

    def status(self) -> str:
        b = self.last_batch
        if b is None:
            return self.messages[-1] if self.messages else text("train.starting")
        elapsed = time.perf_counter() - self.first_batch_at
        remaining = elapsed / max(b.step, 1) * (b.total_steps - b.step)
        line = text("train.status", epoch=b.epoch, epochs=self.config.epochs, step=b.step,
                    total_steps=b.total_steps, images_per_sec=b.images_per_sec, lr=b.lr,
                    loss=b.loss, elapsed=format_seconds(elapsed),
                    remaining=format_seconds(remaining))
        if self.history and self.history[-1]["val_acc"] is not None:
            line = join(line, text("train.status_val_acc", val_acc=self.history[-1]["val_acc"]),
                        sep=" · ")
        return line

    # A yield hands gradio a file path: it copies the file and sends its URL. Yielding a numpy
    # image instead would be PNG-encoded again on every yield, and gr.skip() makes gradio build a
    # fresh component object per skipped output: both cost the training CPU time.

    def draw(self, *more) -> None:
        """Redraw the curves (the epoch ones only after a new epoch) and any `more` figures, each
        (name, plots function, args), in one round trip to the drawing helper (serving.drawing:
        matplotlib there does not hold up the server's other visitors)."""
        from ..plots import epoch_curves, loss_curve, lr_curve
        from ..serving.drawing import draw_pngs

        figures = []
        if self.new_epoch or self.end is not None:
            self.new_epoch = False
            histories = {render(self.label): [self.history]}  # the legend, in this language
            figures += [("acc", epoch_curves, (histories, "acc"), {}),
                        ("epoch_loss", epoch_curves, (histories, "loss"), {}),
                        ("lr", lr_curve, (self.history,), {})]
        figures.append(("loss", loss_curve, (self.steps, self.losses),
                        {"max_points": LIVE_POINTS, "title": text("train.loss_title", label=self.label)}))
        figures += [(name, build, args, {}) for name, build, args in more]
        if self.folder is None:
            self.folder = tempfile.mkdtemp(prefix="vision-lab-live-")
        self.draws += 1
        paths = draw_pngs([(str(Path(self.folder) / f"{name}-{self.draws}.png"), build, args, kwargs)
                           for name, build, args, kwargs in figures])
        for (name, *_), path in zip(figures, paths):
            self.old_images.append(self.images.get(name))
            self.images[name] = path

    def frame(self, status: str, figures: bool = True) -> tuple:
        """The twelve outputs: the status, the figures (redrawn, or left as they are), no results.

        Leaving the figures out of a status-only frame matters: sending their files again would
        make every API client download them again (gradio_client fetches each file of every
        update: ~0.15 s of its CPU a second)."""
        if figures:
            self.forget_old_images()
            self.draw()
        images = (tuple(self.images.get(k) for k in ("loss", "acc", "epoch_loss", "lr"))
                  if figures else (gr.skip(),) * 4)
        return (status, *images, None, None, [], "", None, self.command, None)

    def forget_old_images(self) -> None:
        """Delete figures gradio has already copied (it copies each yield's files)."""
        for path in filter(None, self.old_images):
            Path(path).unlink(missing_ok=True)
        self.old_images = []

    def close(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None


def final_outputs(live: LiveRun) -> tuple:
    """All twelve outputs once the run has ended: its verdict, curves and test-set results."""
    from ..plots import confusion_matrix, per_class_accuracy

    end, data = live.end, live.data
    metrics = end.metrics or {}
    status = [join("**", end.message, "**", sep="")]
    if metrics.get("test_acc") is not None:
        status.append(text("train.test_acc", acc=metrics["test_acc"]))
    if end.checkpoint:
        status.append(text("train.saved_as", name=Path(end.checkpoint).name))
    status = join(*status)
    results = []
    wrong = []
    if metrics.get("confusion"):
        results = [("confusion", confusion_matrix, (metrics["confusion"], data.classes)),
                   ("per_class", per_class_accuracy, (metrics["per_class_acc"], data.classes))]
        for m in metrics.get("most_confused", []):
            image = enlarge(chw_to_numpy(data.test_images[m["index"]]))
            wrong.append((image, f"{data.classes[m['true']]} → {data.classes[m['predicted']]} "
                                 f"({m['prob']:.0%})"))
    command = cli_command(live.config)
    summary = {
        "reason": end.reason, "message": end.message, "checkpoint": end.checkpoint,
        "best_epoch": end.best_epoch, "test_acc": metrics.get("test_acc"),
        "test_loss": metrics.get("test_loss"), "classes": data.classes,
        "per_class_acc": metrics.get("per_class_acc"), "history": end.history,
        "seconds": round(time.perf_counter() - live.started, 2), "config": live.config.to_dict(),
        "command": command, "internals": internals_of(live.history),
    }
    live.draw(*results)
    images = tuple(live.images.get(k) for k in ("loss", "acc", "epoch_loss", "lr", "confusion", "per_class"))
    name = Path(end.checkpoint).stem if end.checkpoint else ""
    return (status, *images, wrong, name, end.checkpoint, command, summary)


def loading_message(dataset: str, data_root) -> str:
    """Say when a first use downloads the dataset, so a long wait is not a silent one."""
    from ..datasets import dataset_info

    try:
        needs_download = dataset_info(dataset, data_root=data_root).get("needs_download")
    except (ValueError, OSError):
        needs_download = False  # the loader itself reports what is wrong with the name or path
    if needs_download:
        return text("train.downloading", dataset=dataset)
    return text("train.loading", dataset=dataset)


# ---- handlers -----------------------------------------------------------------------------------

@friendly_errors
def start_training(settings, request: gr.Request = None, *, folder_zip: str | None = None, **form):
    """Train a model; yields live curves and, at the end, the results on the test set.

    A run identical to one trained before (same settings, data and code) is replayed from the run
    cache at once, with a copy of its checkpoint; one identical to a run waiting or training now
    is joined (serving.run_queue): it trains once for everyone who asked for it.

    `form` holds the form's fields by name; the zip is named here only so that the API may leave
    it out (its component starts empty, and gradio takes a parameter's default from there)."""
    form["folder_zip"] = folder_zip
    config = make_config(form)  # a wrong option is reported before waiting in line
    if form.get("dataset") != FOLDER_UPLOAD:
        check_server_folder(settings, config.dataset)
    yield from train_config(settings, request, config)


def train_config(settings, request, config):
    """Train `config` for this visitor (replayed, joined or trained, as start_training says),
    yielding the tab's outputs; "Continue from this checkpoint" (resume.py) trains through here."""
    from ..serving.run_cache import needs_data, run_key
    from ..serving.run_queue import RunSpec
    from ..training import default_run_path

    owner = owner_of(request)
    check_quota(settings, owner)
    config.data_root = settings.data_root
    data = None
    command = cli_command(config)
    if needs_data(config):  # a folder is known by its contents: load it to know the run
        yield cleared(loading_message(config.dataset, settings.data_root), command)
        data = _data_for(config)
    if isinstance(config.augment, list):
        _size_augmentation(config, data.image_size if data is not None else
                           _dataset_image_size(config, settings.data_root))
    config.out = str(default_run_path(config, owner_dir(settings, owner)))
    spec = RunSpec(config, run_key(config, data))
    live = None
    try:
        replayed = _replay(spec)
        if replayed is not None:
            live = _live_run(config, data if data is not None else _data_for(config))
            for event in replayed:
                live.add(event)
            yield final_outputs(live)
            return
        ticket = RUNS.request("train", [spec], session_of(request), visitor=owner,
                              load_data=lambda: _data_for(config), deliver_to=config.out,
                              need_checkpoint=True,
                              finish_when_closed=settings.on_disconnect == "finish")
        with RUNS.following(ticket):
            for line in RUNS.wait_in_line(ticket):
                yield cleared(line, command)
            if not ticket.admitted or ticket.left:
                yield cleared(left_message(ticket, "train.stopped_following"), command)
                return
            others = len(ticket.job.watchers()) - 1
            first = (joined_message(others) if others > 0 else
                     loading_message(config.dataset, settings.data_root))
            yield cleared(first, command)
            live = _live_run(config, data if data is not None else _data_for(config))
            yield from follow(RUNS.view(ticket), live, ticket.stop, STOPPING)
            if live.end is None:
                if ticket.left:
                    yield (left_message(ticket, "train.stopped_following"),
                           *(gr.skip(),) * (len(OUTPUTS) - 1))  # keep the curves it reached
                    return
                raise gr.Error(render(text("train.no_result")), print_exception=False)
            if ticket.job.replayed:
                live.end.message = join(ticket.job.replays[0].note(), live.end.message)
            yield final_outputs(live)
    finally:
        if live is not None:
            live.close()


def _live_run(config, data) -> LiveRun:
    """What the tab shows of a run; a continued run's curves start with the epochs it continues."""
    live = LiveRun(config, data)
    for event in resume.epochs_before(config):
        live.add(event)
    return live


def cleared(status, command: str) -> tuple:
    """The twelve outputs before a run's first curve: a status line, the run's CLI command, the
    results of an earlier run cleared. Values, not gr.skip(): gradio builds a new component and
    its API schema for each skipped output (~1 ms each), and a class waiting in line sends one of
    these every few seconds per student."""
    return (status, None, None, None, None, None, None, [], "", None, command, None)


def _data_for(config):
    """The run's data, built once however many visitors ask for it at the same moment."""
    from ..serving.run_queue import LOADING
    from ..training import data_key

    return LOADING.get(data_key(config), lambda: load_data(config))


def _dataset_image_size(config, data_root) -> int:
    from ..datasets import dataset_info

    return dataset_info(config.dataset, data_root=data_root)["image_size"]


def _replay(spec):
    """The run's events from the cache, its end naming the visitor's own copy of the checkpoint
    and saying where it comes from; None when the run is not in the cache (with a checkpoint)."""
    replays = RUNS.replays([spec], need_checkpoint=True)
    if not replays:
        return None
    try:
        path = RUNS.cache.deliver(replays[0], spec.config.out, spec.config)
    except (OSError, ValueError, KeyError):
        return None  # evicted meanwhile, or unreadable: train it
    events = replays[0].events(checkpoint=str(path))
    events[-1].message = join(replays[0].note(), events[-1].message)
    return events


def joined_message(others: int):
    return text("train.joined", others=others)


def _size_augmentation(config, image_size: int) -> None:
    """A spec from the Augment tab was sized for its preview image: size it for this dataset."""
    from .augment import resize_spec

    if isinstance(config.augment, list):
        config.augment = resize_spec(config.augment, image_size)


@friendly_errors
def stop_training(request: gr.Request):
    if RUNS.stop(session_of(request)):
        return STOPPING
    return gr.skip()


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
    data = _data_for(config)
    _size_augmentation(config, data.image_size)
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
    from ..plots import font_notice, lr_finder_figure

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


@friendly_errors
def export_onnx_file(settings, checkpoint_name, request: gr.Request = None):
    """The finished run's checkpoint (any checkpoint this visitor may see, by name) as an ONNX
    file, its preprocessing included (export.export_onnx): pixels in, logits out."""
    from ..export import OnnxUnavailable, export_onnx
    from .common import made_from

    if not checkpoint_name:
        raise ValueError(text("train.export_nothing"))
    path, out = made_from(settings, checkpoint_name, owner_of(request), "onnx", ".onnx")
    try:
        return str(export_onnx(path, out))
    except OnnxUnavailable as error:  # the sentence naming the pip command, as a library error
        raise RuntimeError(*error.args) from None


def use_suggestion(which: str, values):
    """The suggested lr `which` ("steepest" or "min_div_10") for the lr field, to the two
    significant digits its button shows; nothing when there is none."""
    lr = (values or {}).get(which)
    return float(f"{lr:.2g}") if lr else gr.skip()


@friendly_errors
def on_model(name, request: gr.Request = None):
    from ..models import MODEL_DESCRIPTIONS, has_pretrained, model_options

    d = model_options(name)
    return (gr.update(info=static_text(MODEL_DESCRIPTIONS[name])),
            gr.update(visible="hidden_sizes" in d,
                      value=", ".join(map(str, d.get("hidden_sizes", [512, 256])))),
            gr.update(visible="dropout" in d, value=d.get("dropout", 0.0)),
            gr.update(visible="batch_norm" in d, value=d.get("batch_norm", False)),
            gr.update(visible=has_pretrained(name)))


def on_scheduler(name):
    from ..training import SCHEDULER_DEFAULTS

    shown = SCHEDULER_USES.get(name, set())
    gamma = SCHEDULER_DEFAULTS.get(name, {}).get("gamma", 0.1)
    return [gr.update(visible=field in shown, **({"value": gamma} if field == "gamma" else {}))
            for field, *_ in SCHEDULER_FIELDS]


def on_dataset(name):
    folder = name == FOLDER_UPLOAD or str(name).startswith("folder:")
    return gr.update(visible=name == FOLDER_UPLOAD), gr.update(visible=folder)


def on_zip(path):
    return gr.update(value=FOLDER_UPLOAD) if path else gr.skip()


@friendly_errors
def on_augment(choice, spec, request: gr.Request = None):
    if choice != AUGMENT_TAB:
        return gr.update(visible=False)
    if not spec:
        return gr.update(visible=True, value=ui_text("train.augment_tab_empty"))
    ops = ", ".join(s["op"] for s in spec)
    return gr.update(visible=True, value=text("train.augment_tab_ops", ops=ops))


# ---- wiring -------------------------------------------------------------------------------------

def build(settings, augment_spec=None, tab=None):
    form, view = layout(settings, augment_spec if augment_spec is not None else gr.State([]))
    private = dict(queue=False, api_visibility="private")
    # `.input`, a person's choice: a form filled by the page's address or an opened bundle sets
    # these fields and their options together (share.form_updates), which a `.change` would reset.
    form["model"].input(on_model, form["model"], [form["model"], form["hidden_sizes"], form["dropout"],
                                                   form["batch_norm"], view["resnet_row"]], **private)
    form["scheduler"].input(on_scheduler, form["scheduler"],
                             [form[field] for field, *_ in SCHEDULER_FIELDS], **private)
    form["dataset"].change(on_dataset, form["dataset"], [form["folder_zip"], form["folder_image_size"]],
                           **private)
    form["folder_zip"].upload(on_zip, form["folder_zip"], form["dataset"], **private)
    augment_inputs = [form["augment"], form["augment_spec"]]
    form["augment"].change(on_augment, augment_inputs, view["augment_note"], **private)
    if tab is not None:
        tab.select(on_augment, augment_inputs, view["augment_note"], **private)
    # No gradio concurrency limit: runs wait in RUNS instead, where they can show their place.
    started = view["start"].click(
        with_settings(start_training, settings), inputs_kwargs=form,
        outputs=[view[name] for name in OUTPUTS], api_name="train", concurrency_limit=None,
        show_progress="hidden")
    view["stop"].click(stop_training, None, view["status"], queue=False, api_name="stop_training")
    # One sweep at a time: it trains on the request thread, with all the CPU's threads.
    view["lr_find"].click(with_settings(find_learning_rate, settings), inputs_kwargs=form,
                          outputs=[view[name] for name in LR_FIND_OUTPUTS], api_name="lr_find",
                          concurrency_limit=1, concurrency_id="lr_find")
    view["export_onnx"].click(with_settings(export_onnx_file, settings), view["checkpoint_name"],
                              view["onnx_file"], api_name="export_onnx", concurrency_limit=2)
    for which in ("steepest", "min_div_10"):
        view[f"use_{which}"].click(partial(use_suggestion, which), view["lr_find_values"],
                                   form["lr"], **private)
    continued = resume.wire(settings, view, [view[name] for name in OUTPUTS], train_config, started)
    # Inside the network is drawn once the run has ended, from what /train returned.
    for run in (started, continued):
        run.then(show_internals, view["result"], [view[name] for name in INSIDE_OUTPUTS],
                 api_visibility="private")
    your_runs.wire(settings, view["your_runs"], tab, after=started)
    share.wire_train(settings, form, view, view["your_runs"])
