"""Figures for the lab, styled to stay readable on a projector.

Every function builds a fresh `matplotlib.figure.Figure` through the object API,
never pyplot: figures are not kept in any global registry, so a web server can
build them from several threads and they are garbage collected once dropped.

Figures label themselves in the current language (`i18n.using`, set by the app's handlers): every
title, axis label, legend and message comes from the catalogue (`plots.*`), and a title or caption
a caller passes may be a catalogue Text too. Chinese needs a CJK font; without one the figure is
drawn in English, and `font_notice` gives the line a tab shows to say so.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import re
import threading
from pathlib import Path

import numpy as np
from matplotlib import rc_context, rcParams
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from . import i18n
from .i18n import Text, t, text

STYLE = {
    "font.size": 13,
    "axes.titlesize": 17,
    "axes.titleweight": "bold",
    "axes.labelsize": 14,
    "xtick.labelsize": 12,
    "ytick.labelsize": 12,
    "legend.fontsize": 12,
    "figure.titlesize": 18,
    "figure.titleweight": "bold",
    "lines.linewidth": 2.5,
    "lines.markersize": 7,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "figure.facecolor": "white",
}

SMALL_TITLE = 12  # per-image captions in grids, where 17 pt would not fit

# rc_context swaps matplotlib's global rcParams while a figure is built; the lock
# stops two server threads from interleaving those swaps (one thread could
# otherwise "restore" the other's STYLE and leave it set for good).
_STYLE_LOCK = threading.Lock()


# Fonts with Chinese glyphs, best first: Debian's fonts-wqy-microhei and fonts-noto-cjk (installed
# by .ci/run and, on a Space, packages.txt), then what macOS and Windows ship.
CJK_FONTS = ("WenQuanYi Micro Hei", "Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC",
             "PingFang SC", "Microsoft YaHei", "SimHei", "Droid Sans Fallback")


@functools.cache
def cjk_font() -> str | None:
    """The name of an installed font that has Chinese glyphs, or None."""
    from matplotlib import font_manager

    def installed():
        names = {font.name for font in font_manager.fontManager.ttflist}
        return next((name for name in CJK_FONTS if name in names), None)

    if installed() is None:
        # matplotlib caches the fonts it found once; one installed since then is added here.
        for path in font_manager.findSystemFonts():
            if re.search(r"wqy|cjk|sourcehan|droidsansfallback", Path(path).name, re.IGNORECASE):
                try:
                    font_manager.fontManager.addfont(path)
                except (OSError, RuntimeError, ValueError):
                    continue
    return installed()


def plot_language(lang: str) -> str:
    """The language plots can be labelled in: Chinese needs a CJK font, else English."""
    return lang if lang != "zh" or cjk_font() else "en"


def font_notice(lang: str | None = None) -> Text | None:
    """The line a tab shows when its plots cannot be in the visitor's language (`lang`, default the
    current one): Chinese without a CJK font installed. None when the plots speak it."""
    lang = lang or i18n.current()
    return text("plots.font_notice") if plot_language(lang) != lang else None


LECTURE_TEXT_SCALE = 1.4   # lecture mode's figures: readable from the back of a room
_TEXT_SIZES = ("font.size", "axes.titlesize", "axes.labelsize", "xtick.labelsize", "ytick.labelsize",
               "legend.fontsize", "figure.titlesize")
_text_scale: contextvars.ContextVar[float] = contextvars.ContextVar("vision_lab_plot_text", default=1.0)


@contextlib.contextmanager
def larger_text(scale: float):
    """Figures built inside this block have text `scale` times larger (lecture mode: readable from
    the back of a room)."""
    token = _text_scale.set(scale)
    try:
        yield
    finally:
        _text_scale.reset(token)


def _styled(build):
    """Build a figure in the projector style, labelled in the current language (i18n.using)."""
    @functools.wraps(build)
    def with_style(*args, **kwargs):
        lang = plot_language(i18n.current())
        style = dict(STYLE)
        style.update({key: STYLE[key] * _text_scale.get() for key in _TEXT_SIZES})
        if lang == "zh":
            # By name, not through the "sans-serif" alias: a text keeps the family it was made
            # with, but an alias is looked up when the figure is drawn, after this context ends.
            # The default sans-serif fonts stay behind it for any glyph the CJK font lacks.
            style["font.family"] = [cjk_font(), "sans-serif"]
            style["axes.unicode_minus"] = False  # CJK fonts often lack the minus sign
        with _STYLE_LOCK, rc_context(style), i18n.using(lang):
            return build(*args, **kwargs)

    return with_style


# --- helpers ----------------------------------------------------------------


def _to_numpy(values, dtype=None) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=dtype)


def _single_axes_figure(width=9.0, height=5.5, fixed_margins=False):
    """One axes. `fixed_margins` skips the constrained-layout solver (a third of a simple figure's
    drawing time), for figures redrawn live whose labels fit the fixed margins."""
    if fixed_margins:
        fig = Figure(figsize=(width, height))
        fig.subplots_adjust(left=0.1, right=0.98, top=0.9, bottom=0.13)
        return fig, fig.subplots()
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots()


def _show_message(ax, message: str) -> None:
    ax.set_xticks([])  # 0..1 ticks on an empty plot would look like data
    ax.set_yticks([])
    ax.text(0.5, 0.5, i18n.render(message), transform=ax.transAxes, ha="center", va="center",
            color="0.45", fontsize=rcParams["axes.labelsize"])


def _grid_figure(n: int, ncols: int, cell: float, title: str | None):
    """A figure with n image axes laid out in rows of ncols (the last row may be short)."""
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(cell * ncols, cell * nrows + (0.6 if title else 0)), layout="constrained")
    axes = list(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for unused in axes[n:]:
        fig.delaxes(unused)
    if title:
        fig.suptitle(i18n.render(title))
    return fig, axes[:n]


def _empty_grid(message: str, title: str | None):
    fig, ax = _single_axes_figure(8, 3)
    ax.set_axis_off()
    _show_message(ax, message)
    if title:
        fig.suptitle(i18n.render(title))
    return fig


def _show_image(ax, chw: np.ndarray, **imshow) -> None:
    """Draw a (C, H, W) image: grayscale for one channel, RGB for three."""
    if chw.shape[0] == 1:
        ax.imshow(chw[0], cmap="gray", interpolation="nearest", **imshow)
    else:
        ax.imshow(chw.transpose(1, 2, 0), interpolation="nearest", **imshow)
    ax.set_axis_off()


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


# --- training curves --------------------------------------------------------


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


# --- evaluation -------------------------------------------------------------


@_styled
def confusion_matrix(matrix, classes, normalize: bool = True) -> Figure:
    """Annotated heat map of true (rows) vs predicted (columns) classes.

    With normalize, each row is shown as % of that true class, so classes with
    fewer test images are comparable.
    """
    counts = _to_numpy(matrix, float)
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


# --- images, feature maps and filters ---------------------------------------


@_styled
def image_grid(images_uint8, titles=None, ncols: int = 8, title: str | None = None) -> Figure:
    """A grid of (N, C, H, W) uint8 images with optional per-image captions."""
    images = _to_numpy(images_uint8)
    if titles is not None and len(titles) != len(images):
        raise ValueError(text("plots.error.titles_images", titles=len(titles), images=len(images)))
    if len(images) == 0:
        return _empty_grid(t("plots.empty.images"), title)
    fig, axes = _grid_figure(len(images), ncols, cell=1.8, title=title)
    for i, ax in enumerate(axes):
        # Fixed 0..255 range so a dark image is shown dark, not stretched.
        _show_image(ax, images[i], vmin=0, vmax=255)
        if titles is not None:
            ax.set_title(i18n.render(titles[i]), fontsize=SMALL_TITLE, fontweight="normal")
    return fig


_VIRIDIS: np.ndarray | None = None


def _viridis() -> np.ndarray:
    """matplotlib's viridis as a (256, 3) uint8 lookup table."""
    global _VIRIDIS
    if _VIRIDIS is None:
        from matplotlib import colormaps
        _VIRIDIS = (colormaps["viridis"](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)
    return _VIRIDIS


def feature_map_mosaic(maps, ncols: int = 8, tile: int = 96, gap: int = 6) -> np.ndarray:
    """The channels of a (C, h, w) activation side by side, as one (H, W, 3) uint8 image.

    Channel 0 is top left, then left to right and row by row; each channel is enlarged (nearest
    neighbour, a whole factor) to about `tile` pixels and coloured with viridis, bright = strong
    response. Each channel gets its own colour range: absolute scales differ a lot between
    channels, and the pattern is what matters here. Built with numpy rather than as a matplotlib
    figure with one axes a channel: about 2 ms instead of 0.4 s on a laptop core, which the
    Feature maps tab pays on every click.
    """
    maps = _to_numpy(maps, np.float32)
    if maps.ndim != 3 or len(maps) == 0:
        raise ValueError(text("plots.error.maps_shape", shape=str(maps.shape)))
    n, h, w = maps.shape
    low = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - low
    levels = ((maps - low) / np.where(span > 0, span, 1.0) * 255).round().astype(np.uint8)
    scale = max(1, round(tile / max(h, w)))
    cells = _viridis()[levels].repeat(scale, axis=1).repeat(scale, axis=2)  # (n, H, W, 3)
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    ch, cw = h * scale, w * scale
    mosaic = np.full((nrows * ch + (nrows - 1) * gap, ncols * cw + (ncols - 1) * gap, 3), 255,
                     np.uint8)
    for i in range(n):
        row, col = divmod(i, ncols)
        top, left = row * (ch + gap), col * (cw + gap)
        mosaic[top:top + ch, left:left + cw] = cells[i]
    return mosaic


def mosaic_cell(shape, x: int, y: int, ncols: int = 8, tile: int = 96, gap: int = 6):
    """Which (channel, row, column) of (C, h, w) maps the mosaic pixel (x, y) shows, with the same
    layout arguments as `feature_map_mosaic`; None for a gap or a pixel outside every tile."""
    n, h, w = shape
    scale = max(1, round(tile / max(h, w)))
    ncols = max(1, min(ncols, n))
    tile_row, y_in = divmod(int(y), h * scale + gap)
    tile_col, x_in = divmod(int(x), w * scale + gap)
    channel = tile_row * ncols + tile_col
    if x < 0 or y < 0 or tile_col >= ncols or channel >= n or y_in >= h * scale \
            or x_in >= w * scale:
        return None
    return channel, y_in // scale, x_in // scale


@_styled
def filter_grid(weights) -> Figure:
    """First-layer filters (out, in, k, k) as small images, each min-max normalised.

    Three input channels are shown in colour; otherwise the filter is averaged
    over its input channels and shown in grayscale.
    """
    weights = _to_numpy(weights, float)
    out_channels, in_channels, kh, kw = weights.shape
    if in_channels != 3:
        weights = weights.mean(axis=1, keepdims=True)
    low = weights.min(axis=(1, 2, 3), keepdims=True)
    span = weights.max(axis=(1, 2, 3), keepdims=True) - low
    scaled = (weights - low) / np.where(span > 0, span, 1.0)
    title = t("plots.filters.title", count=out_channels, height=kh, width=kw)
    fig, axes = _grid_figure(out_channels, ncols=8, cell=1.2, title=title)
    for i, ax in enumerate(axes):
        _show_image(ax, scaled[i], vmin=0, vmax=1)
    return fig


@_styled
def hidden_activation_plot(activations: list[tuple[str, object]]) -> Figure:
    """One heat strip per hidden layer: which units fire for this image."""
    if not activations:
        return _empty_grid(t("plots.empty.hidden_layers"), t("plots.hidden.empty_title"))
    fig = Figure(figsize=(10, 1.9 * len(activations) + 1), layout="constrained")
    axes = fig.subplots(len(activations), 1, squeeze=False)[:, 0]
    for ax, (name, values) in zip(axes, activations):
        values = _to_numpy(values, float).ravel()
        strip = ax.imshow(values[None, :], aspect="auto", cmap="viridis", interpolation="nearest")
        fig.colorbar(strip, ax=ax, pad=0.01)
        active = np.mean(values > 0)
        ax.set_title(t("plots.hidden.layer", name=name, units=values.size, active=active),
                     fontsize=rcParams["axes.labelsize"])
        ax.set_yticks([])
    axes[-1].set_xlabel(t("plots.axis.hidden_unit"))
    fig.suptitle(t("plots.hidden.title"))
    return fig


def save_png(fig: Figure, path) -> None:
    """Render a figure straight to a PNG file (no intermediate array). Light compression: the
    file is about 1.5x larger but written in a fraction of the time."""
    FigureCanvasAgg(fig).print_png(str(path), pil_kwargs={"compress_level": 1})


def figure_to_image(fig: Figure) -> np.ndarray:
    """Render a figure to an (H, W, 3) uint8 array."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


# --- inside a training run (internals.py) ------------------------------------------------------

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
