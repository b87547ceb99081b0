"""The Compare tab's custom table: a column for every option a lesson varies, checked as the Train
form checks it, in the visitor's language; older eight-column tables still read."""
import pytest

from vision_lab.i18n import render, using
from vision_lab.custom_comparison import CUSTOM_COLUMNS, custom_plan

NEW = {"dropout": "0.3", "weight_decay": 0.001, "l1": "1e-5", "early_stopping_patience": 2,
       "train_fraction": 0.5}


def test_a_row_with_the_new_columns_builds_that_config():
    (label, config), = custom_plan([{"label": "reg", "model": "cnn", "lr": "0.01", **NEW}]).runs
    assert label == "reg" and config.lr == 0.01
    assert config.model_options["dropout"] == 0.3
    assert (config.weight_decay, config.l1, config.early_stopping_patience,
            config.train_fraction) == (0.001, 1e-5, 2, 0.5)
    # Blank cells (NaN is how the page sends a cleared number) keep the lessons' defaults.
    (_, plain), = custom_plan([{"model": "cnn", "dropout": float("nan"), "weight_decay": "",
                                "l1": None, "train_fraction": " "}]).runs
    assert plain.model_options["dropout"] == 0.5 and plain.weight_decay == plain.l1 == 0
    assert plain.train_fraction == 1 and plain.early_stopping_patience == 0


@pytest.mark.parametrize("cell, sentence", [
    ({"dropout": 1}, "Row 1: dropout must be at least 0 and below 1, got 1.0."),
    ({"weight_decay": -0.1}, "Row 1: weight_decay cannot be negative, got -0.1."),
    ({"l1": "much"}, "Row 1: L1 must be a number, got 'much'."),
    ({"early_stopping_patience": 1.5}, "Row 1: early stopping patience must be a whole number, got 1.5."),
    ({"early_stopping_patience": -1},
     "Row 1: early stopping patience cannot be negative (0 turns it off)."),
    ({"train_fraction": 0}, "Row 1: the share of training images must be above 0 and at most 1, got 0.0."),
])
def test_bad_cells_get_the_train_forms_sentences_and_their_row(cell, sentence):
    with pytest.raises(ValueError) as error:
        custom_plan([{"model": "cnn", **cell}])
    assert str(error.value) == sentence


def test_the_train_form_says_the_same_about_dropout():
    from vision_lab.ui.train_form import make_config

    with pytest.raises(ValueError) as error:
        make_config({"model": "cnn", "dropout": 1})
    assert str(error.value) == "dropout must be at least 0 and below 1, got 1.0."


def test_a_bad_cell_is_said_in_chinese():
    with pytest.raises(ValueError) as error:
        custom_plan([{"model": "cnn", "l1": "much"}])
    assert render(error.value.args[0], "zh") == "第 1 行：L1 正则化系数必须是数字，而不是 'much'。"


def test_the_old_eight_columns_by_position_still_read():
    from vision_lab.ui.compare import _rows_from_table

    old = {"headers": list(CUSTOM_COLUMNS[:8]),
           "data": [["A", "cnn", "none", "false", "sgd", 0.05, "none", 2]]}
    (label, config), = custom_plan(_rows_from_table(old)).runs
    assert label == "A" and config.optimizer == "sgd" and config.lr == 0.05
    assert config.model_options["batch_norm"] is False and config.weight_decay == 0


def test_the_pages_table_reads_by_position_whatever_its_headings():
    import pandas as pd

    from vision_lab.ui.compare import _rows_from_table, custom_table

    assert list(custom_table().columns) == list(CUSTOM_COLUMNS)   # English: the keys themselves
    with using("zh"):   # the handler without its visitor: the language is the one in use
        zh = custom_table.__wrapped__()
    assert list(zh.columns)[-2:] == ["早停耐心轮数 (early_stopping_patience)",
                                     "训练集比例 (train_fraction)"]
    rows = _rows_from_table(zh)
    assert rows[0]["label"] == "A：CNN" and rows[0]["train_fraction"] == 1   # the default row in Chinese
    # An API caller may name only some columns, in its own order.
    named = pd.DataFrame([[0.2, "cnn"]], columns=["dropout", "model"])
    (_, config), = custom_plan(_rows_from_table(named)).runs
    assert config.model_options["dropout"] == 0.2


def test_every_column_has_a_chinese_heading():
    from vision_lab.i18n import catalogue

    zh = catalogue("zh")
    for key in CUSTOM_COLUMNS:
        heading = zh[f"compare.custom_column.{key}"]
        assert any("\u4e00" <= ch <= "\u9fff" for ch in heading), heading


# ---- through the app's API (a real server, gradio_client) ---------------------------------------

def _compare(client, table):
    from vision_lab.ui.share import CUSTOM

    return client.predict(lesson_name=CUSTOM, dataset_name="shapes", size_name="quick",
                          custom_table=table, api_name="/compare")


def test_the_api_takes_new_columns_by_name_and_old_tables_by_position(client):
    named = {"headers": ["label", "model", "epochs", "dropout", "weight_decay", "train_fraction"],
             "data": [["regularized", "cnn", 1, 0.1, 0.0005, 0.5]]}
    status, _, table, *_ = _compare(client, named)
    assert "Done" in status and [row[0] for row in table["data"]] == ["regularized"]
    old = {"headers": list(CUSTOM_COLUMNS[:8]),
           "data": [["old call", "mlp", "none", "false", "adam", 0.001, "none", 1]]}
    status, _, table, *_ = _compare(client, old)
    assert "Done" in status and [row[:2] for row in table["data"]] == [["old call", "mlp"]]
    with pytest.raises(Exception) as error:   # a bad value in a new column: the Train form's words
        _compare(client, {"headers": ["model", "dropout"], "data": [["cnn", 1.5]]})
    assert "Row 1: dropout must be at least 0 and below 1, got 1.5." in str(error.value)
