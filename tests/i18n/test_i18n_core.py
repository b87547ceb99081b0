"""The library's own sentences (models, transforms, training, lessons, recipes) come from the
catalogue: English exactly as the CLI and the tests read them, Chinese for the app."""
import pickle
import re

import pytest

from vision_lab import i18n, lesson_results, lessons, models, recipes, train_config, transforms
from vision_lab.i18n import Text, join, listing, render, text

CJK = re.compile(r"[\u4e00-\u9fff]")


def _said_in_chinese(value) -> bool:
    return isinstance(value, Text) and bool(CJK.search(render(value, "zh")))


def test_keys_made_from_names_are_in_the_catalogue():
    """Keys built from names (not found by the catalogue test's search for text("...")) exist."""
    en = i18n.catalogue("en")
    for lesson in lessons.LESSONS.values():
        for part in ("name", "question", "claim"):
            assert f"lessons.{part}.{lesson.build.__name__}" in en
    for reason in ("completed", "early_stopped", "stopped", "diverged", "failed"):
        assert en[f"lessons.ended.{reason}"] == reason


def test_lesson_titles_questions_claims_and_labels_speak_chinese():
    for name, lesson in lessons.LESSONS.items():
        title = lessons.lesson_title(name)
        assert title == name and _said_in_chinese(title)
        assert _said_in_chinese(lesson.question)
        plan = lesson.build("shapes", "quick")
        assert _said_in_chinese(plan.claim.sentence)
        for label, _ in plan.runs:
            assert isinstance(label, Text)
        # The weights name the runs by their labels: a Text is its English string as a key too.
        assert set(plan.claim.weights) <= {str(label) for label, _ in plan.runs}
    with pytest.raises(KeyError):
        lessons.lesson_title("no such lesson")
    assert all(_said_in_chinese(name) for name, _ in lesson_results.METRICS.values())
    assert all(_said_in_chinese(column) for column in lesson_results.SUMMARY_COLUMNS)


def test_a_verdict_begins_with_its_claim_in_either_language():
    claim = lesson_results.Claim(text("lessons.claim.mlp_vs_cnn"), {"CNN": 1, "MLP": -1})

    def end(acc):
        return train_config.RunEnd(reason="completed", message="", best_epoch=1, history=[], checkpoint=None,
                               metrics={"test_acc": acc})

    clear = lesson_results.verdict(claim, {"CNN": [end(0.9), end(0.91), end(0.92)],
                                    "MLP": [end(0.8), end(0.8), end(0.8)]})
    assert clear.text.startswith("The CNN beats the MLP: by 11.0")
    zh = render(clear.text, "zh")
    assert zh.startswith("CNN 胜过 MLP") and "测试集准确率" in zh and "11.0" in zh
    # It travels pickled from the training process and still says itself in Chinese.
    assert render(pickle.loads(pickle.dumps(clear.text)), "zh") == zh


def test_a_summary_row_is_keyed_by_its_columns_in_english():
    config = train_config.TrainConfig(epochs=1)
    ends = [train_config.RunEnd(reason="completed", message="", best_epoch=1, checkpoint=None,
                            history=[{"epoch": 1, "train_acc": 0.9, "val_acc": 0.8, "seconds": 1.0}],
                            metrics={"test_acc": 0.75})]
    row = lesson_results.summary_row(text("lessons.run.cnn"), config, ends)
    assert list(row) == list(lesson_results.SUMMARY_COLUMNS)
    assert row["test acc (%)"] == "75.0" and row["ended"] == "completed" and row["run"] == "CNN"
    assert render(row["ended"], "zh") == "已完成"


def test_model_and_recipe_descriptions_speak_chinese():
    assert set(models.MODEL_DESCRIPTIONS) == set(models.list_models())
    assert all(_said_in_chinese(d) for d in models.MODEL_DESCRIPTIONS.values())
    assert all(_said_in_chinese(r.description) for r in recipes.RECIPES.values())


@pytest.mark.parametrize("call, english", [
    (lambda: models.create_model("alexnet", 10), "Unknown model 'alexnet'. Available: mlp, cnn"),
    (lambda: transforms.validate_spec([{"op": "RandomCrop", "size": 32, "padding": -1}]),
     "RandomCrop: padding must be at least 0, got -1."),
    (lambda: train_config.TrainConfig(epochs=0).validate(), "epochs must be a whole number of at least 1, got 0."),
    (lambda: lessons.build_plan("nope"), "Unknown lesson 'nope'. Choose one of: MLP vs CNN"),
])
def test_errors_are_english_sentences_that_say_themselves_in_chinese(call, english):
    with pytest.raises(ValueError) as error:
        call()
    message = error.value.args[0]
    assert str(error.value).startswith(english)
    assert _said_in_chinese(message)


def test_lists_and_sentences_begin_as_each_language_does():
    parts = listing(text("training.device.other", device="cpu"), "channels_last")
    assert parts == "Device: cpu, channels_last"
    assert render(parts, "zh") == "设备：cpu，channels_last"
    assert render(join(parts, "x", sep=text("i18n.list_separator")), "zh").endswith("，x")
    with pytest.raises(ValueError, match="Unknown language 'fr'"):
        i18n.catalogue("fr")
