"""Figures of a model's test-set results: the confusion matrix and the accuracy per class.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from .datasets.class_names import class_labels
from .i18n import t, text
from .plot_style import SMALL_TITLE, _show_message, _single_axes_figure, _styled, _to_numpy


@_styled
def confusion_matrix(matrix, classes, normalize: bool = True) -> Figure:
    """Annotated heat map of true (rows) vs predicted (columns) classes.

    With normalize, each row is shown as % of that true class, so classes with
    fewer test images are comparable.
    """
    counts = _to_numpy(matrix, float)
    classes = class_labels(classes)  # shown in the reader's language; the names stay data
    n = len(classes)
    if counts.shape != (n, n):
        raise ValueError(text("plots.error.matrix_shape", shape=str(counts.shape), count=n))
    if normalize:
        totals = counts.sum(axis=1, keepdims=True)
        values = np.divide(100 * counts, totals, out=np.zeros_like(counts), where=totals > 0)
        top, colour_label, title = (100.0, t("plots.confusion.percent_colorbar"),
                                    t("plots.confusion.percent_title"))
    else:
        values = counts
        top, colour_label, title = (max(counts.max(), 1.0), t("plots.confusion.count_colorbar"),
                                    t("plots.confusion.count_title"))

    side = max(6.0, 0.65 * n + 2.5)
    fig, ax = _single_axes_figure(side + 1.5, side)
    image = ax.imshow(values, cmap="Blues", vmin=0, vmax=top)
    fig.colorbar(image, ax=ax, label=colour_label, shrink=0.85)
    ticks = np.arange(n)
    long_names = max(len(str(c)) for c in classes) > 3
    ax.set_xticks(ticks, classes, rotation=45 if long_names else 0,
                  ha="right" if long_names else "center", rotation_mode="anchor")
    ax.set_yticks(ticks, classes)
    ax.set(title=title, xlabel=t("plots.axis.predicted_class"), ylabel=t("plots.axis.true_class"))
    # Beyond ~20 classes the numbers no longer fit in their cells; colour alone must do.
    if n <= 20:
        fontsize = SMALL_TITLE if n <= 10 else 9
        for row in range(n):
            for col in range(n):
                value = values[row, col]
                ax.text(col, row, f"{value:.0f}", ha="center", va="center", fontsize=fontsize,
                        color="white" if value > 0.6 * top else "black")
    return fig


@_styled
def per_class_accuracy(acc, classes) -> Figure:
    """Horizontal bars of accuracy (%) per class; the mean goes in the title."""
    percent = 100 * _to_numpy(acc, float)
    classes = class_labels(classes)
    if len(percent) != len(classes):
        raise ValueError(text("plots.error.accuracies_classes", accuracies=len(percent),
                              classes=len(classes)))
    fig, ax = _single_axes_figure(9, max(4.0, 0.5 * len(classes) + 2))
    ax.set(title=t("plots.per_class.title"), xlabel=t("plots.axis.accuracy"),
           ylabel=t("plots.axis.class"))
    if len(percent) == 0:
        _show_message(ax, t("plots.empty.classes"))
        return fig
    # A mean line would run through the value labels, which sit right at the bar ends.
    ax.set_title(t("plots.per_class.title_with_mean", mean=float(np.mean(percent))))
    rows = np.arange(len(classes))
    bars = ax.barh(rows, percent, color="C0")
    ax.bar_label(bars, fmt="%.1f%%", padding=4, fontsize=SMALL_TITLE)
    ax.set_yticks(rows, classes)
    ax.invert_yaxis()  # first class on top, as in the class list
    ax.set_xlim(0, 115)  # room for the labels to the right of a 100% bar
    ax.set_xticks(range(0, 101, 20))
    ax.grid(axis="x", alpha=0.3)
    return fig

