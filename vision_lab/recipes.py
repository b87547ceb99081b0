"""Models that come with their own way of training.

A recipe is a model name plus the TrainConfig settings it trains best with. `TrainConfig` applies
them itself (see TrainConfig.__post_init__): every field still at its default takes the recipe's
value, so `TrainConfig(model="speedrun")` trains the speedrun way, anything set explicitly wins,
and `use_recipe=False` trains the bare network with exactly the settings given.

This module holds plain data, with no import from the rest of vision_lab but its translation
catalogue (which imports nothing of it), so the config can read it while it is being built.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .i18n import Text, text

# Digits are not mirror-symmetric: a flipped 2 or 7 is no digit at all, so neither training nor
# test-time augmentation flips them. (Every class of shapes, and most clothes, mirror to
# themselves.)
NO_FLIP_DATASETS = ("mnist",)


@dataclass(frozen=True)
class Recipe:
    description: Text                        # what a person reads about it
    settings: Callable[[str, bool], dict]   # (dataset name, permuted pixels) -> TrainConfig values


def _speedrun(dataset: str, permute_pixels: bool) -> dict:
    """What airbench does on CIFAR-10, scaled down to a CPU and to a few thousand images. The
    batch stays at the course's 64: with a few thousand images, more steps of 64 learned more in
    the same seconds than fewer of 128 or 256 (benchmarks/time_to_accuracy.py)."""
    flips = dataset not in NO_FLIP_DATASETS
    return {
        # AdamW at a learning rate ten times the course's: BatchNorm everywhere keeps that
        # stable, and decoupled weight decay keeps the weights small (SGD with momentum needed
        # more tuning per dataset for the same result: see benchmarks/time_to_accuracy.py).
        "optimizer": "adamw",
        "lr": 0.01,
        "weight_decay": 0.05,
        # ... warmed up and then decayed to zero, step by step, over exactly the steps the run
        # has (with a time budget, those that fit in it).
        "scheduler": "onecycle",
        # Confident-but-wrong is punished less, which speeds up early training and generalises
        # better; airbench uses 0.2.
        "label_smoothing": 0.2,
        # Cheap batch-level augmentation: shifts by a pixel or two, and mirror images where the
        # classes allow it; evaluation averages the image with its mirror (or its shifts), unless
        # the pixels are permuted: a mirror image of scrambled pixels means nothing.
        "augment": "flip_translate" if flips else "translate",
        "tta": "none" if permute_pixels else "flip" if flips else "shift",
    }


RECIPES: dict[str, Recipe] = {
    "speedrun": Recipe(text("recipes.speedrun.description"), _speedrun),
}


def recipe_settings(model: str, dataset: str, permute_pixels: bool = False) -> dict:
    """The settings a model's recipe brings for a dataset ({} for a model without a recipe)."""
    recipe = RECIPES.get(model)
    return recipe.settings(dataset, permute_pixels) if recipe else {}
