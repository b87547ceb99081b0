"""Train tab: every TrainConfig option, live curves while it trains, results when it ends.

`training.train` runs in a background thread and feeds a queue; the handler drains the queue and
redraws about once a second (drawing per batch would slow training down). Stop sets the run's
threading.Event, so training ends within one batch and keeps its last finished epoch.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import gradio as gr

from .common import (FOLDER_UPLOAD, RUNS, dataset_choices, drain, enlarge, chw_to_numpy,
                     format_seconds, friendly_errors, load_data, queue_message, run_in_thread,
                     session_of, user_error)

AUGMENT_TAB = "Augment tab's settings"
# The status line updates every second. Figures are redrawn at most once a second and only while
# drawing stays within RENDER_BUDGET of the wall time: matplotlib's rendering holds the GIL and so
# stalls the training thread (benchmarks/app_overhead.py measures the slowdown against the CLI).
RENDER_EVERY, RENDER_BUDGET, RENDER_MAX = 1.0, 0.04, 15.0


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

    def loss_plot(self):
        from ..plots import figure_to_image, loss_curve

        return figure_to_image(loss_curve(self.steps, self.losses,
                                          title=f"Training loss per iteration: {self.label}"))

    def epoch_plots(self):
        from ..plots import epoch_curves, figure_to_image, lr_curve

        histories = {self.label: self.history}
        return tuple(figure_to_image(f) for f in (epoch_curves(histories, "acc"),
                                                  epoch_curves(histories, "loss"),
                                                  lr_curve(self.history)))


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


def build(settings, augment_spec=None, tab=None):
    from ..models import MODEL_DESCRIPTIONS, list_models, model_options
    from ..training import OPTIMIZERS, SCHEDULERS
    from ..transforms import list_presets

    augment_spec = augment_spec if augment_spec is not None else gr.State([])
    gr.Markdown("Choose data, a model and how to train it, then **Start**. Curves update about once "
                "a second; **Stop** ends the run within one batch and keeps the last finished epoch.")
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=340):
            with gr.Group():
                dataset = gr.Dropdown(dataset_choices() + [FOLDER_UPLOAD], value=DEFAULTS["dataset"],
                                      label="Dataset", allow_custom_value=True,
                                      info="or type folder:PATH for a folder / zip on the server")
                with gr.Row():
                    subset_train = gr.Number(DEFAULTS["subset_train"], precision=0,
                                             label="Training images (0 = all)")
                    subset_test = gr.Number(DEFAULTS["subset_test"], precision=0,
                                            label="Test images (0 = all)")
                folder_zip = gr.File(label="Zip of class folders (one folder per class)",
                                     file_types=[".zip"], type="filepath", visible=False)
                folder_image_size = gr.Slider(16, 256, value=64, step=8, visible=False,
                                              label="Image size for your images (px)")
            with gr.Group():
                model = gr.Dropdown(list_models(), value=DEFAULTS["model"], label="Model",
                                    info=MODEL_DESCRIPTIONS[DEFAULTS["model"]])
                cnn = model_options(DEFAULTS["model"])
                hidden_sizes = gr.Textbox("512, 256", label="Hidden layer sizes (MLP)", visible=False,
                                          max_lines=1)
                with gr.Row():
                    dropout = gr.Slider(0, 0.9, value=cnn.get("dropout", 0.0), step=0.05, label="Dropout")
                    batch_norm = gr.Checkbox(value=cnn.get("batch_norm", False), label="BatchNorm")
                with gr.Row(visible=False) as resnet_row:
                    pretrained = gr.Checkbox(value=False, label="ImageNet-pretrained weights")
                    freeze_epochs = gr.Number(0, precision=0, label="Freeze epochs",
                                              info="train only the head first")
                    unfreeze_lr = gr.Number(0, label="lr after unfreezing (0 = lr/10)")
            with gr.Group():
                with gr.Row():
                    epochs = gr.Number(DEFAULTS["epochs"], precision=0, label="Epochs")
                    batch_size = gr.Number(DEFAULTS["batch_size"], precision=0,
                                           label="Batch size")
                with gr.Row():
                    optimizer = gr.Dropdown(list(OPTIMIZERS), value=DEFAULTS["optimizer"], label="Optimizer")
                    lr = gr.Number(DEFAULTS["lr"], label="Learning rate")
                with gr.Row():
                    momentum = gr.Number(0.9, label="Momentum (SGD, RMSprop)")
                    weight_decay = gr.Number(0.0, label="Weight decay (L2)")
                    l1 = gr.Number(0.0, label="L1")
            with gr.Accordion("Learning-rate scheduler", open=False):
                scheduler = gr.Dropdown(list(SCHEDULERS), value="none", label="Scheduler",
                                        info="steps once per epoch; plateau watches the test loss")
                with gr.Row():
                    step_size = gr.Number(5, precision=0, label="step size (epochs)", visible=False)
                    gamma = gr.Number(0.1, label="gamma", visible=False)
                    milestones = gr.Textbox("5, 8", label="milestones (epochs)", visible=False)
                    t_max = gr.Number(0, precision=0, label="T_max (0 = epochs)", visible=False)
                    eta_min = gr.Number(0.0, label="eta_min", visible=False)
                    plateau_factor = gr.Number(0.1, label="factor", visible=False)
                    plateau_patience = gr.Number(2, precision=0, label="patience", visible=False)
            with gr.Accordion("Early stopping, augmentation, pixel permutation, seed", open=False):
                with gr.Row():
                    early_stopping_patience = gr.Number(0, precision=0,
                                                        label="Early-stopping patience (0 = off)")
                    early_stopping_min_delta = gr.Number(0.0, label="min delta")
                    restore_best = gr.Checkbox(True, label="restore the best epoch")
                augment = gr.Dropdown(list_presets() + [AUGMENT_TAB], value="none", label="Augmentation")
                augment_note = gr.Markdown(visible=False)
                with gr.Row():
                    permute_pixels = gr.Checkbox(False, label="Permute pixels (a fixed shuffle)")
                    permutation_seed = gr.Number(0, precision=0, label="permutation seed")
                    seed = gr.Number(0, precision=0, label="Seed")
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

    def prepare(request: gr.Request):
        RUNS.queue(session_of(request))
        return queue_message(settings)

    def stop_run(request: gr.Request):
        if RUNS.stop(session_of(request)):
            return "**Stopping …** (the run ends within one batch and keeps its last finished epoch)"
        return gr.skip()

    @friendly_errors
    def train(*args):
        """Train a model; yields live curves and, at the end, the results."""
        *args, request = args
        session = session_of(request)
        stop_event = RUNS.claim(session)
        thread = None
        try:
            if stop_event.is_set():
                yield ("**Stopped** before it started.", *[gr.skip()] * 10)
                return
            config = make_config(*args)
            yield (loading_message(config.dataset, settings.data_root), None, None, None, None,
                   None, None, [], "", None, None)
            data = load_data(config.dataset, settings.data_root, config.subset_train,
                             config.subset_test, config.seed, config.image_size)
            prepare_augment(config, data.image_size)
            from ..training import train as train_events

            live = LiveRun(config, data)
            live.messages += data.messages
            thread, q = run_in_thread(train_events(config, stop=stop_event, data=data), stop_event)
            yield from stream(live, q, stop_event)
        finally:
            # A closed page (or an error) must not leave a thread training for nobody.
            stop_event.set()
            RUNS.release(session, stop_event)

    def stream(live, q, stop_event):
        last_draw, last_status, draw_cost = 0.0, 0.0, 0.0
        epoch_figs = (gr.skip(),) * 3
        done = False
        while not done:
            for item in drain(q, timeout=0.1):
                if item is None:
                    done = True
                elif isinstance(item, BaseException):
                    if isinstance(item, (ValueError, RuntimeError, OSError)):
                        raise user_error(item)
                    raise item
                else:
                    live.add(item)
            if done or live.end is not None:
                break
            now = time.perf_counter()
            if now - last_draw < min(RENDER_MAX, max(RENDER_EVERY, draw_cost / RENDER_BUDGET)):
                if now - last_status >= RENDER_EVERY and not stop_event.is_set():
                    last_status = now
                    yield (live.status(), *[gr.skip()] * 10)
                continue
            if live.new_epoch:
                live.new_epoch = False
                epoch_figs = live.epoch_plots()
            loss = live.loss_plot() if live.steps else gr.skip()
            status_line = live.status() if not stop_event.is_set() else (
                "**Stopping …** (the run ends within one batch and keeps its last finished epoch)")
            t0 = time.perf_counter()
            yield (status_line, loss, *epoch_figs, *[gr.skip()] * 6)
            # Rendering (above) and Gradio's PNG encoding (between this yield and the next call)
            # hold the GIL and stall the training thread: both count against the budget.
            draw_cost = time.perf_counter() - now
            last_draw = last_status = time.perf_counter()
            epoch_figs = (gr.skip(),) * 3
        if live.end is None:
            raise gr.Error("Training ended without a result; see the server log.")
        status, confusion, per_class, wrong_images, name, path, summary = final_outputs(live)
        # The verdict first (cheap), then the figures (drawing them takes a moment).
        yield (status, *[gr.skip()] * 7, name, path, summary)
        acc, loss_e, lr_fig = live.epoch_plots()
        yield (status, live.loss_plot(), acc, loss_e, lr_fig, confusion, per_class, wrong_images,
               name, path, summary)

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
    start.click(prepare, None, status, queue=False, api_visibility="private").then(
        train, inputs, outputs, api_name="train", concurrency_limit=settings.max_concurrent_trainings,
        concurrency_id="training", show_progress="hidden")
    stop.click(stop_run, None, status, queue=False, api_name="stop_training")
