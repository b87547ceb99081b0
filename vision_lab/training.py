"""One training loop for the app, the CLI and the tests.

`train(config)` is a generator: it yields a `BatchEnd` after every step, an `EpochEnd` after every
epoch, `Status` messages, and finally a `RunEnd` (train_config.py). Consumers render; they never
re-implement the loop. Read it top to bottom: `train` runs the epochs, `_train_one_epoch` the
batches, and `train_step` is one step of gradient descent: zero_grad, forward, loss, backward, step.
What the run works with (model, optimizer, device, precision, processes, the time budget's plan)
is set up by run_setup.py; the batches come from batches.py, the measurements from evaluation.py.

Three splits, as the course teaches them (datasets.ImageData): the model learns from the training
images; every choice made while training — the best epoch to keep, early stopping, the plateau
scheduler — looks at the validation images, held out from the training data; the test set is
evaluated once, at the end, on the model that is kept, so its figure is an honest estimate.

A run lasts `epochs` epochs, or, with `budget_seconds`, as many steps as fit in that time: the
first steps are timed and the run planned from them (see run_setup.plan), so a per-step schedule
("onecycle") ends exactly at the budget. On a CUDA GPU the uint8 images move to it once and are
augmented there, and the model trains in channels_last under bf16 (or fp16) autocast. Started by
torchrun, one run spreads over several processes with DistributedDataParallel (distributed.py);
without it nothing of that path runs.
"""
from __future__ import annotations

import contextlib
import math
import threading
import time
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F

from . import distributed, resume
from .batches import epoch_batches
from .datasets import ImageData
from .evaluation import EvalResult, evaluate, evaluate_shared, normalize_on_device
from .i18n import Text, text
from .internals import ACTIVATION_IMAGES
from .models import unfreeze_all
from .run_setup import (PER_STEP_SCHEDULERS, Run, make_optimizer, make_scheduler, plan, plan_due, set_up,
                        time_step, training_model)
from .train_config import BatchEnd, EpochEnd, RunEnd, Status, TrainConfig, load_data


class _EndEarly(Exception):
    """A run ends before its last epoch: stopped or diverged (reason, message)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


class Diverged(Exception):
    """A step's loss was not a finite number (inf or nan): the weights have blown up."""

    def __init__(self, loss: float):
        super().__init__(str(loss))
        self.loss = loss


# ---- the loop -----------------------------------------------------------------------------------

def train(config: TrainConfig, stop: threading.Event | None = None,
          data: ImageData | None = None) -> Iterator:
    """Train as `config` says, yielding events. Set `stop` to end within one batch.

    `data` lets a caller that already loaded the dataset (a comparison, a test) skip reloading it.
    """
    config.validate()
    stop = stop or threading.Event()
    torch.manual_seed(config.seed)
    if data is None:
        yield Status(text("training.loading", dataset=config.dataset))
        data = load_data(config)
        for m in data.messages:
            yield Status(m)
    if config.train_fraction < 1:
        # The validation and test images stay whole, so runs on different shares are judged alike.
        data = data.with_train_share(config.train_fraction, config.data_seed)
    run = None
    try:
        run = yield from set_up(config, data)
        if config.budget_seconds:
            run.clock.budget_end = time.perf_counter() + config.budget_seconds
        epoch = (yield from _continue(run)) if config.resume else 0
        while run.step < run.total_steps:
            epoch += 1
            yield from _unfreeze_if_due(run, epoch)
            t0 = time.perf_counter()
            train_loss, train_acc, images = yield from _train_one_epoch(run, epoch, stop)
            trained_at = time.perf_counter()
            val, internals = _validate_and_watch(run, stop)
            record = {"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc,
                      "val_loss": val.loss if val else None, "val_acc": val.acc if val else None,
                      "lr": _current_lr(run.optimizer), "images": images,
                      "seconds": time.perf_counter() - t0}
            _end_epoch(run, record)
            yield EpochEnd(**record, internals=internals)
            yield from _after_epoch(run, trained_at)
            patience = config.early_stopping_patience
            if patience and epoch - run.kept.best_epoch >= patience:
                yield _test_once(run, "early_stopped", text("training.early_stopped", epochs=patience))
                return
        yield _test_once(run, "completed", _completed_message(run, epoch))
    except _EndEarly as end:
        yield _kept_as_saved(run, end.reason, end.message)
    except RuntimeError as error:
        if run is None or not is_out_of_memory(error):
            raise
        yield _kept_as_saved(run, "failed", _out_of_memory_message(run.batch_size, run.device))


def _train_one_epoch(run: Run, epoch: int, stop: threading.Event) -> Iterator[BatchEnd | Status]:
    """One pass over the training images, a BatchEnd per step (a time budget may end the last
    pass early); returns (mean loss, accuracy, images seen)."""
    run.train_model.train()
    t0 = last = time.perf_counter()
    loss_sum, correct, seen = 0.0, 0, 0
    for x, y in epoch_batches(run):
        if run.step >= run.total_steps:
            break
        if run.group is None and stop.is_set():
            raise _EndEarly(reason="stopped", message=_stopped_message(run.kept.history))
        x, y = x.to(run.device, non_blocking=True), y.to(run.device, non_blocking=True)
        try:
            loss_value, batch_correct, batch_images = train_step(run, x, y, stop)
        except Diverged as diverged:
            lr = _current_lr(run.optimizer)
            raise _EndEarly(reason="diverged", message=text(
                "training.diverged", loss=str(diverged.loss), step=run.step + 1, epoch=epoch, lr=lr,
                lower=lr / 10)) from None
        run.step += 1
        lr = _current_lr(run.optimizer)
        if run.config.scheduler in PER_STEP_SCHEDULERS:
            run.scheduler.step()
        loss_sum += loss_value * batch_images
        correct += batch_correct
        seen += batch_images
        last = time_step(run, last)
        yield BatchEnd(step=run.step, epoch=epoch, loss=loss_value, lr=lr,
                       images_per_sec=seen / max(time.perf_counter() - t0, 1e-9),
                       total_steps=run.total_steps)
        if plan_due(run):
            yield from plan(run)
    return loss_sum / max(seen, 1), correct / max(seen, 1), seen


def train_step(run: Run, x: torch.Tensor, y: torch.Tensor,
               stop: threading.Event | None = None) -> tuple[float, int, int]:
    """One step of gradient descent on a batch (x, y on the run's device): zero_grad, forward,
    loss (label smoothing and the L1 penalty included), backward, step, in the run's layout and
    precision. Returns the batch's loss, correct predictions and images (in a distributed run,
    of all processes together). A loss that is not finite raises Diverged before the step."""
    config, optimizer = run.config, run.optimizer
    if run.channels_last and run.device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)  # cuDNN's fast kernels want NHWC
    optimizer.zero_grad(set_to_none=True)
    with _autocast(run):
        logits = run.train_model(x)
        loss = F.cross_entropy(logits, y, label_smoothing=config.label_smoothing)
        if config.l1:
            loss = loss + config.l1 * sum(p.abs().sum() for p in run.model.parameters() if p.requires_grad)
    loss_value, correct, n = _batch_totals(run, loss, logits, y, stop)
    if not math.isfinite(loss_value):
        raise Diverged(loss_value)
    if run.scaler is None:
        loss.backward()
        if run.internals is not None:
            run.internals.after_backward()
        optimizer.step()
    else:
        # float16 gradients would round to zero: scale the loss up, and the gradients back down
        # before the step (skipped, with a smaller scale next time, if any overflowed).
        run.scaler.scale(loss).backward()
        if run.internals is not None:
            run.internals.after_backward(scale=run.scaler.get_scale)
        run.scaler.step(optimizer)
        run.scaler.update()
    return loss_value, correct, n


def _autocast(run: Run):
    if run.autocast_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=run.device.type, dtype=run.autocast_dtype)


def _batch_totals(run: Run, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor,
                  stop: threading.Event | None) -> tuple[float, int, int]:
    """The step's loss, correct predictions and images. In a distributed run they are added up
    over the processes, with each one's Stop: all stop at the same step if any one was asked to."""
    loss_value, correct, n = loss.item(), (logits.argmax(1) == y).sum().item(), len(y)
    if run.group is None:
        return loss_value, correct, n
    loss_sum, correct, n, stops = distributed.sum_across(
        run.group, [loss_value * n, correct, n, float(stop is not None and stop.is_set())])
    if stops:
        raise _EndEarly(reason="stopped", message=_stopped_message(run.kept.history))
    return loss_sum / n, int(correct), int(n)


def _current_lr(optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


def _unfreeze_if_due(run: Run, epoch: int) -> Iterator[Status]:
    """The second half of freeze-then-unfreeze: everything trains, at a lower learning rate."""
    config = run.config
    if config.freeze_epochs and epoch == config.freeze_epochs + 1:
        unfreeze_all(run.model)
        lr = config.unfreeze_lr or config.lr / 10
        run.optimizer = make_optimizer(config, run.model.parameters(), lr)
        offset = run.step
        run.scheduler = make_scheduler(config, run.optimizer, config.epochs - config.freeze_epochs,
                                       lambda: run.schedule_steps() - offset)
        if run.group:
            run.train_model = training_model(run)  # DDP keeps in step only what trained when wrapped
        yield Status(text("training.unfrozen", lr=lr))


def _continue(run: Run) -> Iterator[Status]:
    """A resumed run: unfrozen if its checkpoint was, then put where that left it (resume.py).
    Returns the epoch it continues after."""
    config = run.config
    meta = resume.check(config)
    epoch = meta["training_state"]["epoch"]
    # Stopped after the frozen epochs: the loop unfreezes at the next one, with a new optimizer.
    if config.freeze_epochs and epoch > config.freeze_epochs:
        run.step = config.freeze_epochs * run.steps_per_epoch  # where the unfrozen schedule starts
        yield from _unfreeze_if_due(run, config.freeze_epochs + 1)
    resume.restore(run, meta)
    yield Status(text("resume.continuing", name=Path(config.resume).name, epoch=epoch,
                      epochs=config.epochs))
    return epoch


# ---- the end of an epoch, and of a run -----------------------------------------------------------

def _validate(run: Run, stop: threading.Event) -> EvalResult | None:
    """The validation images (None without any); a Stop meanwhile ends the run."""
    if not run.data.has_validation:
        return None
    result = _evaluate(run, "val", stop, worst_k=0)
    if result is None:
        raise _EndEarly(reason="stopped", message=_stopped_message(run.kept.history))
    return result


def _evaluate(run: Run, split: str, stop: threading.Event | None = None,
              worst_k: int = 16) -> EvalResult | None:
    """`evaluate` on a split, with the run's test-time augmentation."""
    images, labels = run.images[split]
    if run.group is not None:
        return evaluate_shared(run.model, images, labels, run.prep, len(run.data.classes), run.group,
                               run.device, worst_k=worst_k, tta=run.config.tta)
    return evaluate(run.model, images, labels, run.prep, len(run.data.classes), device=run.device,
                    stop=stop, worst_k=worst_k, tta=run.config.tta)


def _validate_and_watch(run: Run, stop: threading.Event) -> tuple[EvalResult | None, dict | None]:
    """The epoch's validation and, when the run records them, its internals: the activations are
    caught during the validation pass itself (internals.py), or, without validation images, in
    a forward pass of their own over the first training images."""
    if run.internals is None:
        return _validate(run, stop), None
    with run.internals.watching_activations():
        val = _validate(run, stop)
    if not run.internals.has_activations():
        images = run.images["train"][0][:ACTIVATION_IMAGES].to(run.device)
        run.internals.record_activations(normalize_on_device(run.prep, images.float()))
    return val, run.internals.epoch_record()


def _end_epoch(run: Run, record: dict) -> None:
    """Remember the epoch, keep the best weights, save a checkpoint, step the scheduler."""
    config, kept = run.config, run.kept
    kept.history.append(record)
    val_loss = record["val_loss"]
    if val_loss is None or val_loss < kept.best_loss - config.early_stopping_min_delta:
        kept.best_epoch, kept.best_loss = record["epoch"], math.inf if val_loss is None else val_loss
        if config.restore_best and val_loss is not None:
            kept.best_state = {k: v.detach().clone() for k, v in run.model.state_dict().items()}
    if isinstance(run.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        run.scheduler.step(val_loss)
    elif run.scheduler is not None and config.scheduler not in PER_STEP_SCHEDULERS:
        run.scheduler.step()
    # Every completed epoch is on disk, so a stop or a crash keeps it, ready for the next epoch.
    run.save({"val_loss": val_loss, "val_acc": record["val_acc"]})


def _after_epoch(run: Run, trained_at: float) -> Iterator[Status]:
    """Time the epoch's validation and checkpoint; a time budget re-plans with it."""
    run.clock.epoch_end_seconds += time.perf_counter() - trained_at
    run.clock.epochs_ended += 1
    if run.clock.budget_end is not None and run.clock.timed_steps:
        yield from plan(run)


def _test_once(run: Run, reason: str, message: Text) -> RunEnd:
    """The end of a run that reached it: keep the best epoch (if asked), then look at the test
    set, once, and save the kept model with those figures."""
    kept = run.kept
    if kept.best_state is not None:
        kept.last_state = {k: v.detach().clone() for k, v in run.model.state_dict().items()}
        run.model.load_state_dict(kept.best_state)
    kept_epoch = kept.best_epoch if kept.best_state is not None else kept.history[-1]["epoch"]
    result = _evaluate(run, "test")
    metrics = result.to_dict()
    run.save({**metrics, "kept_epoch": kept_epoch})
    message = text("training.kept_best" if kept.best_state is not None else "training.kept_last",
                   ended=message, epoch=kept_epoch)
    return RunEnd(reason=reason, message=message, best_epoch=kept.best_epoch, history=kept.history,
                  checkpoint=str(kept.checkpoint), metrics={**metrics, "most_confused": result.most_confused})


def _kept_as_saved(run: Run | None, reason: str, message: Text) -> RunEnd:
    """The end of a run that stopped early: its checkpoint is the last completed epoch's, exactly
    as written (never half-trained weights), and the test set is not looked at."""
    kept = run.kept if run else None
    return RunEnd(reason=reason, message=message, best_epoch=kept.best_epoch if kept else None,
                  history=kept.history if kept else [],
                  checkpoint=str(kept.checkpoint) if kept and kept.checkpoint else None, metrics={})


def _completed_message(run: Run, epochs: int) -> Text:
    if run.clock.budget_end is None:
        return text("training.completed", epochs=epochs)
    last, total = run.kept.history[-1]["images"], len(run.data.train_images)
    if last < total:
        return text("training.completed.budget_partial", budget=run.config.budget_seconds, epochs=epochs,
                    steps=run.step, last=last, total=total)
    return text("training.completed.budget", budget=run.config.budget_seconds, epochs=epochs, steps=run.step)


def is_out_of_memory(error: BaseException) -> bool:
    """An allocation failure on any device (CUDA, MPS or the CPU allocator), not another error."""
    if isinstance(error, getattr(torch, "OutOfMemoryError", ())):
        return True
    said = str(error).lower()
    return "out of memory" in said or "can't allocate memory" in said


def _out_of_memory_message(batch_size: int, device: torch.device) -> Text:
    if device.type == "cuda":
        torch.cuda.empty_cache()  # give the failed batch's memory back for the next run
    return text("training.out_of_memory", batch_size=batch_size)


def _stopped_message(history: list[dict]) -> Text:
    if not history:
        return text("training.stopped_early")
    return text("training.stopped", epoch=history[-1]["epoch"])


def run_to_end(config: TrainConfig, **kwargs) -> RunEnd:
    """Drain the generator; for scripts and tests that only want the result."""
    end = None
    for ev in train(config, **kwargs):
        if isinstance(ev, RunEnd):
            end = ev
    return end
