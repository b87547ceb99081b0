"""What a lesson's runs measured: the claims a lesson makes, their verdicts, and the results table.

A `Claim` is a number per seed (weight × metric over its runs); `verdict` says whether it held by
more than the seed-to-seed spread; `summary_row` condenses a run's seeds into one table row (mean
± standard deviation); `curve_points` turns a learning-curve lesson's runs into points. The lessons
themselves are in lessons.py; this module reads finished runs (`RunEnd`s and their last-epoch
internals) and nothing else, so the Compare tab, the benchmark and the tests judge alike.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Callable

from .i18n import Text, catalogue, listing, text
from .internals import near_zero_share, weight_size
from .train_config import RunEnd, TrainConfig

METRICS = {
    # name: (what it is called in a sentence, how to read it off a finished run)
    "test_acc": (text("lessons.metric.test_acc"), lambda end: end.metrics.get("test_acc")),
    "gap": (text("lessons.metric.gap"),
            lambda end: _last(end, "train_acc") - _last(end, "val_acc") if end.history else None),
    "epochs": (text("lessons.metric.epochs"), lambda end: len(end.history) if end.metrics else None),
    "seconds": (text("lessons.metric.seconds"),
                lambda end: sum(r["seconds"] for r in end.history) if end.metrics else None),
}
# Metrics read off a run's last-epoch internals (internals.py) rather than its RunEnd.
INSIDE_METRICS = {
    "near_zero": (text("lessons.metric.near_zero"), near_zero_share),
    "weight_size": (text("lessons.metric.weight_size"), weight_size),
}
# How a claim's number is written: (factor on the metric's difference, unit). Shares and
# accuracies are in points (percentage points); a claim `relative_to` a run is in percent.
UNITS = {"epochs": (1, text("lessons.unit.epochs")), "seconds": (1, text("lessons.unit.seconds"))}
POINTS, PERCENT = (100, text("lessons.unit.points")), (100, text("lessons.unit.percent"))


def _last(end: RunEnd, key: str) -> float:
    return end.history[-1][key]


@dataclass(frozen=True)
class Claim:
    """What a lesson says, as a number per seed: the sum of weight × metric over its runs, in
    points. The claim holds when that number is positive for every seed and its mean is larger
    than its standard deviation over the seeds.

    With `relative_to` a run, the number is that sum in percent of the run's own metric (L2 makes
    the weights 40% smaller)."""
    sentence: Text                # e.g. "the CNN beats the MLP" (it may begin a verdict: `{claim!u}`)
    weights: dict[str, float]     # run label -> weight
    metric: str = "test_acc"      # a key of METRICS or INSIDE_METRICS
    relative_to: str | None = None


@dataclass
class Plan:
    """A lesson's runs (label, config), how many seeds each, and the claims to judge on them."""
    runs: list[tuple[str, TrainConfig]]
    seeds: int
    claim: Claim | None = None
    # A learning curve's lines: run label -> the line (model) its point belongs to. A lesson with
    # one shows final test accuracy against training images instead of accuracy per epoch.
    curve: dict[str, Text] | None = None
    # What to look at inside the network: run label -> its seeds' last-epoch internals (see
    # internals.py) -> one sentence, or None when they are not there (a replay from before them).
    pointer: Callable[[dict[str, list[dict]]], Text | None] | None = None
    # More claims the lesson makes, judged like `claim` (the regularization lesson has one per
    # thing a regularizer does).
    also: list[Claim] = field(default_factory=list)
    # What the Compare tab's "inside the network" plot shows: each layer's activation spread and
    # gradient ("profile"), or each run's weight histograms ("weights").
    inside: str = "profile"

    @property
    def claims(self) -> list[Claim]:
        return [self.claim, *self.also] if self.claim else []


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


def _claim_numbers(claim: Claim, ends: dict[str, list[RunEnd]],
                   inside: dict[str, list[dict | None]] | None) -> list[float] | None:
    """The claim's number for each seed every run of it finished (None: a value is missing)."""
    if claim.metric in INSIDE_METRICS:
        read = INSIDE_METRICS[claim.metric][1]
        runs = {label: [r and read(r) for r in (inside or {}).get(label, [])] for label in claim.weights}
    else:
        read = METRICS[claim.metric][1]
        runs = {label: [read(end) for end in ends.get(label, [])] for label in claim.weights}
    runs = {label: values[:len(ends.get(label, []))] for label, values in runs.items()}
    factor = (PERCENT if claim.relative_to else UNITS.get(claim.metric, POINTS))[0]
    per_seed = []
    for seed in range(min(len(values) for values in runs.values())):
        values = {label: runs[label][seed] for label in claim.weights}
        if any(v is None for v in values.values()):
            return None
        number = factor * sum(w * values[label] for label, w in claim.weights.items())
        per_seed.append(number / values[claim.relative_to] if claim.relative_to else number)
    return per_seed


def verdict(claim: Claim, ends: dict[str, list[RunEnd]],
            inside: dict[str, list[dict | None]] | None = None) -> Verdict | None:
    """Whether the claim held, from each run's finished seeds (None until every run of the claim
    has a result for the same seeds). `inside` is each run's seeds' last-epoch internals, for a
    claim on INSIDE_METRICS."""
    name = (INSIDE_METRICS.get(claim.metric) or METRICS[claim.metric])[0]
    unit = (PERCENT if claim.relative_to else UNITS.get(claim.metric, POINTS))[1]
    per_seed = _claim_numbers(claim, ends, inside)
    if not per_seed:
        return None
    margin, spread = mean_and_spread(per_seed)
    said = dict(claim=claim.sentence, margin=margin, metric=name, unit=unit)
    if len(per_seed) == 1:
        return Verdict(None, margin, 0.0, 1, text("lessons.verdict.one_seed", **said), per_seed)
    holds = min(per_seed) > 0 and margin > spread
    key = "lessons.verdict.holds" if holds else "lessons.verdict.not_shown"
    return Verdict(holds, margin, spread, len(per_seed), text(key, spread=spread, seeds=len(per_seed), **said),
                   per_seed)


def verdicts(plan: Plan, ends: dict[str, list[RunEnd]],
             inside: dict[str, list[dict | None]] | None = None) -> list[Verdict | None]:
    """Every claim of the plan, judged (see `verdict`)."""
    return [verdict(claim, ends, inside) for claim in plan.claims]


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
