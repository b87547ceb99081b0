"""The figures the app draws in its helper process (vision_lab.serving.drawing): the same PNG as
drawn in the server, in the visitor's language and lecture size, below the server's priority; a
plots error reaches the caller as itself, and a helper that died is replaced."""
import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vision_lab import i18n
from vision_lab.curve_plots import epoch_curves
from vision_lab.plot_style import larger_text, save_png
from vision_lab.serving import drawing

import _worker_targets as targets

HISTORY = [{"epoch": e, "train_loss": 1 / e, "val_loss": 1.2 / e, "train_acc": 0.5 + e / 10,
            "val_acc": 0.45 + e / 10, "lr": 0.1} for e in (1, 2, 3)]


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_the_helper_draws_the_same_figure_as_the_server_would(tmp_path):
    here, there = tmp_path / "here.png", tmp_path / "there.png"
    save_png(epoch_curves({"run": [HISTORY]}, "acc"), here)
    assert drawing.draw_pngs([(str(there), epoch_curves, ({"run": [HISTORY]}, "acc"), {})]) == [str(there)]
    assert drawing.helper_pid() not in (None, os.getpid())
    assert np.array_equal(pixels(here), pixels(there))


def test_the_visitors_language_and_lecture_size_reach_the_helper_below_the_servers_priority(tmp_path):
    note = tmp_path / "note.json"
    with i18n.using("zh"), larger_text(1.4):
        drawing.draw_pngs([(str(tmp_path / "f.png"), targets.figure_noting_where, (str(note),), {})])
    seen = json.loads(note.read_text())
    assert seen["pid"] != os.getpid()
    assert (seen["lang"], seen["scale"]) == ("zh", 1.4)
    assert seen["nice"] == min(os.nice(0) + drawing.HELPER_NICENESS, 19)
    # What ps and top call it, apart from the trainings (tests/conftest.py tells them apart so).
    assert Path(f"/proc/{seen['pid']}/comm").read_text().strip() == drawing.HELPER_NAME
    assert (tmp_path / "f.png").stat().st_size > 0


def test_an_error_while_drawing_reaches_the_caller_as_itself(tmp_path):
    with pytest.raises(ValueError, match="the sentence a user should see"):
        drawing.draw_pngs([(str(tmp_path / "f.png"), targets.figure_failing, (), {})])


def test_a_helper_that_died_is_replaced(tmp_path):
    drawing.draw_pngs([(str(tmp_path / "a.png"), epoch_curves, ({"run": [HISTORY]}, "loss"), {})])
    first = drawing.helper_pid()
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:   # until the kernel has reaped it
        try:
            os.kill(first, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    path = tmp_path / "b.png"
    assert drawing.draw_pngs([(str(path), epoch_curves, ({"run": [HISTORY]}, "loss"), {})]) == [str(path)]
    assert drawing.helper_pid() not in (None, first) and path.stat().st_size > 0
