"""Figures of what happens inside a training run (internals.py): each layer's weights or
activations over epochs, gradient norms per layer, and runs compared layer by layer.
"""

from __future__ import annotations

import numpy as np
from matplotlib import rcParams
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from . import i18n
from .i18n import t, text
from .plot_style import (SMALL_TITLE, _empty_grid, _grid_figure, _show_message, _single_axes_figure,
                         _styled)


_INSIDE_QUANTITIES = {"weight": "internals.plot.weights_title",
                      "activation": "internals.plot.activations_title"}
_INSIDE_ROWS = 32  # value bins of a layer's histogram-over-epochs


def _layer_label(layer: dict) -> str:
    return f"{layer['name']} ({layer['kind']})"


def _common_histograms(summaries: list[dict | None]) -> tuple[np.ndarray, float, float]:
    """Each epoch's histogram re-binned onto one value range shared by all epochs (the 1st to 99th
    percentiles of all of them, a little widened), as shares of that epoch's values: columns are
    epochs, rows are value bins (lowest first). An epoch without a summary is a blank column."""
    have = [s for s in summaries if s and s["hist"]["lo"] is not None]
    lo = min(s["percentiles"][0] for s in have)
    hi = max(s["percentiles"][-1] for s in have)
    pad = (hi - lo) * 0.1 or max(abs(lo), 1e-6) * 0.1
    lo, hi = lo - pad, hi + pad
    table = np.full((_INSIDE_ROWS, len(summaries)), np.nan)
    for j, s in enumerate(summaries):
        if not s or s["hist"]["lo"] is None:
            continue
        counts = np.asarray(s["hist"]["counts"], float)
        edges = np.linspace(s["hist"]["lo"], s["hist"]["hi"], len(counts) + 1)
        centres = np.clip((edges[:-1] + edges[1:]) / 2, lo, hi)
        column, _ = np.histogram(centres, bins=_INSIDE_ROWS, range=(lo, hi), weights=counts)
        table[:, j] = column / max(column.sum(), 1)
    return table, lo, hi


@_styled
def internals_over_epochs(records: list[dict], quantity: str = "weight") -> Figure:
    """A histogram over epochs for each layer: x is the epoch, y the value, the colour how many of
    the layer's weights (or activations) lie there; lines mark the median and the 5th and 95th
    percentiles. `records` are the epochs' internals, each with its "epoch"."""
    if quantity not in _INSIDE_QUANTITIES:
        raise ValueError(text("plots.error.metric", choices=str(list(_INSIDE_QUANTITIES)),
                              metric=repr(quantity)))
    title = t(_INSIDE_QUANTITIES[quantity])
    records = [r for r in records if r and r.get("layers")]
    if not records:
        return _empty_grid(t("internals.plot.none"), title)
    epochs = [r["epoch"] for r in records]
    names = [_layer_label(layer) for layer in records[-1]["layers"]]
    fig, axes = _grid_figure(len(names), 4, 3.4, title)
    fig.set_figheight(fig.get_figheight() * 0.85)
    q = list(records[-1]["percentiles"])
    for i, (ax, name) in enumerate(zip(axes, names)):
        summaries = [r["layers"][i].get(quantity) if i < len(r["layers"]) else None for r in records]
        ax.set_title(name, fontsize=SMALL_TITLE)
        if not any(s and s["hist"]["lo"] is not None for s in summaries):
            _show_message(ax, t("internals.plot.not_measured"))
            continue
        table, lo, hi = _common_histograms(summaries)
        ax.imshow(table, aspect="auto", origin="lower", cmap="viridis", interpolation="nearest",
                  extent=(epochs[0] - 0.5, epochs[-1] + 0.5, lo, hi))
        for p, style in ((50, "-"), (5, "--"), (95, "--")):
            values = [np.nan if not s or s["percentiles"][q.index(p)] is None
                      else s["percentiles"][q.index(p)] for s in summaries]
            ax.plot(epochs, values, color="white", linestyle=style, linewidth=1.5, marker="o",
                    markersize=3)
        ax.set_xlim(epochs[0] - 0.5, epochs[-1] + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=rcParams["xtick.labelsize"] * 0.8)
    fig.supxlabel(t("plots.axis.epoch"), fontsize=rcParams["axes.labelsize"])
    fig.supylabel(t("internals.plot.value"), fontsize=rcParams["axes.labelsize"])
    return fig


@_styled
def gradient_norms(records: list[dict]) -> Figure:
    """Each layer's gradient norm per epoch (the mean over the steps it was read at), one line per
    layer, on a log axis: a layer whose line lies far below the others barely learns."""
    fig, ax = _single_axes_figure(9, 5.5)
    ax.set(title=t("internals.plot.grad_title"), xlabel=t("plots.axis.epoch"),
           ylabel=t("internals.plot.grad_axis"))
    records = [r for r in records if r and r.get("layers")]
    if not records:
        _show_message(ax, t("internals.plot.none"))
        return fig
    epochs = [r["epoch"] for r in records]
    for i, layer in enumerate(records[-1]["layers"]):
        norms = [np.nan if i >= len(r["layers"]) or r["layers"][i]["grad_norm"] is None
                 else r["layers"][i]["grad_norm"] for r in records]
        style = ":" if layer["kind"].startswith("BatchNorm") else "-"
        ax.plot(epochs, norms, marker="o", linestyle=style, color=f"C{i % 10}",
                label=_layer_label(layer))
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=rcParams["legend.fontsize"] * 0.85, loc="center left", bbox_to_anchor=(1, 0.5))
    return fig


@_styled
def layer_profile(runs: dict[str, list[dict]]) -> Figure:
    """Runs side by side, layer by layer, at their last epoch: the spread (standard deviation) of
    the activations each Conv/Linear layer hands on (after its BatchNorm, where it has one), and
    its gradient norm. `runs` maps a run's label to its seeds' last-epoch internals; a line is
    the mean over the seeds."""
    from .internals import handed_on_spread

    fig = Figure(figsize=(13, 5.2), layout="constrained")
    spread_ax, grad_ax = fig.subplots(1, 2)
    spread_ax.set(title=t("internals.plot.spread_title"), ylabel=t("internals.plot.spread_axis"))
    grad_ax.set(title=t("internals.plot.layer_grad_title"), ylabel=t("internals.plot.grad_axis"))
    runs = {label: [r for r in seeds if r and r.get("layers")] for label, seeds in runs.items()}
    runs = {label: seeds for label, seeds in runs.items() if seeds}
    if not runs:
        for ax in (spread_ax, grad_ax):
            _show_message(ax, t("internals.plot.none"))
        return fig
    names = []
    for i, (label, seeds) in enumerate(runs.items()):
        spreads = [handed_on_spread(r) for r in seeds]
        names = [name for name, _ in spreads[0]]
        grads = [[layer["grad_norm"] for layer in r["layers"] if not layer["kind"].startswith("BatchNorm")]
                 for r in seeds]
        for ax, table in ((spread_ax, [[v for _, v in s] for s in spreads]), (grad_ax, grads)):
            values = np.array([[np.nan if v is None else v for v in row] for row in table], float)
            ax.plot(range(len(names)), np.nanmean(values, axis=0), marker="o", color=f"C{i % 10}",
                    label=i18n.render(label))
    for ax in (spread_ax, grad_ax):
        ax.set_yscale("log")
        ax.set_xticks(range(len(names)), names, rotation=20, ha="right",
                      fontsize=rcParams["xtick.labelsize"] * 0.85)
        ax.set_xlabel(t("internals.plot.layer_axis"))
        ax.grid(alpha=0.3, which="both")
    spread_ax.legend()
    fig.suptitle(t("internals.plot.profile_title"))
    return fig

