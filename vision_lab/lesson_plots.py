"""Figures the overfitting day's lessons add to a comparison: each run's weight histograms at its
last epoch (what Dropout, L2 and L1 did to the weights), and marks on the accuracy curves where
early stopping ended a run and which epoch it kept.

Both read what a comparison already has: the last epoch's internals (internals.py: a histogram
and percentiles of each layer's weights) and each run's RunEnd. Styled and labelled like the
other figures (plot_style.py).
"""
from __future__ import annotations

import numpy as np
from matplotlib import rcParams
from matplotlib.figure import Figure

from . import i18n
from .i18n import t
from .internals import connection_layers
from .plot_style import SMALL_TITLE, _empty_grid, _grid_figure, _styled

BINS = 31   # common value bins of a layer's panel; odd, so zero sits in the middle of one


def _shares(summary: dict, edges: np.ndarray) -> np.ndarray:
    """A recorded histogram re-binned onto `edges`, as shares of the layer's weights: each
    recorded bin's count spread evenly over its width (by its cumulative count at the new edges),
    so narrower new bins get their part of it rather than none; values beyond the edges go to the
    outermost bins."""
    counts = np.asarray(summary["hist"]["counts"], float)
    own = np.linspace(summary["hist"]["lo"], summary["hist"]["hi"], len(counts) + 1)
    cumulative = np.interp(edges, own, np.concatenate([[0.0], np.cumsum(counts)]))
    shares = np.diff(cumulative)
    shares[0] += cumulative[0]
    shares[-1] += counts.sum() - cumulative[-1]
    return shares / max(counts.sum(), 1)


@_styled
def weight_histograms(runs: dict[str, list[dict | None]]) -> Figure:
    """One panel per Conv/Linear layer, one line per run: the share of the layer's weights at
    each value at the run's last epoch (the mean over its seeds), on a value range shared by the
    runs and a log axis, so both L1's spike at zero and the tails show. `runs` maps a run's
    label to its seeds' last-epoch internals."""
    title = t("plots.weights.title")
    runs = {label: [r for r in seeds if r and r.get("layers")] for label, seeds in runs.items()}
    runs = {label: seeds for label, seeds in runs.items() if seeds}
    if not runs:
        return _empty_grid(t("internals.plot.none"), title)
    layers = connection_layers(next(iter(runs.values()))[0])
    fig, axes = _grid_figure(len(layers), 3, 4.2, title)
    for i, (ax, layer) in enumerate(zip(axes, layers)):
        summaries = {label: [connection_layers(r)[i]["weight"] for r in seeds] for label, seeds in runs.items()}
        reach = max(max(abs(s["percentiles"][0]), abs(s["percentiles"][-1]))
                    for seeds in summaries.values() for s in seeds if s["hist"]["lo"] is not None)
        edges = np.linspace(-1.2 * reach, 1.2 * reach, BINS + 1)
        for j, (label, seeds) in enumerate(summaries.items()):
            have = [s for s in seeds if s["hist"]["lo"] is not None]
            if have:
                shares = np.mean([_shares(s, edges) for s in have], axis=0)
                ax.stairs(np.maximum(shares, 1e-4), edges, color=f"C{j % 10}", linewidth=2,
                          label=i18n.render(label))
        ax.set_yscale("log")
        ax.set_title(f"{layer['name']} ({layer['kind']})", fontsize=SMALL_TITLE)
        ax.tick_params(labelsize=rcParams["xtick.labelsize"] * 0.8)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=rcParams["legend.fontsize"] * 0.85)
    fig.supxlabel(t("plots.weights.value"), fontsize=rcParams["axes.labelsize"])
    fig.supylabel(t("plots.weights.share"), fontsize=rcParams["axes.labelsize"])
    return fig


@_styled
def mark_early_stops(fig: Figure, ends: dict[str, list], drawn: list[str]) -> Figure:
    """On an accuracy-per-epoch figure (plots.epoch_curves): for every seed of a run that early
    stopping ended, a dotted line at the epoch it stopped and a star on its validation accuracy
    at the epoch it kept. `drawn` are the labels of the figure's runs, in its colour order."""
    ax = fig.axes[0]
    labelled = set()
    for i, label in enumerate(drawn):
        for end in ends.get(label, []):
            if end.reason != "early_stopped" or not end.history:
                continue
            colour = f"C{i % 10}"
            stop = t("plots.stop.stopped") if "stop" not in labelled else None
            ax.axvline(end.history[-1]["epoch"], color=colour, linestyle=":", linewidth=2, label=stop)
            kept = next((r for r in end.history if r["epoch"] == end.best_epoch), None)
            if kept and kept["val_acc"] is not None:
                ax.plot([kept["epoch"]], [100 * kept["val_acc"]], marker="*", markersize=18, color=colour,
                        markeredgecolor="black", linestyle="none",
                        label=t("plots.stop.kept") if "kept" not in labelled else None)
                labelled.add("kept")
            labelled.add("stop")
    if labelled:
        ax.legend(ncols=1 if len(drawn) <= 2 else 2)
    return fig
