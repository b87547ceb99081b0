"""A run as a command line, both ways: `command_for(config)` writes the command that trains a
config again (the app shows it beside every run, bundles carry it), and `add_train_flags` /
`config_from_args` read such a command back (cli.py). Every TrainConfig field has a flag, listed
once in TRAIN_FLAGS; types and defaults come from TrainConfig itself. The command line speaks
English only, as the CLI does.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shlex

from .checkpoints import CheckpointError, read_metadata
from .resume import MAY_CHANGE
from .train_config import TrainConfig


def positive_int(s: str) -> int:
    v = int(s)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {v}")
    return v


# Every TrainConfig field has a flag, so any run (the app's too) can be repeated from the command
# line: field -> (flag, help). Types and defaults come from TrainConfig itself.
TRAIN_FLAGS = {
    "dataset": ("--dataset", "registry name or folder:PATH"),
    "model": ("--model", "mlp, cnn, lenet, vgg, resnet18 or speedrun (a network with its own recipe)"),
    "use_recipe": ("--no-recipe", "train a model that has a recipe (speedrun) with exactly the "
                                  "options given, not its recipe's"),
    "epochs": ("--epochs", None),
    "budget_seconds": ("--budget-seconds", "train for this many seconds instead of --epochs; the "
                                           "lr schedule is planned to end on time"),
    "batch_size": ("--batch-size", None),
    "lr": ("--lr", "learning rate"),
    "optimizer": ("--optimizer", "sgd, adam, adamw or rmsprop"),
    "momentum": ("--momentum", "SGD and RMSprop"),
    "scheduler": ("--scheduler", "none, step, multistep, exponential, cosine, plateau or onecycle "
                                 "(warm-up then linear decay, per step)"),
    "scheduler_options": ("--scheduler-options", 'JSON, e.g. \'{"step_size": 2, "gamma": 0.5}\''),
    "augment": ("--augment", "a preset name or a JSON spec list"),
    "tta": ("--tta", "test-time augmentation when evaluating: none, flip or shift"),
    "weight_decay": ("--weight-decay", "L2"),
    "l1": ("--l1", None),
    "label_smoothing": ("--label-smoothing", "share of each target spread over all classes, e.g. 0.2"),
    "model_options": ("--model-options", 'JSON, e.g. \'{"hidden_sizes": [8, 8]}\''),
    "pretrained": ("--pretrained", "pretrained weights: ImageNet (resnet18) or the shipped textures backbone (cnn)"),
    "freeze_epochs": ("--freeze-epochs", "train only the head for this many epochs"),
    "unfreeze_lr": ("--unfreeze-lr", "lr after unfreezing (default lr / 10)"),
    "early_stopping_patience": ("--early-stopping", "patience in epochs (0: off)"),
    "early_stopping_min_delta": ("--early-stopping-min-delta", None),
    "restore_best": ("--no-restore-best", "keep the last epoch, not the best one"),
    "permute_pixels": ("--permute-pixels", "shuffle every image's pixels the same way"),
    "permutation_seed": ("--permutation-seed", None),
    "image_size": ("--image-size", "resize images to this (default: the dataset's own size)"),
    "subset_train": ("--subset-train", "use this many training images (validation included)"),
    "subset_test": ("--subset-test", None),
    "val_fraction": ("--val-fraction", "of the training images, held out for validation (default 0.1)"),
    "train_fraction": ("--train-fraction", "learn from this share of the training images, the "
                                           "validation and test images staying whole (a point of a "
                                           "learning curve; default 1)"),
    "data_seed": ("--data-seed", "picks the subsets and the validation images"),
    "seed": ("--seed", "initial weights, batch order and augmentation"),
    "device": ("--device", "auto, cpu, cuda or mps"),
    "precision": ("--precision", "auto (bf16 or fp16 autocast on a GPU, fp32 elsewhere), fp32, bf16 "
                                 "or fp16"),
    "compile": ("--compile", "torch.compile: auto (on a GPU, when the run is long enough), on or off"),
    "record_internals": ("--no-internals", "do not record each epoch's weight and activation "
                                           "percentiles and gradient norms (the epoch events' internals)"),
    "data_root": ("--data-root", "where datasets are downloaded (default $VISION_LAB_DATA or ./data)"),
    "out": ("--out", "checkpoint path (default checkpoints/runs/…)"),
    "resume": ("--resume", "continue the run saved in this checkpoint: its options, unless typed "
                           "here; --epochs is the total to reach"),
}
_JSON_FIELDS = {"scheduler_options", "model_options"}
_POSITIVE_FIELDS = {"image_size", "subset_train", "subset_test"}


def add_train_flags(parser: argparse.ArgumentParser) -> None:
    types = {"int": int, "float": float, "int | None": int, "float | None": float}
    for f in dataclasses.fields(TrainConfig):
        flag, help_text = TRAIN_FLAGS[f.name]
        default = TrainConfig().to_dict()[f.name]
        if f.type == "bool":
            parser.add_argument(flag, dest=f.name, help=help_text,
                                action="store_false" if default else "store_true")
        elif f.name in _JSON_FIELDS:
            parser.add_argument(flag, dest=f.name, type=json.loads, default=default, help=help_text)
        elif f.name in _POSITIVE_FIELDS:
            parser.add_argument(flag, dest=f.name, type=positive_int, default=default, help=help_text)
        else:
            parser.add_argument(flag, dest=f.name, type=types.get(f.type, str), default=default,
                                help=help_text)


def command_for(config) -> str:
    """The command line that trains `config` again: every option that differs from the defaults,
    and the seed always (it is part of what a reader should see). Where files go or come from
    (--out, --data-root) is the reader's own business, not part of the run. What a model's recipe
    sets (speedrun) is part of --model, so only options that differ from the recipe are listed."""
    defaults = type(config)().to_dict()
    with_recipe = type(config)(model=config.model, dataset=config.dataset, use_recipe=config.use_recipe,
                               permute_pixels=config.permute_pixels).to_dict()
    chosen = ("model", "dataset", "use_recipe", "permute_pixels")  # what the recipe depends on
    words = ["python", "-m", "vision_lab", "train"]
    for name, value in config.to_dict().items():
        flag = TRAIN_FLAGS[name][0]
        default = defaults[name] if name in chosen else with_recipe[name]
        if name in ("out", "data_root") or (value == default and name != "seed"):
            continue
        if isinstance(value, bool):
            words.append(flag)
        elif isinstance(value, (dict, list)):
            words += [flag, json.dumps(value)]
        else:
            words += [flag, str(value)]
    return shlex.join(words)


def config_from_args(args) -> TrainConfig:
    values = {name: getattr(args, name) for name in TRAIN_FLAGS}
    if isinstance(values["augment"], str) and values["augment"].lstrip().startswith("["):
        values["augment"] = json.loads(values["augment"])
    if values["resume"]:
        values = _resumed_values(values)
    return TrainConfig(**values)


def _resumed_values(values: dict) -> dict:
    """With --resume the checkpoint's run is the one that goes on, so its settings fill every
    option left at its default here: `train --epochs 4 --resume a.safetensors` is enough. What may
    change on the way (resume.MAY_CHANGE: --epochs, --out, ...) comes from this command line, and
    an option typed with another value than the run's is refused by resume.check, with its name."""
    try:
        started = read_metadata(values["resume"]).get("config")
    except (CheckpointError, OSError, ValueError):
        return values   # resume.check says what is wrong with the file
    if not isinstance(started, dict):
        return values
    defaults = TrainConfig().to_dict()
    return {name: started[name] if (name in started and name not in MAY_CHANGE
                                    and value == defaults[name]) else value
            for name, value in values.items()}
