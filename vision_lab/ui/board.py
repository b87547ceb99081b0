"""The class board (inside the Class tab): students train for the board and submit, the board ranks
them by validation accuracy, live, and the lecturer opens it, reveals the hidden test set, deletes
an entry, closes it and exports it as CSV.

The rules (class_board.py) and the store (serving.class_db) are elsewhere; here are the page and
the lecturer's small handlers. The board as it stands is board_view.py's, training for it
board_run.py's. What a person typed (the board's name, a nickname) only ever appears in a plain
Textbox or a Dataframe cell, never in Markdown.

The board refreshes itself while the Class tab is open (a gr.Timer, off on the other tabs): a tick
asks the database for the board's state and its entries' ids only, and sends nothing when they
have not changed, so a class of 40 polling it costs the server one small query each.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import gradio as gr

from ..i18n import text
from ..serving.class_db import class_db
from ..serving.lecturer_key import require_lecturer
from . import board_run
from .board_view import board_tick, board_view, current, on_tab, view_outputs
from .common import friendly_errors, with_settings
from .language import ui_text

TICK_SECONDS = 4.0
BOARD_CLASS = "vl-board"      # lecture mode draws its table large (lecture.py)


def _latest(settings):
    """The board the lecturer acts on: the current one, else the last one (closed)."""
    db = class_db(settings.runs_dir)
    boards = db.boards()
    return db.current_board() or (boards[-1] if boards else None)


# ---- the lecturer -------------------------------------------------------------------------------

@friendly_errors
def board_open(settings, key, name, dataset, train_images, test_images, val_fraction, max_epochs,
               max_seconds, request: gr.Request = None):
    """Open a board (the board open before is closed): its data are fixed here, its data seed
    drawn secretly, and the data loaded once to check they exist."""
    from ..class_board import board_data
    from ..train_config import TrainConfig
    from .live import run_data

    require_lecturer(key, settings.lecturer_key)
    data, epochs, images, seconds = board_data(dataset, train_images, test_images, val_fraction,
                                               max_epochs, max_seconds)
    run_data(TrainConfig(dataset=dataset, data_root=settings.data_root, **data))
    board = class_db(settings.runs_dir).open_board(name, dataset, data, epochs, images, seconds)
    return (text("class.board.opened", id=board.id), *view_outputs(settings))


def _acting(settings, key):
    require_lecturer(key, settings.lecturer_key)
    board = current(settings)
    if board is None:
        raise ValueError(text("class.board.closed"))
    return board


@friendly_errors
def board_reveal(settings, key, request: gr.Request = None):
    """Show the test accuracies: the board re-ranks on them and shows each entry's move."""
    board = _acting(settings, key)
    class_db(settings.runs_dir).reveal(board.id)
    return (text("class.board.revealed_now"), *view_outputs(settings))


@friendly_errors
def board_close(settings, key, request: gr.Request = None):
    board = _acting(settings, key)
    class_db(settings.runs_dir).close_board(board.id)
    return (text("class.board.closed_now", id=board.id), *view_outputs(settings))


@friendly_errors
def board_delete(settings, key, entry, request: gr.Request = None):
    """Take one entry (by the number in the board's Entry column) off the current board."""
    board = _acting(settings, key)
    try:
        number = int(entry)
    except (TypeError, ValueError, OverflowError):   # an API caller may send anything
        raise ValueError(text("class.board.no_entry", entry=str(entry)[:20])) from None
    db = class_db(settings.runs_dir)
    found = db.entry(number)
    if found is None or found.board_id != board.id or not db.delete_entry(number):
        raise ValueError(text("class.board.no_entry", entry=number))
    return (text("class.board.deleted", entry=number), *view_outputs(settings))


@friendly_errors
def board_csv(settings, key, request: gr.Request = None):
    """The board as a CSV file (test columns only once revealed)."""
    from ..class_board import entries_csv

    require_lecturer(key, settings.lecturer_key)
    board = _latest(settings)
    if board is None:
        raise ValueError(text("class.board.closed"))
    folder = Path(tempfile.mkdtemp(prefix="vision-lab-board-csv-"))
    path = folder / f"class-board-{board.id}.csv"
    path.write_text(entries_csv(board, class_db(settings.runs_dir).entries(board.id)),
                    encoding="utf-8")
    return str(path)


# ---- the page -----------------------------------------------------------------------------------

def _lecturer_layout(view: dict) -> None:
    from ..datasets import list_datasets

    def number(name: str, value, **kwargs):
        return gr.Number(value, label=ui_text(f"class.board.{name}"),
                         elem_id="board-" + name.replace("_", "-"), **kwargs)

    def button(name: str, **kwargs):
        return gr.Button(ui_text(f"class.board.{name}"), elem_id=f"board-{name}", **kwargs)

    with gr.Accordion(ui_text("class.board.lecturer_group"), open=False,
                      elem_id="board-lecturer"):
        with gr.Row():
            view["name"] = gr.Textbox(label=ui_text("class.board.name"), max_lines=1,
                                      elem_id="board-name")
            view["dataset"] = gr.Dropdown(list_datasets(), value="shapes", elem_id="board-dataset",
                                          label=ui_text("class.board.dataset"))
        with gr.Row():
            view["train_images"] = number("train_images", 1000, precision=0)
            view["test_images"] = number("test_images", 500, precision=0)
            view["val_fraction"] = number("val_fraction", 0.2)
        with gr.Row():
            view["max_epochs"] = number("max_epochs", 5, precision=0)
            view["max_seconds"] = number("max_seconds", 0,
                                         info=ui_text("class.board.max_seconds_info"))
        with gr.Row():
            view["open"] = button("open", variant="primary")
            view["reveal"] = button("reveal")
            view["close"] = button("close", variant="stop")
        with gr.Row():
            view["entry"] = number("entry", None, precision=0)
            view["delete"] = button("delete")
            view["csv"] = button("csv")
        view["csv_file"] = gr.File(label=ui_text("class.board.csv_file"), interactive=False,
                                   elem_id="board-csv-file")
        view["lecturer_status"] = gr.Textbox(label=ui_text("class.board.lecturer_status"),
                                             interactive=False, elem_id="board-lecturer-status")


def layout(settings) -> dict:
    view = {}
    gr.Markdown(ui_text("class.board.intro"))
    view["rules"] = gr.Textbox(label=ui_text("class.board.rules_label"), interactive=False, lines=3,
                               max_lines=8, elem_id="board-rules", elem_classes=BOARD_CLASS)
    # Tall enough for a class of 40 without a scroll bar of its own (gradio's default is 500 px).
    view["table"] = gr.Dataframe(interactive=False, datatype="str", wrap=True, max_height=2400,
                                 label=ui_text("class.board.table"), elem_id="board-table",
                                 elem_classes=BOARD_CLASS)
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=340):
            board_run.layout(view)
        with gr.Column(scale=1):
            # The figure has its own title: a label over it would hide it.
            view["plot"] = gr.Image(label=ui_text("class.board.plot"), show_label=False,
                                    interactive=False, format="png", elem_id="board-plot")
            view["refresh"] = gr.Button(ui_text("class.board.refresh"), size="sm",
                                        elem_id="board-refresh")
    _lecturer_layout(view)
    view["timer"] = gr.Timer(TICK_SECONDS, active=False)
    view["seen"] = gr.State("")
    return view


def build(settings, key, tab=None) -> None:
    view = layout(settings)
    shown = [view["rules"], view["table"], view["plot"]]
    lecturer = [view["lecturer_status"], *shown]
    bound = lambda fn: with_settings(fn, settings)  # noqa: E731
    view["refresh"].click(bound(board_view), None, shown, api_name="board_view", queue=False)
    view["timer"].tick(bound(board_tick), view["seen"], [*shown, view["seen"]], queue=False,
                       api_visibility="private", show_progress="hidden")
    board_run.wire(settings, view, shown)
    view["open"].click(bound(board_open),
                       [key, *(view[name] for name in ("name", "dataset", "train_images",
                                                       "test_images", "val_fraction", "max_epochs",
                                                       "max_seconds"))],
                       lecturer, api_name="board_open", concurrency_limit=1)
    view["reveal"].click(bound(board_reveal), key, lecturer, api_name="board_reveal",
                         concurrency_limit=1)
    view["close"].click(bound(board_close), key, lecturer, api_name="board_close",
                        concurrency_limit=1)
    view["delete"].click(bound(board_delete), [key, view["entry"]], lecturer,
                         api_name="board_delete", concurrency_limit=1)
    view["csv"].click(bound(board_csv), key, view["csv_file"], api_name="board_csv",
                      concurrency_limit=1)
    if tab is not None:
        # The board refreshes itself only while the Class tab is shown: selecting it starts the
        # timer, selecting any other tab beside it stops it.
        tab.select(lambda: on_tab(True), None, view["timer"], queue=False, api_visibility="private")
        tab.select(bound(board_view), None, shown, queue=False, api_visibility="private")
        for other in getattr(getattr(tab, "parent", None), "children", []):
            if isinstance(other, gr.Tab) and other is not tab:
                other.select(lambda: on_tab(False), None, view["timer"], queue=False,
                             api_visibility="private")
