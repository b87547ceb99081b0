"""Curves of a training run: the loss per iteration, accuracy and loss per epoch (over seeds),
a resumed run, the learning curve, the learning rate and the learning-rate range test.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib import rcParams
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from . import i18n
from .i18n import t, text
from .plot_style import _show_message, _single_axes_figure, _styled, _to_numpy


def _smooth(values: np.ndarray, smoothing: float) -> np.ndarray:
    """Exponential moving average, debiased like TensorBoard's.

    Debiasing keeps the first points from being dragged towards zero. Non-finite
    losses (a diverging run) are skipped so one inf does not wipe out the curve.
    """
    smoothed = np.empty(len(values))
    average = weight = 0.0
    for i, value in enumerate(values):
        if np.isfinite(value):
            average = smoothing * average + (1 - smoothing) * value
            weight = smoothing * weight + (1 - smoothing)
        smoothed[i] = average / weight if weight else np.nan
    return smoothed



@_styled
def loss_curve(steps, losses, title: str = text("plots.loss.title"), smoothing: float = 0.9,
               max_points: int | None = None) -> Figure:
    """Raw loss per iteration (faint) and its moving average (bold).

    `max_points` thins both lines to about that many points (the average is computed on every
    point first): drawing time grows with the points, and a screen shows no more anyway."""
    if not 0 <= smoothing < 1:
        raise ValueError(text("plots.error.smoothing", smoothing=smoothing))
    steps, losses = _to_numpy(steps, float), _to_numpy(losses, float)
    if len(steps) != len(losses):
        raise ValueError(text("plots.error.steps_losses", steps=len(steps), losses=len(losses)))
    fig, ax = _single_axes_figure(fixed_margins=True)
    ax.set(title=i18n.render(title), xlabel=t("plots.axis.iteration"), ylabel=t("plots.axis.loss"))
    if len(losses) == 0:
        _show_message(ax, t("plots.waiting.batch"))
        return fig
    smoothed = _smooth(losses, smoothing)
    if max_points and len(steps) > max_points:
        keep = np.unique(np.linspace(0, len(steps) - 1, max_points).round().astype(int))
        steps, losses, smoothed = steps[keep], losses[keep], smoothed[keep]
    ax.plot(steps, losses, color="C0", alpha=0.3, linewidth=1, label=t("plots.legend.batch_loss"))
    ax.plot(steps, smoothed, color="C0", linewidth=3, label=t("plots.legend.moving_average"))
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


_EPOCH_METRICS = {
    # metric: (y label's key, scale applied to the stored value, title's key)
    "acc": ("plots.axis.accuracy", 100.0, "plots.epochs.acc_title"),
    "loss": ("plots.axis.loss", 1.0, "plots.epochs.loss_title"),
}


def _series(records: list[dict], key: str, scale: float) -> list[float]:
    # An epoch without evaluation stores None; NaN leaves a gap in the line.
    return [np.nan if r.get(key) is None else r[key] * scale for r in records]


def _over_seeds(seeds: list[list[dict]], key: str, scale: float):
    """Epochs, and the mean, min and max over the seeds that reached each epoch."""
    epochs = sorted({r["epoch"] for history in seeds for r in history})
    table = np.full((len(seeds), len(epochs)), np.nan)
    for i, history in enumerate(seeds):
        for r, value in zip(history, _series(history, key, scale)):
            table[i, epochs.index(r["epoch"])] = value
    seen = ~np.isnan(table).all(axis=0)   # an epoch no seed has a value for stays a gap
    mean, low, high = (np.full(len(epochs), np.nan) for _ in range(3))
    mean[seen] = np.nanmean(table[:, seen], axis=0)
    low[seen], high[seen] = np.nanmin(table[:, seen], axis=0), np.nanmax(table[:, seen], axis=0)
    return epochs, mean, low, high


@_styled
def epoch_curves(histories: dict[str, list[list[dict]]], metric: str = "acc") -> Figure:
    """Train (dashed) and validation (solid) accuracy or loss per epoch, one colour per run.

    Each run maps to its seeds' histories: with several, the line is their mean and a shaded band
    spans their min to max, so a difference smaller than the band is seed-to-seed noise."""
    if metric not in _EPOCH_METRICS:
        raise ValueError(text("plots.error.metric", choices=str(list(_EPOCH_METRICS)),
                              metric=repr(metric)))
    ylabel, scale, title = _EPOCH_METRICS[metric]
    ylabel, title = t(ylabel), t(title)
    runs = {label: [h for h in seeds if h] for label, seeds in histories.items()}
    runs = {label: seeds for label, seeds in runs.items() if seeds}
    fig, ax = _single_axes_figure()
    ax.set(title=title, xlabel=t("plots.axis.epoch"), ylabel=ylabel)
    if not runs:
        _show_message(ax, t("plots.waiting.epoch"))
        return fig
    single_run = len(runs) == 1
    most_seeds = max(len(seeds) for seeds in runs.values())
    for i, (label, seeds) in enumerate(runs.items()):
        colour = f"C{i % 10}"
        for split, style in (("train", "--"), ("val", "-")):
            epochs, mean, low, high = _over_seeds(seeds, f"{split}_{metric}", scale)
            name = t("plots.legend.train" if split == "train" else "plots.legend.validation")
            if not single_run:
                name = t("plots.legend.run_split", run=i18n.render(label), split=name)
            ax.plot(epochs, mean, color=colour, linestyle=style, marker="o", label=name)
            if len(seeds) > 1:
                ax.fill_between(epochs, low, high, color=colour, alpha=0.15, linewidth=0)
    if single_run:
        ax.set_title(t("plots.epochs.title_of_run", title=title,
                       run=i18n.render(next(iter(runs)))))
    if most_seeds > 1:
        ax.set_title(t("plots.epochs.over_seeds", title=ax.get_title(), seeds=most_seeds),
                     fontsize=rcParams["axes.labelsize"])
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(ncols=1 if len(runs) <= 2 else 2)
    return fig


@_styled
def resumed_curves(continued: list[dict], after: int, uninterrupted: list[dict] | None = None) -> Figure:
    """Validation loss per epoch of a run stopped after epoch `after` and continued (resume.py),
    drawn dashed over the run that trained straight through (solid, thicker), when there is one:
    on a CPU the two are one curve."""
    def points(history):
        return ([h["epoch"] for h in history],
                [math.nan if h.get("val_loss") is None else h["val_loss"] for h in history])

    fig, ax = _single_axes_figure()
    ax.set(title=t("plots.resumed.title"), xlabel=t("plots.axis.epoch"), ylabel=t("plots.axis.loss"))
    if uninterrupted:
        ax.plot(*points(uninterrupted), color="C0", linewidth=6, alpha=0.35,
                label=t("plots.resumed.uninterrupted"))
    ax.plot(*points([h for h in continued if h["epoch"] <= after]), color="C1", marker="o",
            label=t("plots.resumed.before", epoch=after))
    ax.plot(*points([h for h in continued if h["epoch"] >= after]), color="C3", marker="s",
            linestyle="--", label=t("plots.resumed.after", epoch=after))
    ax.axvline(after, color="grey", linewidth=1, linestyle=":")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


@_styled
def learning_curve(lines: dict[str, dict[int, list[float]]]) -> Figure:
    """Test accuracy against the number of training images, on a log axis: one line per model
    (its seeds' mean) with a band from their min to max. `lines` maps a model to
    {training images: [test accuracy of each seed, in 0..1]}."""
    fig, ax = _single_axes_figure()
    ax.set(title=t("plots.curve.title"), xlabel=t("plots.curve.images"),
           ylabel=t("plots.axis.accuracy"))
    lines = {label: points for label, points in lines.items() if points}
    if not lines:
        _show_message(ax, t("plots.curve.waiting"))
        return fig
    ax.set_xscale("log")
    sizes = sorted({n for points in lines.values() for n in points})
    for i, (label, points) in enumerate(lines.items()):
        xs = sorted(points)
        accs = [100 * np.asarray(points[n], dtype=float) for n in xs]
        colour = f"C{i % 10}"
        ax.plot(xs, [a.mean() for a in accs], color=colour, marker="o", label=i18n.render(label))
        if max(len(a) for a in accs) > 1:
            ax.fill_between(xs, [a.min() for a in accs], [a.max() for a in accs], color=colour,
                            alpha=0.15, linewidth=0)
    most_seeds = max(len(v) for points in lines.values() for v in points.values())
    if most_seeds > 1:
        ax.set_title(t("plots.epochs.over_seeds", title=ax.get_title(), seeds=most_seeds),
                     fontsize=rcParams["axes.labelsize"])
    # The ticks are the sizes trained on, written out: a log axis's 10^2 says less to a student.
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.minorticks_off()
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


@_styled
def lr_curve(history: list[dict]) -> Figure:
    """Learning rate per epoch; log scale when it spans more than a factor of 10."""
    fig, ax = _single_axes_figure(9, 4.5)
    ax.set(title=t("plots.lr.title"), xlabel=t("plots.axis.epoch"),
           ylabel=t("plots.axis.learning_rate"))
    if not history:
        _show_message(ax, t("plots.waiting.epoch"))
        return fig
    rates = [r["lr"] for r in history]
    ax.plot([r["epoch"] for r in history], rates, color="C2", marker="o",
            label=t("plots.legend.learning_rate"))
    positive = [lr for lr in rates if lr > 0]
    if positive and max(positive) > 10 * min(positive):
        ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


@_styled
def lr_finder_figure(result) -> Figure:
    """The learning-rate range test (lr_finder.find_lr): loss against lr on a log axis, each
    batch's loss faint and the smoothed loss bold, both suggested lrs marked, and a caption on
    how far to trust them."""
    fig, ax = _single_axes_figure(9, 5.5)
    ax.set(title=t("plots.lr_finder.title"), xlabel=t("plots.lr_finder.xlabel"),
           ylabel=t("plots.axis.loss"))
    if not result.lrs:
        _show_message(ax, t("plots.waiting.batch"))
        return fig
    ax.plot(result.lrs, result.raw_losses, color="C0", alpha=0.3, linewidth=1,
            label=t("plots.legend.batch_loss"))
    ax.plot(result.lrs, result.losses, color="C0", linewidth=3, label=t("plots.lr_finder.smoothed"))
    ax.set_xscale("log")
    # Vertical lines rather than points on the curve: min ÷ 10 may lie left of the first lr tried.
    marks = (("steepest", "C3", "--", "plots.lr_finder.steepest"),
             ("min_div_10", "C2", ":", "plots.lr_finder.min_div_10"))
    for name, colour, style, key in marks:
        lr = getattr(result, name)
        if lr is not None:
            ax.axvline(lr, color=colour, linestyle=style, linewidth=2.5, label=t(key, lr=lr))
    if result.diverged_at is not None:
        ax.axvline(result.diverged_at, color="0.5", linewidth=1.5,
                   label=t("plots.lr_finder.diverged", lr=result.diverged_at))
    # The y range shows the smoothed curve up to its lowest point with room above: the blow-up
    # past it may run off the top (it is marked), else it would flatten the part worth reading.
    losses = np.asarray(result.losses)
    low = float(losses.min())
    high = float(losses[:int(losses.argmin()) + 1].max())
    room = max(high - low, 0.05 * abs(high), 1e-6)
    ax.set_ylim(low - 0.15 * room, high + 0.6 * room)
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="upper left")
    fig.supxlabel(t("plots.lr_finder.caveat"), fontsize=rcParams["legend.fontsize"] * 0.9,
                  color="0.35")
    return fig

