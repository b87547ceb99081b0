"""The learning-rate range test (vision_lab/lr_finder.py) and `python -m vision_lab lr-find`."""
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vision_lab import i18n
from vision_lab.lr_finder import LRFinderResult, find_lr, suggestions
from vision_lab.curve_plots import lr_finder_figure
from vision_lab.train_config import TrainConfig, load_data
from vision_lab.training import run_to_end

ROOT = Path(__file__).resolve().parents[2]
CHANCE = 0.1  # shapes has 10 balanced classes
# A tiny shapes run: small batches give one epoch enough steps to learn something.
SMALL = dict(dataset="shapes", model="cnn", subset_train=600, subset_test=200, batch_size=16,
             epochs=1, seed=0)
SWEEP = dict(start_lr=1e-5, end_lr=1.0, steps=60)


@pytest.fixture(scope="module")
def small_data():
    return load_data(TrainConfig(**SMALL))


@pytest.fixture(scope="module")
def sweep(small_data):
    return find_lr(TrainConfig(**SMALL), data=small_data, **SWEEP)


def train_one_epoch(tmp_path, data, lr):
    return run_to_end(TrainConfig(**SMALL, lr=lr, out=str(tmp_path / "run.safetensors")), data=data)


def test_the_sweep_records_a_growing_lr_and_suggests_lrs_inside_it(sweep):
    lrs = np.array(sweep.lrs)
    assert len(lrs) == len(sweep.losses) == len(sweep.raw_losses) <= SWEEP["steps"]
    assert lrs[0] == pytest.approx(SWEEP["start_lr"]) and np.all(np.diff(np.log(lrs)) > 0)
    assert np.allclose(np.diff(np.log(lrs)), math.log(lrs[1] / lrs[0]))  # exponential growth
    assert sweep.losses[0] == pytest.approx(sweep.raw_losses[0])  # debiased: no pull towards 0
    assert SWEEP["start_lr"] < sweep.steepest < SWEEP["end_lr"]
    assert SWEEP["start_lr"] / 10 <= sweep.min_div_10 < SWEEP["end_lr"] / 10


def test_the_steepest_lr_trains_above_chance_in_one_epoch(tmp_path, small_data, sweep):
    end = train_one_epoch(tmp_path, small_data, sweep.steepest)
    print(f"lr {sweep.steepest:.3g}: val acc {end.history[-1]['val_acc']:.3f}, "
          f"test acc {end.metrics['test_acc']:.3f}")
    assert end.reason == "completed"
    assert end.history[-1]["val_acc"] > CHANCE + 0.05 and end.metrics["test_acc"] > CHANCE + 0.05


def test_a_thousand_times_the_steepest_lr_is_ruinous(tmp_path, small_data, sweep):
    end = train_one_epoch(tmp_path, small_data, 1000 * sweep.steepest)
    if end.reason == "diverged":
        return
    last = end.history[-1]
    print(f"lr {1000 * sweep.steepest:.3g}: train loss {last['train_loss']:.3g}, "
          f"val acc {last['val_acc']:.3f}")
    # The weights blow up: the training loss is far above a guess's (ln 10), and the network
    # predicts no better than chance.
    assert last["train_loss"] > 2 * math.log(10)
    assert last["val_acc"] <= CHANCE + 0.03 and end.metrics["test_acc"] <= CHANCE + 0.03


def test_the_cli_prints_the_suggestions_as_json(tmp_path):
    png = tmp_path / "lr.png"
    r = subprocess.run([sys.executable, "-m", "vision_lab", "lr-find", "--dataset", "shapes", "--model",
                        "cnn", "--subset-train", "200", "--subset-test", "20", "--batch-size", "16",
                        "--start-lr", "1e-4", "--end-lr", "1", "--steps", "20", "--plot", str(png),
                        "--json"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    (result,) = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    assert set(result) == {"lrs", "losses", "steepest", "min_div_10"}
    assert len(result["lrs"]) == len(result["losses"]) and 10 <= len(result["lrs"]) <= 20
    assert 1e-4 < result["steepest"] < 1 and 1e-5 <= result["min_div_10"] < 0.1
    assert png.stat().st_size > 10_000
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").rglob("*"))


@pytest.mark.parametrize("options, key", [
    (dict(start_lr=1.0, end_lr=0.1), "lr_finder.error.range"),
    (dict(start_lr=0.0), "lr_finder.error.start_lr"),
    (dict(start_lr=float("nan")), "lr_finder.error.start_lr"),
    (dict(steps=5), "lr_finder.error.steps"),
    (dict(smooth=0.0), "lr_finder.error.smooth"),
])
def test_a_range_the_test_cannot_sweep_is_one_sentence(options, key):
    with pytest.raises(ValueError) as raised:
        find_lr(TrainConfig(**SMALL), **options)
    message = raised.value.args[0]
    assert isinstance(message, i18n.Text) and message.key == key
    assert str(raised.value) == str(message) and "{" not in str(message)
    assert i18n.render(message, "zh") != str(message)  # the app can say it in Chinese


def test_a_sweep_that_blows_up_at_once_says_start_lower(small_data):
    with pytest.raises(ValueError) as raised:
        find_lr(TrainConfig(**SMALL), data=small_data, start_lr=1e4, end_lr=1e8, steps=10)
    assert raised.value.args[0].key == "lr_finder.error.diverged_early"
    assert "start the range lower (e.g. 100)" in str(raised.value)


def test_the_cli_refuses_a_bad_range_in_one_sentence():
    r = subprocess.run([sys.executable, "-m", "vision_lab", "lr-find", "--steps", "5"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip() == "error: The range test needs at least 10 steps to draw a curve to read, got 5."


# ---- reading the curve ----------------------------------------------------------------------------

def test_the_suggestions_come_from_the_way_down_to_the_lowest_loss():
    lrs = list(np.logspace(-6, 0, 100))
    x = np.log10(lrs)
    # Flat, then falling fastest at 1e-3, lowest near 1e-2; past it the loss rises, and a broken
    # network's loss wanders down again at 1e-1, more steeply than the real descent.
    losses = 2.3 - 0.5 * (np.tanh(3 * (x + 3)) + 1) / 2 + 2.0 * np.clip(x + 2, 0, None) ** 2
    losses -= np.where(x > -1, 2.5 * (x + 1), 0)
    steepest, min_div_10 = suggestions(lrs, list(losses))
    assert 10 ** -3.2 < steepest < 10 ** -2.8
    assert min_div_10 == pytest.approx(lrs[int(np.argmin(losses[10:])) + 10] / 10)
    assert suggestions(lrs[:5], list(losses[:5])) == (None, None)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_figure_marks_both_suggestions(lang):
    lrs = list(np.logspace(-5, 0, 40))
    losses = list(2.3 - 0.4 * np.tanh(np.linspace(-3, 3, 40)))
    result = LRFinderResult(lrs=lrs, losses=losses, raw_losses=losses, steepest=1e-3,
                            min_div_10=1e-4, diverged_at=1.0)
    with i18n.using(lang):
        fig = lr_finder_figure(result)
        expected = [i18n.t("plots.lr_finder.steepest", lr=1e-3),
                    i18n.t("plots.lr_finder.min_div_10", lr=1e-4)]
    (ax,) = fig.axes
    assert ax.get_xscale() == "log"
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert all(label in labels for label in expected)
    empty = lr_finder_figure(LRFinderResult([], [], [], None, None, None))
    assert empty.axes[0].texts  # a message instead of an empty plot
