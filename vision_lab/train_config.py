"""What a run is: its settings (`TrainConfig`, with their checks) and what it tells as it goes.

A config says everything that decides a run's result; `load_data` builds the images it trains on,
the same way for the app, the CLI and the tests. `train` (training.py) yields the events below:
a `BatchEnd` after every step, an `EpochEnd` after every epoch, `Status` messages, and finally a
`RunEnd`. The command line that repeats a config is command_line.py's `command_for`.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import resume
from .checkpoints import default_checkpoint_dir
from .datasets import FOLDER_PREFIX, ImageData, load_dataset
from .i18n import text
from .recipes import recipe_settings
from .transforms import preset, validate_spec

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
    budget_seconds: float | None = None  # train this long instead of `epochs` (see run_setup.plan)
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
