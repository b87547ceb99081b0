"""One training loop for the app, the CLI and the tests.

`train(config)` is a generator: it yields a `BatchEnd` after every step, an `EpochEnd` after every
epoch, `Status` messages, and finally a `RunEnd`. Consumers render; they never re-implement the loop.
Data stays in memory as uint8 tensors and is augmented several batches at a time (see transforms.py
and `training_batches`).

Three splits, as the course teaches them (datasets.ImageData): the model learns from the training
images; every choice made while training — the best epoch to keep, early stopping, the plateau
scheduler — looks at the validation images, held out from the training data; the test set is
evaluated once, at the end, on the model that is kept, so its figure is an honest estimate.

A run lasts `epochs` epochs, or, with `budget_seconds`, as many steps as fit in that time: the
first steps are timed and the run planned from them (see `_plan`), so a per-step schedule
("onecycle") ends exactly at the budget. On a CUDA GPU the uint8 images move to it once and are
augmented there, and the model trains in channels_last under bf16 (or fp16) autocast. Started by
torchrun, one run spreads over several processes with DistributedDataParallel (distributed.py);
without it nothing of that path runs.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn.functional as F

from . import distributed, resume
from .checkpoints import default_checkpoint_dir, save_checkpoint
from .datasets import FOLDER_PREFIX, ImageData, load_dataset
from .i18n import Text, listing, text
from .internals import ACTIVATION_IMAGES, InternalsRecorder
from .models import count_parameters, create_model, freeze_backbone, unfreeze_all
from .preprocessing import Preprocessing
from .recipes import recipe_settings
from .transforms import BatchAugmenter, preset, validate_spec

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULERS = ("none", "step", "multistep", "exponential", "cosine", "plateau", "onecycle")
SCHEDULER_DEFAULTS = {
    "step": {"step_size": 5, "gamma": 0.1},
    "multistep": {"milestones": [5, 8], "gamma": 0.1},
    "exponential": {"gamma": 0.9},
    "cosine": {"t_max": None, "eta_min": 0.0},  # t_max None: the number of epochs
    "plateau": {"factor": 0.1, "patience": 2},
    # Linear warm-up from start_factor x lr to lr over the first `warmup` of the steps, then
    # linear decay to end_factor x lr at the last step.
    "onecycle": {"warmup": 0.2, "start_factor": 0.1, "end_factor": 0.0},
}
PER_STEP_SCHEDULERS = ("onecycle",)   # the others step once per epoch
TTA_MODES = ("none", "flip", "shift")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
COMPILE_MODES = ("auto", "on", "off")


@dataclass
class TrainConfig:
    dataset: str = "shapes"
    data_root: str | None = None
    subset_train: int | None = None      # None: all training images (the validation set included)
    subset_test: int | None = None
    val_fraction: float = 0.1            # of the training images, held out for validation
    train_fraction: float = 1.0          # learn from this share of the training images (a learning curve)
    data_seed: int = 0                   # picks the subsets and the validation images
    image_size: int | None = None        # None: the dataset's own size
    model: str = "cnn"
    use_recipe: bool = True              # a model with a recipe (recipes.py) brings its settings
    model_options: dict = field(default_factory=dict)
    pretrained: bool = False
    epochs: int = 5
    budget_seconds: float | None = None  # train this long instead of `epochs` (see _plan_steps)
    batch_size: int = 64
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9                # SGD and RMSprop
    weight_decay: float = 0.0            # L2
    l1: float = 0.0
    label_smoothing: float = 0.0         # this share of each target is spread over all classes
    scheduler: str = "none"
    scheduler_options: dict = field(default_factory=dict)
    early_stopping_patience: int = 0     # 0: off
    early_stopping_min_delta: float = 0.0
    restore_best: bool = True            # keep the epoch with the lowest validation loss
    freeze_epochs: int = 0               # pretrained only: train just the head for this many epochs
    unfreeze_lr: float | None = None     # lr after unfreezing; None: lr / 10
    permute_pixels: bool = False
    permutation_seed: int = 0
    augment: str | list = "none"         # a preset name or a spec (list of ops)
    tta: str = "none"                    # test-time augmentation: average over flips or shifts
    seed: int = 0                        # the model's initial weights, batch order, augmentation
    device: str = "auto"
    precision: str = "auto"              # autocast: auto = bf16 (else fp16) on CUDA, fp32 elsewhere
    compile: str = "auto"                # torch.compile: auto = on CUDA, when the run is long enough
    record_internals: bool = True        # each epoch's weights, activations, gradient norms (internals.py)
    out: str | None = None               # checkpoint path; None: a new file under checkpoints/runs/
    resume: str | None = None            # continue the run saved in this checkpoint (resume.py)

    def __post_init__(self):
        # A model with a recipe (recipes.py: speedrun) trains best with its own settings: they fill
        # every field still at its default, so whatever was set explicitly wins. Applying them
        # again changes nothing, so a config read back from JSON or a command line is the same.
        if self.use_recipe:
            defaults = _field_defaults()
            for name, value in recipe_settings(self.model, self.dataset, self.permute_pixels).items():
                if getattr(self, name) == defaults[name]:
                    setattr(self, name, copy.deepcopy(value))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(text("training.unknown_options", names=", ".join(unknown)))
        return cls(**d)

    @classmethod
    def from_json(cls, s: str) -> "TrainConfig":
        return cls.from_dict(json.loads(s))

    def augment_spec(self, image_size: int) -> list[dict]:
        if isinstance(self.augment, str):
            return preset(self.augment, image_size)
        return validate_spec(self.augment)

    def scheduler_params(self) -> dict:
        return {**SCHEDULER_DEFAULTS.get(self.scheduler, {}), **self.scheduler_options}

    def validate(self) -> None:
        """Raise ValueError with one plain sentence for the first thing that is wrong."""
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(text("training.bad_epochs", value=self.epochs))
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(text("training.bad_batch_size", value=self.batch_size))
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(text("training.bad_lr", value=self.lr))
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(text("training.unknown_optimizer", name=self.optimizer, choices=", ".join(OPTIMIZERS)))
        if self.scheduler not in SCHEDULERS:
            raise ValueError(text("training.unknown_scheduler", name=self.scheduler, choices=", ".join(SCHEDULERS)))
        for name in ("weight_decay", "l1", "early_stopping_min_delta"):
            if getattr(self, name) < 0:
                raise ValueError(text("training.negative", name=name, value=getattr(self, name)))
        if self.early_stopping_patience < 0:
            raise ValueError(text("training.negative_patience"))
        if not (isinstance(self.val_fraction, (int, float)) and 0 <= self.val_fraction <= 0.5):
            raise ValueError(text("training.bad_val_fraction", value=self.val_fraction))
        if not (isinstance(self.train_fraction, (int, float)) and 0 < self.train_fraction <= 1):
            raise ValueError(text("training.bad_train_fraction", value=self.train_fraction))
        if self.val_fraction == 0 and (self.early_stopping_patience or self.scheduler == "plateau"):
            raise ValueError(text("training.needs_val.early_stopping" if self.early_stopping_patience
                                  else "training.needs_val.plateau"))
        if self.scheduler == "multistep" and self.budget_seconds is None:
            late = [m for m in self.scheduler_params()["milestones"] if m >= self.epochs]
            if late:
                raise ValueError(text("training.late_milestone", milestone=late[0], epochs=self.epochs))
        if self.freeze_epochs:
            if not self.pretrained:
                raise ValueError(text("training.freeze_needs_pretrained"))
            if self.freeze_epochs < 0 or (self.budget_seconds is None and self.freeze_epochs >= self.epochs):
                raise ValueError(text("training.freeze_too_long", freeze=self.freeze_epochs, epochs=self.epochs))
        dropout = (self.model_options or {}).get("dropout", 0.0)
        if not (isinstance(dropout, (int, float)) and 0 <= dropout < 1):  # Dropout(1) zeroes all
            raise ValueError(text("train.dropout_range", value=dropout))
        if isinstance(self.augment, list):
            validate_spec(self.augment)
        self._validate_new_options()
        if self.resume:
            resume.check(self)

    def _validate_new_options(self) -> None:
        """The options of fast training: time budget, label smoothing, TTA, precision, compile."""
        if not (isinstance(self.label_smoothing, (int, float)) and 0 <= self.label_smoothing < 1):
            raise ValueError(text("training.bad_label_smoothing", value=self.label_smoothing))
        budget = self.budget_seconds
        if budget is not None and not (isinstance(budget, (int, float)) and math.isfinite(budget) and budget > 0):
            raise ValueError(text("training.bad_budget", value=budget))
        if budget is not None and self.scheduler == "cosine" and not self.scheduler_params()["t_max"]:
            raise ValueError(text("training.budget_cosine"))
        if self.tta not in TTA_MODES:
            raise ValueError(text("training.unknown_tta", name=self.tta, choices=", ".join(TTA_MODES)))
        if self.tta != "none" and self.permute_pixels:
            raise ValueError(text("training.tta_permuted"))
        if self.precision not in PRECISIONS:
            raise ValueError(text("training.unknown_precision", name=self.precision, choices=", ".join(PRECISIONS)))
        if self.compile not in COMPILE_MODES:
            raise ValueError(text("training.unknown_compile", choices=", ".join(COMPILE_MODES), value=self.compile))


def _field_defaults() -> dict:
    """Each TrainConfig field's default value (a fresh copy of the mutable ones)."""
    return {f.name: f.default_factory() if f.default is dataclasses.MISSING else f.default
            for f in dataclasses.fields(TrainConfig)}


def load_data(config: TrainConfig, fit_subsets: bool = False) -> ImageData:
    """The data a config trains on. The app, the CLI and the tests all build it here, so one
    config gives one result everywhere (the app keeps a few in memory, keyed by `data_key`).
    `fit_subsets`: a subset larger than its split takes all of it (see lessons.fit_plan)."""
    folder = config.dataset.startswith(FOLDER_PREFIX)
    return load_dataset(config.dataset, data_root=config.data_root, subset_train=config.subset_train,
                        subset_test=config.subset_test, seed=config.data_seed,
                        val_fraction=config.val_fraction, fit_subsets=fit_subsets,
                        image_size=config.image_size if folder else None)


def data_key(config: TrainConfig) -> tuple:
    """What `load_data` depends on: two configs with the same key train on the same images."""
    return (config.dataset, config.data_root, config.subset_train, config.subset_test,
            config.val_fraction, config.data_seed,
            config.image_size if config.dataset.startswith(FOLDER_PREFIX) else None)


# ---- events -------------------------------------------------------------------------------------

@dataclass
class BatchEnd:
    step: int               # 1-based, counted over the whole run
    epoch: int              # 1-based
    loss: float
    lr: float
    images_per_sec: float   # this epoch so far
    total_steps: int
    event: str = "batch"


@dataclass
class EpochEnd:
    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float | None  # None without a validation set (val_fraction 0)
    val_acc: float | None
    lr: float
    images: int             # training images seen this epoch (all processes together)
    seconds: float
    # Inside the network (internals.py): per layer, weight and activation percentiles and
    # histograms and the gradient norm. None when not recorded (or a replay from before them).
    internals: dict | None = None
    event: str = "epoch"


@dataclass
class Status:
    message: str            # a Text: English, and the app says it in the visitor's language
    event: str = "status"


@dataclass
class RunEnd:
    reason: str              # completed | early_stopped | stopped | diverged | failed
    message: str
    best_epoch: int | None   # lowest validation loss
    history: list[dict]
    checkpoint: str | None   # path of the saved checkpoint (None if no epoch completed)
    # The test set, evaluated once on the kept model: test_loss, test_acc, per_class_acc,
    # confusion (and most_confused). Empty when the run did not reach its end.
    metrics: dict
    event: str = "done"


def event_to_dict(ev) -> dict:
    return dataclasses.asdict(ev)


# ---- evaluation ---------------------------------------------------------------------------------

@dataclass
class EvalResult:
    loss: float
    acc: float
    confusion: list[list[int]]     # rows: true class, columns: predicted
    per_class_acc: list[float]
    most_confused: list[dict]      # the most confidently wrong: index, true, predicted, prob

    def to_dict(self) -> dict:
        return {"test_loss": self.loss, "test_acc": self.acc, "per_class_acc": self.per_class_acc,
                "confusion": self.confusion}


def evaluate(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
             prep: Preprocessing, num_classes: int, batch_size: int = 500, device="cpu",
             worst_k: int = 16, stop: threading.Event | None = None,
             tta: str = "none") -> EvalResult | None:
    """Loss, accuracy, confusion matrix and most confidently wrong examples on uint8 images.

    `tta` averages the logits over test-time views of each image (see `tta_logits`). Returns None
    if `stop` is set midway, so a Stop press never waits for a whole test pass.
    """
    model.eval()
    total_loss, confusion = 0.0, torch.zeros(num_classes, num_classes, dtype=torch.long)
    wrong_prob, wrong_idx, wrong_pred = [], [], []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            if stop is not None and stop.is_set():
                return None
            # The uint8 images move (4x smaller than floats), then are normalised where they land.
            x = normalize_on_device(prep, images[start:start + batch_size].to(device).float())
            y = labels[start:start + batch_size].to(device)
            logits = tta_logits(model, x, tta)
            total_loss += F.cross_entropy(logits, y, reduction="sum").item()
            prob, pred = logits.softmax(1).max(1)
            y, pred, prob = y.cpu(), pred.cpu(), prob.cpu()
            confusion += torch.bincount(y * num_classes + pred, minlength=num_classes ** 2
                                        ).view(num_classes, num_classes)
            wrong = pred != y
            wrong_prob.append(prob[wrong])
            wrong_pred.append(pred[wrong])
            wrong_idx.append(torch.nonzero(wrong).flatten() + start)
    n = max(len(images), 1)
    correct = confusion.diag()
    per_class = (correct.float() / confusion.sum(1).clamp(min=1)).tolist()
    most_confused = []
    if wrong_prob:
        probs, preds, idxs = torch.cat(wrong_prob), torch.cat(wrong_pred), torch.cat(wrong_idx)
        for j in probs.argsort(descending=True)[:worst_k].tolist():
            i = int(idxs[j])
            most_confused.append({"index": i, "true": int(labels[i]), "predicted": int(preds[j]),
                                  "prob": float(probs[j])})
    return EvalResult(loss=total_loss / n, acc=correct.sum().item() / n,
                      confusion=confusion.tolist(), per_class_acc=per_class,
                      most_confused=most_confused)


def tta_logits(model: torch.nn.Module, x: torch.Tensor, tta: str = "none") -> torch.Tensor:
    """The model's logits, averaged over test-time views of each image: with "flip" the image
    and its mirror image; with "shift" the image (half the weight) and the image moved one pixel
    diagonally each way (a quarter each), as airbench does. torch.roll brings the row and column
    that leave one side back on the other: at one pixel, on images with plain borders, that
    changes nothing that matters."""
    logits = model(x)
    if tta == "flip":
        return (logits + model(x.flip(-1))) / 2
    if tta == "shift":
        moved = [model(torch.roll(x, shifts=(d, d), dims=(-2, -1))) for d in (1, -1)]
        return 0.5 * logits + 0.25 * (moved[0] + moved[1])
    return logits


def normalize_on_device(prep: Preprocessing, x: torch.Tensor) -> torch.Tensor:
    """`prep.normalize_pixels_(x)` on whatever device x is on. Preprocessing makes its few
    constants with torch.tensor(), which puts them on the CPU; a device context puts them beside
    x instead (a CPU batch takes exactly the usual path)."""
    if x.device.type == "cpu":
        return prep.normalize_pixels_(x)
    if prep.permutation_seed is not None:
        prep.permute(torch.zeros(1, 1, prep.image_size, prep.image_size))  # made and cached on the CPU
    with torch.device(x.device):
        return prep.normalize_pixels_(x)


# ---- the pieces of a run ------------------------------------------------------------------------

def pick_device(name: str = "auto") -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def make_optimizer(config: TrainConfig, params, lr: float) -> torch.optim.Optimizer:
    wd = config.weight_decay
    params = list(params)
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=config.momentum, weight_decay=wd)
    # PyTorch's default Adam on CPU updates one tensor at a time in several passes; the fused
    # kernel does one pass and makes the step about 4x cheaper (benchmarks/floor.py).
    fused = all(p.device.type in ("cpu", "cuda") for p in params)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd, fused=fused)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd, fused=fused)
    return torch.optim.RMSprop(params, lr=lr, momentum=config.momentum, weight_decay=wd)


def one_cycle_factor(step: int, total_steps: int, warmup: float, start_factor: float,
                     end_factor: float) -> float:
    """The lr multiplier of the onecycle schedule at `step` (0-based) of `total_steps`: a straight
    line up from start_factor to 1 over the first `warmup` of the steps, then a straight line
    down to end_factor at the last step."""
    peak = max(1.0, warmup * total_steps)
    if step < peak:
        return start_factor + (1 - start_factor) * step / peak
    return 1 + (end_factor - 1) * min(1.0, (step - peak) / max(1.0, total_steps - peak))


def make_scheduler(config: TrainConfig, optimizer, epochs: int,
                   total_steps: Callable[[], int] | None = None):
    """Every scheduler but onecycle steps once per epoch; `plateau` watches the validation loss.
    onecycle steps once per batch over `total_steps()` steps, asked afresh at each step: a
    time-budgeted run re-plans it as it goes."""
    p = config.scheduler_params()
    s = torch.optim.lr_scheduler
    if config.scheduler == "onecycle":
        steps = total_steps or (lambda: epochs)
        return s.LambdaLR(optimizer, lambda i: one_cycle_factor(
            i, steps(), float(p["warmup"]), float(p["start_factor"]), float(p["end_factor"])))
    if config.scheduler == "step":
        return s.StepLR(optimizer, step_size=int(p["step_size"]), gamma=float(p["gamma"]))
    if config.scheduler == "multistep":
        return s.MultiStepLR(optimizer, milestones=[int(m) for m in p["milestones"]], gamma=float(p["gamma"]))
    if config.scheduler == "exponential":
        return s.ExponentialLR(optimizer, gamma=float(p["gamma"]))
    if config.scheduler == "cosine":
        return s.CosineAnnealingLR(optimizer, T_max=int(p["t_max"] or epochs), eta_min=float(p["eta_min"]))
    if config.scheduler == "plateau":
        return s.ReduceLROnPlateau(optimizer, factor=float(p["factor"]), patience=int(p["patience"]))
    return None


def default_run_path(config: TrainConfig, folder=None) -> Path:
    """A new file name for a run: <folder>/<model>_<dataset>_<time>.safetensors, where folder
    defaults to <checkpoints>/runs."""
    dataset = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(config.dataset.removeprefix(FOLDER_PREFIX)).stem)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = Path(folder) if folder is not None else default_checkpoint_dir() / "runs"
    base = folder / f"{config.model}_{dataset}_{stamp}"
    path, n = base.with_suffix(".safetensors"), 1
    while path.exists():
        n += 1
        path = Path(f"{base}-{n}.safetensors")
    return path


def checkpoint_metadata(config: TrainConfig, data: ImageData, prep: Preprocessing,
                        history: list[dict], metrics: dict) -> dict:
    return {
        "model": config.model, "model_options": config.model_options, "classes": data.classes,
        "channels": prep.channels, "image_size": prep.image_size, "mean": list(prep.mean),
        "std": list(prep.std), "permutation_seed": prep.permutation_seed, "dataset": data.name,
        "config": config.to_dict(), "history": history, "metrics": metrics,
    }


# Training augments and normalises a "chunk" of several batches at once, then slices batches out
# of it: each augmentation op has a fixed cost per call (dispatch, and on several threads an OpenMP
# fork/join) that 64 CIFAR-sized images do not amortise. Bigger chunks stop paying once an op's
# tensors fall out of the CPU caches: on a 2-core machine the mlp trained at 0.65, 0.70, 0.78 and
# 0.68 of its compute floor with chunks of 64, 128, 256 and 512 CIFAR images, so the cap is 256 of
# them (3 MB of float pixels). A batch larger than the cap (224 px images) is augmented on its own.
AUGMENT_CHUNK_BYTES = 3 * 2**20


def augment_chunk_size(batch_size: int, channels: int, image_size: int,
                       max_bytes: int = AUGMENT_CHUNK_BYTES) -> int:
    """Images augmented at once: the most whole batches whose float32 pixels fit in
    `max_bytes`, and at least one batch."""
    batch_bytes = batch_size * channels * image_size * image_size * 4
    return batch_size * max(1, max_bytes // batch_bytes)


def batch_bounds(n: int, batch_size: int, smallest_last: int = 2) -> list[tuple[int, int]]:
    """(start, end) of each batch of an epoch of n images. A last batch of fewer than
    `smallest_last` images joins the batch before it: BatchNorm cannot compute a batch's spread
    from a single image (a distributed run asks for 2 per process)."""
    starts = list(range(0, n, batch_size))
    if len(starts) > 1 and n - starts[-1] < smallest_last:
        starts.pop()
    return list(zip(starts, starts[1:] + [n]))


def training_batches(images: torch.Tensor, labels: torch.Tensor, order: torch.Tensor, batch_size: int,
                     chunk_size: int, augment: BatchAugmenter, prep: Preprocessing,
                     generator: torch.Generator, bounds: list[tuple[int, int]] | None = None,
                     ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(x, y) batches in `order`: augmented, normalised, ready for the model.

    A chunk of about `chunk_size` images (whole batches) is augmented at once; every image still
    gets its own random parameters, drawn from `generator`, so a given generator state always
    gives the same batches. (ColorJitter's order of adjustments, drawn once per BatchAugmenter
    call, is shared by a chunk instead of a batch; see BatchAugmenter.) The augmentation runs on
    the generator's device: on a GPU, only uint8 pixels ever cross to it. `bounds` are the
    batches' (start, end) in `order` (default: `batch_bounds`).
    """
    bounds = bounds if bounds is not None else batch_bounds(len(order), batch_size)
    per_chunk = max(1, chunk_size // batch_size)
    for first in range(0, len(bounds), per_chunk):
        chunk = bounds[first:first + per_chunk]
        offset = chunk[0][0]
        idx = order[offset:chunk[-1][1]].to(images.device)
        # index_select copies whole images; images[idx] would gather element by element (~10x slower).
        pixels = images.index_select(0, idx)
        if pixels.device != generator.device:  # images too many for the GPU: this chunk crosses
            pixels = pixels.pin_memory().to(generator.device, non_blocking=True)
        x = normalize_on_device(prep, augment.pixels(pixels, generator))
        y = labels.index_select(0, idx)
        for start, end in chunk:
            yield x[start - offset:end - offset], y[start - offset:end - offset]


def _current_lr(optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


class _EndEarly(Exception):
    """A run ends before its last epoch: stopped or diverged (reason, message)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


# A run times its steps, leaving out the first one (it pays for one-off allocations). Once
# PLAN_AFTER_STEPS are timed, a time-budgeted run plans how many steps fit, and plans again every
# REPLAN_EVERY steps and after each epoch, so a machine that slows down or speeds up still ends
# on time. Before the first epoch has measured its validation, that is guessed: evaluating an
# image (forward only, no augmentation) costs about EVAL_COST_RATIO of training on it.
PLAN_AFTER_STEPS = 5
REPLAN_EVERY = 10
EVAL_COST_RATIO = 1 / 3
# torch.compile "auto" pays for its minute or so of compiling only in a long run: it is switched
# on, for a CUDA run, when the speed of the first steps leaves at least this much training.
COMPILE_PAYS_AFTER_SECONDS = 300.0


@dataclass
class _Run:
    """What one training run works with, and what it has kept so far."""
    config: TrainConfig
    data: ImageData
    device: torch.device
    prep: Preprocessing
    augment: BatchAugmenter
    model: torch.nn.Module
    batch_size: int
    out: Path
    group: distributed.Group | None = None       # None: a single process
    channels_last: bool = False                   # the model's convolutions are channels-last
    train_model: torch.nn.Module | None = None    # what the steps call: the model, DDP-wrapped or compiled
    images: dict = field(default_factory=dict)    # split -> (images, labels) where the run uses them
    autocast_dtype: torch.dtype | None = None     # None: float32 throughout
    scaler: object = None                         # float16 autocast's GradScaler
    optimizer: torch.optim.Optimizer | None = None
    scheduler: object = None
    step: int = 0
    total_steps: int = 0                          # planned; a time budget re-plans it
    budget_end: float | None = None               # time.perf_counter() when the budget runs out
    planned: bool = False                         # the budget's first plan is made
    compiled: bool = False
    untimed_steps: int = 1                        # steps still to leave out of the timing
    step_seconds: float = 0.0                     # time of the timed steps, all together
    timed_steps: int = 0
    epoch_end_seconds: float = 0.0                # validation and checkpoints, all epochs together
    epochs_ended: int = 0
    history: list[dict] = field(default_factory=list)
    best_epoch: int | None = None
    best_loss: float = math.inf
    best_state: dict | None = None
    checkpoint: Path | None = None
    internals: InternalsRecorder | None = None   # None: config.record_internals is off
    order_gen: torch.Generator | None = None     # the batch order's random numbers
    augment_gen: torch.Generator | None = None   # augmentation's
    last_state: dict | None = None                # the last epoch's weights, once the best are put back

    @property
    def is_main(self) -> bool:
        return self.group is None or self.group.is_main

    @property
    def smallest_last(self) -> int:
        """The smallest last batch (see batch_bounds): two images for each process."""
        return 2 * (self.group.world_size if self.group else 1)

    @property
    def steps_per_epoch(self) -> int:
        return len(batch_bounds(len(self.data.train_images), self.batch_size, self.smallest_last))

    def schedule_steps(self) -> float:
        """The steps a per-step schedule spans. Until a time-budgeted run is planned they are
        unknown (infinite), which holds the lr at the warm-up's start for the steps being timed."""
        return math.inf if self.budget_end is not None and not self.planned else self.total_steps

    def save(self, metrics: dict) -> None:
        # Every process of a distributed run holds the same weights; rank 0 writes them.
        if not self.is_main:
            self.checkpoint = self.out
            return
        # The training state rides along, so the run can be continued (resume.py).
        tensors, state = resume.state_of(self)
        self.checkpoint = save_checkpoint(self.out, self.model, {**checkpoint_metadata(
            self.config, self.data, self.prep, self.history, metrics), "training_state": state}, tensors)


def _set_up(config: TrainConfig, data: ImageData) -> Iterator[Status]:
    """Build the model, its preprocessing and optimizer; yields what it says, returns a _Run."""
    n_train = len(data.train_images)
    if n_train < 2:
        raise ValueError(text("training.too_few_images", name=data.name, count=n_train))
    if not data.has_validation and (config.early_stopping_patience or config.scheduler == "plateau"):
        raise ValueError(text("training.no_validation_images"))
    group = distributed.current()
    device = _device_for(config, group)
    image_size = config.image_size or data.image_size
    prep = Preprocessing(channels=data.channels, image_size=image_size, mean=tuple(data.mean),
                         std=tuple(data.std),
                         permutation_seed=config.permutation_seed if config.permute_pixels else None)
    model = create_model(config.model, num_classes=len(data.classes), in_channels=data.channels,
                         image_size=image_size, pretrained=config.pretrained, **config.model_options)
    model.to(device)
    channels_last = device.type in ("cpu", "cuda") and any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    if channels_last:
        # Convolutions in channels-last layout train ~1.3x and evaluate ~2x faster on CPU
        # (benchmarks/floor.py); inputs need no conversion, a conv follows its weight's layout.
        model.to(memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # batches keep one size: cuDNN times its kernels once
    run = _Run(config, data, device, prep, BatchAugmenter(config.augment_spec(data.image_size), data.image_size),
               model, batch_size=min(config.batch_size, n_train),
               out=Path(config.out) if config.out else default_run_path(config), group=group,
               channels_last=channels_last)
    if group is not None:
        _check_shares(run)
        run.out = Path(distributed.from_main(group, str(run.out)))  # one file, named by rank 0
    run.images = _place_data(data, device)
    run.autocast_dtype, run.scaler = _precision(config, device)
    n_val = len(data.val_images) if data.has_validation else 0
    yield Status(text("training.summary", model=config.model, parameters=count_parameters(model),
                      dataset=data.name, train=n_train, val=n_val, test=len(data.test_images),
                      classes=len(data.classes), device=device.type))
    recipe = _recipe_status(config)
    if recipe:
        yield Status(recipe)
    yield Status(_device_status(run))
    if run.batch_size < config.batch_size:
        yield Status(text("training.batch_lowered", batch_size=run.batch_size))
    if config.budget_seconds:
        yield Status(text("training.budget", budget=config.budget_seconds))
    if config.freeze_epochs:
        freeze_backbone(model)
        yield Status(text("training.frozen", epochs=config.freeze_epochs))
    run.optimizer = make_optimizer(config, [p for p in model.parameters() if p.requires_grad], config.lr)
    run.total_steps = run.steps_per_epoch * config.epochs  # a time budget plans it after a few steps
    run.scheduler = make_scheduler(config, run.optimizer, config.epochs, run.schedule_steps)
    run.compiled = config.compile == "on"
    run.train_model = _training_model(run)
    run.internals = InternalsRecorder(model) if config.record_internals else None
    return run


def _recipe_status(config: TrainConfig) -> Text | None:
    """What a model's recipe set (TrainConfig.__post_init__), so nobody wonders where it came from."""
    settings = recipe_settings(config.model, config.dataset, config.permute_pixels) if config.use_recipe else {}
    used = [f"{name.replace('_', ' ')} {value}" for name, value in settings.items()
            if getattr(config, name) == value]
    if not used:
        return None
    return text("training.recipe", model=config.model, settings=listing(*used))


# ---- where and how a run computes: device, precision, data placement, processes ----------------

def _device_for(config: TrainConfig, group: distributed.Group | None) -> torch.device:
    device = pick_device(config.device)
    if group is not None and device.type == "cuda":
        device = torch.device("cuda", group.local_rank)  # one GPU per process on each machine
    return device


def _check_shares(run: _Run) -> None:
    world = run.group.world_size
    if run.batch_size < 2 * world:
        raise ValueError(text("training.batch_too_small_to_share", batch_size=run.batch_size, world=world,
                              minimum=2 * world))


def _place_data(data: ImageData, device: torch.device) -> dict:
    """Each split's (images, labels) where the run uses them. On a CUDA GPU they move there once,
    as uint8 and through pinned memory, if they take under half its free memory (else they stay
    in CPU memory and each chunk of batches crosses when it is augmented, on the GPU)."""
    splits = {"train": (data.train_images, data.train_labels), "val": (data.val_images, data.val_labels),
              "test": (data.test_images, data.test_labels)}
    if device.type != "cuda":
        return splits
    tensors = [t for pair in splits.values() for t in pair if t is not None]
    if sum(t.nbytes for t in tensors) > torch.cuda.mem_get_info(device)[0] / 2:
        return splits
    return {name: tuple(None if t is None else t.pin_memory().to(device, non_blocking=True) for t in pair)
            for name, pair in splits.items()}


def _precision(config: TrainConfig, device: torch.device) -> tuple[torch.dtype | None, object]:
    """The autocast dtype (None: float32 throughout) and, for float16, the GradScaler that keeps
    its small gradients from rounding to zero. "auto" is bfloat16 on a GPU that has it (float16 on
    older ones) and float32 elsewhere: on most CPUs bfloat16 is slower, not faster."""
    name = config.precision
    if name == "auto":
        name = "fp32" if device.type != "cuda" else "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if name == "fp32":
        return None, None
    if name == "fp16":
        if device.type != "cuda":
            raise ValueError(text("training.fp16_needs_cuda", device=device.type))
        return torch.float16, torch.amp.GradScaler("cuda")
    return torch.bfloat16, None


def _training_model(run: _Run) -> torch.nn.Module:
    """What the training steps call: the model itself, or in a distributed run DDP's wrapper
    around it; compiled if `run.compiled`. Evaluation and checkpoints use the model itself."""
    model = distributed.wrap(run.model, run.group) if run.group else run.model
    return torch.compile(model) if run.compiled else model


def _device_status(run: _Run) -> Text:
    """One line on where and how the run computes: device, precision, layout, data, processes."""
    device, parts = run.device, []
    if device.type == "cuda":
        on_gpu = run.images["train"][0].is_cuda
        parts += [text("training.device.gpu", device=str(device), name=torch.cuda.get_device_name(device)),
                  text("training.device.images_on_gpu") if on_gpu else text("training.device.images_in_cpu")]
    elif device.type == "cpu":
        threads = torch.get_num_threads()
        parts.append(text("training.device.cpu_one_thread", device=device.type) if threads == 1 else
                     text("training.device.cpu", device=device.type, threads=threads))
    else:
        parts.append(text("training.device.other", device=device.type))
    parts.append({None: text("training.device.float32"), torch.bfloat16: text("training.device.bfloat16"),
                  torch.float16: text("training.device.float16")}[run.autocast_dtype])
    if run.channels_last:
        parts.append("channels_last")
    if run.compiled:
        parts.append("torch.compile")
    if run.group:
        parts.append(text("training.device.distributed", world=run.group.world_size,
                          backend=torch.distributed.get_backend(), batch_size=run.batch_size))
    return text("training.device.line", parts=listing(*parts))


def _augment_generator(run: _Run) -> torch.Generator:
    """Augmentation's random numbers, drawn where it runs (on the GPU for a CUDA run). The
    processes of a distributed run augment different images, so each has its own stream."""
    device = run.device if run.device.type == "cuda" else torch.device("cpu")
    rank = run.group.rank if run.group else 0
    return torch.Generator(device=device).manual_seed(run.config.seed + 1 + 1000 * rank)


# ---- one epoch of training ----------------------------------------------------------------------

def _unfreeze_if_due(run: _Run, epoch: int) -> Iterator[Status]:
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
            run.train_model = _training_model(run)  # DDP keeps in step only what trained when wrapped
        yield Status(text("training.unfrozen", lr=lr))


def _epoch_batches(run: _Run, order_gen: torch.Generator,
                   augment_gen: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """This epoch's batches, in a new random order; in a distributed run, this process's share of
    each (every process draws the same order)."""
    images, labels = run.images["train"]
    order = torch.randperm(len(images), generator=order_gen)
    bounds = batch_bounds(len(order), run.batch_size, run.smallest_last)
    batch_size = run.batch_size
    if run.group:
        order, bounds = distributed.shard_batches(order, bounds, run.group)
        batch_size = math.ceil(batch_size / run.group.world_size)
    chunk = augment_chunk_size(batch_size, run.data.channels, max(run.data.image_size, run.prep.image_size))
    return training_batches(images, labels, order, batch_size, chunk, run.augment, run.prep,
                            augment_gen, bounds)


def _train_one_epoch(run: _Run, epoch: int, order_gen: torch.Generator, augment_gen: torch.Generator,
                     stop: threading.Event) -> Iterator[BatchEnd | Status]:
    """One pass over the training images, a BatchEnd per step (a time budget may end the last
    pass early); returns (mean loss, accuracy, images seen)."""
    config = run.config
    run.train_model.train()
    t0 = last = time.perf_counter()
    loss_sum, correct, seen = 0.0, 0, 0
    for x, y in _epoch_batches(run, order_gen, augment_gen):
        if run.step >= run.total_steps:
            break
        if run.group is None and stop.is_set():
            raise _EndEarly(reason="stopped", message=_stopped_message(run.history))
        x, y = x.to(run.device, non_blocking=True), y.to(run.device, non_blocking=True)
        logits, loss = forward_loss(run, x, y)
        loss_value, batch_correct, batch_images = _batch_totals(run, loss, logits, y, stop)
        run.step += 1
        if not math.isfinite(loss_value):
            lr = _current_lr(run.optimizer)
            raise _EndEarly(reason="diverged", message=text("training.diverged", loss=str(loss_value),
                                                            step=run.step, epoch=epoch, lr=lr, lower=lr / 10))
        _backward_and_step(run, loss)
        lr = _current_lr(run.optimizer)
        if config.scheduler in PER_STEP_SCHEDULERS:
            run.scheduler.step()
        loss_sum += loss_value * batch_images
        correct += batch_correct
        seen += batch_images
        last = _time_step(run, last)
        yield BatchEnd(step=run.step, epoch=epoch, loss=loss_value, lr=lr,
                       images_per_sec=seen / max(time.perf_counter() - t0, 1e-9),
                       total_steps=run.total_steps)
        if _plan_due(run):
            yield from _plan(run)
    return loss_sum / max(seen, 1), correct / max(seen, 1), seen


def forward_loss(run: _Run, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One training batch forward: the logits and the loss the run minimises (label smoothing and
    the L1 penalty included), in the run's layout and precision; x and y are on its device."""
    config = run.config
    if run.channels_last and run.device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)  # cuDNN's fast kernels want NHWC
    with _autocast(run):
        logits = run.train_model(x)
        loss = F.cross_entropy(logits, y, label_smoothing=config.label_smoothing)
        if config.l1:
            loss = loss + config.l1 * sum(p.abs().sum() for p in run.model.parameters() if p.requires_grad)
    return logits, loss


def _autocast(run: _Run):
    if run.autocast_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=run.device.type, dtype=run.autocast_dtype)


def _batch_totals(run: _Run, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor,
                  stop: threading.Event) -> tuple[float, int, int]:
    """The step's loss, correct predictions and images. In a distributed run they are added up
    over the processes, with each one's Stop: all stop at the same step if any one was asked to."""
    loss_value, correct, n = loss.item(), (logits.argmax(1) == y).sum().item(), len(y)
    if run.group is None:
        return loss_value, correct, n
    loss_sum, correct, n, stops = distributed.sum_across(
        run.group, [loss_value * n, correct, n, float(stop.is_set())])
    if stops:
        raise _EndEarly(reason="stopped", message=_stopped_message(run.history))
    return loss_sum / n, int(correct), int(n)


def _backward_and_step(run: _Run, loss: torch.Tensor) -> None:
    run.optimizer.zero_grad(set_to_none=True)
    if run.scaler is None:
        loss.backward()
        if run.internals is not None:
            run.internals.after_backward()
        run.optimizer.step()
    else:
        # float16 gradients would round to zero: scale the loss up, and the gradients back down
        # before the step (skipped, with a smaller scale next time, if any overflowed).
        run.scaler.scale(loss).backward()
        if run.internals is not None:
            run.internals.after_backward(scale=run.scaler.get_scale)
        run.scaler.step(run.optimizer)
        run.scaler.update()


# ---- a time budget: timing the steps, planning how many fit ------------------------------------

def _time_step(run: _Run, last: float) -> float:
    """Add the step that just ended (since `last`) to the timing, unless it is one to leave out."""
    now = time.perf_counter()
    if run.untimed_steps:
        run.untimed_steps -= 1
    else:
        run.step_seconds += now - last
        run.timed_steps += 1
    return now


def _plan_due(run: _Run) -> bool:
    """Whether to plan after this step: every process of a distributed run decides the same."""
    may_compile = run.config.compile == "auto" and run.device.type == "cuda" and not run.compiled
    if run.budget_end is None and not may_compile:
        return False
    return run.timed_steps == PLAN_AFTER_STEPS or (
        run.budget_end is not None and run.timed_steps > PLAN_AFTER_STEPS and run.step % REPLAN_EVERY == 0)


def _plan(run: _Run) -> Iterator[Status]:
    """Plan the rest of the run from the speed measured so far: with a time budget, the steps
    that fit; on CUDA with compile "auto", whether compiling will pay. Rank 0 decides for all."""
    seconds_per_step = run.step_seconds / max(run.timed_steps, 1)
    plan = [run.total_steps, False]
    if run.is_main:
        if run.budget_end is not None:
            plan[0] = _steps_that_fit(run, seconds_per_step)
        plan[1] = (run.config.compile == "auto" and run.device.type == "cuda" and not run.compiled and
                   (plan[0] - run.step) * seconds_per_step >= COMPILE_PAYS_AFTER_SECONDS)
    if run.group:
        plan = distributed.from_main(run.group, plan)
    run.total_steps = plan[0]
    first_plan = run.budget_end is not None and not run.planned
    if run.budget_end is not None:
        run.planned = True
        _refresh_per_step_lr(run)
    if first_plan:
        yield Status(text("training.planned", steps=run.total_steps,
                          epochs=run.total_steps / run.steps_per_epoch,
                          budget=run.config.budget_seconds, rate=1 / seconds_per_step))
    if plan[1]:
        run.compiled = True
        run.train_model = _training_model(run)
        # The compiling shows up in the next steps: time the compiled model afresh.
        run.untimed_steps, run.step_seconds, run.timed_steps = 1, 0.0, 0
        yield Status(text("training.compile_on"))


def _refresh_per_step_lr(run: _Run) -> None:
    """A per-step schedule set the coming step's lr when the last one ended; a new plan moves the
    schedule's end, so set that lr again from it."""
    s = run.scheduler
    if run.config.scheduler in PER_STEP_SCHEDULERS:
        for group, base, factor in zip(run.optimizer.param_groups, s.base_lrs, s.lr_lambdas):
            group["lr"] = base * factor(s.last_epoch)


def _steps_that_fit(run: _Run, seconds_per_step: float) -> int:
    """The steps a time-budgeted run can still take: each costs its measured time plus its share
    of an epoch's validation and checkpoint, and the last epoch's must fit too."""
    if run.epochs_ended:
        epoch_end = run.epoch_end_seconds / run.epochs_ended
    else:
        n_val = len(run.data.val_images) if run.data.has_validation else 0
        epoch_end = seconds_per_step * n_val / run.batch_size * EVAL_COST_RATIO
    left = run.budget_end - time.perf_counter() - epoch_end
    per_step = seconds_per_step + epoch_end / run.steps_per_epoch
    return run.step + max(0, int(left / per_step))


# ---- the end of an epoch, and of a run -----------------------------------------------------------

def _validate(run: _Run, stop: threading.Event) -> EvalResult | None:
    """The validation images (None without any); a Stop meanwhile ends the run."""
    if not run.data.has_validation:
        return None
    result = _evaluate(run, "val", stop, worst_k=0)
    if result is None:
        raise _EndEarly(reason="stopped", message=_stopped_message(run.history))
    return result


def _evaluate(run: _Run, split: str, stop: threading.Event | None = None,
              worst_k: int = 16) -> EvalResult | None:
    """`evaluate` on a split, with the run's test-time augmentation."""
    images, labels = run.images[split]
    if run.group is not None:
        return _evaluate_shared(run, images, labels, worst_k)
    return evaluate(run.model, images, labels, run.prep, len(run.data.classes), device=run.device,
                    stop=stop, worst_k=worst_k, tta=run.config.tta)


def _evaluate_shared(run: _Run, images: torch.Tensor, labels: torch.Tensor, worst_k: int) -> EvalResult:
    """`evaluate` in a distributed run: each process takes every W-th image and the sums make the
    split's figures. (A Stop waits for the next step: the processes must stay in step.)"""
    group = run.group
    distributed.share_buffers(run.model, group)
    mine = slice(group.rank, None, group.world_size)
    part = evaluate(run.model, images[mine], labels[mine], run.prep, len(run.data.classes),
                    device=run.device, worst_k=worst_k, tta=run.config.tta)
    n_mine = len(labels[mine])
    loss_sum, n = distributed.sum_across(group, [part.loss * n_mine, n_mine])
    confusion = distributed.sum_tensor(group, torch.tensor(part.confusion))
    # Image i of this process's share is image i * W + rank of the split.
    wrong = [{**w, "index": w["index"] * group.world_size + group.rank} for w in part.most_confused]
    wrong = sorted((w for share in distributed.gather(group, wrong) for w in share),
                   key=lambda w: -w["prob"])[:worst_k]
    correct = confusion.diag()
    return EvalResult(loss=loss_sum / max(n, 1), acc=correct.sum().item() / max(n, 1),
                      confusion=confusion.tolist(),
                      per_class_acc=(correct.float() / confusion.sum(1).clamp(min=1)).tolist(),
                      most_confused=wrong)


def _validate_and_watch(run: _Run, stop: threading.Event) -> tuple[EvalResult | None, dict | None]:
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


def _end_epoch(run: _Run, record: dict) -> None:
    """Remember the epoch, keep the best weights, save a checkpoint, step the scheduler."""
    config = run.config
    run.history.append(record)
    val_loss = record["val_loss"]
    if val_loss is None or val_loss < run.best_loss - config.early_stopping_min_delta:
        run.best_epoch, run.best_loss = record["epoch"], math.inf if val_loss is None else val_loss
        if config.restore_best and val_loss is not None:
            run.best_state = {k: v.detach().clone() for k, v in run.model.state_dict().items()}
    if isinstance(run.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        run.scheduler.step(val_loss)
    elif run.scheduler is not None and config.scheduler not in PER_STEP_SCHEDULERS:
        run.scheduler.step()
    # Every completed epoch is on disk, so a stop or a crash keeps it, ready for the next epoch.
    run.save({"val_loss": val_loss, "val_acc": record["val_acc"]})


def _after_epoch(run: _Run, trained_at: float) -> Iterator[Status]:
    """Time the epoch's validation and checkpoint; a time budget re-plans with it."""
    run.epoch_end_seconds += time.perf_counter() - trained_at
    run.epochs_ended += 1
    if run.budget_end is not None and run.timed_steps:
        yield from _plan(run)


def _test_once(run: _Run, reason: str, message: Text) -> RunEnd:
    """The end of a run that reached it: keep the best epoch (if asked), then look at the test
    set, once, and save the kept model with those figures."""
    if run.best_state is not None:
        run.last_state = {k: v.detach().clone() for k, v in run.model.state_dict().items()}
        run.model.load_state_dict(run.best_state)
    kept = run.best_epoch if run.best_state is not None else run.history[-1]["epoch"]
    result = _evaluate(run, "test")
    metrics = result.to_dict()
    run.save({**metrics, "kept_epoch": kept})
    message = text("training.kept_best" if run.best_state is not None else "training.kept_last",
                   ended=message, epoch=kept)
    return RunEnd(reason=reason, message=message, best_epoch=run.best_epoch, history=run.history,
                  checkpoint=str(run.checkpoint), metrics={**metrics, "most_confused": result.most_confused})


def _kept_as_saved(run: _Run | None, reason: str, message: Text) -> RunEnd:
    """The end of a run that stopped early: its checkpoint is the last completed epoch's, exactly
    as written (never half-trained weights), and the test set is not looked at."""
    return RunEnd(reason=reason, message=message, best_epoch=run.best_epoch if run else None,
                  history=run.history if run else [],
                  checkpoint=str(run.checkpoint) if run and run.checkpoint else None, metrics={})


def _completed_message(run: _Run, epochs: int) -> Text:
    if run.budget_end is None:
        return text("training.completed", epochs=epochs)
    last, total = run.history[-1]["images"], len(run.data.train_images)
    if last < total:
        return text("training.completed.budget_partial", budget=run.config.budget_seconds, epochs=epochs,
                    steps=run.step, last=last, total=total)
    return text("training.completed.budget", budget=run.config.budget_seconds, epochs=epochs, steps=run.step)


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
        run = yield from _set_up(config, data)
        order_gen = run.order_gen = torch.Generator().manual_seed(config.seed)
        augment_gen = run.augment_gen = _augment_generator(run)
        if config.budget_seconds:
            run.budget_end = time.perf_counter() + config.budget_seconds
        epoch = (yield from _continue(run)) if config.resume else 0
        while run.step < run.total_steps:
            epoch += 1
            yield from _unfreeze_if_due(run, epoch)
            t0 = time.perf_counter()
            train_loss, train_acc, images = yield from _train_one_epoch(run, epoch, order_gen, augment_gen, stop)
            trained_at = time.perf_counter()
            val, internals = _validate_and_watch(run, stop)
            record = {"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc,
                      "val_loss": val.loss if val else None, "val_acc": val.acc if val else None,
                      "lr": _current_lr(run.optimizer), "images": images,
                      "seconds": time.perf_counter() - t0}
            _end_epoch(run, record)
            yield EpochEnd(**record, internals=internals)
            yield from _after_epoch(run, trained_at)
            if config.early_stopping_patience and epoch - run.best_epoch >= config.early_stopping_patience:
                yield _test_once(run, "early_stopped",
                                 text("training.early_stopped", epochs=config.early_stopping_patience))
                return
        yield _test_once(run, "completed", _completed_message(run, epoch))
    except _EndEarly as end:
        yield _kept_as_saved(run, end.reason, end.message)
    except RuntimeError as error:
        if run is None or not is_out_of_memory(error):
            raise
        yield _kept_as_saved(run, "failed", _out_of_memory_message(run.batch_size, run.device))


def _continue(run: _Run) -> Iterator[Status]:
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
