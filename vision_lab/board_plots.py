"""The class board's figure for the projector: where the class's accuracies lie.

Each entry is a dot on a validation row; once the board is revealed, also on a test row, the two
joined by a line, so the whole class sees at a glance how the ranking on validation carried over
to the test set (lines that cross are entries that changed places). Styled like the other figures
(plot_style.py), with lecture mode's larger text when the lecturer has it on.
"""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from .i18n import t
from .plot_style import _show_message, _single_axes_figure, _styled


@_styled
def board_distribution(accuracies: dict) -> Figure:
    """`accuracies` as class_board.accuracies gives them: {"val": [...], "test": [...] or None}."""
    val, test = accuracies.get("val") or [], accuracies.get("test")
    fig, ax = _single_axes_figure(9, 4.2)
    ax.set(title=t("class.board.plot_title", n=len(val)), xlabel=t("class.board.plot_axis"))
    if not val:
        _show_message(ax, t("class.board.plot_empty"))
        return fig
    rows = [(t("class.board.plot_val"), np.asarray(val) * 100, "C0")]
    if test is not None:
        tested = np.asarray([np.nan if v is None else v for v in test], float) * 100
        rows.append((t("class.board.plot_test"), tested, "C3"))
        for a, b in zip(rows[0][1], tested):   # each entry's move, validation to test
            if np.isfinite(b):
                ax.plot([a, b], [1, 0], color="0.7", linewidth=1, zorder=1)
    # A little vertical jitter (fixed: the figure is the same on every redraw) so equal
    # accuracies do not hide one another.
    jitter = (np.random.default_rng(0).random(len(val)) - 0.5) * 0.15
    for i, (label, values, color) in enumerate(rows):
        y = len(rows) - 1 - i
        ax.scatter(values, y + jitter, s=90, color=color, alpha=0.75, zorder=2, edgecolor="white")
        finite = values[np.isfinite(values)]
        if len(finite):
            ax.plot([np.median(finite)] * 2, [y - 0.3, y + 0.3], color=color, linewidth=3)
    ax.set_yticks(range(len(rows)), [label for label, *_ in reversed(rows)])
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.grid(axis="x", alpha=0.3)
    return fig
