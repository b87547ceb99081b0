"""The Simplified Chinese catalogue reads like a Chinese deep-learning course: no English word
outside the allowlist, glosses and code (zh_text.foreign_words), Chinese punctuation in Chinese
sentences, one term per concept (docs/translation.md), and the built-in datasets' classes and the
custom comparison's default rows said in Chinese too."""
import json
import re
from pathlib import Path

import pytest

from zh_text import ascii_punctuation, foreign_words, glosses

ROOT = Path(__file__).resolve().parents[2]
ZH = json.loads((ROOT / "vision_lab/i18n/zh.json").read_text(encoding="utf-8"))

# Words the catalogue used before one term was chosen per concept (docs/translation.md), and what
# it says now.
RETIRED = {"运行包": "训练包", "训练记录": "训练", "训练组": "训练", "训练配置": "训练",
           "访问者": "访客", "容忍轮数": "耐心轮数", "耐心值": "耐心轮数", "批量大小": "批大小",
           "批量数": "批次数", "数据增广": "数据增强", "关注": "查看", "诚实": "如实",
           "最自信": "最有把握", "一节课": "一个实验", "个 epoch": "轮", "epoch 记录": "每轮记录"}
# "run" is 训练, never 运行; 运行 is left to running code or a file.
RUN_AS_EXECUTE = {"export.purpose.run", "checkpoints.pickle"}


def test_every_chinese_sentence_uses_only_allowed_latin_words():
    left = {key: words for key, value in ZH.items() if (words := foreign_words(value))}
    assert left == {}, left


def test_every_chinese_sentence_uses_chinese_punctuation():
    left = {key: found for key, value in ZH.items() if (found := ascii_punctuation(value))}
    assert left == {}, left


def test_the_checks_catch_english_and_ascii_punctuation():
    # Each of these is a string the catalogue once held, or one like it.
    assert foreign_words("**已打开训练包：{dataset} 上的 {model}，{epochs} 个 epoch。**") == ["epoch"]
    assert foreign_words("可粘贴到你的 notebook 中") == ["notebook"]
    assert foreign_words("一次 run 的结果 (training run)") == ["run"]   # a gloss needs its term
    assert foreign_words("已降到 {size} px") == ["px"]
    # What is allowed: a gloss beside its term, names, code, identifiers, the allowlist.
    fine = ("每轮 (epoch) 的损失", "批归一化 (BatchNorm)，ReLU 之后", "在 shapes 上训练的 cnn",
            "用 `python scripts/make_backbone.py` 生成", "检查点 resnet18.safetensors",
            "启用 RandomResizedCrop", "请勾选 'pretrained'", "Adam、SGD 和 RMSprop",
            "T恤/上衣", "用 --no-recipe 关闭", "学习率范围测试 (LR range test)")
    assert [text for text in fine if foreign_words(text)] == []
    assert ascii_punctuation("第 {row} 行,{error}") == ["行,"]
    assert ascii_punctuation("你好;世界") and ascii_punctuation("真的吗?") \
        and ascii_punctuation("注意: 发散") and ascii_punctuation("{name} (模型，数据集)")
    assert ascii_punctuation("min ÷ 10: {lr:.2g}，损失最低处 (min ÷ 10)") == []


def test_one_term_per_concept():
    used = {old: [key for key, value in ZH.items() if old in value] for old in RETIRED}
    assert {old: keys for old, keys in used.items() if keys} == {}
    run = [key for key, value in ZH.items() if "运行" in value and key not in RUN_AS_EXECUTE]
    assert run == []
    assert ZH["compare.lesson"] == "实验" and ZH["share.download"] == "下载这次训练"


def test_the_lessons_say_what_they_measure():
    assert "准确率" in ZH["lessons.question.pixel_permutation"]
    assert "损失更大" not in ZH["lessons.question.pixel_permutation"]
    assert "有时是" not in ZH["internals.lesson.batchnorm"]


def test_the_word_table_gives_every_term_its_d2l_synonym():
    table = (ROOT / "docs/translation.md").read_text(encoding="utf-8")
    rows = [line.split("|")[1:-1] for line in table.splitlines()
            if line.startswith("|") and not line.startswith("|---")]
    header, *rows = rows
    assert [cell.strip() for cell in header][:3] == ["English", "中文", "d2l-zh"]
    terms = {cell.strip().split(" (")[0] for row in rows for cell in row[1].split(",")}
    for term in ("轮次", "批归一化", "随机失活", "训练", "训练包", "耐心轮数", "实验", "访客"):
        assert term in terms, term
    d2l = {row[1].strip(): row[2].strip() for row in rows}
    assert "批量规范化" in d2l["批归一化 (BatchNorm)"] and "暂退法" in d2l["随机失活 (Dropout)"]


def test_a_gloss_is_found_beside_its_term():
    assert glosses("轮次 (epoch) 与批大小 (batch size)，不是 (这个)") == ["epoch", "batch size"]


# ---- classes and default rows ------------------------------------------------------------------

def test_the_built_in_datasets_classes_are_said_in_chinese():
    from vision_lab.datasets import _BUILTIN
    from vision_lab.datasets.class_names import all_class_keys, class_label, class_labels

    assert set(all_class_keys()) <= set(ZH)
    assert class_labels(_BUILTIN["cifar10"].classes, "zh") == [
        "飞机", "汽车", "鸟", "猫", "鹿", "狗", "青蛙", "马", "船", "卡车"]
    assert class_labels(_BUILTIN["mnist"].classes, "zh") == [str(d) for d in range(10)]
    assert class_label("star", "zh") == "星形" and class_label("T-shirt/top", "zh") == "T恤/上衣"
    # English readers, the API and a folder dataset's own classes get the names as they are.
    assert class_label("airplane", "en") == "airplane"
    assert class_label("7 - seven", "en") == "7 - seven"
    assert class_label("my_sneakers", "zh") == "my_sneakers"
    chinese = [class_label(name, "zh") for spec in _BUILTIN.values() for name in spec.classes]
    assert [name for name in chinese if foreign_words(name)] == []


def test_a_confusion_matrix_drawn_in_chinese_names_the_classes_in_chinese():
    pytest.importorskip("matplotlib")
    import torch

    from vision_lab.evaluation_plots import confusion_matrix, per_class_accuracy
    from vision_lab.i18n import using

    classes = ["cat", "dog", "my_class"]
    with using("zh"):
        figure = confusion_matrix(torch.eye(3, dtype=torch.int64), classes)
        bars = per_class_accuracy([1.0, 0.5, 0.0], classes)
    assert [tick.get_text() for tick in figure.axes[0].get_yticklabels()] == ["猫", "狗", "my_class"]
    assert [tick.get_text() for tick in bars.axes[0].get_yticklabels()] == ["猫", "狗", "my_class"]
    with using("en"):
        figure = confusion_matrix(torch.eye(3, dtype=torch.int64), classes)
    assert [tick.get_text() for tick in figure.axes[0].get_xticklabels()] == classes


def test_the_custom_comparisons_default_rows_and_headings_are_said_in_chinese():
    pytest.importorskip("gradio")
    from vision_lab.custom_comparison import CUSTOM_COLUMNS, custom_plan
    from vision_lab.i18n import using
    from vision_lab.ui import compare

    with using("zh"):
        rows = compare._custom_default()
        headings = [compare.t(f"compare.custom_column.{key}") for key in CUSTOM_COLUMNS]
    assert [row[0] for row in rows[:2]] == ["A：CNN", "B：CNN，无批归一化"]
    assert not any(re.search(r"[A-Za-z]{3,}", heading.split(" (")[0]) for heading in headings)
    # The Chinese labels are labels like any other: the runs are planned under them.
    plan = custom_plan([dict(zip(CUSTOM_COLUMNS, row)) for row in rows], "shapes", "quick")
    assert [label for label, _ in plan.runs] == ["A：CNN", "B：CNN，无批归一化"]
    with using("en"):
        assert compare._custom_default()[0][0] == "A: CNN"
