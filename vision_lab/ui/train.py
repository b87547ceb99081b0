"""Train tab: every TrainConfig option, live curves while it trains, results when it ends.

`layout` draws the form and names each field once (`form`, field name -> component); the Start
button hands the whole form to `start_training` by those names (gradio's `inputs_kwargs`), which
are also the /train API's parameters. `make_config` turns the form into a TrainConfig. The run
trains in a child process (serving.worker) and `live.follow` shows it; it waits for a free slot
first (serving.run_queue), showing its place in line. Stop ends it within one batch.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from functools import partial
from pathlib import Path

import gradio as gr

from ..serving.run_queue import RUNS
from . import your_runs
from .common import (FOLDER_UPLOAD, check_server_folder, chw_to_numpy, dataset_choices, enlarge,
                     format_seconds, friendly_errors, load_data, session_of, with_settings)
from .fields import Number, Slider
from .live import follow
from .storage import check_quota, owner_dir, owner_of

AUGMENT_TAB = "Augment tab's settings"
LIVE_POINTS = 1000  # the live loss curve is thinned to this many points (drawing cost grows with them)
STOPPING = "**Stopping …** (the run ends within one batch and keeps its last finished epoch)"
WHY_TEST_WAITS = (
    "The test set waits until training is over: the best epoch, early stopping and the plateau "
    "scheduler look at the validation images, so the test figure, measured once on the kept "
    "model, stays an honest estimate of how it does on images it has never been tuned on.")


# ---- the form -----------------------------------------------------------------------------------

def layout(settings, augment_spec) -> tuple[dict, dict]:
    """Draw the tab. Returns (form, view): the input fields and the other components, by name."""
    from ..models import MODEL_DESCRIPTIONS, list_models, model_options
    from ..training import OPTIMIZERS, SCHEDULERS, TrainConfig
    from ..transforms import list_presets

    d = TrainConfig()
    cnn = model_options("cnn")
    form, view = {"augment_spec": augment_spec}, {}
    gr.Markdown("Choose data, a model and how to train it, then **Start**. The status line updates "
                "every two seconds and the curves about every 15 seconds; **Stop** ends the run "
                "within one batch and keeps the last finished epoch.")
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=340):
            with gr.Group():
                form["dataset"] = gr.Dropdown(dataset_choices() + [FOLDER_UPLOAD], value="shapes",
                                              label="Dataset", allow_custom_value=True,
                                              info="or type folder:PATH for a folder / zip on the server")
                with gr.Row():
                    form["subset_train"] = Number(2000, precision=0, label="Training images (0 = all)",
                                                  info="the validation images are held out of these")
                    form["subset_test"] = Number(500, precision=0, label="Test images (0 = all)")
                with gr.Row():
                    form["val_fraction"] = Number(d.val_fraction, minimum=0, maximum=0.5,
                                                  label="Validation fraction",
                                                  info="of the training images, to choose the epoch on")
                    form["data_seed"] = Number(d.data_seed, precision=0, label="Data seed",
                                               info="picks the subsets and validation images")
                form["folder_zip"] = gr.File(label="Zip of class folders (one folder per class)",
                                             file_types=[".zip"], type="filepath", visible=False)
                form["folder_image_size"] = Slider(0, 256, value=0, step=8, visible=False,
                                                   label="Image size for your images (px, 0 = their own)")
            with gr.Group():
                form["model"] = gr.Dropdown(list_models(), value=d.model, label="Model",
                                            info=MODEL_DESCRIPTIONS[d.model])
                form["hidden_sizes"] = gr.Textbox("512, 256", label="Hidden layer sizes (MLP)",
                                                  visible=False, max_lines=1)
                with gr.Row():
                    form["dropout"] = Slider(0, 0.9, value=cnn.get("dropout", 0.0), step=0.05, label="Dropout")
                    form["batch_norm"] = gr.Checkbox(value=cnn.get("batch_norm", False), label="BatchNorm")
                with gr.Row(visible=False) as view["resnet_row"]:
                    form["pretrained"] = gr.Checkbox(value=False, label="ImageNet-pretrained weights")
                    form["freeze_epochs"] = Number(0, precision=0, label="Freeze epochs",
                                                   info="train only the head first")
                    form["unfreeze_lr"] = Number(0, label="lr after unfreezing (0 = lr/10)")
            with gr.Group():
                with gr.Row():
                    form["epochs"] = Number(3, precision=0, label="Epochs")
                    form["batch_size"] = Number(d.batch_size, precision=0, label="Batch size")
                with gr.Row():
                    form["optimizer"] = gr.Dropdown(list(OPTIMIZERS), value=d.optimizer, label="Optimizer")
                    form["lr"] = Number(d.lr, label="Learning rate")
                with gr.Row():
                    form["momentum"] = Number(d.momentum, label="Momentum (SGD, RMSprop)")
                    form["weight_decay"] = Number(d.weight_decay, label="Weight decay (L2)")
                    form["l1"] = Number(d.l1, label="L1")
            with gr.Accordion("Learning-rate scheduler", open=False):
                form["scheduler"] = gr.Dropdown(list(SCHEDULERS), value="none", label="Scheduler",
                                                info="steps once per epoch; plateau watches the validation loss")
                with gr.Row():
                    for name, label, value, extra in SCHEDULER_FIELDS:
                        maker = gr.Textbox if name == "milestones" else Number
                        form[name] = maker(value, label=label, visible=False, **extra)
            with gr.Accordion("Early stopping, augmentation, pixel permutation, seed", open=False):
                with gr.Row():
                    form["early_stopping_patience"] = Number(0, precision=0,
                                                             label="Early-stopping patience (0 = off)",
                                                             info="epochs without a better validation loss")
                    form["early_stopping_min_delta"] = Number(0.0, label="min delta")
                    form["restore_best"] = gr.Checkbox(True, label="keep the best epoch (validation)")
                form["augment"] = gr.Dropdown(list_presets() + [AUGMENT_TAB], value="none",
                                              label="Augmentation")
                view["augment_note"] = gr.Markdown(visible=False)
                with gr.Row():
                    form["permute_pixels"] = gr.Checkbox(False, label="Permute pixels (a fixed shuffle)")
                    form["permutation_seed"] = Number(0, precision=0, label="permutation seed")
                    form["seed"] = Number(0, precision=0, label="Seed",
                                          info="initial weights, batch order, augmentation")
            with gr.Row():
                view["start"] = gr.Button("Start training", variant="primary", elem_id="train-start")
                view["stop"] = gr.Button("Stop", variant="stop", elem_id="train-stop")
        with gr.Column(scale=2):
            _results_layout(settings, view)
    return form, view


# Scheduler parameters: (field, label, default, extra arguments); shown for the schedulers that use
# them (SCHEDULER_USES). The defaults are TrainConfig's own (training.SCHEDULER_DEFAULTS).
def _scheduler_default(scheduler: str, option: str):
    from ..training import SCHEDULER_DEFAULTS

    value = SCHEDULER_DEFAULTS[scheduler][option]
    return ", ".join(map(str, value)) if isinstance(value, list) else value or 0


SCHEDULER_FIELDS = [
    ("step_size", "step size (epochs)", _scheduler_default("step", "step_size"), {"precision": 0}),
    ("gamma", "gamma", _scheduler_default("step", "gamma"), {}),
    ("milestones", "milestones (epochs)", _scheduler_default("multistep", "milestones"), {}),
    ("t_max", "T_max (0 = epochs)", _scheduler_default("cosine", "t_max"), {"precision": 0}),
    ("eta_min", "eta_min", _scheduler_default("cosine", "eta_min"), {}),
    ("plateau_factor", "factor", _scheduler_default("plateau", "factor"), {}),
    ("plateau_patience", "patience", _scheduler_default("plateau", "patience"), {"precision": 0}),
]
SCHEDULER_USES = {"step": {"step_size", "gamma"}, "multistep": {"milestones", "gamma"},
                  "exponential": {"gamma"}, "cosine": {"t_max", "eta_min"},
                  "plateau": {"plateau_factor", "plateau_patience"}}


def _results_layout(settings, view: dict) -> None:
    view["status"] = gr.Markdown("Press **Start training**. The default (a small CNN on 2,000 "
                                 "shapes images, 3 epochs) takes well under a minute.",
                                 elem_id="train-status", elem_classes="vl-status")
    # Live curves are images rendered here, not gr.Plot: the handler then pays (and measures) the
    # whole rendering cost, so the redraw budget in live.py is honest.
    view["loss_plot"] = _live_image("Loss per iteration", elem_id="train-loss-plot")
    with gr.Tabs():
        with gr.Tab("Accuracy per epoch"):
            view["acc_plot"] = _live_image("Accuracy per epoch", elem_id="train-acc-plot")
        with gr.Tab("Loss per epoch"):
            view["epoch_loss_plot"] = _live_image("Loss per epoch")
        with gr.Tab("Learning rate"):
            view["lr_plot"] = _live_image("Learning rate")
    gr.Markdown("### Results on the test set (when the run ends)\n" + WHY_TEST_WAITS)
    with gr.Tabs():
        with gr.Tab("Confusion matrix"):
            view["confusion_plot"] = gr.Plot(label="Confusion matrix")
        with gr.Tab("Accuracy per class"):
            view["per_class_plot"] = gr.Plot(label="Accuracy per class")
        with gr.Tab("Most confidently wrong"):
            view["wrong"] = gr.Gallery(label="Most confidently wrong test images (true → predicted)",
                                       columns=8, height="auto", object_fit="contain")
    with gr.Row():
        view["checkpoint_name"] = gr.Textbox(label="Checkpoint", interactive=False)
        view["checkpoint_file"] = gr.File(label="Download the checkpoint", interactive=False)
    view["command"] = gr.Code(label="The same run from the command line", language="shell",
                              interactive=False, elem_id="train-command")
    with gr.Accordion("Run summary (JSON, what /train returns)", open=False):
        view["result"] = gr.JSON(label="Run summary")
    view["your_runs"] = your_runs.layout(settings)


def _live_image(label: str, **kwargs) -> gr.Image:
    return gr.Image(label=label, interactive=False, format="png", **kwargs)


OUTPUTS = ("status", "loss_plot", "acc_plot", "epoch_loss_plot", "lr_plot", "confusion_plot",
           "per_class_plot", "wrong", "checkpoint_name", "checkpoint_file", "command", "result")


# ---- from the form to a TrainConfig ---------------------------------------------------------------

def _number(value, what, whole=False):
    """A form or API value as a float (or int), or ValueError naming the field: API callers can
    send anything, e.g. lr="abc"."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {value!r}.") from None
    if whole:
        if not number.is_integer():
            raise ValueError(f"{what} must be a whole number, got {value!r}.")
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


def _int_list(text, what):
    try:
        return [int(v) for v in str(text).replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{what} must be whole numbers separated by commas, got {text!r}.") from None


# Fields that map one to one onto TrainConfig: field -> how to read it (and the name in errors).
PLAIN_FIELDS = {
    "subset_train": partial(_count_or_none, what="training images"),
    "subset_test": partial(_count_or_none, what="test images"),
    "val_fraction": partial(_number, what="validation fraction"),
    "data_seed": partial(_whole, what="data seed"),
    "epochs": partial(_whole, what="epochs"),
    "batch_size": partial(_whole, what="batch size"),
    "optimizer": str,
    "lr": partial(_number, what="learning rate"),
    "momentum": partial(_number, what="momentum"),
    "weight_decay": partial(_number, what="weight decay"),
    "l1": partial(_number, what="L1"),
    "scheduler": str,
    "early_stopping_patience": partial(_whole, what="early stopping patience"),
    "early_stopping_min_delta": partial(_number, what="early stopping min delta"),
    "restore_best": bool,
    "permute_pixels": bool,
    "permutation_seed": partial(_whole, what="permutation seed"),
    "seed": partial(_whole, what="seed"),
    "model": str,
}


def _model_options(model: str, form: dict) -> dict:
    """The model's options as the form sets them, those that differ from its defaults (so a
    default model is `{}`, as the CLI builds it)."""
    from ..models import model_options

    defaults, options = model_options(model), {}
    if "hidden_sizes" in defaults:
        sizes = _int_list(form.get("hidden_sizes", "512, 256"), "hidden sizes")
        if not sizes or min(sizes) < 1:
            raise ValueError("the MLP needs at least one hidden layer of at least 1 unit, "
                             f"got {form.get('hidden_sizes')!r}.")
        options["hidden_sizes"] = sizes
    if "dropout" in defaults:
        dropout = _number(form.get("dropout", defaults["dropout"]), "dropout")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be at least 0 and below 1, got {dropout}.")
        options["dropout"] = dropout
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
        value = read[name](form.get(name, default), name.replace("_", " "))
        options[name.removeprefix("plateau_")] = value
    if scheduler == "cosine":
        options["t_max"] = options["t_max"] or None
    return options


def make_config(form: dict):
    """A TrainConfig from the form's values by field name (raises ValueError with one sentence if
    one is wrong). Fields left out keep the form's defaults."""
    from ..training import TrainConfig

    dataset = form.get("dataset", "shapes")
    if dataset == FOLDER_UPLOAD:
        if not form.get("folder_zip"):
            raise ValueError("Upload a .zip of class folders first (one folder per class, "
                             "optionally inside train/ and test/).")
        dataset = f"folder:{form['folder_zip']}"
    values = {name: read(form[name]) for name, read in PLAIN_FIELDS.items() if name in form}
    model = values.get("model", "cnn")
    pretrained = model == "resnet18" and bool(form.get("pretrained"))
    augment = form.get("augment", "none")
    config = TrainConfig(**{
        **values, "dataset": dataset,
        "image_size": (_whole(form.get("folder_image_size") or 0, "image size") or None
                       if dataset.startswith("folder:") else None),
        "model_options": _model_options(model, form), "pretrained": pretrained,
        "freeze_epochs": _whole(form.get("freeze_epochs") or 0, "freeze epochs") if pretrained else 0,
        "unfreeze_lr": (_number(form["unfreeze_lr"], "lr after unfreezing")
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
    return command_for(config)


# ---- a run as it goes ---------------------------------------------------------------------------

class LiveRun:
    """What the Train tab shows of a run, collected from its events (a live.Watcher)."""

    def __init__(self, config, data):
        self.config, self.data = config, data
        self.label = f"{config.model} on {data.name}"
        self.steps, self.losses, self.history = [], [], []
        self.messages, self.last_batch, self.end = list(data.messages), None, None
        self.started, self.first_batch_at = time.perf_counter(), None
        self.new_epoch = False
        self.folder, self.images, self.old_images, self.draws = None, {}, [], 0

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
            message += " No epoch had finished, so nothing was saved."
        self.end = RunEnd(reason="failed", message=message, best_epoch=None, history=self.history,
                          checkpoint=str(kept) if kept else None, metrics={})

    def finished(self) -> bool:
        return self.end is not None

    def needs_redraw(self) -> bool:
        return bool(self.steps)

    def status(self) -> str:
        b = self.last_batch
        if b is None:
            return self.messages[-1] if self.messages else "Starting …"
        elapsed = time.perf_counter() - self.first_batch_at
        remaining = elapsed / max(b.step, 1) * (b.total_steps - b.step)
        parts = [f"**Epoch {b.epoch}/{self.config.epochs}**", f"step {b.step}/{b.total_steps}",
                 f"{b.images_per_sec:,.0f} images/s", f"lr {b.lr:.3g}",
                 f"loss {b.loss:.3f}", f"elapsed {format_seconds(elapsed)}",
                 f"ETA {format_seconds(remaining)}"]
        if self.history and self.history[-1]["val_acc"] is not None:
            parts.append(f"last validation accuracy {self.history[-1]['val_acc']:.1%}")
        return "**Training** · " + " · ".join(parts)

    # A yield hands gradio a file path: it copies the file and sends its URL. Yielding a numpy
    # image instead would be PNG-encoded again on every yield, and gr.skip() makes gradio build a
    # fresh component object per skipped output: both cost the training CPU time.

    def draw(self) -> None:
        from ..plots import epoch_curves, loss_curve, lr_curve

        if self.new_epoch or self.end is not None:
            self.new_epoch = False
            histories = {self.label: [self.history]}
            self._save("acc", epoch_curves(histories, "acc"))
            self._save("epoch_loss", epoch_curves(histories, "loss"))
            self._save("lr", lr_curve(self.history))
        self._save("loss", loss_curve(self.steps, self.losses, max_points=LIVE_POINTS,
                                      title=f"Training loss per iteration: {self.label}"))

    def _save(self, name: str, fig) -> None:
        from ..plots import save_png

        if self.folder is None:
            self.folder = tempfile.mkdtemp(prefix="vision-lab-live-")
        self.draws += 1
        path = str(Path(self.folder) / f"{name}-{self.draws}.png")
        save_png(fig, path)
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
        return (status, *images, None, None, [], "", None, gr.skip(), None)

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
    status = f"**{end.message}**"
    if metrics.get("test_acc") is not None:
        status += f" Test accuracy **{metrics['test_acc']:.1%}**, measured once on the kept model."
    if end.checkpoint:
        status += f" Saved as `{Path(end.checkpoint).name}` — it is now listed in Feature maps and Classify."
    confusion = per_class = None
    wrong = []
    if metrics.get("confusion"):
        confusion = confusion_matrix(metrics["confusion"], data.classes)
        per_class = per_class_accuracy(metrics["per_class_acc"], data.classes)
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
        "command": command,
    }
    live.draw()
    images = tuple(live.images.get(k) for k in ("loss", "acc", "epoch_loss", "lr"))
    name = Path(end.checkpoint).stem if end.checkpoint else ""
    return (status, *images, confusion, per_class, wrong, name, end.checkpoint, command, summary)


def loading_message(dataset: str, data_root) -> str:
    """Say when a first use downloads the dataset, so a long wait is not a silent one."""
    from ..datasets import dataset_info

    try:
        needs_download = dataset_info(dataset, data_root=data_root).get("needs_download")
    except (ValueError, OSError):
        needs_download = False  # the loader itself reports what is wrong with the name or path
    if needs_download:
        return (f"**Downloading {dataset}** into the data folder (first use only; this can take a "
                f"minute or two) …")
    return f"Loading {dataset} …"


# ---- handlers -----------------------------------------------------------------------------------

@friendly_errors
def start_training(settings, request: gr.Request = None, *, folder_zip: str | None = None, **form):
    """Train a model; yields live curves and, at the end, the results on the test set.

    `form` holds the form's fields by name; the zip is named here only so that the API may leave
    it out (its component starts empty, and gradio takes a parameter's default from there)."""
    from ..serving.worker import train_in_process
    from ..training import default_run_path

    form["folder_zip"] = folder_zip
    skip = (gr.skip(),) * (len(OUTPUTS) - 1)
    owner = owner_of(request)
    config = make_config(form)  # a wrong option is reported before waiting in line
    if form.get("dataset") != FOLDER_UPLOAD:
        check_server_folder(settings, config.dataset)
    check_quota(settings, owner)
    live = None
    try:
        with RUNS.line(session_of(request), settings.on_disconnect == "finish") as ticket:
            for line in RUNS.wait_in_line(ticket):
                yield (line, *skip)
            if not ticket.admitted:
                yield ("**Stopped** before it started.", *skip)
                return
            yield (loading_message(config.dataset, settings.data_root), None, None, None, None,
                   None, None, [], "", None, cli_command(config), None)
            config.data_root = settings.data_root
            data = load_data(config)
            _size_augmentation(config, data.image_size)
            config.out = str(default_run_path(config, owner_dir(settings, owner)))
            live = LiveRun(config, data)
            run = train_in_process(config, data, stop=ticket.stop)
            RUNS.hand_over(ticket, run)
            yield from follow(run.events, live, ticket.stop, STOPPING)
            if live.end is None:
                raise gr.Error("Training ended without a result; see the server log.")
            yield final_outputs(live)
    finally:
        if live is not None:
            live.close()


def _size_augmentation(config, image_size: int) -> None:
    """A spec from the Augment tab was sized for its preview image: size it for this dataset."""
    from .augment import resize_spec

    if isinstance(config.augment, list):
        config.augment = resize_spec(config.augment, image_size)


def stop_training(request: gr.Request):
    if RUNS.stop(session_of(request)):
        return STOPPING
    return gr.skip()


def on_model(name):
    from ..models import MODEL_DESCRIPTIONS, model_options

    d = model_options(name)
    return (gr.update(info=MODEL_DESCRIPTIONS[name]),
            gr.update(visible="hidden_sizes" in d,
                      value=", ".join(map(str, d.get("hidden_sizes", [512, 256])))),
            gr.update(visible="dropout" in d, value=d.get("dropout", 0.0)),
            gr.update(visible="batch_norm" in d, value=d.get("batch_norm", False)),
            gr.update(visible=name == "resnet18"))


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


def on_augment(choice, spec):
    if choice != AUGMENT_TAB:
        return gr.update(visible=False)
    if not spec:
        return gr.update(visible=True, value="The Augment tab has no transforms switched on.")
    ops = ", ".join(s["op"] for s in spec)
    return gr.update(visible=True, value=f"Uses the Augment tab's transforms: {ops} "
                                         "(sizes follow the dataset's image size).")


# ---- wiring -------------------------------------------------------------------------------------

def build(settings, augment_spec=None, tab=None):
    form, view = layout(settings, augment_spec if augment_spec is not None else gr.State([]))
    private = dict(queue=False, api_visibility="private")
    form["model"].change(on_model, form["model"], [form["model"], form["hidden_sizes"], form["dropout"],
                                                   form["batch_norm"], view["resnet_row"]], **private)
    form["scheduler"].change(on_scheduler, form["scheduler"],
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
    your_runs.wire(settings, view["your_runs"], tab, after=started)
