"""The class board as it stands (ui/board.py's page): its rules, its ranked entries and their
distribution, for anyone who asks, and the timer's cheap refresh.

No test figure leaves here before the lecturer's Reveal: the table and the plot get them only
from a revealed board (class_board.ranking and accuracies).
"""
from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import gradio as gr

from ..i18n import render, t, text
from ..serving.class_db import class_db
from .common import friendly_errors

PLOTS_KEPT = 32               # drawn figures kept on disk for the ticks that ask again
_PLOT_DIR: Path | None = None


def current(settings):
    """The board students see (the newest one not closed), or None."""
    return class_db(settings.runs_dir).current_board()


def _signature(settings) -> tuple:
    """What the board's view depends on, in one small read: which board, its state, its entries."""
    board = current(settings)
    if board is None:
        return (None,)
    ids = tuple(e.id for e in class_db(settings.runs_dir).entries(board.id))
    return board.id, board.state, ids


def table(board, entries) -> dict:
    """The board's rows (plain text cells) and headers in the visitor's language, as the
    Dataframe's value. Once revealed, ranked by the test set, with each entry's move beside its
    test accuracy; the settings come last (the longest column, and the least needed from afar)."""
    from ..class_board import move_label, percent, ranking, settings_summary

    revealed = board is not None and board.state == "revealed"
    if revealed:
        keys = ("col_test_rank", "col_entry", "col_nickname", "col_test", "col_move", "col_val",
                "col_val_rank", "col_seconds", "col_settings")
    else:
        keys = ("col_rank", "col_entry", "col_nickname", "col_val", "col_seconds", "col_settings")
    rows = []
    for row in ranking(entries, revealed):
        e = row.entry
        cells = {"col_rank": row.rank, "col_val_rank": row.rank, "col_entry": e.id,
                 "col_nickname": e.nickname, "col_val": percent(e.val_acc),
                 "col_seconds": f"{e.seconds:.1f}",
                 "col_settings": render(settings_summary(e.settings)),
                 "col_test": percent(e.test_acc), "col_test_rank": row.test_rank,
                 "col_move": move_label(row.move)}
        rows.append([str(cells[k]) for k in keys])
    return {"headers": [t(f"class.board.{k}") for k in keys], "data": rows}


def _plot(board, entries) -> str | None:
    """The distribution figure as a PNG file, drawn once per (board, entries, language, size)."""
    from .. import i18n
    from ..board_plots import board_distribution
    from ..class_board import accuracies
    from ..plot_style import _text_scale
    from ..serving.drawing import draw_pngs

    global _PLOT_DIR
    if board is None:
        return None
    revealed = board.state == "revealed"
    data = accuracies(entries, revealed)
    key = repr((board.id, revealed, [e.id for e in entries], i18n.current(), _text_scale.get()))
    if _PLOT_DIR is None:
        _PLOT_DIR = Path(tempfile.mkdtemp(prefix="vision-lab-board-"))
    path = _PLOT_DIR / f"board-{hashlib.sha256(key.encode()).hexdigest()[:16]}.png"
    if not path.is_file():
        draw_pngs([(str(path), board_distribution, (data,), {})])
        for old in sorted(_PLOT_DIR.glob("*.png"), key=lambda p: p.stat().st_mtime)[:-PLOTS_KEPT]:
            old.unlink(missing_ok=True)
    return str(path)


def view_outputs(settings) -> tuple:
    """The rules (plain text), the table and the plot, for whoever asks (no test figure before
    Reveal: the table and plot have none until then)."""
    from ..class_board import rules

    board = current(settings)
    entries = class_db(settings.runs_dir).entries(board.id) if board else []
    said = rules(board) if board else text("class.board.closed")
    return said, table(board, entries), _plot(board, entries)


@friendly_errors
def board_view(settings, request: gr.Request = None):
    """The class board now: its rules, its ranked entries and their distribution."""
    return view_outputs(settings)


@friendly_errors
def board_tick(settings, seen, request: gr.Request = None):
    """The timer's refresh: nothing sent while the board has not changed."""
    from .. import i18n
    from ..plot_style import _text_scale

    # The visitor's language and lecture mode count too: the plot is drawn in them.
    now = repr((_signature(settings), i18n.current(), _text_scale.get()))
    if now == seen:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip()
    return (*view_outputs(settings), now)


def on_tab(selected: bool):
    return gr.Timer(active=selected)
