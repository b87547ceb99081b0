import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from vision_lab import curve_plots, evaluation_plots, image_plots, plot_style

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def history(epochs=3, lr=0.1):
    return [
        {"epoch": e, "train_loss": 1 / e, "train_acc": 0.5 + 0.1 * e, "val_loss": 1.2 / e,
         "val_acc": 0.45 + 0.1 * e, "lr": lr / 10 ** (e - 1), "seconds": 2.0}
        for e in range(1, epochs + 1)
    ]


def texts(ax):
    return [t.get_text() for t in ax.texts]


def image_axes(fig):
    return [ax for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>"]


@pytest.fixture(autouse=True)
def rcparams_untouched():
    before = dict(matplotlib.rcParams)
    yield
    assert dict(matplotlib.rcParams) == before


def test_style_is_large_enough_for_a_projector():
    fig = curve_plots.loss_curve([1, 2, 3], [3.0, 2.0, 1.5])
    ax = fig.axes[0]
    assert ax.title.get_fontsize() >= 16
    assert ax.xaxis.label.get_fontsize() >= 14
    assert ax.get_xticklabels()[0].get_fontsize() >= 12


def test_loss_curve_raw_and_smoothed():
    fig = curve_plots.loss_curve(range(100), np.linspace(3, 1, 100) + np.random.rand(100), title="Run A")
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    raw, smooth = ax.lines
    assert raw.get_alpha() < 1 and smooth.get_linewidth() > raw.get_linewidth()
    assert (ax.get_title(), ax.get_xlabel(), ax.get_ylabel()) == ("Run A", "iteration", "loss")
    assert ax.get_legend() is not None


def test_loss_curve_smoothing_survives_a_diverging_batch():
    fig = curve_plots.loss_curve([1, 2, 3, 4], [2.0, float("inf"), 1.0, 1.0], smoothing=0.5)
    smoothed = fig.axes[0].lines[1].get_ydata()
    assert smoothed[0] == 2.0 and np.isfinite(smoothed).all()


def test_loss_curve_empty_shows_a_waiting_message():
    fig = curve_plots.loss_curve([], [])
    ax = fig.axes[0]
    assert not ax.lines
    assert "waiting for the first batch…" in texts(ax)
    assert ax.get_title() == "Training loss per iteration"


@pytest.mark.parametrize("metric, top", [("acc", 100), ("loss", 1.2)])
def test_epoch_curves_compare_runs_with_one_colour_each(metric, top):
    fig = curve_plots.epoch_curves({"SGD": [history()], "Adam": [history(4)]}, metric=metric)
    ax = fig.axes[0]
    assert len(ax.lines) == 4 and not ax.collections  # one seed each: no band
    sgd_train, sgd_val, adam_train, adam_val = ax.lines
    assert sgd_train.get_color() == sgd_val.get_color() != adam_train.get_color()
    assert sgd_train.get_linestyle() == "--" and sgd_val.get_linestyle() == "-"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "SGD: train", "SGD: validation", "Adam: train", "Adam: validation"]
    assert max(adam_train.get_ydata()) == pytest.approx(90 if metric == "acc" else 1.0)
    assert ax.get_title() and ax.get_xlabel() == "epoch"


def test_epoch_curves_show_the_mean_of_seeds_and_a_min_max_band():
    a, b = history(3), [{**r, "val_acc": r["val_acc"] - 0.1} for r in history(2)]  # b is one epoch behind
    fig = curve_plots.epoch_curves({"cnn": [a, b]})
    ax = fig.axes[0]
    val = ax.lines[1]
    assert list(val.get_ydata()) == pytest.approx([50, 60, 75])  # the third epoch: seed a alone
    train_band, val_band = ax.collections
    low_high = val_band.get_paths()[0].vertices[:, 1]
    assert min(low_high) == pytest.approx(45) and max(low_high) == pytest.approx(75)
    assert "mean of 2 seeds" in ax.get_title()


def test_epoch_curves_single_run_and_empty():
    fig = curve_plots.epoch_curves({"cnn, lr 0.1": [history()]})
    ax = fig.axes[0]
    assert "cnn, lr 0.1" in ax.get_title() and ax.get_ylabel() == "accuracy (%)"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["train", "validation"]

    empty = curve_plots.epoch_curves({"cnn": [[]]}).axes[0]
    assert not empty.lines and texts(empty)
    with pytest.raises(ValueError):
        curve_plots.epoch_curves({}, metric="f1")


def test_lr_curve_uses_log_scale_when_lr_spans_decades():
    step_decay = curve_plots.lr_curve(history(3, lr=0.1)).axes[0]
    assert step_decay.get_yscale() == "log" and len(step_decay.lines) == 1
    constant = curve_plots.lr_curve([{**r, "lr": 0.01} for r in history()]).axes[0]
    assert constant.get_yscale() == "linear"
    assert texts(curve_plots.lr_curve([]).axes[0])


def test_confusion_matrix_annotated_and_row_normalised():
    matrix = torch.eye(10, dtype=torch.long) * 90 + 1  # 90 right + 10 wrong of 100 per class
    fig = evaluation_plots.confusion_matrix(matrix, CLASSES)
    ax = fig.axes[0]
    assert len(fig.axes) == 2  # the matrix and its colour bar
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted class", "true class")
    assert len(ax.texts) == 100 and texts(ax)[0] == "91" and texts(ax)[1] == "1"
    assert ax.get_xticklabels()[0].get_rotation() == 45
    assert [t.get_text() for t in ax.get_yticklabels()] == CLASSES


def test_confusion_matrix_counts_and_short_names():
    fig = evaluation_plots.confusion_matrix(np.full((3, 3), 7), ["0", "1", "2"], normalize=False)
    ax = fig.axes[0]
    assert texts(ax) == ["7"] * 9 and "counts" in ax.get_title()
    assert ax.get_xticklabels()[0].get_rotation() == 0


def test_per_class_accuracy_bars_in_percent():
    fig = evaluation_plots.per_class_accuracy([0.9, 0.8, 0.5], ["cat", "dog", "bird"])
    ax = fig.axes[0]
    assert [bar.get_width() for bar in ax.patches] == pytest.approx([90, 80, 50])
    assert ax.get_title() == "Accuracy per class (mean 73.3%)" and ax.get_xlabel() == "accuracy (%)"
    assert [t.get_text() for t in ax.texts] == ["90.0%", "80.0%", "50.0%"]
    assert ax.yaxis.get_inverted()


def test_image_grid_with_a_short_last_row():
    images = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8)
    fig = image_plots.image_grid(images, titles=list("abcde"), ncols=4, title="Digits")
    axes = image_axes(fig)
    assert len(fig.axes) == len(axes) == 5
    assert [ax.get_title() for ax in axes] == list("abcde")
    assert fig.get_suptitle() == "Digits"
    picture = axes[0].images[0]
    assert picture.get_interpolation() == "nearest" and picture.get_cmap().name == "gray"


def test_image_grid_rgb_and_empty():
    fig = image_plots.image_grid(np.zeros((3, 3, 8, 8), dtype=np.uint8))
    assert len(image_axes(fig)) == 3
    assert fig.axes[0].images[0].get_array().shape == (8, 8, 3)
    empty = image_plots.image_grid(torch.zeros(0, 3, 8, 8, dtype=torch.uint8), title="Mistakes")
    assert texts(empty.axes[0]) == ["no images to show"] and empty.get_suptitle() == "Mistakes"


def test_feature_map_mosaic_places_each_channel_in_its_own_tile():
    maps = torch.zeros(12, 7, 7)
    maps[0, 0, 0] = 1.0      # channel 0: its top-left pixel bright
    maps[11, 6, 6] = 5.0     # channel 11: bottom-right pixel, on a larger scale
    maps[3] = 2.0            # a constant channel: no division by zero, one colour
    mosaic = image_plots.feature_map_mosaic(maps, ncols=8, tile=96, gap=6)
    scale = 14               # 7 pixels enlarged to about 96
    assert mosaic.dtype == np.uint8 and mosaic.shape == (2 * 98 + 6, 8 * 98 + 7 * 6, 3)
    bright, dark = image_plots._viridis()[255], image_plots._viridis()[0]
    assert (mosaic[0, 0] == bright).all() and (mosaic[scale, scale] == dark).all()
    # Channel 11 is the fourth tile of the second row; each channel has its own colour range.
    top, left = 98 + 6, 3 * (98 + 6)
    assert (mosaic[top + 97, left + 97] == bright).all() and (mosaic[top, left] == dark).all()
    assert (mosaic[0, 3 * 104:3 * 104 + 98] == dark).all()          # the constant channel
    assert (mosaic[98:104] == 255).all()                             # the gap between rows
    assert (mosaic[104:, 4 * 104:] == 255).all()                     # no tiles after channel 11
    with pytest.raises(ValueError, match="at least one channel"):
        image_plots.feature_map_mosaic(torch.zeros(0, 4, 4))


@pytest.mark.parametrize("in_channels, shape", [(3, (5, 5, 3)), (1, (5, 5)), (8, (5, 5))])
def test_filter_grid_normalises_each_filter(in_channels, shape):
    weights = torch.randn(10, in_channels, 5, 5)
    fig = image_plots.filter_grid(weights)
    assert len(image_axes(fig)) == 10 and "5×5" in fig.get_suptitle()
    data = np.asarray(fig.axes[0].images[0].get_array())
    assert data.shape == shape
    assert data.min() == pytest.approx(0) and data.max() == pytest.approx(1)


def test_hidden_activation_plot_one_strip_per_layer():
    activations = [("1", torch.relu(torch.randn(128))), ("3", torch.relu(torch.randn(64)))]
    fig = image_plots.hidden_activation_plot(activations)
    strips = image_axes(fig)
    assert len(strips) == 2 and len(fig.axes) == 4  # each strip has a colour bar
    assert strips[0].get_title().startswith("1: 128 units")
    assert texts(image_plots.hidden_activation_plot([]).axes[0])


def test_figure_to_image():
    picture = plot_style.figure_to_image(curve_plots.epoch_curves({"run": [history()]}))
    assert picture.ndim == 3 and picture.shape[2] == 3 and picture.dtype == np.uint8
    assert picture.shape[:2] == (550, 900)  # 9 x 5.5 inches at 100 dpi
    assert picture.min() < 100  # something was drawn on the white background


def test_every_figure_renders():
    figures = [
        curve_plots.loss_curve([], []),
        curve_plots.epoch_curves({"a": [history()], "b": [history(2)]}, metric="loss"),
        curve_plots.lr_curve(history()),
        evaluation_plots.confusion_matrix(np.random.randint(0, 50, (10, 10)), CLASSES),
        evaluation_plots.per_class_accuracy(np.random.rand(10), CLASSES),
        image_plots.image_grid(torch.randint(0, 256, (9, 3, 32, 32), dtype=torch.uint8)),
        image_plots.filter_grid(torch.randn(6, 3, 3, 3)),
        image_plots.hidden_activation_plot([("h", torch.rand(10))]),
    ]
    for fig in figures:
        assert plot_style.figure_to_image(fig).dtype == np.uint8
