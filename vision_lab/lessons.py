"""The course's lessons as one-click comparisons, each with the claim it teaches, measured.

`LESSONS` maps a name to a `Lesson` whose `build(dataset, size)` returns a `Plan`: the runs (label,
TrainConfig) trained on the same data, how many seeds each runs with, and the `Claim` the lesson
makes. `run_comparison` trains every run once per seed, tagging each event with its run's label
and seed; `summary_row` condenses a run's seeds into one table row (mean ± standard deviation), and
`verdict` says whether the claim held by more than the seed-to-seed spread. A lesson's claim is a
measured fact or it is not shown as one. No gradio here: the Compare tab, the benchmark
(benchmarks/lessons.py) and the tests all use this module.
"""
from __future__ import annotations

import re
import statistics
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

from .training import RunEnd, TrainConfig, data_key, train

# Training-set size, test-set size, epochs and seeds per size. "default" is sized so a lesson
# finishes in about two minutes on a 2-core laptop; "quick" is for tests and a first look (one
# seed, so it shows no verdict).
SIZES = {
    "quick": {"subset_train": 300, "subset_test": 100, "epochs": 2, "seeds": 1},
    "default": {"subset_train": 2000, "subset_test": 500, "epochs": 3, "seeds": 3},
}
METRICS = {
    # name: (what it is called in a sentence, how to read it off a finished run)
    "test_acc": ("test accuracy", lambda end: end.metrics.get("test_acc")),
    "gap": ("train−validation gap at the last epoch",
            lambda end: _last(end, "train_acc") - _last(end, "val_acc") if end.history else None),
}


def _last(end: RunEnd, key: str) -> float:
    return end.history[-1][key]


@dataclass(frozen=True)
class Claim:
    """What a lesson says, as a number per seed: the sum of weight × metric over its runs, in
    points. The claim holds when that number is positive for every seed and its mean is larger
    than its standard deviation over the seeds."""
    sentence: str                 # e.g. "the CNN beats the MLP"
    weights: dict[str, float]     # run label -> weight
    metric: str = "test_acc"


@dataclass
class Plan:
    runs: list[tuple[str, TrainConfig]]
    seeds: int
    claim: Claim | None = None


@dataclass(frozen=True)
class Lesson:
    question: str                              # what the lesson asks, before the run
    build: Callable[[str, str], Plan]
    needs_pretrained: bool = False


def _base(dataset: str, size: str, **overrides) -> TrainConfig:
    if size not in SIZES:
        raise ValueError(f"Unknown size '{size}'. Choose one of: {', '.join(SIZES)}.")
    sizes = {k: v for k, v in SIZES[size].items() if k != "seeds"}
    # A lesson may ask for more epochs or images than the default; the quick size stays short.
    if size == "quick":
        overrides.pop("epochs", None)
        overrides.pop("subset_train", None)
    return TrainConfig(**{"dataset": dataset, **sizes, "optimizer": "adam", "lr": 1e-3,
                          "batch_size": 64, **overrides})


def _options(model: str, **options) -> dict:
    from .models import model_options

    return {**model_options(model), **options}


def _plan(size: str, runs: list[tuple[str, TrainConfig]], claim: Claim | None) -> Plan:
    return Plan(runs, SIZES[size]["seeds"], claim)


def mlp_vs_cnn(dataset: str = "shapes", size: str = "default") -> Plan:
    runs = [("MLP", _base(dataset, size, model="mlp")),
            ("CNN", _base(dataset, size, model="cnn"))]
    return _plan(size, runs, Claim("the CNN beats the MLP", {"CNN": 1, "MLP": -1}))


def batchnorm(dataset: str = "shapes", size: str = "default") -> Plan:
    # Plain SGD at lr 0.01: with BatchNorm the CNN starts learning at once; without it the first
    # epochs barely move (see benchmarks/lessons.py for the measured margins).
    common = dict(model="cnn", optimizer="sgd", lr=0.01, momentum=0.9)
    runs = [("CNN + BatchNorm", _base(dataset, size, model_options=_options("cnn", batch_norm=True), **common)),
            ("CNN, no BatchNorm", _base(dataset, size, model_options=_options("cnn", batch_norm=False), **common))]
    return _plan(size, runs, Claim("BatchNorm makes the same CNN learn faster",
                                   {"CNN + BatchNorm": 1, "CNN, no BatchNorm": -1}))


def augmentation(dataset: str = "shapes", size: str = "default") -> Plan:
    # Few training images, many epochs and no dropout: the plain model memorises its images
    # (train accuracy races ahead of validation) while the augmented one sees new variants each
    # epoch, so train and validation stay together.
    recipe = "digits" if dataset in ("mnist", "fashion_mnist") else "light"
    common = dict(model="cnn", model_options=_options("cnn", dropout=0.0), subset_train=800, epochs=10)
    plain, augmented = "no augmentation", f"{recipe} augmentation"
    runs = [(plain, _base(dataset, size, augment="none", **common)),
            (augmented, _base(dataset, size, augment=recipe, **common))]
    return _plan(size, runs, Claim("augmentation narrows the overfitting gap",
                                   {plain: 1, augmented: -1}, metric="gap"))


def pixel_permutation(dataset: str = "shapes", size: str = "default") -> Plan:
    # The course's tiny MLP (two hidden layers of 8 units) against the CNN, each on the real
    # images and on images whose pixels all went through one fixed shuffle. The MLP does not
    # care; the CNN loses the neighbourhoods its filters rely on. The tiny MLP gets more epochs
    # and a higher lr: it is cheap, and on shapes it needs them to rise clearly above chance.
    mlp = dict(model="mlp", model_options=_options("mlp", hidden_sizes=[8, 8], dropout=0.0),
               epochs=6, lr=3e-3)
    runs = [("MLP 8-8", _base(dataset, size, **mlp)),
            ("MLP 8-8, permuted", _base(dataset, size, permute_pixels=True, **mlp)),
            ("CNN", _base(dataset, size, model="cnn")),
            ("CNN, permuted", _base(dataset, size, model="cnn", permute_pixels=True))]
    return _plan(size, runs, Claim("shuffling the pixels costs the CNN more than the MLP",
                                   {"CNN": 1, "CNN, permuted": -1, "MLP 8-8": -1, "MLP 8-8, permuted": 1}))


def lr_schedulers(dataset: str = "shapes", size: str = "default") -> Plan:
    common = dict(model="cnn", optimizer="sgd", lr=0.05, momentum=0.9, epochs=4)
    runs = [("constant lr", _base(dataset, size, scheduler="none", **common)),
            ("StepLR (×0.1 every 2 epochs)", _base(dataset, size, scheduler="step",
                                                   scheduler_options={"step_size": 2, "gamma": 0.1},
                                                   **common)),
            ("cosine", _base(dataset, size, scheduler="cosine", **common))]
    return _plan(size, runs, Claim("lowering the learning rate late (cosine) ends above a constant one",
                                   {"cosine": 1, "constant lr": -1}))


def pretrained_resnet(dataset: str = "shapes", size: str = "default") -> Plan:
    # The course's recipe: first train only the new head on frozen ImageNet features, then
    # unfreeze everything with a smaller learning rate.
    common = dict(model="resnet18", epochs=3, lr=1e-3)
    runs = [("ResNet18 pretrained, head first", _base(dataset, size, pretrained=True, freeze_epochs=1,
                                                      unfreeze_lr=1e-4, **common)),
            ("ResNet18 from scratch", _base(dataset, size, **common))]
    return _plan(size, runs, Claim("ImageNet weights beat training from scratch",
                                   {"ResNet18 pretrained, head first": 1, "ResNet18 from scratch": -1}))


LESSONS: dict[str, Lesson] = {
    "MLP vs CNN": Lesson(
        "A multi-layer perceptron flattens the image; a CNN slides small filters over it. With the "
        "same data and training, which generalises better, and with how many parameters?",
        mlp_vs_cnn),
    "BatchNorm vs none": Lesson(
        "The same CNN with and without BatchNorm, trained with plain SGD. BatchNorm keeps each "
        "layer's inputs well scaled: does the network start learning sooner with it?",
        batchnorm),
    "Augmentation vs none (the overfitting gap)": Lesson(
        "800 training images, ten epochs. Without augmentation, does train accuracy race ahead of "
        "validation accuracy (overfitting)? Augmentation shows the model new variants each epoch: "
        "does it keep the two together? Watch the dashed (train) and solid (validation) lines "
        "and the gap column.",
        augmentation),
    "Pixel permutation": Lesson(
        "Shuffle every image's pixels with one fixed permutation. The 8-8 MLP never looked at "
        "neighbourhoods; the CNN's filters do. Which one loses more? Four runs.",
        pixel_permutation),
    "LR schedulers": Lesson(
        "SGD with a constant learning rate vs StepLR vs cosine annealing: does lowering the rate "
        "late in training let the model settle into a better minimum?",
        lr_schedulers),
    "Pretrained vs from-scratch ResNet18": Lesson(
        "ResNet18 with ImageNet weights, training only the new head for one epoch and then "
        "everything at a lower learning rate, vs the same network from random weights. Needs "
        "the ImageNet weights (downloaded once on first use).",
        pretrained_resnet, needs_pretrained=True),
}


def list_lessons() -> list[str]:
    return list(LESSONS)


def build_plan(name: str, dataset: str = "shapes", size: str = "default") -> Plan:
    if name not in LESSONS:
        raise ValueError(f"Unknown lesson '{name}'. Choose one of: {', '.join(LESSONS)}.")
    plan = LESSONS[name].build(dataset, size)
    for _, config in plan.runs:
        config.validate()
    return plan


CUSTOM_COLUMNS = ("label", "model", "augment", "batch_norm", "optimizer", "lr", "scheduler", "epochs")
MAX_CUSTOM_RUNS = 4


def _custom_config(i: int, row: dict, dataset: str, size: str) -> tuple[str, TrainConfig]:
    from .models import list_models, model_options

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
    return str(row.get("label") or "").strip() or f"{i}: {model}", config


def custom_plan(rows: list[dict], dataset: str = "shapes", size: str = "default") -> Plan:
    """Runs from up to four table rows with the keys of CUSTOM_COLUMNS (blank cells: defaults).
    A comparison of your own makes no claim: its table and curves speak for themselves."""
    rows = [r for r in rows if str(r.get("model") or "").strip()]
    if not rows:
        raise ValueError("The custom comparison needs at least one row with a model.")
    if len(rows) > MAX_CUSTOM_RUNS:
        raise ValueError(f"A custom comparison has at most {MAX_CUSTOM_RUNS} runs, got {len(rows)}.")
    runs = [_custom_config(i, row, dataset, size) for i, row in enumerate(rows, 1)]
    labels = [label for label, _ in runs]
    if len(set(labels)) < len(labels):
        raise ValueError("Each run needs its own label.")
    return _plan(size, runs, None)


def check_requirements(plan: Plan) -> None:
    """Raise before any training starts if a run cannot work here (e.g. weights cannot be had)."""
    from .models import create_model

    if any(config.pretrained for _, config in plan.runs):
        # Raises PretrainedWeightsUnavailable with a plain sentence when offline.
        create_model("resnet18", num_classes=2, pretrained=True)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "run"


def run_comparison(plan: Plan, data, stop: threading.Event | None = None,
                   out_dir=None) -> Iterator[tuple[str, int, object]]:
    """Train each run of the plan on `data` once per seed, yielding (label, seed, event).

    Seeds go round the runs (every run with seed 0, then with seed 1, ...), so a stopped
    comparison still compares like with like. Stop ends the current run within a batch and skips
    the rest. Checkpoints go under `out_dir` (default <checkpoints>/runs/compare/) unless a config
    names its own `out`."""
    from .checkpoints import default_checkpoint_dir

    keys = {data_key(config) for _, config in plan.runs}
    if len(keys) > 1:
        raise ValueError("The runs of a comparison must train on the same data.")
    stop = stop or threading.Event()
    out_dir = Path(out_dir) if out_dir else default_checkpoint_dir() / "runs" / "compare"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for seed in range(plan.seeds):
        for label, config in plan.runs:
            if stop.is_set():
                return
            config = replace(config, seed=seed)
            if config.out is None:
                config.out = str(out_dir / f"{_slug(label)}_seed{seed}_{_slug(data.name)}_{stamp}.safetensors")
            for event in train(config, stop=stop, data=data):
                yield label, seed, event


# ---- results ------------------------------------------------------------------------------------

SUMMARY_COLUMNS = ("run", "model", "parameters", "seconds per epoch", "best val acc (%)",
                   "test acc (%)", "train−val gap (points)", "seeds", "ended")


def mean_and_spread(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def format_spread(values: list[float | None], scale: float = 100.0) -> str | None:
    """"84.2 ± 1.1" over seeds (just "84.2" for one); None when nothing was measured."""
    values = [v * scale for v in values if v is not None]
    if not values:
        return None
    mean, spread = mean_and_spread(values)
    return f"{mean:.1f}" if len(values) == 1 else f"{mean:.1f} ± {spread:.1f}"


def _best_val_acc(end: RunEnd) -> float | None:
    best = next((r for r in end.history if r["epoch"] == end.best_epoch), None)
    return best["val_acc"] if best else None


def summary_row(label: str, config: TrainConfig, ends: list[RunEnd], data=None) -> dict:
    """One row of the results table: a run over its seeds. With `data`, the parameter count is
    computed for its shape."""
    params = None
    if data is not None:
        from .models import count_parameters, create_model

        model = create_model(config.model, num_classes=len(data.classes), in_channels=data.channels,
                             image_size=config.image_size or data.image_size, pretrained=False,
                             **config.model_options)
        params = count_parameters(model)
    epochs = [r for end in ends for r in end.history]
    seconds = statistics.fmean(r["seconds"] for r in epochs) if epochs else None
    reasons = sorted({end.reason for end in ends})
    return {
        "run": label,
        "model": config.model,
        "parameters": params,
        "seconds per epoch": None if seconds is None else float(f"{seconds:.2g}"),
        "best val acc (%)": format_spread([_best_val_acc(e) for e in ends]),
        "test acc (%)": format_spread([e.metrics.get("test_acc") for e in ends]),
        "train−val gap (points)": format_spread([METRICS["gap"][1](e) for e in ends]),
        "seeds": len(ends),
        "ended": ", ".join(reasons),
    }


@dataclass
class Verdict:
    holds: bool | None        # None: one seed, so there is no spread to compare with
    margin: float             # points: the mean over seeds of the claim's number
    spread: float             # points: its standard deviation over seeds
    seeds: int
    text: str
    per_seed: list[float] = field(default_factory=list)


def verdict(claim: Claim, ends: dict[str, list[RunEnd]]) -> Verdict | None:
    """Whether the claim held, from each run's finished seeds (None until every run of the claim
    has a result for the same seeds)."""
    name, read = METRICS[claim.metric]
    seeds = min(len(ends.get(label, [])) for label in claim.weights)
    per_seed = []
    for seed in range(seeds):
        values = {label: read(ends[label][seed]) for label in claim.weights}
        if any(v is None for v in values.values()):
            return None
        per_seed.append(100 * sum(w * values[label] for label, w in claim.weights.items()))
    if not per_seed:
        return None
    margin, spread = mean_and_spread(per_seed)
    sentence = claim.sentence[0].upper() + claim.sentence[1:]
    if len(per_seed) == 1:
        return Verdict(None, margin, 0.0, 1, f"{sentence}? {margin:+.1f} points of {name} with one "
                                             f"seed: run the default size (several seeds) to see "
                                             f"whether that is more than seed-to-seed noise.",
                       per_seed)
    holds = min(per_seed) > 0 and margin > spread
    text = (f"{sentence}: by {margin:.1f} ± {spread:.1f} points of {name} over {len(per_seed)} "
            f"seeds, more than the seed-to-seed spread." if holds else
            f"Not shown this time: {claim.sentence} by {margin:.1f} ± {spread:.1f} points of {name} "
            f"over {len(per_seed)} seeds, which is not more than the seed-to-seed spread.")
    return Verdict(holds, margin, spread, len(per_seed), text, per_seed)


@dataclass
class LessonResult:
    name: str
    dataset: str
    rows: list[dict]
    verdict: Verdict | None
    seconds: float


def run_lesson(name: str, dataset: str = "shapes", size: str = "default", data_root=None,
               out_dir=None) -> LessonResult:
    """Train a lesson to its end and measure its claim (for scripts and tests; the Compare tab
    streams the same comparison live)."""
    from .training import load_data

    started = time.perf_counter()
    plan = build_plan(name, dataset, size)
    for _, config in plan.runs:
        config.data_root = data_root
    check_requirements(plan)
    data = load_data(plan.runs[0][1])
    ends: dict[str, list[RunEnd]] = {label: [] for label, _ in plan.runs}
    for label, _, event in run_comparison(plan, data, out_dir=out_dir):
        if isinstance(event, RunEnd):
            ends[label].append(event)
    rows = [summary_row(label, config, ends[label], data) for label, config in plan.runs]
    return LessonResult(name, dataset, rows, plan.claim and verdict(plan.claim, ends),
                        time.perf_counter() - started)
