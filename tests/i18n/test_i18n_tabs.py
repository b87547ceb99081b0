"""The Augment, Feature maps and Classify tabs in both languages: texts whose keys the code makes
from names (ops, parameters, presets) are all in the catalogue, and what the handlers write is
said in Chinese for a Chinese visitor."""
import re
from pathlib import Path

import pytest

from vision_lab import i18n
from vision_lab.i18n import render, using
from vision_lab.transforms import OPS, list_presets

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
CHINESE = re.compile(r"[\u4e00-\u9fff]")


def _static_key(value):
    """The catalogue key of a static text (a gr.I18n one), None for anything else."""
    return getattr(value, "key", None)


@pytest.mark.parametrize("op", list(OPS))
def test_every_op_and_parameter_is_explained_in_both_languages(op):
    from vision_lab.ui.augment import op_explanation, op_fields, param_info, param_label, use_label

    en, zh = i18n.catalogue("en"), i18n.catalogue("zh")
    texts = [op_explanation(op), use_label(op)]
    for field in op_fields(op, OPS[op]["params"]):
        if field.param is not None:
            texts.append(param_label(field))
            if field.part != 1:
                texts.append(param_info(field))
    keys = [_static_key(value) for value in texts]
    assert None not in keys, f"{op}: a text the catalogue lacks ({texts})"
    for key in keys:
        assert key in en and key in zh and CHINESE.search(zh[key]), key
    # The English label is the parameter's own name: what torchvision calls it.
    for field in op_fields(op, OPS[op]["params"]):
        if field.param is not None:
            assert en[_static_key(param_label(field))].startswith(field.param)


@pytest.mark.parametrize("name", list_presets())
def test_every_preset_is_explained_in_both_languages(name):
    from vision_lab.ui.augment import preset_explanation

    key = _static_key(preset_explanation(name))
    assert key is not None, f"preset {name} has no explanation in the catalogue"
    assert i18n.catalogue("en")[key].startswith(f"**{name}**")
    zh = i18n.catalogue("zh")[key]
    assert zh.startswith(f"**{name}**") and CHINESE.search(zh)


def test_the_classify_picker_says_how_many_checkpoints_it_takes():
    from vision_lab.ui.classify import MAX_MODELS

    for lang in i18n.LANGUAGES:
        assert str(MAX_MODELS) in i18n.catalogue(lang)["classify.checkpoints"]


def test_a_wrong_per_channel_number_is_said_in_the_visitors_language():
    import gradio as gr

    from vision_lab.ui.augment import fields, spec_from_values, values_from_spec

    values = dict(zip((f.name for f in fields()), values_from_spec([], 64)))
    values.update(use_Normalize=True, Normalize_mean="half")
    with using("zh"), pytest.raises(gr.Error, match="Normalize：mean 必须是用逗号分隔的"):
        spec_from_values(values)


@pytest.fixture
def settings(tmp_path):
    from types import SimpleNamespace

    import torch

    from vision_lab.checkpoints import save_checkpoint
    from vision_lab.models import create_model

    torch.manual_seed(0)
    folder = tmp_path / "ckpts"
    meta = {"model": "cnn", "model_options": {}, "classes": [str(i) for i in range(10)],
            "channels": 3, "image_size": 32, "mean": [0.5] * 3, "std": [0.25] * 3,
            "dataset": "shapes"}
    save_checkpoint(folder / "tiny_cnn.safetensors", create_model("cnn", 10, 3, 32), meta)
    save_checkpoint(folder / "tiny_mlp.safetensors",
                    create_model("mlp", 10, 1, 28, hidden_sizes=[16]),
                    {**meta, "model": "mlp", "model_options": {"hidden_sizes": [16]},
                     "channels": 1, "image_size": 28, "mean": [0.5], "std": [0.25],
                     "dataset": "mnist"})
    return SimpleNamespace(checkpoint_dirs=[str(folder)], runs_dir=str(folder),
                           data_root=str(tmp_path), examples_dir=str(EXAMPLES))


def test_the_feature_maps_notes_are_said_in_chinese(settings):
    from vision_lab.ui.feature_maps import checkpoint_controls, run_feature_maps

    _, _, note = checkpoint_controls(settings, "tiny_cnn")
    assert "trained on shapes" in note  # English where nobody asked for another language
    assert "在 shapes 上训练的 cnn" in render(note, "zh")
    with using("zh"):
        *_, note = run_feature_maps(settings, "tiny_cnn", str(EXAMPLES / "scene.png"))
    said = render(note, "zh")
    assert "的特征图：" in said and "Grad-CAM 解释的是" in said
    *_, note = run_feature_maps(settings, "tiny_mlp", str(EXAMPLES / "digit_7.png"))
    assert render(note, "zh").startswith("全连接网络")


def test_the_handlers_errors_are_said_in_chinese(settings):
    from vision_lab.ui.classify import classify
    from vision_lab.ui.storage import resolve_checkpoint

    with pytest.raises(ValueError) as wrong:
        resolve_checkpoint(settings, "nope")
    assert render(wrong.value.args[0], "zh").startswith("没有名为 'nope' 的检查点")
    with pytest.raises(ValueError) as empty:
        classify(settings, None, None, ["tiny_cnn"])
    assert render(empty.value.args[0], "zh").startswith("还没有图像")
