"""A comparison of your own: up to four runs from the rows of a table (Compare → custom).

Each row names a model and any of the options the lessons vary (`CUSTOM_COLUMNS`); a blank cell
keeps the lesson default. Every value is checked as the Train form checks it. A custom comparison
makes no claim: its table and curves speak for themselves.
"""
from __future__ import annotations

import math

from .i18n import text
from .lesson_results import Plan
from .lessons import SIZES, _base, _plan
from .train_config import TrainConfig
from .train_fields import columns

# The run's label, then every option a lesson varies (train_fields.FIELDS' `column`s). New columns
# go at the end: a table sent without them (an older API call) still reads by position.
CUSTOM_COLUMNS = ("label", *(f.name for f in columns()))
MAX_CUSTOM_RUNS = 4
# column -> how its cell is read: text, a number, or a whole number (as the Train form reads
# it); the model and the BatchNorm switch are read on their own.
_CUSTOM_CASTS = {f.name: {"text": str, "number": float, "whole": int}[f.read] for f in columns()
                 if f.name not in ("model", "batch_norm")}


def _blank(value) -> bool:
    # A cleared number cell arrives as NaN from the page's table.
    return value is None or not str(value).strip() or (isinstance(value, float) and math.isnan(value))


def _custom_cell(i: int, key: str, value):
    """A table cell as its TrainConfig field takes it; ValueError names the row and the column as
    the Train form names the field."""
    cast = _CUSTOM_CASTS[key]
    if cast is str:
        return str(value).strip()
    what = text(f"train.what.{key}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(text("lessons.row_not_number", row=i, column=what, value=repr(value))) from None
    if cast is int:
        if not number.is_integer():
            raise ValueError(text("lessons.row_not_whole", row=i, column=what, value=repr(value)))
        return int(number)
    return number


def _custom_config(i: int, row: dict, dataset: str, size: str) -> tuple[str, TrainConfig]:
    from .models import list_models, model_options

    model = str(row["model"]).strip()
    if model not in list_models():
        raise ValueError(text("lessons.row_unknown_model", row=i, model=model, models=", ".join(list_models())))
    options = model_options(model)
    bn = str(row.get("batch_norm", "")).strip().lower()
    if "batch_norm" in options and bn in ("true", "yes", "1", "on", "false", "no", "0", "off"):
        options["batch_norm"] = bn in ("true", "yes", "1", "on")
    overrides = {key: _custom_cell(i, key, row[key]) for key in _CUSTOM_CASTS
                 if not _blank(row.get(key))}
    if "dropout" in overrides and "dropout" in options:  # a model without dropout ignores it
        options["dropout"] = overrides["dropout"]
    overrides.pop("dropout", None)
    config = _base(dataset, size, **overrides, model=model, model_options=options)
    if size == "quick" and "epochs" in overrides:
        config.epochs = min(config.epochs, SIZES["quick"]["epochs"])
    try:
        config.validate()
    except ValueError as error:  # the Train form's sentence, and which row it is about
        raise ValueError(text("lessons.row_error", row=i, error=error.args[0])) from None
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
