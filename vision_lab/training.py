"""One training loop for the app, the CLI and the tests.

`train(config)` is a generator: it yields a `BatchEnd` after every step, an `EpochEnd` after every
epoch, `Status` messages, and finally a `RunEnd`. Consumers render; they never re-implement the loop.
Data stays in memory as uint8 tensors and is augmented several batches at a time (see transforms.py
and `training_batches`).

Three splits, as the course teaches them (datasets.ImageData): the model learns from the training
images; every choice made while training — the best epoch to keep, early stopping, the plateau
scheduler — looks at the validation images, held out from the training data; the test set is
evaluated once, at the end, on the model that is kept, so its figure is an honest estimate.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F

from .checkpoints import default_checkpoint_dir, save_checkpoint
from .datasets import FOLDER_PREFIX, ImageData, load_dataset
from .models import count_parameters, create_model, freeze_backbone, unfreeze_all
from .preprocessing import Preprocessing
from .transforms import BatchAugmenter, preset, validate_spec

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULERS = ("none", "step", "multistep", "exponential", "cosine", "plateau")
SCHEDULER_DEFAULTS = {
    "step": {"step_size": 5, "gamma": 0.1},
    "multistep": {"milestones": [5, 8], "gamma": 0.1},
    "exponential": {"gamma": 0.9},
    "cosine": {"t_max": None, "eta_min": 0.0},  # t_max None: the number of epochs
    "plateau": {"factor": 0.1, "patience": 2},
}


@dataclass
class TrainConfig:
    dataset: str = "shapes"
    data_root: str | None = None
    subset_train: int | None = None      # None: all training images (the validation set included)
    subset_test: int | None = None
    val_fraction: float = 0.1            # of the training images, held out for validation
    data_seed: int = 0                   # picks the subsets and the validation images
    image_size: int | None = None        # None: the dataset's own size
    model: str = "cnn"
    model_options: dict = field(default_factory=dict)
    pretrained: bool = False
    epochs: int = 5
    batch_size: int = 64
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9                # SGD and RMSprop
    weight_decay: float = 0.0            # L2
    l1: float = 0.0
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
    seed: int = 0                        # the model's initial weights, batch order, augmentation
    device: str = "auto"
    out: str | None = None               # checkpoint path; None: a new file under checkpoints/runs/

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"Unknown training option(s): {', '.join(unknown)}.")
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
            raise ValueError(f"epochs must be a whole number of at least 1, got {self.epochs}.")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {self.batch_size}.")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"learning rate must be a positive number, got {self.lr}.")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"Unknown optimizer '{self.optimizer}'. Choose one of: {', '.join(OPTIMIZERS)}.")
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"Unknown scheduler '{self.scheduler}'. Choose one of: {', '.join(SCHEDULERS)}.")
        for name in ("weight_decay", "l1", "early_stopping_min_delta"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} cannot be negative, got {getattr(self, name)}.")
        if self.early_stopping_patience < 0:
            raise ValueError("early stopping patience cannot be negative (0 turns it off).")
        if not (isinstance(self.val_fraction, (int, float)) and 0 <= self.val_fraction <= 0.5):
            raise ValueError(f"the validation fraction must be between 0 and 0.5, got {self.val_fraction}.")
        if self.val_fraction == 0 and (self.early_stopping_patience or self.scheduler == "plateau"):
            what = "early stopping" if self.early_stopping_patience else "the plateau scheduler"
            raise ValueError(f"{what} watches the validation loss, so it needs a validation set: "
                             f"set the validation fraction above 0 (e.g. 0.1).")
        if self.scheduler == "multistep":
            late = [m for m in self.scheduler_params()["milestones"] if m >= self.epochs]
            if late:
                raise ValueError(f"MultiStepLR milestone {late[0]} is not before the last epoch "
                                 f"({self.epochs}), so it would never change the lr.")
        if self.freeze_epochs:
            if not self.pretrained:
                raise ValueError("freeze epochs only make sense with pretrained weights: a randomly "
                                 "initialised backbone would stay random. Tick 'pretrained' or set "
                                 "freeze epochs to 0.")
            if not 0 < self.freeze_epochs < self.epochs:
                raise ValueError(f"freeze epochs ({self.freeze_epochs}) must be fewer than the "
                                 f"epochs ({self.epochs}) so the unfrozen model trains too.")
        if isinstance(self.augment, list):
            validate_spec(self.augment)


def load_data(config: TrainConfig) -> ImageData:
    """The data a config trains on. The app, the CLI and the tests all build it here, so one
    config gives one result everywhere (the app keeps a few in memory, keyed by `data_key`)."""
    folder = config.dataset.startswith(FOLDER_PREFIX)
    return load_dataset(config.dataset, data_root=config.data_root, subset_train=config.subset_train,
                        subset_test=config.subset_test, seed=config.data_seed,
                        val_fraction=config.val_fraction,
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
    seconds: float
    event: str = "epoch"


@dataclass
class Status:
    message: str
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
             worst_k: int = 16, stop: threading.Event | None = None) -> EvalResult | None:
    """Loss, accuracy, confusion matrix and most confidently wrong examples on uint8 images.

    Returns None if `stop` is set midway, so a Stop press never waits for a whole test pass.
    """
    model.eval()
    total_loss, confusion = 0.0, torch.zeros(num_classes, num_classes, dtype=torch.long)
    wrong_prob, wrong_idx, wrong_pred = [], [], []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            if stop is not None and stop.is_set():
                return None
            x = prep(images[start:start + batch_size]).to(device)
            y = labels[start:start + batch_size].to(device)
            logits = model(x)
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


def make_scheduler(config: TrainConfig, optimizer, epochs: int):
    """Every scheduler steps once per epoch; `plateau` watches the validation loss."""
    p = config.scheduler_params()
    s = torch.optim.lr_scheduler
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


def batch_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    """(start, end) of each batch of an epoch of n images. A last batch of one image joins the
    batch before it: BatchNorm cannot compute a batch's spread from a single image."""
    starts = list(range(0, n, batch_size))
    if len(starts) > 1 and n - starts[-1] == 1:
        starts.pop()
    return list(zip(starts, starts[1:] + [n]))


def training_batches(images: torch.Tensor, labels: torch.Tensor, order: torch.Tensor, batch_size: int,
                     chunk_size: int, augment: BatchAugmenter, prep: Preprocessing,
                     generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(x, y) batches in `order`: augmented, normalised, ready for the model.

    A chunk of about `chunk_size` images (whole batches) is augmented at once; every image still
    gets its own random parameters, drawn from `generator`, so a given generator state always
    gives the same batches. (ColorJitter's order of adjustments, drawn once per BatchAugmenter
    call, is shared by a chunk instead of a batch; see BatchAugmenter.)
    """
    bounds = batch_bounds(len(order), batch_size)
    per_chunk = max(1, chunk_size // batch_size)
    for first in range(0, len(bounds), per_chunk):
        chunk = bounds[first:first + per_chunk]
        offset = chunk[0][0]
        idx = order[offset:chunk[-1][1]]
        # index_select copies whole images; images[idx] would gather element by element (~10x slower).
        x = prep.normalize_pixels_(augment.pixels(images.index_select(0, idx), generator))
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
    optimizer: torch.optim.Optimizer | None = None
    scheduler: object = None
    step: int = 0
    history: list[dict] = field(default_factory=list)
    best_epoch: int | None = None
    best_loss: float = math.inf
    best_state: dict | None = None
    checkpoint: Path | None = None

    @property
    def steps_per_epoch(self) -> int:
        return len(batch_bounds(len(self.data.train_images), self.batch_size))

    def save(self, metrics: dict) -> None:
        self.checkpoint = save_checkpoint(self.out, self.model, checkpoint_metadata(
            self.config, self.data, self.prep, self.history, metrics))


def _set_up(config: TrainConfig, data: ImageData) -> Iterator[Status]:
    """Build the model, its preprocessing and optimizer; yields what it says, returns a _Run."""
    n_train = len(data.train_images)
    if n_train < 2:
        raise ValueError(f"{data.name} has {n_train} training image(s); training needs at least 2.")
    if not data.has_validation and (config.early_stopping_patience or config.scheduler == "plateau"):
        raise ValueError("Early stopping and the plateau scheduler watch the validation loss, but "
                         "this data has no validation images.")
    device = pick_device(config.device)
    image_size = config.image_size or data.image_size
    prep = Preprocessing(channels=data.channels, image_size=image_size, mean=tuple(data.mean),
                         std=tuple(data.std),
                         permutation_seed=config.permutation_seed if config.permute_pixels else None)
    model = create_model(config.model, num_classes=len(data.classes), in_channels=data.channels,
                         image_size=image_size, pretrained=config.pretrained, **config.model_options)
    model.to(device)
    if device.type in ("cpu", "cuda") and any(isinstance(m, torch.nn.Conv2d) for m in model.modules()):
        # Convolutions in channels-last layout train ~1.3x and evaluate ~2x faster on CPU
        # (benchmarks/floor.py); inputs need no conversion, a conv follows its weight's layout.
        model.to(memory_format=torch.channels_last)
    run = _Run(config, data, device, prep, BatchAugmenter(config.augment_spec(data.image_size), data.image_size),
               model, batch_size=min(config.batch_size, n_train),
               out=Path(config.out) if config.out else default_run_path(config))
    n_val = len(data.val_images) if data.has_validation else 0
    yield Status(f"{config.model}: {count_parameters(model):,} parameters; {data.name}: "
                 f"{n_train:,} training / {n_val:,} validation / {len(data.test_images):,} test "
                 f"images, {len(data.classes)} classes; device {device.type}.")
    if run.batch_size < config.batch_size:
        yield Status(f"Batch size lowered to {run.batch_size}, the size of the training set.")
    if config.freeze_epochs:
        freeze_backbone(model)
        yield Status(f"Backbone frozen: training only the classifier head for "
                     f"{config.freeze_epochs} epoch(s).")
    run.optimizer = make_optimizer(config, [p for p in model.parameters() if p.requires_grad], config.lr)
    run.scheduler = make_scheduler(config, run.optimizer, config.epochs)
    return run


def _unfreeze_if_due(run: _Run, epoch: int) -> Iterator[Status]:
    """The second half of freeze-then-unfreeze: everything trains, at a lower learning rate."""
    config = run.config
    if config.freeze_epochs and epoch == config.freeze_epochs + 1:
        unfreeze_all(run.model)
        lr = config.unfreeze_lr or config.lr / 10
        run.optimizer = make_optimizer(config, run.model.parameters(), lr)
        run.scheduler = make_scheduler(config, run.optimizer, config.epochs - config.freeze_epochs)
        yield Status(f"Backbone unfrozen, lr → {lr:g}")


def _train_one_epoch(run: _Run, epoch: int, order_gen: torch.Generator, augment_gen: torch.Generator,
                     stop: threading.Event) -> Iterator[BatchEnd]:
    """One pass over the training images, a BatchEnd per step; returns (mean loss, accuracy)."""
    config, data, model = run.config, run.data, run.model
    model.train()
    t0 = time.perf_counter()
    order = torch.randperm(len(data.train_images), generator=order_gen)
    chunk = augment_chunk_size(run.batch_size, data.channels, max(data.image_size, run.prep.image_size))
    loss_sum, correct, seen = 0.0, 0, 0
    total_steps = run.steps_per_epoch * config.epochs
    for x, y in training_batches(data.train_images, data.train_labels, order, run.batch_size, chunk,
                                 run.augment, run.prep, augment_gen):
        if stop.is_set():
            raise _EndEarly("stopped", _stopped_message(run.history))
        x, y = x.to(run.device, non_blocking=True), y.to(run.device, non_blocking=True)
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        if config.l1:
            loss = loss + config.l1 * sum(p.abs().sum() for p in model.parameters() if p.requires_grad)
        loss_value = loss.item()
        run.step += 1
        if not math.isfinite(loss_value):
            lr = _current_lr(run.optimizer)
            raise _EndEarly("diverged", f"The loss became {loss_value} at step {run.step} (epoch "
                                        f"{epoch}): training diverged. Try a lower learning rate "
                                        f"than {lr:g}, e.g. {lr / 10:g}.")
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        loss_sum += loss_value * len(y)
        correct += (logits.argmax(1) == y).sum().item()
        seen += len(y)
        yield BatchEnd(step=run.step, epoch=epoch, loss=loss_value, lr=_current_lr(run.optimizer),
                       images_per_sec=seen / max(time.perf_counter() - t0, 1e-9),
                       total_steps=total_steps)
    return loss_sum / seen, correct / seen


def _validate(run: _Run, stop: threading.Event) -> EvalResult | None:
    """The validation images (None without any); a Stop meanwhile ends the run."""
    if not run.data.has_validation:
        return None
    result = evaluate(run.model, run.data.val_images, run.data.val_labels, run.prep,
                      len(run.data.classes), device=run.device, stop=stop, worst_k=0)
    if result is None:
        raise _EndEarly("stopped", _stopped_message(run.history))
    return result


def _end_epoch(run: _Run, record: dict) -> None:
    """Remember the epoch, keep the best weights, save a checkpoint, step the scheduler."""
    config = run.config
    run.history.append(record)
    val_loss = record["val_loss"]
    if val_loss is None or val_loss < run.best_loss - config.early_stopping_min_delta:
        run.best_epoch, run.best_loss = record["epoch"], math.inf if val_loss is None else val_loss
        if config.restore_best and val_loss is not None:
            run.best_state = {k: v.detach().clone() for k, v in run.model.state_dict().items()}
    # Every completed epoch is on disk, so a stop or a crash keeps it.
    run.save({"val_loss": val_loss, "val_acc": record["val_acc"]})
    if isinstance(run.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        run.scheduler.step(val_loss)
    elif run.scheduler is not None:
        run.scheduler.step()


def _test_once(run: _Run, reason: str, message: str) -> RunEnd:
    """The end of a run that reached it: keep the best epoch (if asked), then look at the test
    set, once, and save the kept model with those figures."""
    if run.best_state is not None:
        run.model.load_state_dict(run.best_state)
    kept = run.best_epoch if run.best_state is not None else run.history[-1]["epoch"]
    result = evaluate(run.model, run.data.test_images, run.data.test_labels, run.prep,
                      len(run.data.classes), device=run.device)
    metrics = result.to_dict()
    run.save({**metrics, "kept_epoch": kept})
    message += (f" Kept epoch {kept} (lowest validation loss)" if run.best_state is not None
                else f" Kept the last epoch ({kept})") + "; test set evaluated once, on it."
    return RunEnd(reason=reason, message=message, best_epoch=run.best_epoch, history=run.history,
                  checkpoint=str(run.checkpoint), metrics={**metrics, "most_confused": result.most_confused})


def _kept_as_saved(run: _Run | None, reason: str, message: str) -> RunEnd:
    """The end of a run that stopped early: its checkpoint is the last completed epoch's, exactly
    as written (never half-trained weights), and the test set is not looked at."""
    return RunEnd(reason=reason, message=message, best_epoch=run.best_epoch if run else None,
                  history=run.history if run else [],
                  checkpoint=str(run.checkpoint) if run and run.checkpoint else None, metrics={})


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
        yield Status(f"Loading dataset {config.dataset} …")
        data = load_data(config)
        for m in data.messages:
            yield Status(m)
    run = None
    try:
        run = yield from _set_up(config, data)
        order_gen = torch.Generator().manual_seed(config.seed)
        augment_gen = torch.Generator().manual_seed(config.seed + 1)
        for epoch in range(1, config.epochs + 1):
            yield from _unfreeze_if_due(run, epoch)
            t0 = time.perf_counter()
            train_loss, train_acc = yield from _train_one_epoch(run, epoch, order_gen, augment_gen, stop)
            val = _validate(run, stop)
            record = {"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc,
                      "val_loss": val.loss if val else None, "val_acc": val.acc if val else None,
                      "lr": _current_lr(run.optimizer), "seconds": time.perf_counter() - t0}
            _end_epoch(run, record)
            yield EpochEnd(**record)
            if config.early_stopping_patience and epoch - run.best_epoch >= config.early_stopping_patience:
                yield _test_once(run, "early_stopped",
                                 f"Early stopping: the validation loss has not improved for "
                                 f"{config.early_stopping_patience} epoch(s).")
                return
        yield _test_once(run, "completed", f"Finished {config.epochs} epoch(s).")
    except _EndEarly as end:
        yield _kept_as_saved(run, end.reason, end.message)
    except RuntimeError as error:
        if run is None or not is_out_of_memory(error):
            raise
        yield _kept_as_saved(run, "failed", _out_of_memory_message(run.batch_size, run.device))


def is_out_of_memory(error: BaseException) -> bool:
    """An allocation failure on any device (CUDA, MPS or the CPU allocator), not another error."""
    if isinstance(error, getattr(torch, "OutOfMemoryError", ())):
        return True
    text = str(error).lower()
    return "out of memory" in text or "can't allocate memory" in text


def _out_of_memory_message(batch_size: int, device: torch.device) -> str:
    if device.type == "cuda":
        torch.cuda.empty_cache()  # give the failed batch's memory back for the next run
    return (f"Ran out of memory at batch size {batch_size}; try a smaller batch size or a smaller "
            f"image size.")


def _stopped_message(history: list[dict]) -> str:
    if not history:
        return "Stopped before the first epoch finished; nothing was saved."
    return (f"Stopped; kept epoch {history[-1]['epoch']}, the last one that finished. The test set "
            f"was not evaluated: a run is tested once, when it reaches its end.")


def run_to_end(config: TrainConfig, **kwargs) -> RunEnd:
    """Drain the generator; for scripts and tests that only want the result."""
    end = None
    for ev in train(config, **kwargs):
        if isinstance(ev, RunEnd):
            end = ev
    return end
