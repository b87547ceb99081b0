"""Train tab: "Continue from this checkpoint", and why it works.

The run shown above (finished, or stopped with its last finished epoch kept) trains on up to a
later epoch from its checkpoint's training state (vision_lab/resume.py), as `python -m vision_lab
train … --resume CKPT` does; it waits in line and shows its curves as any run (train.train_config).
Once it has ended, a figure draws its validation loss over that of the run with the same settings
trained straight through, when this server has trained that one: on a CPU they are one curve.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import gradio as gr

from ..i18n import text
from .common import friendly_errors
from .language import ui_text
from .storage import owner_of, resolve_checkpoint

OUTPUTS = ("resume_note", "resume_plot")


def layout(view: dict) -> None:
    with gr.Accordion(ui_text("resume.ui.group"), open=False, elem_id="train-resume"):
        gr.Markdown(ui_text("resume.ui.explained"))
        with gr.Row(equal_height=True):
            view["resume_epochs"] = gr.Number(10, precision=0, minimum=2, label=ui_text("resume.ui.epochs"),
                                              elem_id="train-resume-epochs")
            view["resume"] = gr.Button(ui_text("resume.ui.button"), elem_id="train-resume-button")
        view["resume_note"] = gr.Markdown(elem_id="train-resume-note")
        view["resume_plot"] = gr.Plot(label=ui_text("resume.ui.plot"), elem_id="train-resume-plot")


def continued_config(settings, checkpoint_name, epochs, owner):
    """The run in this visitor's checkpoint `checkpoint_name`, continued up to epoch `epochs`
    (ValueError with the reason when it cannot be)."""
    from ..checkpoints import read_metadata
    from ..train_config import TrainConfig
    from .common import check_server_folder

    if not checkpoint_name:
        raise ValueError(text("resume.ui.nothing"))
    path = Path(resolve_checkpoint(settings, checkpoint_name, owner))
    started = read_metadata(path).get("config")
    if not isinstance(started, dict):
        raise ValueError(text("resume.no_state", name=path.name))
    if not (isinstance(epochs, (int, float)) and math.isfinite(epochs) and epochs == int(epochs)):
        raise ValueError(text("training.bad_epochs", value=epochs))
    config = TrainConfig.from_dict({**started, "epochs": int(epochs), "resume": str(path), "out": None,
                                    "data_root": settings.data_root})
    check_server_folder(settings, config.dataset)
    config.validate()  # with resume.check: why this checkpoint cannot be continued, if it cannot
    return config


def epochs_before(config) -> list:
    """A continued run's earlier epochs, as the EpochEnd events its curves start with."""
    from ..checkpoints import CheckpointError, read_metadata
    from ..train_config import EpochEnd

    if not config.resume:
        return []
    names = {f.name for f in dataclasses.fields(EpochEnd)} - {"event"}
    try:
        meta = read_metadata(config.resume)
        done = meta["training_state"]["epoch"]
        return [EpochEnd(**{k: v for k, v in record.items() if k in names})
                for record in meta.get("history", [])[:done]]
    except (CheckpointError, KeyError, TypeError):
        return []  # the run itself says what is wrong with the file


@friendly_errors
def explain(settings, summary, request: gr.Request = None):
    """After a run: for a continued one, its curve over the uninterrupted run's (from the run
    cache, when this server trained it); for any other run, nothing."""
    from ..curve_plots import resumed_curves
    from ..train_config import TrainConfig

    if not isinstance(summary, dict) or not (summary.get("config") or {}).get("resume"):
        return "", None
    config = TrainConfig.from_dict(summary["config"])
    # Only a checkpoint this visitor may see is read (the summary comes from the page).
    config.resume = resolve_checkpoint(settings, config.resume, owner_of(request))
    history = summary.get("history") or []
    after = len(epochs_before(config))
    straight = _uninterrupted(config)
    last = history[-1] if history else None
    if straight and last and len(straight) >= last["epoch"] and last["val_loss"] is not None:
        note = text("resume.ui.same", epoch=last["epoch"], continued=last["val_loss"],
                    uninterrupted=straight[last["epoch"] - 1]["val_loss"])
    else:
        note = text("resume.ui.no_uninterrupted", epochs=config.epochs)
    return note, resumed_curves(history, after, straight)


def _uninterrupted(config) -> list[dict] | None:
    """The history of the run with the same settings that never stopped, if the cache has it."""
    from ..serving.run_key import needs_data, run_key
    from ..serving.run_queue import RUNS

    plain = dataclasses.replace(config, resume=None)
    if needs_data(plain):
        return None  # a folder of images is known by its contents: not loaded just to look
    replay = RUNS.cache.get(run_key(plain))
    return (replay.end.get("history") or None) if replay is not None else None


def wire(settings, view: dict, outputs: list, train_config, started):
    """The button trains through `train_config` (train.py) into the tab's `outputs`; after it or
    the Start button's run (`started`), the figure. Returns the button's event."""
    from .common import with_settings

    @friendly_errors
    def continue_training(checkpoint_name, epochs, request: gr.Request = None):
        """Continue the run of `checkpoint_name` (one this visitor may see) up to epoch `epochs`."""
        config = continued_config(settings, checkpoint_name, epochs, owner_of(request))
        yield from train_config(settings, request, config)

    continued = view["resume"].click(continue_training, [view["checkpoint_name"], view["resume_epochs"]],
                                     outputs, api_name="continue_training", concurrency_limit=None,
                                     show_progress="hidden")
    for event in (started, continued):
        event.then(with_settings(explain, settings), view["result"],
                   [view[name] for name in OUTPUTS], api_visibility="private")
    return continued
