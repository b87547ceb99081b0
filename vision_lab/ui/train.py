"""Train tab: every TrainConfig option, live curves while it trains, results when it ends.

`training.train` runs in a child process (vision_lab.worker) and streams its events back; the
handler drains them, updates the status line every two seconds and redraws the curves about every
15 seconds (whatever the server does takes CPU from the training, so drawing is kept to a budget).
A run waits for a free slot first (runs.py), showing its place in line. Stop sets the run's event,
so training ends within one batch and keeps its last finished epoch.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import gradio as gr

from .common import (FOLDER_UPLOAD, STATUS_EVERY, check_server_folder, chw_to_numpy,
                     dataset_choices, drain, enlarge, format_seconds, friendly_errors, load_data,
                     redraw_wait, session_of, user_error)
from .fields import Number, Slider
from .runs import RUNS
from .storage import check_quota, owner_dir, owner_of

AUGMENT_TAB = "Augment tab's settings"
LIVE_POINTS = 1000  # the live loss curve is thinned to this many points (drawing cost grows with them)


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


def live_image(label: str, **kwargs) -> gr.Image:
    return gr.Image(label=label, interactive=False, format="png", **kwargs)
GAMMA_DEFAULTS = {"step": 0.1, "multistep": 0.1, "exponential": 0.9}

DEFAULTS = dict(dataset="shapes", subset_train=2000, subset_test=500, model="cnn", epochs=3,
                batch_size=64, optimizer="adam", lr=1e-3)


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


def _int_or_none(value, what):
    if value in (None, ""):
        return None
    number = _whole(value, what)
    return number if number > 0 else None


def _int_list(text, what):
    try:
        return [int(v) for v in str(text).replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{what} must be whole numbers separated by commas, got {text!r}.") from None


def make_config(dataset, folder_zip, folder_image_size, subset_train, subset_test, model,
                hidden_sizes, dropout, batch_norm, pretrained, freeze_epochs, unfreeze_lr, epochs,
                batch_size, optimizer, lr, momentum, weight_decay, l1, scheduler, step_size, gamma,
                milestones, t_max, eta_min, plateau_factor, plateau_patience, early_stopping_patience,
                early_stopping_min_delta, restore_best, permute_pixels, permutation_seed, augment,
                seed, augment_spec=None):
    """A TrainConfig from the tab's inputs (raises ValueError with one sentence if one is wrong)."""
    from ..models import model_options
    from ..training import TrainConfig

    if dataset == FOLDER_UPLOAD:
        if not folder_zip:
            raise ValueError("Upload a .zip of class folders first (one folder per class, "
                             "optionally inside train/ and test/).")
        dataset = f"folder:{folder_zip}"
    defaults = model_options(model)
    options = {}
    if "hidden_sizes" in defaults:
        sizes = _int_list(hidden_sizes, "hidden sizes")
        if not sizes or min(sizes) < 1:
            raise ValueError("the MLP needs at least one hidden layer of at least 1 unit, "
                             f"got {hidden_sizes!r}.")
        options["hidden_sizes"] = sizes
    if "dropout" in defaults:
        if not 0 <= _number(dropout, "dropout") < 1:
            raise ValueError(f"dropout must be at least 0 and below 1, got {dropout}.")
        options["dropout"] = _number(dropout, "dropout")
    if "batch_norm" in defaults:
        options["batch_norm"] = bool(batch_norm)
    is_resnet = model == "resnet18"

    scheduler_options = {}
    if scheduler == "step":
        scheduler_options = {"step_size": _whole(step_size, "step size"),
                             "gamma": _number(gamma, "gamma")}
    elif scheduler == "multistep":
        scheduler_options = {"milestones": _int_list(milestones, "milestones"),
                             "gamma": _number(gamma, "gamma")}
    elif scheduler == "exponential":
        scheduler_options = {"gamma": _number(gamma, "gamma")}
    elif scheduler == "cosine":
        scheduler_options = {"t_max": _whole(t_max, "T_max") or None,
                             "eta_min": _number(eta_min, "eta_min")}
    elif scheduler == "plateau":
        scheduler_options = {"factor": _number(plateau_factor, "plateau factor"),
                             "patience": _whole(plateau_patience, "plateau patience")}

    if augment == AUGMENT_TAB:
        augment = list(augment_spec or [])
    resnet_pretrained = is_resnet and bool(pretrained)
    config = TrainConfig(
        dataset=dataset, subset_train=_int_or_none(subset_train, "training subset"),
        subset_test=_int_or_none(subset_test, "test subset"),
        image_size=_whole(folder_image_size, "image size") if dataset.startswith("folder:") else None,
        model=model, model_options=options, pretrained=resnet_pretrained,
        epochs=_whole(epochs, "epochs"), batch_size=_whole(batch_size, "batch size"),
        optimizer=optimizer, lr=_number(lr, "learning rate"), momentum=_number(momentum, "momentum"),
        weight_decay=_number(weight_decay, "weight decay"), l1=_number(l1, "L1"),
        scheduler=scheduler, scheduler_options=scheduler_options,
        early_stopping_patience=_whole(early_stopping_patience, "early stopping patience"),
        early_stopping_min_delta=_number(early_stopping_min_delta, "early stopping min delta"),
        restore_best=bool(restore_best),
        freeze_epochs=_whole(freeze_epochs, "freeze epochs") if resnet_pretrained else 0,
        unfreeze_lr=(_number(unfreeze_lr, "lr after unfreezing")
                     if resnet_pretrained and unfreeze_lr else None),
        permute_pixels=bool(permute_pixels),
        permutation_seed=_whole(permutation_seed, "permutation seed"),
        augment=augment, seed=_whole(seed, "seed"))
    config.validate()
    return config


def prepare_augment(config, image_size):
    """A spec from the Augment tab was sized for its preview image: size it for this dataset."""
    from .augment import resize_spec

    if isinstance(config.augment, list):
        config.augment = resize_spec(config.augment, image_size)


class LiveRun:
    """What the curves need, collected from training events."""

    def __init__(self, config, data):
        self.config, self.data = config, data
        self.label = f"{config.model} on {data.name}"
        self.steps, self.losses, self.history = [], [], []
        self.messages, self.last_batch, self.end = [], None, None
        self.started = time.perf_counter()
        self.first_batch_at = None
        self.new_epoch = False
        self.folder, self.images, self.old_images, self.draws = None, {}, [], 0

    def add(self, ev):
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

    def status(self) -> str:
        b = self.last_batch
        if b is None:
            return "" + (self.messages[-1] if self.messages else "Starting …")
        elapsed = time.perf_counter() - self.first_batch_at
        remaining = elapsed / max(b.step, 1) * (b.total_steps - b.step)
        parts = [f"**Epoch {b.epoch}/{self.config.epochs}**", f"step {b.step}/{b.total_steps}",
                 f"{b.images_per_sec:,.0f} images/s", f"lr {b.lr:.3g}",
                 f"loss {b.loss:.3f}", f"elapsed {format_seconds(elapsed)}",
                 f"ETA {format_seconds(remaining)}"]
        if self.history:
            parts.append(f"last test accuracy {self.history[-1]['test_acc']:.1%}")
        return "**Training** · " + " · ".join(parts)

    # ---- the live figures, drawn to PNG files -------------------------------------------------
    # A yield hands gradio a file path: it copies the file and sends its URL. Yielding a numpy
    # image instead would be PNG-encoded again on every yield, and gr.skip() makes gradio build a
    # fresh component object per skipped output: both cost the training CPU time.

    def draw_loss(self) -> None:
        from ..plots import loss_curve

        self._save("loss", loss_curve(self.steps, self.losses, max_points=LIVE_POINTS,
                                      title=f"Training loss per iteration: {self.label}"))

    def draw_epochs(self) -> None:
        from ..plots import epoch_curves, lr_curve

        histories = {self.label: self.history}
        self._save("acc", epoch_curves(histories, "acc"))
        self._save("epoch_loss", epoch_curves(histories, "loss"))
        self._save("lr", lr_curve(self.history))

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
        """All eleven outputs: the status, the current figures, empty results.

        `figures=False` leaves the figures as they are: sending their files again with every
        status line would make every API client download them again (gradio_client fetches each
        file of every update: ~0.15 s of its CPU a second)."""
        images = (tuple(self.images.get(k) for k in ("loss", "acc", "epoch_loss", "lr"))
                  if figures else (gr.skip(),) * 4)
        return (status, *images, None, None, [], "", None, None)

    def forget_old_images(self) -> None:
        """Delete figures gradio has already copied (it copies each yield's files)."""
        for path in filter(None, self.old_images):
            Path(path).unlink(missing_ok=True)
        self.old_images = []

    def close(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None


def final_outputs(live: LiveRun):
    """Status, result figures, wrong-image gallery, checkpoint and the JSON summary."""
    from ..plots import confusion_matrix, per_class_accuracy

    end, data = live.end, live.data
    metrics = end.metrics or {}
    status = f"**{end.message}**"
    if metrics.get("test_acc") is not None:
        status += f" Test accuracy **{metrics['test_acc']:.1%}**"
        if end.best_epoch:
            status += f" (best epoch {end.best_epoch})"
        status += "."
    if end.checkpoint:
        status += f" Saved as `{Path(end.checkpoint).name}` — it is now listed in Feature maps and Classify."
    confusion = per_class = None
    wrong = []
    if metrics.get("confusion"):
        confusion = confusion_matrix(metrics["confusion"], data.classes)
        per_class = per_class_accuracy(metrics["per_class_acc"], data.classes)
        for m in metrics.get("most_confused", []):
            image = enlarge(chw_to_numpy(data.test_images[m["index"]]))
            caption = f"{data.classes[m['true']]} → {data.classes[m['predicted']]} ({m['prob']:.0%})"
            wrong.append((image, caption))
    summary = {
        "reason": end.reason, "message": end.message, "checkpoint": end.checkpoint,
        "best_epoch": end.best_epoch, "test_acc": metrics.get("test_acc"),
        "test_loss": metrics.get("test_loss"), "classes": data.classes,
        "per_class_acc": metrics.get("per_class_acc"), "history": end.history,
        "seconds": round(time.perf_counter() - live.started, 2), "config": live.config.to_dict(),
    }
    name = Path(end.checkpoint).stem if end.checkpoint else ""
    return status, confusion, per_class, wrong, name, end.checkpoint, summary


def own_runs_note(settings, count: int, used_mb: float) -> str:
    quota = (f" of the {settings.visitor_quota_mb:,.0f} MB this server keeps per visitor"
             if settings.visitor_quota_mb else "")
    kept = (f" Runs older than {settings.retention_hours:g} hours are deleted."
            if settings.retention_hours else "")
    return (f"{count} run(s), {used_mb:,.1f} MB{quota}. Your runs are yours alone (this browser); "
            f"**Share** copies one into the shared folder for everybody.{kept}")


def own_runs_update(settings, owner, current=None):
    """The 'Your runs' picker and its note, for this visitor."""
    from .common import checkpoint_label
    from .storage import folder_mb, own_checkpoints

    infos = own_checkpoints(settings, owner)
    choices = [(checkpoint_label(i), str(i.path)) for i in infos]
    values = [v for _, v in choices]
    value = current if current in values else (values[0] if values else None)
    note = own_runs_note(settings, len(infos), folder_mb(owner_dir(settings, owner)) if owner else 0.0)
    return gr.update(choices=choices, value=value), note


def died_run_end(live: LiveRun, message: str):
    """The RunEnd of a run whose process died: its finished epochs are on disk as they were."""
    from ..training import RunEnd

    history = live.history
    kept = Path(live.config.out) if history and live.config.out else None
    if kept is not None and not kept.is_file():
        kept = None
    metrics = {"test_loss": history[-1]["test_loss"], "test_acc": history[-1]["test_acc"]} if history else {}
    if kept is None:
        message += " No epoch had finished, so nothing was saved."
    return RunEnd(reason="failed", message=message, best_epoch=None, history=history,
                  checkpoint=str(kept) if kept else None, metrics=metrics)


def build(settings, augment_spec=None, tab=None):
    from ..models import MODEL_DESCRIPTIONS, list_models, model_options
    from ..training import OPTIMIZERS, SCHEDULERS
    from ..transforms import list_presets

    augment_spec = augment_spec if augment_spec is not None else gr.State([])
    gr.Markdown("Choose data, a model and how to train it, then **Start**. The status line updates "
                "every two seconds and the curves about every 15 seconds; **Stop** ends the run "
                "within one batch and keeps the last finished epoch.")
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=340):
            with gr.Group():
                dataset = gr.Dropdown(dataset_choices() + [FOLDER_UPLOAD], value=DEFAULTS["dataset"],
                                      label="Dataset", allow_custom_value=True,
                                      info="or type folder:PATH for a folder / zip on the server")
                with gr.Row():
                    subset_train = Number(DEFAULTS["subset_train"], precision=0,
                                             label="Training images (0 = all)")
                    subset_test = Number(DEFAULTS["subset_test"], precision=0,
                                            label="Test images (0 = all)")
                folder_zip = gr.File(label="Zip of class folders (one folder per class)",
                                     file_types=[".zip"], type="filepath", visible=False)
                folder_image_size = Slider(16, 256, value=64, step=8, visible=False,
                                              label="Image size for your images (px)")
            with gr.Group():
                model = gr.Dropdown(list_models(), value=DEFAULTS["model"], label="Model",
                                    info=MODEL_DESCRIPTIONS[DEFAULTS["model"]])
                cnn = model_options(DEFAULTS["model"])
                hidden_sizes = gr.Textbox("512, 256", label="Hidden layer sizes (MLP)", visible=False,
                                          max_lines=1)
                with gr.Row():
                    dropout = Slider(0, 0.9, value=cnn.get("dropout", 0.0), step=0.05, label="Dropout")
                    batch_norm = gr.Checkbox(value=cnn.get("batch_norm", False), label="BatchNorm")
                with gr.Row(visible=False) as resnet_row:
                    pretrained = gr.Checkbox(value=False, label="ImageNet-pretrained weights")
                    freeze_epochs = Number(0, precision=0, label="Freeze epochs",
                                              info="train only the head first")
                    unfreeze_lr = Number(0, label="lr after unfreezing (0 = lr/10)")
            with gr.Group():
                with gr.Row():
                    epochs = Number(DEFAULTS["epochs"], precision=0, label="Epochs")
                    batch_size = Number(DEFAULTS["batch_size"], precision=0,
                                           label="Batch size")
                with gr.Row():
                    optimizer = gr.Dropdown(list(OPTIMIZERS), value=DEFAULTS["optimizer"], label="Optimizer")
                    lr = Number(DEFAULTS["lr"], label="Learning rate")
                with gr.Row():
                    momentum = Number(0.9, label="Momentum (SGD, RMSprop)")
                    weight_decay = Number(0.0, label="Weight decay (L2)")
                    l1 = Number(0.0, label="L1")
            with gr.Accordion("Learning-rate scheduler", open=False):
                scheduler = gr.Dropdown(list(SCHEDULERS), value="none", label="Scheduler",
                                        info="steps once per epoch; plateau watches the test loss")
                with gr.Row():
                    step_size = Number(5, precision=0, label="step size (epochs)", visible=False)
                    gamma = Number(0.1, label="gamma", visible=False)
                    milestones = gr.Textbox("5, 8", label="milestones (epochs)", visible=False)
                    t_max = Number(0, precision=0, label="T_max (0 = epochs)", visible=False)
                    eta_min = Number(0.0, label="eta_min", visible=False)
                    plateau_factor = Number(0.1, label="factor", visible=False)
                    plateau_patience = Number(2, precision=0, label="patience", visible=False)
            with gr.Accordion("Early stopping, augmentation, pixel permutation, seed", open=False):
                with gr.Row():
                    early_stopping_patience = Number(0, precision=0,
                                                        label="Early-stopping patience (0 = off)")
                    early_stopping_min_delta = Number(0.0, label="min delta")
                    restore_best = gr.Checkbox(True, label="restore the best epoch")
                augment = gr.Dropdown(list_presets() + [AUGMENT_TAB], value="none", label="Augmentation")
                augment_note = gr.Markdown(visible=False)
                with gr.Row():
                    permute_pixels = gr.Checkbox(False, label="Permute pixels (a fixed shuffle)")
                    permutation_seed = Number(0, precision=0, label="permutation seed")
                    seed = Number(0, precision=0, label="Seed")
            with gr.Row():
                start = gr.Button("Start training", variant="primary", elem_id="train-start")
                stop = gr.Button("Stop", variant="stop", elem_id="train-stop")
        with gr.Column(scale=2):
            status = gr.Markdown("Press **Start training**. The default (a small CNN on 2,000 "
                                 "shapes images, 3 epochs) takes well under a minute.",
                                 elem_id="train-status", elem_classes="vl-status")
            # Live curves are images rendered here, not gr.Plot: the handler then pays (and
            # measures) the whole rendering cost, so the redraw budget below is honest.
            loss_plot = live_image("Loss per iteration", elem_id="train-loss-plot")
            with gr.Tabs():
                with gr.Tab("Accuracy per epoch"):
                    acc_plot = live_image("Accuracy per epoch", elem_id="train-acc-plot")
                with gr.Tab("Loss per epoch"):
                    epoch_loss_plot = live_image("Loss per epoch")
                with gr.Tab("Learning rate"):
                    lr_plot = live_image("Learning rate")
            gr.Markdown("### Results (when the run ends)")
            with gr.Tabs():
                with gr.Tab("Confusion matrix"):
                    confusion_plot = gr.Plot(label="Confusion matrix")
                with gr.Tab("Accuracy per class"):
                    per_class_plot = gr.Plot(label="Accuracy per class")
                with gr.Tab("Most confidently wrong"):
                    wrong = gr.Gallery(label="Most confidently wrong test images (true → predicted)",
                                       columns=8, height="auto", object_fit="contain")
            with gr.Row():
                checkpoint_name = gr.Textbox(label="Checkpoint", interactive=False)
                checkpoint_file = gr.File(label="Download the checkpoint", interactive=False)
            with gr.Accordion("Run summary (JSON, what /train returns)", open=False):
                result = gr.JSON(label="Run summary")
            with gr.Accordion("Your runs on this server", open=False, elem_id="own-runs"):
                own_note = gr.Markdown(own_runs_note(settings, 0, 0.0))
                own_runs = gr.Dropdown(label="Your runs (only you see them until you share one)",
                                       choices=[], allow_custom_value=True,
                                       elem_id="own-runs-picker")
                with gr.Row():
                    share_name = gr.Textbox(label="Name in the shared folder (optional)", max_lines=1)
                    share_btn = gr.Button("Share with everyone", elem_id="own-runs-share")
                    delete_btn = gr.Button("Delete", variant="stop", elem_id="own-runs-delete")

    inputs = [dataset, folder_zip, folder_image_size, subset_train, subset_test, model, hidden_sizes,
              dropout, batch_norm, pretrained, freeze_epochs, unfreeze_lr, epochs, batch_size,
              optimizer, lr, momentum, weight_decay, l1, scheduler, step_size, gamma, milestones,
              t_max, eta_min, plateau_factor, plateau_patience, early_stopping_patience,
              early_stopping_min_delta, restore_best, permute_pixels, permutation_seed, augment, seed,
              augment_spec]
    outputs = [status, loss_plot, acc_plot, epoch_loss_plot, lr_plot, confusion_plot, per_class_plot,
               wrong, checkpoint_name, checkpoint_file, result]

    # ---- handlers --------------------------------------------------------------------------------

    def on_model(name):
        from ..models import model_options

        d = model_options(name)
        return (gr.update(info=MODEL_DESCRIPTIONS[name]),
                gr.update(visible="hidden_sizes" in d,
                          value=", ".join(map(str, d.get("hidden_sizes", [512, 256])))),
                gr.update(visible="dropout" in d, value=d.get("dropout", 0.0)),
                gr.update(visible="batch_norm" in d, value=d.get("batch_norm", False)),
                gr.update(visible=name == "resnet18"))

    def on_scheduler(name):
        shown = {"step": {"step_size", "gamma"}, "multistep": {"milestones", "gamma"},
                 "exponential": {"gamma"}, "cosine": {"t_max", "eta_min"},
                 "plateau": {"factor", "patience"}}.get(name, set())
        fields = ["step_size", "gamma", "milestones", "t_max", "eta_min", "factor", "patience"]
        updates = [gr.update(visible=f in shown) for f in fields]
        updates[1] = gr.update(visible="gamma" in shown, value=GAMMA_DEFAULTS.get(name, 0.1))
        return updates

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

    def stop_run(request: gr.Request):
        if RUNS.stop(session_of(request)):
            return "**Stopping …** (the run ends within one batch and keeps its last finished epoch)"
        return gr.skip()

    @friendly_errors
    def train(*args):
        """Train a model; yields live curves and, at the end, the results."""
        from ..training import default_run_path
        from ..worker import train_in_process

        *args, request = args
        owner = owner_of(request)
        config = make_config(*args)  # a wrong option is reported before waiting in line
        if args[0] != FOLDER_UPLOAD:
            check_server_folder(settings, config.dataset)
        check_quota(settings, owner)
        live = None
        try:
            with RUNS.line(session_of(request), settings.on_disconnect == "finish") as ticket:
                for line in RUNS.wait_in_line(ticket):
                    yield (line, *[gr.skip()] * 10)
                if not ticket.admitted:
                    yield ("**Stopped** before it started.", *[gr.skip()] * 10)
                    return
                yield (loading_message(config.dataset, settings.data_root), None, None, None, None,
                       None, None, [], "", None, None)
                data = load_data(config.dataset, settings.data_root, config.subset_train,
                                 config.subset_test, config.seed, config.image_size)
                prepare_augment(config, data.image_size)
                config.out = str(default_run_path(config, owner_dir(settings, owner)))
                live = LiveRun(config, data)
                live.messages += data.messages
                run = train_in_process(config, data, stop=ticket.stop)
                RUNS.hand_over(ticket, run)
                yield from stream(live, run.events, ticket.stop)
        finally:
            if live is not None:
                live.close()

    def stream(live, q, stop_event):
        from ..worker import RunDied

        last_draw, last_status, draw_cost = 0.0, 0.0, 0.0
        done = False
        while not done:
            for item in drain(q, timeout=0.1):
                if item is None:
                    done = True
                elif isinstance(item, RunDied):
                    live.add(died_run_end(live, str(item)))
                elif isinstance(item, BaseException):
                    if isinstance(item, (ValueError, RuntimeError, OSError)):
                        raise user_error(item)
                    raise item
                else:
                    live.add(item)
            if done or live.end is not None:
                break
            now = time.perf_counter()
            if now - last_draw < redraw_wait(draw_cost):
                if now - last_status >= STATUS_EVERY and not stop_event.is_set():
                    last_status = now
                    yield live.frame(live.status(), figures=False)
                continue
            if live.new_epoch:
                live.new_epoch = False
                live.draw_epochs()
            if live.steps:
                live.draw_loss()
            status_line = live.status() if not stop_event.is_set() else (
                "**Stopping …** (the run ends within one batch and keeps its last finished epoch)")
            yield live.frame(status_line)
            live.forget_old_images()
            # Drawing (above) and gradio's handling of the yield (until the next call) use the CPU
            # the training needs: both count against the budget.
            draw_cost = time.perf_counter() - now
            last_draw = last_status = time.perf_counter()
        if live.end is None:
            raise gr.Error("Training ended without a result; see the server log.")
        status, confusion, per_class, wrong_images, name, path, summary = final_outputs(live)
        # The verdict first (cheap), then the figures (drawing them takes a moment).
        yield (*live.frame(status)[:8], name, path, summary)
        live.draw_epochs()
        live.draw_loss()
        images = live.frame(status)[1:5]
        yield (status, *images, confusion, per_class, wrong_images, name, path, summary)

    # Name the API's parameters after make_config's (gradio reads the signature), and let gradio
    # pass the request last.
    import inspect

    # Defaults are the components' initial values, so API callers pass only what they change.
    params = [p.replace(default=c.value if not isinstance(c, gr.State) else None)
              for p, c in zip(inspect.signature(make_config).parameters.values(), inputs)]
    params.append(inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                    default=None, annotation=gr.Request))
    train.__signature__ = inspect.Signature(params)
    train.__annotations__ = {"request": gr.Request}  # how gradio finds where to pass the request

    model.change(on_model, model, [model, hidden_sizes, dropout, batch_norm, resnet_row],
                 queue=False, api_visibility="private")
    scheduler.change(on_scheduler, scheduler, [step_size, gamma, milestones, t_max, eta_min,
                                               plateau_factor, plateau_patience],
                     queue=False, api_visibility="private")
    dataset.change(on_dataset, dataset, [folder_zip, folder_image_size], queue=False,
                   api_visibility="private")
    folder_zip.upload(on_zip, folder_zip, dataset, queue=False, api_visibility="private")
    augment.change(on_augment, [augment, augment_spec], augment_note, queue=False,
                   api_visibility="private")
    if tab is not None:
        tab.select(on_augment, [augment, augment_spec], augment_note, queue=False,
                   api_visibility="private")
    def refresh_own(current, request: gr.Request):
        return own_runs_update(settings, owner_of(request), current)

    @friendly_errors
    def share_run(checkpoint, name="", request: gr.Request = None):
        """Copy one of your runs into the shared folder, where every visitor can pick it."""
        from .storage import share

        path = share(settings, owner_of(request), checkpoint, name)
        return (f"Shared as **{path.stem}**: every visitor now finds it in Feature maps and Classify.",
                own_runs_update(settings, owner_of(request), checkpoint)[0])

    @friendly_errors
    def delete_run(checkpoint, request: gr.Request = None):
        """Delete one of your runs from the server."""
        from .storage import delete

        name = delete(settings, owner_of(request), checkpoint)
        picker, note = own_runs_update(settings, owner_of(request))
        return f"Deleted **{name}**. " + note, picker

    # No gradio concurrency limit: runs wait in RUNS instead, where they can show their place.
    start.click(train, inputs, outputs, api_name="train", concurrency_limit=None,
                show_progress="hidden").then(
        refresh_own, own_runs, [own_runs, own_note], queue=False, api_visibility="private")
    stop.click(stop_run, None, status, queue=False, api_name="stop_training")
    share_btn.click(share_run, [own_runs, share_name], [own_note, own_runs], api_name="share_run")
    delete_btn.click(delete_run, own_runs, [own_note, own_runs], api_name="delete_run")
    if tab is not None:
        tab.select(refresh_own, own_runs, [own_runs, own_note], queue=False, api_visibility="private")
