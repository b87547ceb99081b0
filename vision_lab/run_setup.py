"""What a training run works with: its model, data, optimizer and schedule, where and how it
computes, and the plan of how long it goes on.

`set_up(config, data)` builds a `Run`: the model (channels-last where that is faster), its
preprocessing and augmentation, the splits placed on the device, the precision (autocast dtype,
GradScaler), the process group of a distributed run, the optimizer and the scheduler. The loop
(training.py) then trains it. A run times its steps (`StepClock`): with a time budget, `plan`
works out how many steps fit; on CUDA with compile "auto", whether torch.compile will pay.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch

from . import distributed, resume
from .batch_augment import BatchAugmenter
from .batches import batch_bounds
from .checkpoints import save_checkpoint
from .datasets import ImageData
from .i18n import Text, listing, text
from .internals import InternalsRecorder
from .models import count_parameters, create_model, freeze_backbone
from .preprocessing import Preprocessing
from .recipes import recipe_settings
from .train_config import PER_STEP_SCHEDULERS, Status, TrainConfig, default_run_path


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
class StepClock:
    """How fast a run goes: what `plan` needs to fit a time budget and to decide on compiling."""
    budget_end: float | None = None               # time.perf_counter() when the budget runs out
    planned: bool = False                         # the budget's first plan is made
    untimed_steps: int = 1                        # steps still to leave out of the timing
    step_seconds: float = 0.0                     # time of the timed steps, all together
    timed_steps: int = 0
    epoch_end_seconds: float = 0.0                # validation and checkpoints, all epochs together
    epochs_ended: int = 0


@dataclass
class Kept:
    """What a run has kept so far: every epoch's record, the best epoch and its weights, the file."""
    history: list[dict] = field(default_factory=list)
    best_epoch: int | None = None                 # lowest validation loss
    best_loss: float = math.inf
    best_state: dict | None = None                # the best epoch's weights (restore_best)
    last_state: dict | None = None                # the last epoch's weights, once the best are put back
    checkpoint: Path | None = None                # the file written at the last epoch's end


@dataclass
class Run:
    """What one training run works with. The first fields are set up once (`set_up`); the model
    being trained, its optimizer and schedule, the step and what the run has kept change as it
    trains (the optimizer and scheduler are new ones after unfreezing)."""
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
    images: dict = field(default_factory=dict)    # split -> (images, labels) where the run uses them
    autocast_dtype: torch.dtype | None = None     # None: float32 throughout
    scaler: object = None                         # float16 autocast's GradScaler
    internals: InternalsRecorder | None = None    # None: config.record_internals is off
    order_gen: torch.Generator | None = None      # the batch order's random numbers
    augment_gen: torch.Generator | None = None    # augmentation's
    # What changes as it trains:
    train_model: torch.nn.Module | None = None    # what the steps call: the model, DDP-wrapped or compiled
    compiled: bool = False
    optimizer: torch.optim.Optimizer | None = None
    scheduler: object = None
    step: int = 0
    total_steps: int = 0                          # planned; a time budget re-plans it
    clock: StepClock = field(default_factory=StepClock)
    kept: Kept = field(default_factory=Kept)

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
        return math.inf if self.clock.budget_end is not None and not self.clock.planned else self.total_steps

    def save(self, metrics: dict) -> None:
        # Every process of a distributed run holds the same weights; rank 0 writes them.
        if not self.is_main:
            self.kept.checkpoint = self.out
            return
        # The training state rides along, so the run can be continued (resume.py).
        tensors, state = resume.state_of(self)
        self.kept.checkpoint = save_checkpoint(self.out, self.model, {**checkpoint_metadata(
            self.config, self.data, self.prep, self.kept.history, metrics), "training_state": state}, tensors)


def set_up(config: TrainConfig, data: ImageData) -> Iterator[Status]:
    """Build the model, its preprocessing and optimizer; yields what it says, returns a Run."""
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
    run = Run(config, data, device, prep, BatchAugmenter(config.augment_spec(data.image_size), data.image_size),
              model, batch_size=min(config.batch_size, n_train),
              out=Path(config.out) if config.out else default_run_path(config), group=group,
              channels_last=channels_last)
    if group is not None:
        _check_shares(run.batch_size, group)
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
    run.train_model = training_model(run)
    run.internals = InternalsRecorder(model) if config.record_internals else None
    run.order_gen = torch.Generator().manual_seed(config.seed)
    run.augment_gen = _augment_generator(config.seed, device, group)
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

def pick_device(name: str = "auto") -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _device_for(config: TrainConfig, group: distributed.Group | None) -> torch.device:
    device = pick_device(config.device)
    if group is not None and device.type == "cuda":
        device = torch.device("cuda", group.local_rank)  # one GPU per process on each machine
    return device


def _check_shares(batch_size: int, group: distributed.Group) -> None:
    world = group.world_size
    if batch_size < 2 * world:
        raise ValueError(text("training.batch_too_small_to_share", batch_size=batch_size, world=world,
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


def training_model(run: Run) -> torch.nn.Module:
    """What the training steps call: the model itself, or in a distributed run DDP's wrapper
    around it; compiled if `run.compiled`. Evaluation and checkpoints use the model itself."""
    model = distributed.wrap(run.model, run.group) if run.group else run.model
    return torch.compile(model) if run.compiled else model


def _device_status(run: Run) -> Text:
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


def _augment_generator(seed: int, device: torch.device, group: distributed.Group | None) -> torch.Generator:
    """Augmentation's random numbers, drawn where it runs (on the GPU for a CUDA run). The
    processes of a distributed run augment different images, so each has its own stream."""
    device = device if device.type == "cuda" else torch.device("cpu")
    rank = group.rank if group else 0
    return torch.Generator(device=device).manual_seed(seed + 1 + 1000 * rank)


# ---- optimizer, scheduler, checkpoint ---------------------------------------------------------

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


def checkpoint_metadata(config: TrainConfig, data: ImageData, prep: Preprocessing,
                        history: list[dict], metrics: dict) -> dict:
    return {
        "model": config.model, "model_options": config.model_options, "classes": data.classes,
        "channels": prep.channels, "image_size": prep.image_size, "mean": list(prep.mean),
        "std": list(prep.std), "permutation_seed": prep.permutation_seed, "dataset": data.name,
        "config": config.to_dict(), "history": history, "metrics": metrics,
    }


# ---- a time budget: timing the steps, planning how many fit ------------------------------------

def time_step(run: Run, last: float) -> float:
    """Add the step that just ended (since `last`) to the timing, unless it is one to leave out."""
    now, clock = time.perf_counter(), run.clock
    if clock.untimed_steps:
        clock.untimed_steps -= 1
    else:
        clock.step_seconds += now - last
        clock.timed_steps += 1
    return now


def plan_due(run: Run) -> bool:
    """Whether to plan after this step: every process of a distributed run decides the same."""
    clock = run.clock
    may_compile = run.config.compile == "auto" and run.device.type == "cuda" and not run.compiled
    if clock.budget_end is None and not may_compile:
        return False
    replan = clock.budget_end is not None and clock.timed_steps > PLAN_AFTER_STEPS and run.step % REPLAN_EVERY == 0
    return clock.timed_steps == PLAN_AFTER_STEPS or replan


def plan(run: Run) -> Iterator[Status]:
    """Plan the rest of the run from the speed measured so far: with a time budget, the steps
    that fit; on CUDA with compile "auto", whether compiling will pay. Rank 0 decides for all."""
    clock = run.clock
    seconds_per_step = clock.step_seconds / max(clock.timed_steps, 1)
    decided = [run.total_steps, False]
    if run.is_main:
        if clock.budget_end is not None:
            decided[0] = _steps_that_fit(run, seconds_per_step)
        decided[1] = (run.config.compile == "auto" and run.device.type == "cuda" and not run.compiled and
                      (decided[0] - run.step) * seconds_per_step >= COMPILE_PAYS_AFTER_SECONDS)
    if run.group:
        decided = distributed.from_main(run.group, decided)
    run.total_steps = decided[0]
    first_plan = clock.budget_end is not None and not clock.planned
    if clock.budget_end is not None:
        clock.planned = True
        _refresh_per_step_lr(run)
    if first_plan:
        yield Status(text("training.planned", steps=run.total_steps,
                          epochs=run.total_steps / run.steps_per_epoch,
                          budget=run.config.budget_seconds, rate=1 / seconds_per_step))
    if decided[1]:
        run.compiled = True
        run.train_model = training_model(run)
        # The compiling shows up in the next steps: time the compiled model afresh.
        clock.untimed_steps, clock.step_seconds, clock.timed_steps = 1, 0.0, 0
        yield Status(text("training.compile_on"))


def _refresh_per_step_lr(run: Run) -> None:
    """A per-step schedule set the coming step's lr when the last one ended; a new plan moves the
    schedule's end, so set that lr again from it."""
    s = run.scheduler
    if run.config.scheduler in PER_STEP_SCHEDULERS:
        for group, base, factor in zip(run.optimizer.param_groups, s.base_lrs, s.lr_lambdas):
            group["lr"] = base * factor(s.last_epoch)


def _steps_that_fit(run: Run, seconds_per_step: float) -> int:
    """The steps a time-budgeted run can still take: each costs its measured time plus its share
    of an epoch's validation and checkpoint, and the last epoch's must fit too."""
    clock = run.clock
    if clock.epochs_ended:
        epoch_end = clock.epoch_end_seconds / clock.epochs_ended
    else:
        n_val = len(run.data.val_images) if run.data.has_validation else 0
        epoch_end = seconds_per_step * n_val / run.batch_size * EVAL_COST_RATIO
    left = clock.budget_end - time.perf_counter() - epoch_end
    per_step = seconds_per_step + epoch_end / run.steps_per_epoch
    return run.step + max(0, int(left / per_step))
