"""One training loop for the app, the CLI and the tests.

`train(config)` is a generator: it yields a `BatchEnd` after every step, an `EpochEnd` after every
epoch, `Status` messages, and finally a `RunEnd`. Consumers render; they never re-implement the loop.
Data stays in memory as uint8 tensors and is augmented several batches at a time (see transforms.py
and `training_batches`).
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
from .datasets import ImageData, load_dataset
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
    subset_train: int | None = None
    subset_test: int | None = None
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
    restore_best: bool = True
    freeze_epochs: int = 0               # pretrained only: train just the head for this many epochs
    unfreeze_lr: float | None = None     # lr after unfreezing; None: lr / 10
    permute_pixels: bool = False
    permutation_seed: int = 0
    augment: str | list = "none"         # a preset name or a spec (list of ops)
    seed: int = 0
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
    test_loss: float
    test_acc: float
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
    best_epoch: int | None
    history: list[dict]
    checkpoint: str | None   # path of the saved checkpoint (None if no epoch completed)
    metrics: dict            # final evaluation: test_loss, test_acc, per_class_acc, confusion
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


# ---- the loop -----------------------------------------------------------------------------------

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
    """Every scheduler steps once per epoch; `plateau` watches the test loss."""
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
    dataset = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(config.dataset.removeprefix("folder:")).stem)
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


def training_batches(images: torch.Tensor, labels: torch.Tensor, order: torch.Tensor, batch_size: int,
                     chunk_size: int, augment: BatchAugmenter, prep: Preprocessing,
                     generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(x, y) batches in `order`: augmented, normalised, ready for the model.

    A chunk of `chunk_size` images (a multiple of `batch_size`) is augmented at once; every image
    still gets its own random parameters, drawn from `generator`, so a given generator state
    always gives the same batches. (ColorJitter's order of adjustments, drawn once per
    BatchAugmenter call, is shared by a chunk instead of a batch; see BatchAugmenter.)
    """
    for chunk_start in range(0, len(order), chunk_size):
        idx = order[chunk_start:chunk_start + chunk_size]
        # index_select copies whole images; images[idx] would gather element by element (~10x slower).
        x = prep.normalize_pixels_(augment.pixels(images.index_select(0, idx), generator))
        y = labels.index_select(0, idx)
        for start in range(0, len(idx), batch_size):
            yield x[start:start + batch_size], y[start:start + batch_size]


def _current_lr(optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


def train(config: TrainConfig, stop: threading.Event | None = None,
          data: ImageData | None = None) -> Iterator:
    """Train as `config` says, yielding events. Set `stop` to end within one batch.

    `data` lets a caller that already loaded the dataset (a comparison, a test) skip reloading it.
    """
    config.validate()
    stop = stop or threading.Event()
    torch.manual_seed(config.seed)
    device = pick_device(config.device)

    if data is None:
        yield Status(f"Loading dataset {config.dataset} …")
        data = load_dataset(config.dataset, data_root=config.data_root, subset_train=config.subset_train,
                            subset_test=config.subset_test, seed=config.seed,
                            **({"image_size": config.image_size} if config.dataset.startswith("folder:")
                               and config.image_size else {}))
        for m in data.messages:
            yield Status(m)
    image_size = config.image_size or data.image_size
    prep = Preprocessing(channels=data.channels, image_size=image_size, mean=tuple(data.mean),
                         std=tuple(data.std),
                         permutation_seed=config.permutation_seed if config.permute_pixels else None)
    augment = BatchAugmenter(config.augment_spec(data.image_size), data.image_size)

    model = create_model(config.model, num_classes=len(data.classes), in_channels=data.channels,
                         image_size=image_size, pretrained=config.pretrained, **config.model_options)
    model.to(device)
    if device.type in ("cpu", "cuda") and any(isinstance(m, torch.nn.Conv2d) for m in model.modules()):
        # Convolutions in channels-last layout train ~1.3x and evaluate ~2x faster on CPU
        # (benchmarks/floor.py); inputs need no conversion, a conv follows its weight's layout.
        model.to(memory_format=torch.channels_last)
    n_train = len(data.train_images)
    batch_size = min(config.batch_size, n_train)
    steps_per_epoch = math.ceil(n_train / batch_size)
    chunk_size = augment_chunk_size(batch_size, data.channels, max(data.image_size, image_size))
    total_steps = steps_per_epoch * config.epochs
    yield Status(f"{config.model}: {count_parameters(model):,} parameters; {data.name}: "
                 f"{n_train:,} training / {len(data.test_images):,} test images, "
                 f"{len(data.classes)} classes; device {device.type}.")
    if batch_size < config.batch_size:
        yield Status(f"Batch size lowered to {batch_size}, the size of the training set.")

    lr = config.lr
    if config.freeze_epochs:
        freeze_backbone(model)
        yield Status(f"Backbone frozen: training only the classifier head for "
                     f"{config.freeze_epochs} epoch(s).")
    optimizer = make_optimizer(config, [p for p in model.parameters() if p.requires_grad], lr)
    scheduler = make_scheduler(config, optimizer, config.epochs)

    out = Path(config.out) if config.out else default_run_path(config)
    shuffle = torch.Generator().manual_seed(config.seed)
    aug_gen = torch.Generator().manual_seed(config.seed + 1)
    history: list[dict] = []
    best = {"epoch": None, "loss": math.inf, "state": None}
    checkpoint = None
    step = 0

    def finish(reason: str, message: str):
        """End the run. Only a run that reached its end re-saves: a stopped, diverged or failed
        (out of memory) one keeps the checkpoint of its last completed epoch exactly as written
        (never half-trained weights)."""
        nonlocal checkpoint
        metrics = {}
        if history and reason in ("completed", "early_stopped"):
            if best["state"] is not None and config.restore_best:
                model.load_state_dict(best["state"])
            result = evaluate(model, data.test_images, data.test_labels, prep, len(data.classes),
                              device=device)
            metrics = result.to_dict()
            checkpoint = save_checkpoint(out, model, checkpoint_metadata(config, data, prep, history, metrics))
            metrics["most_confused"] = result.most_confused
        elif history:
            metrics = {"test_loss": history[-1]["test_loss"], "test_acc": history[-1]["test_acc"]}
        return RunEnd(reason=reason, message=message, best_epoch=best["epoch"], history=history,
                      checkpoint=str(checkpoint) if checkpoint else None, metrics=metrics)

    for epoch in range(1, config.epochs + 1):
        if config.freeze_epochs and epoch == config.freeze_epochs + 1:
            unfreeze_all(model)
            lr = config.unfreeze_lr or config.lr / 10
            optimizer = make_optimizer(config, model.parameters(), lr)
            scheduler = make_scheduler(config, optimizer, config.epochs - config.freeze_epochs)
            yield Status(f"Backbone unfrozen, lr → {lr:g}")

        model.train()
        t0 = time.perf_counter()
        order = torch.randperm(n_train, generator=shuffle)
        batches = training_batches(data.train_images, data.train_labels, order, batch_size, chunk_size,
                                   augment, prep, aug_gen)
        loss_sum, correct, seen = 0.0, 0, 0
        for _ in range(steps_per_epoch):
            if stop.is_set():
                yield finish("stopped", _stopped_message(history, checkpoint))
                return
            try:
                x, y = next(batches)
                x = x.to(device, non_blocking=True)
                y = y.to(device, non_blocking=True)
                logits = model(x)
                loss = F.cross_entropy(logits, y)
                if config.l1:
                    loss = loss + config.l1 * sum(p.abs().sum() for p in model.parameters() if p.requires_grad)
                loss_value = loss.item()
                if math.isfinite(loss_value):
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
            except RuntimeError as error:
                if not is_out_of_memory(error):
                    raise
                loss_value = None
            if loss_value is None:
                yield finish("failed", _out_of_memory_message(batch_size, device))
                return
            step += 1
            if not math.isfinite(loss_value):
                yield finish("diverged", f"The loss became {loss_value} at step {step} (epoch {epoch}): "
                                         f"training diverged. Try a lower learning rate than {lr:g}, "
                                         f"e.g. {lr / 10:g}.")
                return
            loss_sum += loss_value * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            seen += len(y)
            yield BatchEnd(step=step, epoch=epoch, loss=loss_value, lr=_current_lr(optimizer),
                           images_per_sec=seen / max(time.perf_counter() - t0, 1e-9),
                           total_steps=total_steps)

        try:
            result = evaluate(model, data.test_images, data.test_labels, prep, len(data.classes),
                              device=device, stop=stop, worst_k=0)
        except RuntimeError as error:
            if not is_out_of_memory(error):
                raise
            result = False
        if result is False:
            yield finish("failed", _out_of_memory_message(batch_size, device))
            return
        if result is None:
            yield finish("stopped", _stopped_message(history, checkpoint))
            return
        record = {"epoch": epoch, "train_loss": loss_sum / seen, "train_acc": correct / seen,
                  "test_loss": result.loss, "test_acc": result.acc, "lr": _current_lr(optimizer),
                  "seconds": time.perf_counter() - t0}
        history.append(record)
        if result.loss < best["loss"] - config.early_stopping_min_delta:
            best.update(epoch=epoch, loss=result.loss,
                        state={k: v.detach().clone() for k, v in model.state_dict().items()})
        # Every completed epoch is on disk, so a stop or a crash keeps it.
        checkpoint = save_checkpoint(out, model, checkpoint_metadata(
            config, data, prep, history, {"test_loss": result.loss, "test_acc": result.acc}))

        if scheduler is not None:
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step(result.loss)
            else:
                scheduler.step()
        yield EpochEnd(**{k: record[k] for k in ("epoch", "train_loss", "train_acc", "test_loss",
                                                 "test_acc", "lr", "seconds")})

        if config.early_stopping_patience and epoch - (best["epoch"] or 0) >= config.early_stopping_patience:
            yield finish("early_stopped",
                         f"Early stopping: test loss has not improved for "
                         f"{config.early_stopping_patience} epoch(s); best was epoch {best['epoch']}.")
            return

    yield finish("completed", f"Finished {config.epochs} epoch(s).")


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


def _stopped_message(history: list[dict], checkpoint) -> str:
    if not history:
        return "Stopped before the first epoch finished; nothing was saved."
    return f"Stopped; kept epoch {history[-1]['epoch']}, the last one that finished."


def run_to_end(config: TrainConfig, **kwargs) -> RunEnd:
    """Drain the generator; for scripts and tests that only want the result."""
    end = None
    for ev in train(config, **kwargs):
        if isinstance(ev, RunEnd):
            end = ev
    return end
