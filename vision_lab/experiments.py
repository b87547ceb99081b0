"""The course's lessons as one-click comparisons: several TrainConfigs trained on the same data.

`EXPERIMENTS` maps a name to an `Experiment` whose `build(dataset, size)` returns a list of
(label, TrainConfig). `run_comparison` trains them one after the other on data loaded once and
tags every training event with its run's label; `summary_row` condenses a finished run into one
table row. No gradio here: the Compare tab, scripts and tests all use this module.
"""
from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator

from .training import RunEnd, TrainConfig, train

# Training-set size, test-set size and epochs per size. "default" is sized to finish a typical
# two-run lesson in about two minutes on a 2-core laptop; "quick" is for tests and a first look.
SIZES = {
    "quick": {"subset_train": 300, "subset_test": 100, "epochs": 2},
    "default": {"subset_train": 2000, "subset_test": 500, "epochs": 3},
}


@dataclass(frozen=True)
class Experiment:
    description: str
    build: Callable[[str, str], list[tuple[str, TrainConfig]]]
    needs_pretrained: bool = False


def _base(dataset: str, size: str, **overrides) -> TrainConfig:
    if size not in SIZES:
        raise ValueError(f"Unknown size '{size}'. Choose one of: {', '.join(SIZES)}.")
    sizes = dict(SIZES[size])
    # An experiment may ask for more epochs than the default; the quick size stays short.
    if size == "quick":
        overrides.pop("epochs", None)
        overrides.pop("subset_train", None)
    return TrainConfig(**{"dataset": dataset, **sizes, "optimizer": "adam", "lr": 1e-3,
                          "batch_size": 64, **overrides})


def _options(model: str, **options) -> dict:
    from .models import model_options

    return {**model_options(model), **options}


def mlp_vs_cnn(dataset: str = "shapes", size: str = "default"):
    return [("MLP", _base(dataset, size, model="mlp")),
            ("CNN", _base(dataset, size, model="cnn"))]


def batchnorm(dataset: str = "shapes", size: str = "default"):
    # Plain SGD at lr 0.01: measured on shapes (2,000 images, 3 epochs) the BatchNorm CNN reaches
    # about 0.8 test accuracy while the same CNN without it is still near chance (about 0.2).
    common = dict(model="cnn", optimizer="sgd", lr=0.01, momentum=0.9)
    return [("CNN + BatchNorm", _base(dataset, size, model_options=_options("cnn", batch_norm=True), **common)),
            ("CNN, no BatchNorm", _base(dataset, size, model_options=_options("cnn", batch_norm=False), **common))]


def augmentation(dataset: str = "shapes", size: str = "default"):
    # Few training images, ten epochs and no dropout: the plain model memorises its 800 images
    # (train accuracy near 100%, measured gap about 20 points on shapes) while the augmented one
    # keeps train and test together. The mild recipe fits a short run; `standard` needs longer.
    recipe = "digits" if dataset in ("mnist", "fashion_mnist") else "light"
    common = dict(model="cnn", model_options=_options("cnn", dropout=0.0), subset_train=800, epochs=10)
    return [("no augmentation", _base(dataset, size, augment="none", **common)),
            (f"{recipe} augmentation", _base(dataset, size, augment=recipe, **common))]


def pixel_permutation(dataset: str = "shapes", size: str = "default"):
    # The course's tiny MLP (two hidden layers of 8 units) against the CNN, each on the real
    # images and on images whose pixels all went through one fixed shuffle. The MLP does not
    # care; the CNN loses the neighbourhoods its filters rely on.
    # The tiny MLP gets more epochs and a higher lr: it is cheap, and on shapes it needs them to
    # rise clearly above chance.
    mlp = dict(model="mlp", model_options=_options("mlp", hidden_sizes=[8, 8], dropout=0.0),
               epochs=6, lr=3e-3)
    cnn = dict(model="cnn")
    return [("MLP 8-8", _base(dataset, size, **mlp)),
            ("MLP 8-8, permuted", _base(dataset, size, permute_pixels=True, **mlp)),
            ("CNN", _base(dataset, size, **cnn)),
            ("CNN, permuted", _base(dataset, size, permute_pixels=True, **cnn))]


def lr_schedulers(dataset: str = "shapes", size: str = "default"):
    common = dict(model="cnn", optimizer="sgd", lr=0.05, momentum=0.9, epochs=4)
    return [("constant lr", _base(dataset, size, scheduler="none", **common)),
            ("StepLR (×0.1 every 2 epochs)", _base(dataset, size, scheduler="step",
                                                   scheduler_options={"step_size": 2, "gamma": 0.1},
                                                   **common)),
            ("cosine", _base(dataset, size, scheduler="cosine", **common))]


def pretrained_resnet(dataset: str = "shapes", size: str = "default"):
    # The course's recipe: first train only the new head on frozen ImageNet features, then
    # unfreeze everything with a smaller learning rate.
    common = dict(model="resnet18", epochs=3, lr=1e-3)
    return [("ResNet18 pretrained, head first", _base(dataset, size, pretrained=True, freeze_epochs=1,
                                                      unfreeze_lr=1e-4, **common)),
            ("ResNet18 from scratch", _base(dataset, size, **common))]


EXPERIMENTS: dict[str, Experiment] = {
    "MLP vs CNN": Experiment(
        "A multi-layer perceptron flattens the image; a CNN slides small filters over it. With the "
        "same data and training, which generalises better, and with how many parameters?",
        mlp_vs_cnn),
    "BatchNorm vs none": Experiment(
        "The same CNN with and without BatchNorm, trained with plain SGD: BatchNorm keeps each "
        "layer's inputs well scaled, so the network starts learning at once, while without it the "
        "first epochs barely move.",
        batchnorm),
    "Augmentation vs none (the overfitting gap)": Experiment(
        "800 training images, ten epochs: without augmentation train accuracy races towards 100% "
        "while test accuracy stalls (overfitting). Augmentation shows the model new variants each "
        "epoch, so train and test stay together; it learns more slowly, because every epoch is "
        "new, harder material. Watch the dashed (train) vs solid (test) lines and the gap column.",
        augmentation),
    "Pixel permutation": Experiment(
        "Shuffle every image's pixels with one fixed permutation. The 8-8 MLP never looked at "
        "neighbourhoods, so it does as well as before; the CNN's filters lose their meaning and "
        "it drops towards the MLP. Four runs. On MNIST (the course's version) the tiny MLP does "
        "far better than on shapes.",
        pixel_permutation),
    "LR schedulers": Experiment(
        "SGD with a constant learning rate vs StepLR vs cosine annealing: lowering the rate late "
        "in training lets the model settle into a better minimum.",
        lr_schedulers),
    "Pretrained vs from-scratch ResNet18": Experiment(
        "ResNet18 with ImageNet weights, training only the new head for one epoch and then "
        "everything at a lower learning rate, vs the same network from random weights. Needs "
        "the ImageNet weights (downloaded once on first use).",
        pretrained_resnet, needs_pretrained=True),
}


def list_experiments() -> list[str]:
    return list(EXPERIMENTS)


def build_runs(name: str, dataset: str = "shapes", size: str = "default") -> list[tuple[str, TrainConfig]]:
    if name not in EXPERIMENTS:
        raise ValueError(f"Unknown experiment '{name}'. Choose one of: {', '.join(EXPERIMENTS)}.")
    runs = EXPERIMENTS[name].build(dataset, size)
    for _, config in runs:
        config.validate()
    return runs


CUSTOM_COLUMNS = ("label", "model", "augment", "batch_norm", "optimizer", "lr", "scheduler", "epochs")
MAX_CUSTOM_RUNS = 4


def custom_runs(rows: list[dict], dataset: str = "shapes", size: str = "default") -> list[tuple[str, TrainConfig]]:
    """Runs from up to four table rows with the keys of CUSTOM_COLUMNS (blank cells: defaults)."""
    from .models import list_models, model_options

    rows = [r for r in rows if str(r.get("model") or "").strip()]
    if not rows:
        raise ValueError("The custom comparison needs at least one row with a model.")
    if len(rows) > MAX_CUSTOM_RUNS:
        raise ValueError(f"A custom comparison has at most {MAX_CUSTOM_RUNS} runs, got {len(rows)}.")
    runs = []
    for i, row in enumerate(rows, 1):
        model = str(row["model"]).strip()
        if model not in list_models():
            raise ValueError(f"Row {i}: unknown model '{model}'. Available: {', '.join(list_models())}.")
        options = model_options(model)
        bn = str(row.get("batch_norm", "")).strip().lower()
        if "batch_norm" in options and bn in ("true", "yes", "1", "on", "false", "no", "0", "off"):
            options["batch_norm"] = bn in ("true", "yes", "1", "on")
        overrides = {"model": model, "model_options": options}
        for key, cast in (("augment", str), ("optimizer", str), ("scheduler", str), ("lr", float),
                          ("epochs", int)):
            value = row.get(key)
            if value not in (None, "") and str(value).strip():
                try:
                    overrides[key] = cast(str(value).strip()) if cast is str else cast(float(value))
                except ValueError:
                    raise ValueError(f"Row {i}: {key} must be a number, got {value!r}.") from None
        config = _base(dataset, size, **overrides)
        if size == "quick" and "epochs" in overrides:
            config.epochs = min(config.epochs, SIZES["quick"]["epochs"])
        config.validate()
        label = str(row.get("label") or "").strip() or f"{i}: {model}"
        runs.append((label, config))
    labels = [label for label, _ in runs]
    if len(set(labels)) < len(labels):
        raise ValueError("Each run needs its own label.")
    return runs


def check_requirements(runs: list[tuple[str, TrainConfig]]) -> None:
    """Raise before any training starts if a run cannot work here (e.g. weights cannot be had)."""
    from .models import create_model

    if any(config.pretrained for _, config in runs):
        # Raises PretrainedWeightsUnavailable with a plain sentence when offline.
        create_model("resnet18", num_classes=2, pretrained=True)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "run"


def run_comparison(runs: list[tuple[str, TrainConfig]], data, stop: threading.Event | None = None,
                   out_dir=None) -> Iterator[tuple[str, object]]:
    """Train each run on `data` in turn, yielding (label, event). Stop ends the current run within
    a batch and skips the rest. Checkpoints go under `out_dir` (default <checkpoints>/runs/compare/)
    unless a config names its own `out`."""
    from .checkpoints import default_checkpoint_dir

    stop = stop or threading.Event()
    out_dir = Path(out_dir) if out_dir else default_checkpoint_dir() / "runs" / "compare"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for label, config in runs:
        if stop.is_set():
            break
        if config.out is None:
            config = replace(config, out=str(out_dir / f"{_slug(label)}_{data.name}_{stamp}.safetensors"))
        for event in train(config, stop=stop, data=data):
            yield label, event


SUMMARY_COLUMNS = ("run", "model", "parameters", "seconds per epoch", "best test acc (%)",
                   "final train−test gap (points)", "epochs", "ended")


def summary_row(label: str, config: TrainConfig, end: RunEnd, data=None) -> dict:
    """One row of the results table. With `data`, the parameter count is computed for its shape."""
    history = end.history or []
    params = None
    if data is not None:
        from .models import count_parameters, create_model

        model = create_model(config.model, num_classes=len(data.classes), in_channels=data.channels,
                             image_size=config.image_size or data.image_size, pretrained=False,
                             **config.model_options)
        params = count_parameters(model)
    seconds = sum(r["seconds"] for r in history) / len(history) if history else None
    best = max((r["test_acc"] for r in history), default=None)
    gap = (history[-1]["train_acc"] - history[-1]["test_acc"]) * 100 if history else None
    return {
        "run": label,
        "model": config.model,
        "parameters": params,
        "seconds per epoch": None if seconds is None else float(f"{seconds:.2g}"),
        "best test acc (%)": None if best is None else round(best * 100, 1),
        "final train−test gap (points)": None if gap is None else round(gap, 1),
        "epochs": len(history),
        "ended": end.reason,
    }
