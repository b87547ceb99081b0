"""The class board's rules (vision_lab.class_board): ranking and its ties, moves at Reveal, the CSV,
the budget, and a board's split that cannot be rebuilt without its secret data seed."""
from __future__ import annotations

import csv
import io

import pytest
import torch

from vision_lab.class_board import (BoardRuleError, accuracies, board_config, board_data,
                                    board_settings, check_budget, entries_csv, move_label, ranking,
                                    rules, training_seconds)
from vision_lab.i18n import render
from vision_lab.serving.class_db import Board, ClassDB, Entry
from vision_lab.train_config import TrainConfig, load_data


def board(state="open", max_seconds=None, **data) -> Board:
    split = {"subset_train": 200, "subset_test": 100, "val_fraction": 0.2, "data_seed": 123456}
    return Board(id=1, name="Lesson 3", dataset="shapes", data={**split, **data}, max_epochs=2,
                 max_images=200, max_seconds=max_seconds, state=state, created=0.0,
                 revealed=1.0 if state == "revealed" else None)


def entry(id, val, test, seconds=1.0, nickname=None, created=None, **settings) -> Entry:
    return Entry(id=id, board_id=1, nickname=nickname or f"s{id}", visitor=f"v{id}",
                 run_token=f"t{id}", settings={"model": "mlp", "lr": 0.001, **settings},
                 val_acc=val, test_acc=test, seconds=seconds, epochs=1,
                 created=float(id) if created is None else created)


def test_ranking_by_validation_with_ties_on_seconds_then_time():
    entries = [entry(1, 0.80, 0.7, seconds=3.0), entry(2, 0.90, 0.6),
               entry(3, 0.80, 0.9, seconds=2.0), entry(4, 0.80, 0.5, seconds=2.0),
               entry(5, None, None)]
    ranked = ranking(entries, revealed=False)
    assert [r.entry.id for r in ranked] == [2, 3, 4, 1, 5]
    assert [r.rank for r in ranked] == [1, 2, 3, 4, 5]
    assert all(r.test_rank is None and r.move is None for r in ranked)


def test_reveal_ranks_by_test_and_gives_each_move():
    entries = [entry(1, 0.95, 0.70), entry(2, 0.90, 0.85), entry(3, 0.85, 0.80)]
    ranked = ranking(entries, revealed=True)
    assert [(r.entry.id, r.rank, r.test_rank, r.move) for r in ranked] == [
        (2, 2, 1, 1), (3, 3, 2, 1), (1, 1, 3, -2)]
    assert [move_label(r.move) for r in ranked] == ["↑1", "↑1", "↓2"]
    assert move_label(0) == "=" and move_label(None) == ""


def test_csv_has_test_columns_only_once_revealed():
    entries = [entry(1, 0.9, 0.6, nickname="=HYPERLINK(1)"), entry(2, 0.8, 0.85, nickname="李雷")]
    before = list(csv.reader(io.StringIO(entries_csv(board(), entries))))
    assert "test_acc" not in before[0] and "move" not in before[0]
    assert not any("0.6000" in cell or "0.8500" in cell for row in before for cell in row)
    assert [row[2] for row in before[1:]] == ["'=HYPERLINK(1)", "李雷"]   # never a formula
    after = list(csv.DictReader(io.StringIO(entries_csv(board("revealed"), entries))))
    assert [(r["nickname"], r["test_acc"], r["test_rank"], r["move"]) for r in after] == [
        ("李雷", "0.8500", "1", "1"), ("'=HYPERLINK(1)", "0.6000", "2", "-1")]
    assert after[0]["val_acc"] == "0.8000" and after[0]["model"] == "mlp"


def test_plot_data_hides_test_until_reveal():
    entries = [entry(1, 0.9, 0.6), entry(2, 0.8, 0.85)]
    assert accuracies(entries, False) == {"val": [0.9, 0.8], "test": None}
    assert accuracies(entries, True) == {"val": [0.9, 0.8], "test": [0.6, 0.85]}


def test_budget_epochs_and_seconds():
    config = board_config(TrainConfig(model="mlp", epochs=2, dataset="mnist", subset_train=50,
                                      data_seed=7, budget_seconds=30), board())
    assert (config.dataset, config.subset_train, config.subset_test, config.val_fraction,
            config.data_seed, config.budget_seconds) == ("shapes", 200, 100, 0.2, 123456, None)
    with pytest.raises(BoardRuleError, match="at most 2 epoch"):
        board_config(TrainConfig(model="mlp", epochs=3), board())
    check_budget(board(max_seconds=5.0), 4.9)
    check_budget(board(), 1000.0)   # no seconds budget
    with pytest.raises(BoardRuleError, match="5.2 s, more than the board's 5 s"):
        check_budget(board(max_seconds=5.0), 5.2)
    assert training_seconds([{"seconds": 1.25}, {"seconds": 2.0}]) == 3.25
    assert "at most 5 s" in render(rules(board(max_seconds=5.0)))


def test_opening_checks_each_setting():
    data, epochs, images, seconds = board_data("shapes", 200, "100", 0.2, 3, 0)
    assert (epochs, images, seconds) == (3, 200, None)
    assert set(data) == {"subset_train", "subset_test", "val_fraction", "data_seed"}
    assert board_data("shapes", 200, 100, 0.2, 3, 0)[0]["data_seed"] != data["data_seed"]
    for args, said in [(("nope", 200, 100, 0.2, 3, 0), "not a built-in dataset"),
                       (("shapes", 5, 100, 0.2, 3, 0), "Training images must be a whole number of at least 20"),
                       (("shapes", 200, 1.5, 0.2, 3, 0), "Test images must be"),
                       (("shapes", 200, 100, 0.0, 3, 0), "validation share"),
                       (("shapes", 200, 100, 0.2, 99, 0), "at most 50 epochs"),
                       (("shapes", 200, 100, 0.2, 3, -4), "positive number of seconds")]:
        with pytest.raises(BoardRuleError, match=said):
            board_data(*args)


def test_split_cannot_be_rebuilt_without_the_seed():
    """The Train tab sets every data field but the board's secret seed: its validation and test
    images differ from the board's."""
    data = board_data("shapes", 200, 100, 0.2, 1, 0)[0]
    secret = board_config(TrainConfig(model="mlp", epochs=1), board(**data))
    guess = TrainConfig(dataset="shapes", subset_train=200, subset_test=100, val_fraction=0.2,
                        data_seed=0)
    mine, theirs = load_data(secret), load_data(guess)
    assert len(mine.test_images) == len(theirs.test_images) == 100
    assert not torch.equal(mine.test_images, theirs.test_images)
    assert not torch.equal(mine.val_images, theirs.val_images)
    again = load_data(board_config(TrainConfig(model="mlp", epochs=1), board(**data)))
    assert torch.equal(mine.test_images, again.test_images)   # the board's own runs all agree


def test_settings_shown_and_entries_kept(tmp_path):
    config = TrainConfig(model="mlp", epochs=1, lr=0.01, model_options={"dropout": 0.2})
    settings = board_settings(config)
    assert settings["dropout"] == 0.2 and settings["lr"] == 0.01 and settings["model"] == "mlp"
    db = ClassDB(tmp_path)
    b = db.open_board("Lesson", "shapes", board().data, 2, 200)
    db.add_board_run(b.id, "v1", "a", settings, 0.8, 0.7, 1.0, 1)
    db.add_board_run(b.id, "v1", "b", settings, 0.9, 0.6, 1.0, 1)
    assert db.latest_board_run(b.id, "v1").token == "b"
    assert db.latest_board_run(b.id, "v2") is None
