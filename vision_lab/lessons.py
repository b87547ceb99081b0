"""The course's lessons as one-click comparisons, each with the claim it teaches, measured.

`LESSONS` maps a name to a `Lesson` whose `build(dataset, size)` returns a `Plan`: the runs (label,
TrainConfig) trained on the same data, how many seeds each runs with, and the `Claim` the lesson
makes. `run_comparison` trains every run once per seed, tagging each event with its run's label
and seed; `summary_row` condenses a run's seeds into one table row (mean ± standard deviation), and
`verdict` says whether the claim held by more than the seed-to-seed spread. A lesson's claim is a
measured fact or it is not shown as one. No gradio here: the Compare tab, the benchmark
(benchmarks/lessons.py) and the tests all use this module.

What a person reads (questions, claims, run labels, column headers, verdicts) is a `Text` (see
vision_lab.i18n): the English sentence itself, which the app says in the visitor's language. A
lesson's name is its identifier and stays English; `lesson_title(name)` is what to show.
"""
from __future__ import annotations

import re
import statistics
import threading
import time
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

from .i18n import Text, catalogue, listing, text
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
    "test_acc": (text("lessons.metric.test_acc"), lambda end: end.metrics.get("test_acc")),
    "gap": (text("lessons.metric.gap"),
            lambda end: _last(end, "train_acc") - _last(end, "val_acc") if end.history else None),
}


def _last(end: RunEnd, key: str) -> float:
    return end.history[-1][key]


@dataclass(frozen=True)
class Claim:
    """What a lesson says, as a number per seed: the sum of weight × metric over its runs, in
    points. The claim holds when that number is positive for every seed and its mean is larger
    than its standard deviation over the seeds."""
    sentence: Text                # e.g. "the CNN beats the MLP" (it may begin a verdict: `{claim!u}`)
    weights: dict[str, float]     # run label -> weight
    metric: str = "test_acc"


@dataclass
class Plan:
    runs: list[tuple[str, TrainConfig]]
    seeds: int
    claim: Claim | None = None
    # A learning curve's lines: run label -> the line (model) its point belongs to. A lesson with
    # one shows final test accuracy against training images instead of accuracy per epoch.
    curve: dict[str, Text] | None = None
    # What to look at inside the network: run label -> its seeds' last-epoch internals (see
    # internals.py) -> one sentence, or None when they are not there (a replay from before them).
    pointer: Callable[[dict[str, list[dict]]], Text | None] | None = None


@dataclass(frozen=True)
class Lesson:
    question: Text                             # what the lesson asks, before the run
    build: Callable[[str, str], Plan]
    needs_pretrained: bool = False


def _base(dataset: str, size: str, **overrides) -> TrainConfig:
    if size not in SIZES:
        raise ValueError(text("lessons.unknown_size", size=size, choices=", ".join(SIZES)))
    sizes = {k: v for k, v in SIZES[size].items() if k != "seeds"}
    # A lesson may ask for more epochs or images than the default; the quick size stays short.
    if size == "quick":
        overrides.pop("epochs", None)
        overrides.pop("subset_train", None)
        overrides.pop("subset_test", None)
    return TrainConfig(**{"dataset": dataset, **sizes, "optimizer": "adam", "lr": 1e-3,
                          "batch_size": 64, **overrides})


def _options(model: str, **options) -> dict:
    from .models import model_options

    return {**model_options(model), **options}


def _plan(size: str, runs: list[tuple[str, TrainConfig]], claim: Claim | None) -> Plan:
    return Plan(runs, SIZES[size]["seeds"], claim)


def mlp_vs_cnn(dataset: str = "shapes", size: str = "default") -> Plan:
    mlp, cnn = text("lessons.run.mlp"), text("lessons.run.cnn")
    runs = [(mlp, _base(dataset, size, model="mlp")),
            (cnn, _base(dataset, size, model="cnn"))]
    return _plan(size, runs, Claim(text("lessons.claim.mlp_vs_cnn"), {cnn: 1, mlp: -1}))


def batchnorm(dataset: str = "shapes", size: str = "default") -> Plan:
    # Plain SGD at lr 0.01: with BatchNorm the CNN starts learning at once; without it the first
    # epochs barely move (see benchmarks/lessons.py for the measured margins).
    common = dict(model="cnn", optimizer="sgd", lr=0.01, momentum=0.9)
    with_bn, without_bn = text("lessons.run.cnn_batchnorm"), text("lessons.run.cnn_no_batchnorm")
    runs = [(with_bn, _base(dataset, size, model_options=_options("cnn", batch_norm=True), **common)),
            (without_bn, _base(dataset, size, model_options=_options("cnn", batch_norm=False), **common))]
    plan = _plan(size, runs, Claim(text("lessons.claim.batchnorm"), {with_bn: 1, without_bn: -1}))
    plan.pointer = partial(batchnorm_pointer, with_bn, without_bn)
    return plan


def batchnorm_pointer(with_bn: str, without_bn: str, internals: dict[str, list[dict]]) -> Text | None:
    """The BatchNorm lesson's sentence on what to look at inside the network: the spread of what
    each layer hands on, and the first layer's gradient norm, with and without BatchNorm (means
    over the seeds at the last epoch)."""
    from .internals import handed_on_spread

    figures = {}
    for label in (with_bn, without_bn):
        seeds = [r for r in internals.get(label, []) if r and r.get("layers")]
        spreads = [[std for _, std in handed_on_spread(r)] for r in seeds]
        grads = [r["layers"][0]["grad_norm"] for r in seeds]
        if not seeds or any(v is None for row in spreads for v in row) or None in grads:
            return None
        mean_spread = [statistics.fmean(column) for column in zip(*spreads)]
        figures[label] = (" → ".join(f"{v:.2g}" for v in mean_spread), statistics.fmean(grads))
    return text("internals.lesson.batchnorm", without=figures[without_bn][0], with_bn=figures[with_bn][0],
                grad_without=figures[without_bn][1], grad_with=figures[with_bn][1])


def augmentation(dataset: str = "shapes", size: str = "default") -> Plan:
    # Few training images, many epochs and no dropout: the plain model memorises its images
    # (train accuracy races ahead of validation) while the augmented one sees new variants each
    # epoch, so train and validation stay together.
    recipe = "digits" if dataset in ("mnist", "fashion_mnist") else "light"
    common = dict(model="cnn", model_options=_options("cnn", dropout=0.0), subset_train=800, epochs=10)
    plain, augmented = text("lessons.run.no_augmentation"), text("lessons.run.augmented", preset=recipe)
    runs = [(plain, _base(dataset, size, augment="none", **common)),
            (augmented, _base(dataset, size, augment=recipe, **common))]
    return _plan(size, runs, Claim(text("lessons.claim.augmentation"), {plain: 1, augmented: -1}, metric="gap"))


def pixel_permutation(dataset: str = "shapes", size: str = "default") -> Plan:
    # An MLP against the CNN, each on the real images and on images whose pixels all went through
    # one fixed shuffle. The MLP does not care; the CNN loses the neighbourhoods its filters rely
    # on. On shapes it is the course's tiny MLP (two hidden layers of 8 units) with more epochs and
    # a higher lr: it is cheap, and needs them to rise clearly above chance. On MNIST that MLP's
    # accuracy swings by ten points from seed to seed, more than the effect, so there it is one
    # hidden layer of 64 (measured: benchmarks/lessons.py --dataset mnist).
    if dataset == "shapes":
        mlp = dict(model_options=_options("mlp", hidden_sizes=[8, 8], dropout=0.0), epochs=6, lr=3e-3)
    else:
        mlp = dict(model_options=_options("mlp", hidden_sizes=[64], dropout=0.0))
    sizes = "-".join(str(n) for n in mlp["model_options"]["hidden_sizes"])
    tiny, tiny_permuted = text("lessons.run.mlp_sized", sizes=sizes), text("lessons.run.mlp_sized_permuted", sizes=sizes)
    cnn, cnn_permuted = text("lessons.run.cnn"), text("lessons.run.cnn_permuted")
    runs = [(tiny, _base(dataset, size, model="mlp", **mlp)),
            (tiny_permuted, _base(dataset, size, model="mlp", permute_pixels=True, **mlp)),
            (cnn, _base(dataset, size, model="cnn")),
            (cnn_permuted, _base(dataset, size, model="cnn", permute_pixels=True))]
    return _plan(size, runs, Claim(text("lessons.claim.pixel_permutation"),
                                   {cnn: 1, cnn_permuted: -1, tiny: -1, tiny_permuted: 1}))


def lr_schedulers(dataset: str = "shapes", size: str = "default") -> Plan:
    # SGD at a learning rate high enough that a constant one keeps the weights bouncing at the
    # end. MNIST is easier: with shapes' lr and batches (over six epochs) the late decay gained
    # -0.1 ± 0.5 points there, inside the spread, and at lr 0.1 0.2 ± 0.8 on seeds 3-5. Batches of
    # 16 at lr 0.03 keep the constant run noisy to the end, six epochs give the decay room, and
    # 2,000 test images (not 500) halve the noise of the measurement: +1.0 ± 0.5 over seeds 0-5,
    # every seed above zero (benchmarks/lessons.py --dataset mnist).
    if dataset == "shapes":
        common = dict(lr=0.05, epochs=4)
    else:
        common = dict(lr=0.03, batch_size=16, epochs=6, subset_test=2000)
    common = dict(model="cnn", optimizer="sgd", momentum=0.9, **common)
    constant, cosine = text("lessons.run.constant_lr"), text("lessons.run.cosine")
    runs = [(constant, _base(dataset, size, scheduler="none", **common)),
            (text("lessons.run.step_lr"), _base(dataset, size, scheduler="step",
                                                scheduler_options={"step_size": 2, "gamma": 0.1},
                                                **common)),
            (cosine, _base(dataset, size, scheduler="cosine", **common))]
    return _plan(size, runs, Claim(text("lessons.claim.lr_schedulers"), {cosine: 1, constant: -1}))


def pretrained_resnet(dataset: str = "shapes", size: str = "default") -> Plan:
    # The course's recipe: first train only the new head on frozen ImageNet features, then
    # unfreeze everything with a smaller learning rate.
    common = dict(model="resnet18", epochs=3, lr=1e-3)
    pretrained, scratch = text("lessons.run.resnet_pretrained"), text("lessons.run.resnet_scratch")
    runs = [(pretrained, _base(dataset, size, pretrained=True, freeze_epochs=1, unfreeze_lr=1e-4, **common)),
            (scratch, _base(dataset, size, **common))]
    return _plan(size, runs, Claim(text("lessons.claim.pretrained_resnet"), {pretrained: 1, scratch: -1}))


def speedrun_recipe(dataset: str = "shapes", size: str = "default") -> Plan:
    # The course's recipe (its CNN, Adam at lr 0.001, batch 64, nothing else) for 6 epochs against
    # the speedrun recipe (recipes.py) for 4. Both train on the library's in-memory data path, so
    # what differs is the recipe alone. Epochs, not a time budget, so the verdict does not depend
    # on how busy the machine is: the time shows in the seconds-per-epoch column (a speedrun epoch
    # takes a fraction of a course one), and `--budget-seconds` is the CLI's way to give both the
    # same seconds.
    course, speedrun = text("lessons.run.course_recipe"), text("lessons.run.speedrun_recipe")
    runs = [(course, _base(dataset, size, model="cnn", epochs=6)),
            (speedrun, _base(dataset, size, model="speedrun", epochs=4))]
    return _plan(size, runs, Claim(text("lessons.claim.speedrun_recipe"), {speedrun: 1, course: -1}))


# The learning curve's points: shares of the training images. Every run takes the same number of
# steps (a smaller share is seen for more epochs), so a point differs from the next only in how
# many different images the model learnt from, not in how long it trained.
CURVE_SHARES = (0.05, 0.2, 0.5, 1.0)
CURVE_EPOCHS = 3   # at the whole training set; 60 at 5% (shapes and MNIST alike, see the README)


def learning_curves(dataset: str = "shapes", size: str = "default") -> Plan:
    # The claim compares each model's ends of the curve: all of the images against the fewest.
    # (The quick size trains every share for its usual 2 epochs: a first look, with no verdict.)
    runs, curve, weights = [], {}, {}
    for model in ("mlp", "cnn"):
        line = text(f"lessons.run.{model}")
        for share in CURVE_SHARES:
            label = text("lessons.run.share_of_images", model=line, percent=round(100 * share))
            config = _base(dataset, size, model=model, epochs=round(CURVE_EPOCHS / share))
            runs.append((label, replace(config, train_fraction=share)))
            curve[label] = line
            if share in (min(CURVE_SHARES), max(CURVE_SHARES)):
                weights[label] = 1 if share == max(CURVE_SHARES) else -1
    return Plan(runs, SIZES[size]["seeds"], Claim(text("lessons.claim.learning_curves"), weights), curve)


# The keys are the lessons' identifiers (the API and the CLI take them); lesson_title(name) is what
# to show. Each lesson's texts are keyed by its build function's name: lessons.name.<build>,
# lessons.question.<build>, lessons.claim.<build>.
LESSONS: dict[str, Lesson] = {
    "MLP vs CNN": Lesson(text("lessons.question.mlp_vs_cnn"), mlp_vs_cnn),
    "BatchNorm vs none": Lesson(text("lessons.question.batchnorm"), batchnorm),
    "Augmentation vs none (the overfitting gap)": Lesson(text("lessons.question.augmentation"), augmentation),
    "Pixel permutation": Lesson(text("lessons.question.pixel_permutation"), pixel_permutation),
    "LR schedulers": Lesson(text("lessons.question.lr_schedulers"), lr_schedulers),
    "Pretrained vs from-scratch ResNet18": Lesson(text("lessons.question.pretrained_resnet"), pretrained_resnet,
                                                  needs_pretrained=True),
    "Course recipe vs speedrun recipe": Lesson(text("lessons.question.speedrun_recipe"), speedrun_recipe),
    "Learning curves: MLP vs CNN": Lesson(text("lessons.question.learning_curves"), learning_curves),
}


def lesson_title(name: str) -> Text:
    """A lesson's name as a person reads it: a Text (its English is `name` itself, the identifier)
    that the app renders in the visitor's language. KeyError for a name that is no lesson."""
    return text(f"lessons.name.{LESSONS[name].build.__name__}")


def list_lessons() -> list[str]:
    return list(LESSONS)


def build_plan(name: str, dataset: str = "shapes", size: str = "default") -> Plan:
    if name not in LESSONS:
        raise ValueError(text("lessons.unknown_lesson", name=name, choices=", ".join(LESSONS)))
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
        raise ValueError(text("lessons.row_unknown_model", row=i, model=model, models=", ".join(list_models())))
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
                raise ValueError(text("lessons.row_not_number", row=i, column=key, value=repr(value))) from None
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
        raise ValueError(text("lessons.custom_empty"))
    if len(rows) > MAX_CUSTOM_RUNS:
        raise ValueError(text("lessons.custom_too_many", most=MAX_CUSTOM_RUNS, count=len(rows)))
    runs = [_custom_config(i, row, dataset, size) for i, row in enumerate(rows, 1)]
    labels = [label for label, _ in runs]
    if len(set(labels)) < len(labels):
        raise ValueError(text("lessons.custom_same_label"))
    return _plan(size, runs, None)


def check_requirements(plan: Plan) -> None:
    """Raise before any training starts if a run cannot work here (e.g. weights cannot be had)."""
    from .models import create_model

    if any(config.pretrained for _, config in plan.runs):
        # Raises PretrainedWeightsUnavailable with a plain sentence when offline.
        create_model("resnet18", num_classes=2, pretrained=True)


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", label).strip("-").lower() or "run"


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
        raise ValueError(text("lessons.not_same_data"))
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

# The results table's column headers, and the keys of a summary_row: Texts, so the table can be
# headed in the visitor's language while row["test acc (%)"] keeps working.
SUMMARY_COLUMNS = tuple(text(f"lessons.column.{key}") for key in (
    "run", "model", "parameters", "seconds_per_epoch", "best_val_acc", "test_acc", "gap", "seeds", "ended"))


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
    return dict(zip(SUMMARY_COLUMNS, (
        label,
        config.model,
        params,
        None if seconds is None else float(f"{seconds:.2g}"),
        format_spread([_best_val_acc(e) for e in ends]),
        format_spread([e.metrics.get("test_acc") for e in ends]),
        format_spread([METRICS["gap"][1](e) for e in ends]),
        len(ends),
        listing(*map(_ended, reasons)),
    )))


def _ended(reason: str) -> Text | str:
    """How a run ended (RunEnd.reason), as a person reads it; the English is the reason itself."""
    key = f"lessons.ended.{reason}"
    return text(key) if key in catalogue("en") else reason


@dataclass
class Verdict:
    holds: bool | None        # None: one seed, so there is no spread to compare with
    margin: float             # points: the mean over seeds of the claim's number
    spread: float             # points: its standard deviation over seeds
    seeds: int
    text: Text
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
    if len(per_seed) == 1:
        return Verdict(None, margin, 0.0, 1, text("lessons.verdict.one_seed", claim=claim.sentence,
                                                  margin=margin, metric=name), per_seed)
    holds = min(per_seed) > 0 and margin > spread
    said = text("lessons.verdict.holds" if holds else "lessons.verdict.not_shown", claim=claim.sentence,
                margin=margin, spread=spread, metric=name, seeds=len(per_seed))
    return Verdict(holds, margin, spread, len(per_seed), said, per_seed)


def curve_points(plan: Plan, ends: dict[str, list[RunEnd]]) -> dict[Text, dict[int, list[float]]]:
    """A learning-curve lesson's finished runs as plots.learning_curve takes them: line ->
    {training images: [test accuracy of each seed]}. A run stopped before its test is left out."""
    lines: dict[Text, dict[int, list[float]]] = {}
    for label, line in (plan.curve or {}).items():
        points = lines.setdefault(line, {})
        for end in ends.get(label, []):
            if end.history and end.metrics.get("test_acc") is not None:
                images = end.history[-1]["images"]   # an epoch is one pass over the run's images
                points.setdefault(images, []).append(end.metrics["test_acc"])
    return lines


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
