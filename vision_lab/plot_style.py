"""How the lab's figures look and speak: the projector style, fonts and language of plots.

Every function builds a fresh `matplotlib.figure.Figure` through the object API,
never pyplot: figures are not kept in any global registry, so a web server can
build them from several threads and they are garbage collected once dropped.

Figures label themselves in the current language (`i18n.using`, set by the app's handlers): every
title, axis label, legend and message comes from the catalogue (`plots.*`), and a title or caption
a caller passes may be a catalogue Text too. Chinese needs a CJK font; without one the figure is
drawn in English, and `font_notice` gives the line a tab shows to say so.

The figures themselves are in curve_plots (training), evaluation_plots (the test set),
image_plots (images, feature maps, filters), internals_plots (inside a run) and lesson_plots;
they share the helpers below.
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

from . import i18n
from .i18n import Text, text

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
    return lang if not i18n.is_chinese(lang) or cjk_font() else "en"


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
        if i18n.is_chinese(lang):
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


def save_png(fig: Figure, path) -> None:
    """Render a figure straight to a PNG file (no intermediate array). Light compression: the
    file is about 1.5x larger but written in a fraction of the time."""
    FigureCanvasAgg(fig).print_png(str(path), pil_kwargs={"compress_level": 1})


def figure_to_image(fig: Figure) -> np.ndarray:
    """Render a figure to an (H, W, 3) uint8 array."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()

