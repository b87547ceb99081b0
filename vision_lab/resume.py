"""Continue a run from its checkpoint, as if it had never stopped.

A run's own checkpoint carries, beside the model's weights, what the loop needs to go on: the
optimizer's state (Adam's moving averages), the scheduler's counters, the random generators
(weights' init and Dropout, batch order, augmentation) and the history. It stays one safetensors
file and is never unpickled: the state's tensors are stored under the `STATE` prefix of the
tensor names (load_checkpoint skips them), its numbers and structure in the JSON metadata under
"training_state", the generators' states as uint8 tensors. A bundle or an ONNX file, made from
the model alone, leaves all of it out.

A resumed run is the checkpoint's run, continued to `--epochs` in all (not that many more). Every
setting but those in `MAY_CHANGE` must be the one it started with. A schedule whose shape depends
on the run's length (cosine without t_max, onecycle) must keep its epochs: resuming a 4-epoch
cosine run stopped at epoch 2 continues its curve; stretching it to 8 epochs would make a curve
no uninterrupted run ever had, so it is refused with the reason.

This module knows a run (run_setup.Run) only by the attributes it reads (run_setup.py imports it).
"""
from __future__ import annotations

import json
import math

import torch
from safetensors import safe_open

from .checkpoints import TRAINING_STATE as STATE
from .checkpoints import CheckpointError, read_metadata
from .i18n import text

# What may differ between a run and its continuation: where it runs and is saved, how long it
# goes on, what it records. Anything else would make the continued curve another run's.
MAY_CHANGE = ("epochs", "out", "resume", "data_root", "device", "precision", "compile",
              "record_internals", "early_stopping_patience")


# ---- saving -------------------------------------------------------------------------------------

def state_of(run) -> tuple[dict, dict]:
    """(tensors, metadata) of the run's training state at the end of its last epoch."""
    kept = run.kept
    tensors, rng = {}, {"torch": torch.get_rng_state(), "order": run.order_gen.get_state(),
                        "augment": run.augment_gen.get_state()}
    if run.device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(run.device)
    tensors.update({f"{STATE}rng.{k}": v for k, v in rng.items()})
    optimizer = run.optimizer.state_dict()
    numbers = {}
    for index, values in optimizer["state"].items():
        for name, value in values.items():
            if torch.is_tensor(value):
                tensors[f"{STATE}optimizer.{index}.{name}"] = value
            else:
                numbers.setdefault(str(index), {})[name] = value
    last = kept.history[-1]["epoch"]
    # The file's weights are the last epoch's, except at the end of a run that keeps its best
    # epoch: then the last epoch's are stored too, since a continuation goes on from them.
    last_weights = "main" if kept.last_state is None else "stored"
    if kept.last_state is not None:
        tensors.update({f"{STATE}last.{k}": v for k, v in kept.last_state.items()})
    best_weights = None
    if kept.best_state is not None:
        best_weights = ("main" if kept.last_state is not None else
                        "last" if kept.best_epoch == last else "stored")
        if best_weights == "stored":
            tensors.update({f"{STATE}best.{k}": v for k, v in kept.best_state.items()})
    meta = {"epoch": last, "step": run.step, "best_epoch": kept.best_epoch,
            "best_loss": None if math.isinf(kept.best_loss) else kept.best_loss,
            "last_weights": last_weights, "best_weights": best_weights,
            "optimizer": {"param_groups": optimizer["param_groups"], "numbers": numbers},
            "scheduler": _scheduler_numbers(run.scheduler),
            "scaler": run.scaler.state_dict() if run.scaler is not None else None,
            "rng": sorted(rng)}
    json.dumps(meta)  # a value JSON cannot hold fails here, at the first save, not at resuming
    return {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, meta


def _scheduler_numbers(scheduler) -> dict | None:
    """The scheduler's counters. Milestones and lr functions are rebuilt from the config (a
    Counter's int keys would come back from JSON as strings)."""
    if scheduler is None:
        return None
    return {k: v for k, v in scheduler.state_dict().items() if k not in ("milestones", "lr_lambdas")}


# ---- checking, before any training -------------------------------------------------------------

def check(config) -> dict:
    """The checkpoint's metadata if `config` can continue it; else ValueError with the reason."""
    if config.budget_seconds:
        raise ValueError(text("resume.budget"))
    meta = read_metadata(config.resume)
    name = _name(config.resume)
    state, started = meta.get("training_state"), meta.get("config")
    if not isinstance(state, dict) or not isinstance(started, dict) or not all(
            isinstance(state.get(k), int) for k in ("epoch", "step")):
        raise ValueError(text("resume.no_state", name=name))
    ours = config.to_dict()
    for key, value in started.items():
        if key not in MAY_CHANGE and key in ours and ours[key] != value:
            raise ValueError(text("resume.different", name=name, setting=key,
                                  theirs=json.dumps(value), ours=json.dumps(ours[key])))
    if state["epoch"] >= config.epochs:
        raise ValueError(text("resume.already_done", name=name, epoch=state["epoch"],
                              epochs=config.epochs))
    length_shaped = config.scheduler == "onecycle" or (
        config.scheduler == "cosine" and not config.scheduler_params()["t_max"])
    if length_shaped and started.get("epochs") != config.epochs:
        raise ValueError(text("resume.schedule_length", name=name, scheduler=config.scheduler,
                              epochs=started.get("epochs")))
    return meta


def _name(path) -> str:
    return str(path).replace("\\", "/").rsplit("/", 1)[-1]


# ---- restoring, once the run is set up ---------------------------------------------------------

def restore(run, meta: dict) -> None:
    """Put the run where its checkpoint (`meta`, from `check`) left it: weights, optimizer,
    scheduler, generators, history. The optimizer and scheduler are the run's own (made from the
    config, unfrozen if due), so only their state is loaded into them."""
    name, state = _name(run.config.resume), meta["training_state"]
    _check_fits(run, meta, name)
    with safe_open(str(run.config.resume), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    weights = {k: v for k, v in tensors.items() if not k.startswith(STATE)}
    saved = _group(tensors)
    last = saved.get("last", {}) if state.get("last_weights") == "stored" else weights
    try:  # the metadata is whoever wrote the file's: any part of it may be wrong
        run.model.load_state_dict(last)
        _load_optimizer(run.optimizer, state["optimizer"], saved.get("optimizer", {}))
        if run.scheduler is not None and state["scheduler"]:
            run.scheduler.load_state_dict({**run.scheduler.state_dict(), **state["scheduler"]})
        if run.scaler is not None and state["scaler"]:
            run.scaler.load_state_dict(state["scaler"])
        _load_generators(run, saved["rng"])
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError, AttributeError) as error:
        raise CheckpointError(text("resume.unreadable_state", name=name,
                                   reason=str(error) or type(error).__name__)) from None
    best = {"main": weights, "stored": saved.get("best"), "last": last}.get(state["best_weights"])
    if best is not None and run.config.restore_best:
        run.kept.best_state = {k: v.to(run.device) for k, v in best.items()}
    run.kept.best_epoch = state["best_epoch"]
    run.kept.best_loss = math.inf if state["best_loss"] is None else state["best_loss"]
    run.kept.history = [dict(r) for r in meta.get("history", [])][:state["epoch"]]
    run.step = state["step"]


def _load_generators(run, rng: dict) -> None:
    torch.set_rng_state(rng["torch"])
    run.order_gen.set_state(rng["order"])
    # Augmentation draws where it runs (a CUDA generator's state is another size). A run continued
    # on another kind of device keeps its fresh stream: it computes differently anyway.
    if rng["augment"].numel() == run.augment_gen.get_state().numel():
        run.augment_gen.set_state(rng["augment"])
    if "cuda" in rng and run.device.type == "cuda":
        torch.cuda.set_rng_state(rng["cuda"], run.device)


def _check_fits(run, meta: dict, name: str) -> None:
    """The checkpoint's model and data must be this run's (its dataset may have changed on disk)."""
    if run.group is not None:
        raise ValueError(text("resume.distributed"))
    if list(meta["classes"]) != list(run.data.classes):
        raise ValueError(text("resume.classes", name=name, theirs=len(meta["classes"]),
                              ours=len(run.data.classes)))
    if (int(meta["channels"]), int(meta["image_size"])) != (run.prep.channels, run.prep.image_size):
        raise ValueError(text("resume.image_shape", name=name, theirs=f"{meta['channels']}×{meta['image_size']}",
                              ours=f"{run.prep.channels}×{run.prep.image_size}"))
    if meta["training_state"]["step"] != meta["training_state"]["epoch"] * run.steps_per_epoch:
        raise ValueError(text("resume.batches", name=name))


def _group(tensors: dict) -> dict:
    """The state's tensors by part: {"rng": {...}, "optimizer": {...}, "last": {...}, "best": {...}}."""
    parts: dict = {}
    for key, value in tensors.items():
        if key.startswith(STATE):
            part, rest = key[len(STATE):].split(".", 1)
            parts.setdefault(part, {})[rest] = value
    return parts


def _load_optimizer(optimizer, saved: dict, tensors: dict) -> None:
    """Load the optimizer's state; each saved tensor takes its parameter's memory layout (a
    channels-last weight keeps channels-last moving averages, as a run that never stopped)."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    state: dict = {}
    for index, numbers in saved["numbers"].items():
        state.setdefault(int(index), {}).update(numbers)
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        param = params[int(index)]
        if value.shape == param.shape:
            value = torch.empty_like(param, dtype=value.dtype).copy_(value)
        state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": saved["param_groups"]})
