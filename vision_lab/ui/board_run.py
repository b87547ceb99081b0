"""A student's part of the class board (ui/board.py): a small training form, "Train for the board"
and "Submit to the board".

A run for the board trains through the server's line like any Train run (live.follow_job, kind
"board") on the board's data (class_board.board_config: its images, its split, its secret data
seed), and its checkpoint goes to the hidden class folder (`<runs>/.class/board-<id>/`), never
to the student's runs: no other tab can list it or evaluate it on the test set. The student sees
live loss and accuracy curves and, at the end, only validation figures; the test accuracy goes
into the class database, shown to nobody before the lecturer's Reveal.
"""
from __future__ import annotations

import uuid
from pathlib import Path

import gradio as gr

from ..i18n import join, render, text
from ..serving.class_db import FOLDER, class_db
from ..train_fields import BY_NAME, choices, default
from .common import friendly_errors, with_settings
from .fields import Number, Slider
from .language import ui_text
from .storage import visitor_of
from .train import LIVE_POINTS, LiveRun, delivered_replay

# The settings that matter for this lesson, in the form's order: the rest keep their defaults.
FORM = ("model", "epochs", "optimizer", "lr", "batch_size", "augment", "dropout", "weight_decay",
        "seed")


# ---- a run as it goes ---------------------------------------------------------------------------

class BoardLive(LiveRun):
    """What the form shows of a run for the board: the Train tab's status line and two curves
    (loss per step; training and validation accuracy per epoch). Never the test set."""

    def draw(self, *more) -> None:
        import tempfile

        from ..curve_plots import epoch_curves, loss_curve
        from ..serving.drawing import draw_pngs

        figures = []
        if self.new_epoch or self.end is not None:
            self.new_epoch = False
            figures.append(("acc", epoch_curves, ({render(self.label): [self.history]}, "acc"), {}))
        title = text("train.loss_title", label=self.label)
        figures.append(("loss", loss_curve, (self.steps, self.losses),
                        {"max_points": LIVE_POINTS, "title": title}))
        if self.folder is None:
            self.folder = tempfile.mkdtemp(prefix="vision-lab-board-live-")
        self.draws += 1
        folder = Path(self.folder)
        paths = draw_pngs([(str(folder / f"{name}-{self.draws}.png"), build, args, kwargs)
                           for name, build, args, kwargs in figures])
        for (name, *_), path in zip(figures, paths):
            self.old_images.append(self.images.get(name))
            self.images[name] = path

    def frame(self, status: str, figures: bool = True) -> tuple:
        if figures:
            self.forget_old_images()
            self.draw()
            return status, self.images.get("loss"), self.images.get("acc"), None
        return status, gr.skip(), gr.skip(), None


def kept_val_acc(end) -> float | None:
    """The validation accuracy of the epoch the run kept (the one its test accuracy is of)."""
    history = end.history or []
    epoch = end.best_epoch or (history[-1]["epoch"] if history else None)
    return next((h["val_acc"] for h in history if h["epoch"] == epoch), None)


# ---- handlers -----------------------------------------------------------------------------------

@friendly_errors
def board_train(settings, model, epochs, optimizer, lr, batch_size, augment, dropout,
                weight_decay, seed, request: gr.Request = None):
    """Train a run for the open board with these settings on the board's data; yields the status,
    the loss curve, the accuracy curves and, at the end, a summary with validation figures only."""
    from ..class_board import board_config
    from ..serving.jobs import RunSpec
    from ..serving.run_key import run_key
    from .board_view import current
    from .live import follow_job, loading_message, run_data
    from .train_form import make_config

    board = current(settings)
    if board is None:
        raise ValueError(text("class.board.closed"))
    if board.state == "revealed":
        raise ValueError(text("class.board.revealed"))
    form = dict(model=model, epochs=epochs, optimizer=optimizer, lr=lr, batch_size=batch_size,
                augment=augment, dropout=dropout, weight_decay=weight_decay, seed=seed)
    config = board_config(make_config(form), board)
    config.data_root = settings.data_root
    visitor = visitor_of(request)
    token = uuid.uuid4().hex
    folder = Path(settings.runs_dir) / FOLDER / f"board-{board.id}"
    folder.mkdir(parents=True, exist_ok=True)
    config.out = str(folder / f"{token}.safetensors")

    def final(live, replays, replayed: int, stopped: bool):
        return _finished(settings, board, visitor, token, config, live)

    loading = loading_message(config.dataset, settings.data_root)
    yield from follow_job(
        "board", [RunSpec(config, run_key(config))], request, settings,
        watcher=lambda: BoardLive(config, run_data(config)), replay_events=delivered_replay(config),
        line=lambda message: (message, None, None, None), final=final, loading=loading,
        load_data=lambda: run_data(config), deliver_to=config.out, need_checkpoint=True)


def _finished(settings, board, visitor, token, config, live) -> tuple:
    """A run's end: kept for the board (with its hidden test accuracy) when it reached its end;
    the outputs say only what the validation set says."""
    from ..class_board import board_settings, training_seconds

    end = live.end
    if end is None or not end.metrics:
        message = end.message if end is not None else text("train.no_result")
        return (join(message, text("class.board.not_kept")), *_images(live), None)
    seconds = training_seconds(end.history)
    val_acc = kept_val_acc(end)
    class_db(settings.runs_dir).add_board_run(
        board.id, visitor, token, board_settings(config), val_acc, end.metrics.get("test_acc"),
        seconds, len(end.history))
    over = bool(board.max_seconds and seconds > board.max_seconds)
    status = text("class.board.trained", val_acc=val_acc or 0.0, seconds=seconds)
    if over:
        status = join(status, text("class.board.over_budget", seconds=seconds,
                                   limit=board.max_seconds))
    summary = {"board": board.id, "val_acc": val_acc, "seconds": seconds,
               "epochs": len(end.history), "settings": board_settings(config),
               "submittable": not over,
               "history": [{k: h.get(k) for k in ("epoch", "train_loss", "train_acc", "val_loss",
                                                   "val_acc", "seconds")} for h in end.history]}
    return (status, *_images(live), summary)


def _images(live) -> tuple:
    if live.steps:
        live.forget_old_images()
        live.new_epoch = True
        live.draw()
    return live.images.get("loss"), live.images.get("acc")


@friendly_errors
def board_submit(settings, nickname, request: gr.Request = None):
    """Put this visitor's latest run for the board on it under `nickname` (plain text)."""
    from ..class_board import check_budget
    from .board_view import current, view_outputs

    board = current(settings)
    if board is None:
        raise ValueError(text("class.board.closed"))
    db = class_db(settings.runs_dir)
    run = db.latest_board_run(board.id, visitor_of(request))
    if run is None:
        raise ValueError(text("class.board.no_run"))
    check_budget(board, run.seconds)
    entry = db.submit(run.token, run.visitor, nickname)
    return (text("class.board.submitted", entry=entry.id, val_acc=entry.val_acc or 0.0),
            *view_outputs(settings))


# ---- the page -----------------------------------------------------------------------------------

def _field(name: str):
    """One of the Train form's fields (train_fields), for this form; a board's runs are short,
    so epochs start at 1."""
    f = BY_NAME[name]
    kwargs = {"label": ui_text(f.label), "elem_id": "board-" + name.replace("_", "-")}
    value = 1 if name == "epochs" else default(f)
    if f.widget == "dropdown":
        return gr.Dropdown(choices(f.choices), value=value, **kwargs)
    if f.widget == "slider":
        return Slider(value=value, **f.checks, **kwargs)
    precision = 0 if f.read in ("whole", "count") else None
    return Number(value, precision=precision, **f.checks, **kwargs)


def layout(view: dict) -> None:
    form = {}
    with gr.Group():
        with gr.Row():
            for name in ("model", "epochs", "optimizer"):
                form[name] = _field(name)
        with gr.Row():
            for name in ("lr", "batch_size", "augment"):
                form[name] = _field(name)
        with gr.Row():
            for name in ("dropout", "weight_decay", "seed"):
                form[name] = _field(name)
    view["form"] = form
    view["train"] = gr.Button(ui_text("class.board.train"), variant="primary",
                              elem_id="board-train")
    view["status"] = gr.Markdown(ui_text("class.board.ready"), elem_id="board-status",
                                 elem_classes="vl-status")
    with gr.Row():
        view["loss_plot"] = gr.Image(label=ui_text("train.loss_plot"), interactive=False,
                                     format="png", elem_id="board-loss-plot")
        view["acc_plot"] = gr.Image(label=ui_text("class.board.acc_plot"), interactive=False,
                                    format="png", elem_id="board-acc-plot")
    view["summary"] = gr.JSON(label=ui_text("class.board.summary_label"),
                              elem_classes="vl-advanced")
    with gr.Row():
        view["nickname"] = gr.Textbox(label=ui_text("class.board.nickname"),
                                      info=ui_text("class.board.nickname_info"), max_lines=1,
                                      elem_id="board-nickname")
        view["submit"] = gr.Button(ui_text("class.board.submit"), elem_id="board-submit")
    view["submit_status"] = gr.Textbox(label=ui_text("class.board.submit_status"),
                                       interactive=False, elem_id="board-submit-status")


def wire(settings, view: dict, shown: list) -> None:
    form = view["form"]
    view["train"].click(with_settings(board_train, settings), [form[name] for name in FORM],
                        [view["status"], view["loss_plot"], view["acc_plot"], view["summary"]],
                        api_name="board_train", concurrency_limit=None, show_progress="hidden")
    view["submit"].click(with_settings(board_submit, settings), view["nickname"],
                         [view["submit_status"], *shown], api_name="board_submit",
                         concurrency_limit=4)

