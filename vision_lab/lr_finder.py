"""The learning-rate range test (Smith 2015, "Cyclical Learning Rates"; fastai's lr_find).

Train for a few dozen steps while the learning rate grows exponentially, from far too small to far
too large, and watch the loss: at first it barely moves (the steps are too small to matter), then
it falls, then it blows up (the steps overshoot). A good learning rate lies where the loss falls
fastest, well before it blows up. `find_lr` measures that curve and reads two suggestions off it:

- steepest: the lr where the smoothed loss falls fastest against log(lr), a good starting lr;
- min_div_10: one tenth of the lr at the lowest smoothed loss, a safer choice.

The data, model, preprocessing, augmentation and optimizer are built exactly as training builds
them for the same config (run_setup.set_up), and each step is training's own `train_step`, so the
curve describes the run that config would train. The model and optimizer are thrown away afterwards: nothing is saved.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from .batches import epoch_batches
from .datasets import ImageData
from .i18n import text
from .run_setup import set_up
from .train_config import TrainConfig, load_data
from .training import Diverged, train_step

MIN_STEPS = 10          # fewer points than this make no curve to read a slope from
DIVERGED_FACTOR = 4.0   # the test stops once the smoothed loss is this many times its best
SMOOTH = 0.05           # each new loss's weight in the moving average: about the last 20 steps


@dataclass
class LRFinderResult:
    lrs: list[float]               # the lr of each step (it grows by the same factor every step)
    losses: list[float]            # the loss of each step, smoothed (exponential moving average)
    raw_losses: list[float]        # the loss of each step's batch as measured
    steepest: float | None         # lr at the steepest fall of the smoothed loss (None: too few points)
    min_div_10: float | None       # lr at the lowest smoothed loss, divided by 10 (None: too few points)
    diverged_at: float | None      # lr at which the loss blew up and the test stopped (None: it did not)

    def to_dict(self) -> dict:
        return {"lrs": self.lrs, "losses": self.losses, "steepest": self.steepest,
                "min_div_10": self.min_div_10}


def check_range(start_lr: float, end_lr: float, steps: int, smooth: float) -> None:
    """Raise ValueError, one sentence, for a range the test cannot sweep."""
    if not (isinstance(start_lr, (int, float)) and math.isfinite(start_lr) and start_lr > 0):
        raise ValueError(text("lr_finder.error.start_lr", start_lr=start_lr))
    if not (isinstance(end_lr, (int, float)) and math.isfinite(end_lr) and end_lr > start_lr):
        raise ValueError(text("lr_finder.error.range", start_lr=start_lr, end_lr=end_lr))
    if not isinstance(steps, int) or steps < MIN_STEPS:
        raise ValueError(text("lr_finder.error.steps", steps=steps, minimum=MIN_STEPS))
    if not (isinstance(smooth, (int, float)) and 0 < smooth <= 1):
        raise ValueError(text("lr_finder.error.smooth", smooth=smooth))


def find_lr(config: TrainConfig, start_lr: float = 1e-6, end_lr: float = 1.0, steps: int = 100,
            smooth: float = SMOOTH, stop: threading.Event | None = None,
            data: ImageData | None = None) -> LRFinderResult:
    """Sweep the lr from `start_lr` to `end_lr` over `steps` training steps and suggest one.

    `smooth` is the weight of each new loss in the moving average (0.05: about the last 20
    steps). The test ends early when the loss blows up, or when `stop` is set. `data` lets a
    caller that already loaded the config's dataset skip loading it again.
    """
    check_range(start_lr, end_lr, steps, smooth)
    config.validate()
    stop = stop or threading.Event()
    # The same seed, data and set-up as training.train, so this is the start of the run the
    # config describes (its Status messages are not needed here).
    torch.manual_seed(config.seed)
    data = data if data is not None else load_data(config)
    run = _drained(set_up(config, data))
    run.internals = None  # a sweep has no epochs to record them for
    batches = _endless_batches(run)
    run.train_model.train()  # Dropout and BatchNorm behave as they do in training

    # Each step multiplies the lr by the same factor: evenly spaced on a log axis, so small lrs
    # get as many steps as large ones.
    growth = (end_lr / start_lr) ** (1 / (steps - 1))
    lrs, losses, raw_losses = [], [], []
    average, best, diverged_at, taken = 0.0, math.inf, None, 0
    for step in range(steps):
        if stop.is_set():
            break
        lr = start_lr * growth ** step
        taken = step + 1
        for group in run.optimizer.param_groups:
            group["lr"] = lr

        x, y = next(batches)
        x, y = x.to(run.device, non_blocking=True), y.to(run.device, non_blocking=True)
        # The loss training minimises, penalties included, so the curve is that run's curve.
        try:
            raw, _, _ = train_step(run, x, y)
        except Diverged:  # inf or nan: the weights have blown up, nothing more to learn
            diverged_at = lr
            break

        # One batch's loss is noisy; an exponential moving average shows the trend. Dividing by
        # 1 - (1 - smooth)^(step + 1) removes the pull towards the average's starting value, 0.
        average = (1 - smooth) * average + smooth * raw
        smoothed = average / (1 - (1 - smooth) ** (step + 1))
        lrs.append(lr)
        losses.append(smoothed)
        raw_losses.append(raw)
        best = min(best, smoothed)
        if smoothed > DIVERGED_FACTOR * best:  # far past the good lrs: larger ones only get worse
            diverged_at = lr
            break

    if len(lrs) < MIN_STEPS and not stop.is_set():
        raise ValueError(text("lr_finder.error.diverged_early", steps=taken, lr=diverged_at,
                              lower=start_lr / 100))
    steepest, min_div_10 = suggestions(lrs, losses)
    return LRFinderResult(lrs=lrs, losses=losses, raw_losses=raw_losses, steepest=steepest,
                          min_div_10=min_div_10, diverged_at=diverged_at)


def suggestions(lrs: list[float], losses: list[float]) -> tuple[float | None, float | None]:
    """(steepest, min_div_10) read off a smoothed curve; (None, None) with too few points."""
    n = len(lrs)
    if n < MIN_STEPS:
        return None, None
    log_lrs, losses = np.log10(np.asarray(lrs)), np.asarray(losses)
    # The first points average only a few batches' losses (the debiasing makes them fair, not
    # steady): one lucky batch there would pass for the lowest loss. The lowest is looked for
    # after them.
    first, last = max(1, n // 10), n - max(1, n // 20)
    lowest = first + int(np.argmin(losses[first:]))
    # The last points may be the blow-up itself: the steepest slope is looked for between these
    # ends, and only on the way down to the lowest loss. Past it the lr is already too large: a
    # broken network's loss can wander down again there (seen on shapes), and that is no lr to
    # train with. A curve that never fell has no way down: then the whole curve is searched (and
    # the suggestion is weak).
    if lowest - first >= 2:
        last = min(last, lowest + 1)
    slopes = np.gradient(losses, log_lrs)
    steepest = lrs[first + int(np.argmin(slopes[first:last]))]
    min_div_10 = lrs[lowest] / 10
    return float(steepest), float(min_div_10)


def _drained(generator) -> object:
    """Run a generator to its end and return what it returns (run_setup.set_up yields Status
    messages, and returns the run it built)."""
    while True:
        try:
            next(generator)
        except StopIteration as end:
            return end.value


def _endless_batches(run) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Training batches, epoch after epoch (each in a new order): a small dataset may have fewer
    batches than the test has steps. The run's own generators, seeded as training seeds them."""
    while True:
        yield from epoch_batches(run)
