"""A class board's rules and ranking, without any UI: what the lecturer fixes when opening a
board, how a student's run is held to it, how entries rank, and the CSV the lecturer exports.

The board fixes the data: its dataset, how many training and test images, the validation share
and a data seed drawn secretly (`secrets`) when it opens. The seed picks the images of every split,
so a student cannot rebuild the board's validation or test images from the Train tab: only a run
trained for the board (ui/board.py) sees them, and its test accuracy is kept hidden until Reveal.

Entries rank by validation accuracy (ties: fewer training seconds, then the earlier entry). At
Reveal they rank by test accuracy (same ties), and each entry's move is its validation place minus
its test place: the class sees who tuned to the validation set.
"""
from __future__ import annotations

import csv
import io
import math
import secrets
from dataclasses import dataclass

from .i18n import Text, join, text

MAX_EPOCHS = 50           # the most a lecturer may allow
MIN_TRAIN_IMAGES = 20     # fewer leave some class without a validation image
# The settings a board entry shows (and the CSV lists): those a student chooses on the board's form.
SETTINGS = ("model", "optimizer", "lr", "batch_size", "epochs", "augment", "dropout",
            "weight_decay", "seed")


class BoardRuleError(ValueError):
    """A board setting or a run that the board's rules refuse: the message says which."""


# ---- opening a board ----------------------------------------------------------------------------

def board_data(dataset: str, train_images, test_images, val_fraction, max_epochs,
               max_seconds) -> tuple[dict, int, int, float | None]:
    """The lecturer's choices, checked: (data, max_epochs, max_images, max_seconds), where data is
    the fixed split (subset_train, subset_test, val_fraction and a secret data_seed)."""
    from .datasets import list_datasets

    if dataset not in list_datasets():
        raise BoardRuleError(text("class.board.bad_dataset", name=str(dataset)[:40],
                                  choices=", ".join(list_datasets())))
    train_images = _whole(train_images, "train_images", MIN_TRAIN_IMAGES)
    test_images = _whole(test_images, "test_images", 1)
    max_epochs = _whole(max_epochs, "max_epochs", 1)
    if max_epochs > MAX_EPOCHS:
        raise BoardRuleError(text("class.board.too_many_epochs_allowed", limit=MAX_EPOCHS))
    try:
        val_fraction = float(val_fraction)
    except (TypeError, ValueError):
        val_fraction = math.nan
    if not 0.05 <= val_fraction <= 0.5:   # no validation set: nothing to rank by
        raise BoardRuleError(text("class.board.bad_val_fraction", value=val_fraction))
    seconds = None
    if max_seconds not in (None, "", 0):
        try:
            seconds = float(max_seconds)
        except (TypeError, ValueError):
            seconds = math.nan
        if not (math.isfinite(seconds) and seconds > 0):
            raise BoardRuleError(text("class.board.bad_seconds", value=max_seconds))
    data = {"subset_train": train_images, "subset_test": test_images,
            "val_fraction": val_fraction, "data_seed": secrets.randbelow(2**31)}
    return data, max_epochs, train_images, seconds


def _whole(value, what: str, low: int) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and number.is_integer() and number >= low):
        raise BoardRuleError(text("class.board.bad_number", what=text(f"class.board.{what}"),
                                  value=str(value)[:20], low=low))
    return int(number)


# ---- a run for the board ------------------------------------------------------------------------

def board_config(config, board):
    """`config` (a TrainConfig with the student's settings) trained on the board's data, or
    BoardRuleError when it asks for more than the board allows."""
    from dataclasses import replace

    if config.epochs > board.max_epochs:
        raise BoardRuleError(text("class.board.too_many_epochs", epochs=config.epochs,
                                  limit=board.max_epochs))
    data = board.data
    config = replace(config, dataset=board.dataset, subset_train=data["subset_train"],
                     subset_test=data["subset_test"], val_fraction=data["val_fraction"],
                     data_seed=data["data_seed"], train_fraction=1.0, budget_seconds=None,
                     early_stopping_patience=0, resume=None)
    config.validate()
    return config


def board_settings(config) -> dict:
    """What an entry shows of a run's settings (SETTINGS)."""
    values = {name: getattr(config, name) for name in SETTINGS if hasattr(config, name)}
    values["dropout"] = (config.model_options or {}).get("dropout", 0.0)
    if isinstance(values["augment"], list):
        values["augment"] = "+".join(op.get("op", "?") for op in values["augment"])
    return values


def training_seconds(history: list[dict]) -> float:
    """A run's training time: the sum of its epochs' seconds (what the board's budget counts;
    start-up, waiting in line and the test pass are not the student's doing)."""
    return round(sum(h.get("seconds") or 0.0 for h in history), 2)


def check_budget(board, seconds: float) -> None:
    """A board with a seconds budget takes only runs whose training time fits in it."""
    if board.max_seconds and seconds > board.max_seconds:
        raise BoardRuleError(text("class.board.over_budget", seconds=seconds,
                                  limit=board.max_seconds))


def rules(board) -> Text:
    """The board's rules as a sentence (plain text: the board's name is the lecturer's typing)."""
    budget = (text("class.board.rules_seconds", seconds=board.max_seconds) if board.max_seconds
              else text("class.board.rules_no_seconds"))
    key = "class.board.rules_revealed" if board.state == "revealed" else "class.board.rules"
    return text(key, name=board.name, dataset=board.dataset,
                train=board.data["subset_train"], test=board.data["subset_test"],
                val=round(board.data["val_fraction"] * 100), epochs=board.max_epochs, budget=budget)


# ---- ranking ------------------------------------------------------------------------------------

@dataclass
class Ranked:
    entry: object              # a class_db.Entry
    rank: int                  # by validation accuracy
    test_rank: int | None = None
    move: int | None = None    # places gained at Reveal (validation place - test place)


def _order(entries, accuracy) -> list:
    # Best accuracy first (a missing one last), then fewer seconds, then the earlier entry.
    return sorted(entries, key=lambda e: (-(accuracy(e) if accuracy(e) is not None else -1.0),
                                          e.seconds, e.created, e.id))


def ranking(entries, revealed: bool) -> list[Ranked]:
    """The board's rows: by validation accuracy, or once revealed by test accuracy with each
    entry's move."""
    ranked = [Ranked(e, i + 1) for i, e in enumerate(_order(entries, lambda e: e.val_acc))]
    if not revealed:
        return ranked
    place = {id(e): i + 1 for i, e in enumerate(_order(entries, lambda e: e.test_acc))}
    for row in ranked:
        row.test_rank = place[id(row.entry)]
        row.move = row.rank - row.test_rank
    return sorted(ranked, key=lambda row: row.test_rank)


def move_label(move: int | None) -> str:
    if move is None:
        return ""
    return f"↑{move}" if move > 0 else f"↓{-move}" if move < 0 else "="


def settings_summary(settings: dict) -> Text:
    """An entry's settings in one short line: the regularization ones only where they are on."""
    parts = [text("class.board.summary", **{name: settings.get(name, "") for name in SETTINGS})]
    if settings.get("augment", "none") not in ("none", ""):
        parts.append(text("class.board.summary_augment", augment=settings["augment"]))
    for name in ("dropout", "weight_decay"):
        if settings.get(name):
            parts.append(text(f"class.board.summary_{name}", value=settings[name]))
    return join(*parts, sep=" · ")


def percent(value) -> str:
    return "" if value is None else f"{value * 100:.1f}%"


# ---- export -------------------------------------------------------------------------------------

CSV_COLUMNS = ("rank", "entry", "nickname", *SETTINGS, "val_acc", "seconds")
CSV_REVEALED = ("test_acc", "test_rank", "move")


def entries_csv(board, entries) -> str:
    """The board as CSV: one line an entry, ranked as the board shows it; the test columns only
    once the board is revealed (or closed after a Reveal)."""
    revealed = board.revealed is not None
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS + (CSV_REVEALED if revealed else ()))
    for row in ranking(entries, revealed):
        e = row.entry
        line = [row.rank, e.id, _cell(e.nickname), *(e.settings.get(name, "") for name in SETTINGS),
                _fraction(e.val_acc), e.seconds]
        if revealed:
            line += [_fraction(e.test_acc), row.test_rank, row.move]
        writer.writerow(line)
    return out.getvalue()


def _fraction(value) -> str:
    return "" if value is None else f"{value:.4f}"


def _cell(value: str) -> str:
    # A spreadsheet runs a cell starting with = + - @ as a formula: a nickname is only ever text.
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value


# ---- the distribution plot's data ---------------------------------------------------------------

def accuracies(entries, revealed: bool) -> dict:
    """What the board's plot draws: validation accuracies, and test ones once revealed (in the
    same order, one pair per entry)."""
    with_val = [e for e in entries if e.val_acc is not None]
    return {"val": [e.val_acc for e in with_val],
            "test": [e.test_acc for e in with_val] if revealed else None}
