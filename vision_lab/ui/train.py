"""Train tab: every TrainConfig option, live curves while it trains, results when it ends.

`layout` draws the form (train_form.py: its fields, one table) and names each field once (`form`,
field name -> component); the Start button hands the whole form to `start_training` by those
names (gradio's `inputs_kwargs`), which are also the /train API's parameters, and
`train_form.make_config` turns them into a TrainConfig. The run trains in a child process
(serving.worker) and `live.follow_job` shows it; it waits for a free slot first
(serving.run_queue), showing its place in line. Stop ends it within one batch.
"Find a learning rate" (/lr_find, the same form: lr_find.py) runs the learning-rate range test in
a child process too and offers its two suggestions for the lr field; "Download as ONNX" (/export_onnx)
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
from pathlib import Path

import gradio as gr

from ..datasets.class_names import class_labels
from ..i18n import join, render, text
from ..serving.run_queue import RUNS
from . import lr_find, resume, share, your_runs
from .common import (FOLDER_UPLOAD, check_server_folder, chw_to_numpy, enlarge, format_seconds,
                     friendly_errors, session_of, with_settings)
from .language import ui_text
from .live import follow_job, loading_message, run_data
from .storage import check_quota, owner_dir, owner_of
from .train_form import (ADVANCED, AUGMENT_TAB, OUTPUTS, SCHEDULER_FIELDS, cli_command, draw,
                         make_config, model_outputs, on_dataset, on_model, on_scheduler,
                         size_augmentation)

LIVE_POINTS = 1000  # the live loss curve is thinned to this many points (drawing cost grows with them)
STOPPING = text("train.stopping")


# ---- the tab ------------------------------------------------------------------------------------

def layout(settings, augment_spec) -> tuple[dict, dict]:
    """Draw the tab. Returns (form, view): the input fields and the other components, by name.
    Controls a lecture folds away (lecture.py) carry the class `vl-advanced`."""
    form, view = {"augment_spec": augment_spec}, {}
    gr.Markdown(ui_text("train.intro"))
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=340):
            draw(form, view, settings, "data", "model", "optimizer")
            lr_find.layout(view)
            draw(form, view, settings, "scheduler", "more")
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
    from ..internals_plots import gradient_norms, internals_over_epochs

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
        from ..train_config import BatchEnd, EpochEnd, RunEnd, Status

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
        from ..train_config import RunEnd

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
        from ..curve_plots import epoch_curves, loss_curve, lr_curve
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
    from ..evaluation_plots import confusion_matrix, per_class_accuracy

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
            true, predicted = class_labels([data.classes[m["true"]], data.classes[m["predicted"]]])
            wrong.append((image, f"{true} → {predicted} ({m['prob']:.0%})"))
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
    from ..serving.jobs import RunSpec
    from ..serving.run_key import needs_data, run_key
    from ..train_config import default_run_path

    owner = owner_of(request)
    check_quota(settings, owner)
    config.data_root = settings.data_root
    data = None
    command = cli_command(config)
    if needs_data(config):  # a folder is known by its contents: load it to know the run
        yield cleared(loading_message(config.dataset, settings.data_root), command)
        data = run_data(config)
    if isinstance(config.augment, list):
        size_augmentation(config, data.image_size if data is not None else
                          _dataset_image_size(config, settings.data_root))
    config.out = str(default_run_path(config, owner_dir(settings, owner)))

    def final(live, replays, replayed: int, stopped: bool):
        if live.end is None:
            raise gr.Error(render(text("train.no_result")), print_exception=False)
        if replayed:
            live.end.message = join(replays[0].note(), live.end.message)
        return final_outputs(live)

    yield from follow_job(
        "train", [RunSpec(config, run_key(config, data))], request, settings,
        watcher=lambda: _live_run(config, data if data is not None else run_data(config)),
        replay_events=delivered_replay(config), line=lambda message: cleared(message, command), final=final,
        loading=loading_message(config.dataset, settings.data_root),
        load_data=lambda: run_data(config), deliver_to=config.out, need_checkpoint=True)


def delivered_replay(config):
    """follow_job's `replay_events` for a run saved at config.out: the cached run's events, its end
    naming the visitor's own copy of the checkpoint; None when that copy cannot be made (evicted
    meanwhile, or unreadable: it trains)."""
    def replay_events(replays):
        try:
            path = RUNS.cache.deliver(replays[0], config.out, config)
        except (OSError, ValueError, KeyError):
            return None
        return replays[0].events(checkpoint=str(path))

    return replay_events


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


def _dataset_image_size(config, data_root) -> int:
    from ..datasets import dataset_info

    return dataset_info(config.dataset, data_root=data_root)["image_size"]


@friendly_errors
def stop_training(request: gr.Request):
    if RUNS.stop(session_of(request)):
        return STOPPING
    return gr.skip()


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
    form["model"].input(on_model, form["model"], model_outputs(form, view), **private)
    form["scheduler"].input(on_scheduler, form["scheduler"],
                            [form[f.name] for f in SCHEDULER_FIELDS], **private)
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
    lr_find.wire(settings, form, view)
    view["export_onnx"].click(with_settings(export_onnx_file, settings), view["checkpoint_name"],
                              view["onnx_file"], api_name="export_onnx", concurrency_limit=2)
    continued = resume.wire(settings, view, [view[name] for name in OUTPUTS], train_config, started)
    # Inside the network is drawn once the run has ended, from what /train returned.
    for run in (started, continued):
        run.then(show_internals, view["result"], [view[name] for name in INSIDE_OUTPUTS],
                 api_visibility="private")
    your_runs.wire(settings, view["your_runs"], tab, after=started)
    share.wire_train(settings, form, view, view["your_runs"])
