"""The Train and Compare tabs in both languages: every field's name, scheduler parameter, size and
way a run ends is in the catalogue, what the tabs write is said in Chinese for a Chinese visitor,
and the English an API caller reads is what it always was."""
import re
from types import SimpleNamespace

import pytest

from vision_lab import i18n
from vision_lab.i18n import render, using

CHINESE = re.compile(r"[\u4e00-\u9fff]")


def _in_both(key):
    en, zh = i18n.catalogue("en"), i18n.catalogue("zh")
    return key in en and key in zh and CHINESE.search(zh[key])


def test_every_field_a_sentence_names_is_in_the_catalogue():
    from vision_lab.train_fields import FIELDS

    # Every field read as a number (a sentence may name it), and every field's label.
    names = {f.name for f in FIELDS if f.read in ("number", "whole", "count", "whole_list")}
    assert {"lr", "hidden_sizes", "milestones", "folder_image_size", "unfreeze_lr"} <= names
    missing = sorted(name for name in names if not _in_both(f"train.what.{name}"))
    assert missing == []
    assert all(_in_both(f.label) for f in FIELDS if f.widget not in (None, "state"))


def test_every_size_column_and_ending_of_a_comparison_is_in_the_catalogue():
    from vision_lab.lessons import SIZES
    from vision_lab.lesson_results import SUMMARY_COLUMNS
    from vision_lab.ui.compare import COLUMN_KEYS

    assert set(COLUMN_KEYS) == set(SUMMARY_COLUMNS)
    assert all(_in_both(key) for key in COLUMN_KEYS.values())
    assert all(_in_both(f"compare.size.{size}") for size in SIZES)
    for reason in ("completed", "stopped", "early_stopped", "diverged", "failed"):
        assert _in_both(f"compare.ended.{reason}"), reason


def test_a_wrong_value_is_said_in_the_visitors_language():
    from vision_lab.ui.train_form import make_config

    with pytest.raises(ValueError) as error:
        make_config({"lr": "abc"})
    assert error.value.args[0] == "learning rate must be a number, got 'abc'."
    assert render(error.value.args[0], "zh") == "学习率必须是数字，收到的是 'abc'。"
    with pytest.raises(ValueError) as error:
        make_config({"scheduler": "multistep", "milestones": "two"})
    assert str(error.value).startswith("milestones must be whole numbers separated by commas")
    assert CHINESE.search(render(error.value.args[0], "zh"))


def test_the_results_table_speaks_the_visitors_language_and_english_to_the_api():
    from vision_lab.lesson_results import SUMMARY_COLUMNS
    from vision_lab.ui.compare import _table

    row = {column: None for column in SUMMARY_COLUMNS}
    row.update(run="CNN", model="cnn", seeds=1, ended="completed, stopped")
    english = _table([row])
    assert list(english.columns) == list(SUMMARY_COLUMNS)
    assert english.iloc[0]["ended"] == "completed, stopped"
    with using("zh"):
        chinese = _table([row])
    assert "测试集准确率 (%)" in chinese.columns
    assert chinese.iloc[0][chinese.columns[-1]] == "完成, 已停止"


def test_the_live_status_lines_are_said_in_chinese():
    from vision_lab.train_config import BatchEnd, TrainConfig
    from vision_lab.ui.compare import LiveComparison
    from vision_lab.ui.train import LiveRun

    batch = BatchEnd(epoch=1, step=3, total_steps=10, loss=2.3, lr=0.001, images_per_sec=1234.0)
    live = LiveRun(TrainConfig(epochs=2), SimpleNamespace(name="shapes", messages=[]))
    assert live.status() == "Starting …" and render(live.status(), "zh") == "正在启动……"
    live.add(batch)
    line = live.status()
    assert line.startswith("**Training** · **Epoch 1/2** · step 3/10 · 1,234 images/s")
    assert render(line, "zh").startswith("**训练中** · **第 1/2 轮** · 第 3/10 步")
    plan = SimpleNamespace(runs=[("CNN", TrainConfig(epochs=2))], seeds=2, claim=None)
    compare = LiveComparison(plan, None)
    compare.add(("CNN", 0, batch))
    assert compare.status().startswith("**Running** · 0/2 runs done · elapsed ")
    assert "**CNN**, seed 0: epoch 1/2, step 3/10" in compare.status()
    assert render(compare.status(), "zh").startswith("**进行中** · 已完成 0/2 次训练")
