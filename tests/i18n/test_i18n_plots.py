"""The library speaks Chinese too: figures drawn under `using("zh")` are labelled from the Chinese
catalogue in a CJK font, and the errors and messages the library raises or reports render in
Chinese while staying the same English sentences for the CLI."""
import re
import string

import numpy as np
import pytest

from vision_lab import curve_plots, evaluation_plots, i18n, image_plots, plot_style
from vision_lab.i18n import render, using

ZH = i18n.catalogue("zh")
needs_cjk_font = pytest.mark.skipif(plot_style.cjk_font() is None, reason="no CJK font installed")


def _sample_params(key: str) -> dict:
    """A value for every parameter of a key: a number where either language formats it as one."""
    params = {}
    for lang in i18n.LANGUAGES:
        for _, name, spec, _ in string.Formatter().parse(i18n.catalogue(lang)[key]):
            if name:
                numeric = bool(spec) and re.search(r"[,dfg%]", spec)
                params[name] = 1 if numeric or params.get(name) == 1 else "x"
    return params


def test_every_template_formats_in_both_languages():
    for key in i18n.catalogue("en"):
        params = _sample_params(key)
        message = i18n.text(key, **params)
        assert render(message, "zh") and render(message, "en") == message


@needs_cjk_font
def test_a_figure_drawn_in_chinese_uses_the_chinese_catalogue_and_a_cjk_font():
    with using("zh"):
        fig = curve_plots.loss_curve(range(20), np.linspace(3, 1, 20))
        matrix = evaluation_plots.confusion_matrix(np.eye(3) * 5, ["cat", "dog", "bird"])
    ax = fig.axes[0]
    assert (ax.get_title(), ax.get_xlabel(), ax.get_ylabel()) == (
        ZH["plots.loss.title"], ZH["plots.axis.iteration"], ZH["plots.axis.loss"])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        ZH["plots.legend.batch_loss"], ZH["plots.legend.moving_average"]]
    grid = matrix.axes[0]
    assert grid.get_title() == ZH["plots.confusion.percent_title"]
    assert (grid.get_xlabel(), grid.get_ylabel()) == (
        ZH["plots.axis.predicted_class"], ZH["plots.axis.true_class"])
    colorbar = next(a for a in matrix.axes if a.get_label() == "<colorbar>")
    assert colorbar.get_ylabel() == ZH["plots.confusion.percent_colorbar"]
    # The font is part of each text, so it still holds when the figure is drawn later (by gradio,
    # outside `using`), and drawing finds every glyph.
    for label in (ax.title, ax.xaxis.label, *ax.get_legend().get_texts(), grid.title):
        assert label.get_fontname() == plot_style.cjk_font()
    with _no_missing_glyphs():
        plot_style.figure_to_image(fig)
        plot_style.figure_to_image(matrix)
    # English figures are unchanged by a Chinese one drawn before them.
    again = curve_plots.loss_curve(range(20), np.linspace(3, 1, 20)).axes[0]
    assert again.get_title() == "Training loss per iteration"
    assert again.title.get_fontname() != plot_style.cjk_font()


class _no_missing_glyphs:
    def __enter__(self):
        import warnings

        self._catcher = warnings.catch_warnings(record=True)
        self._seen = self._catcher.__enter__()
        warnings.simplefilter("always")

    def __exit__(self, *exc):
        self._catcher.__exit__(*exc)
        missing = [str(w.message) for w in self._seen if "missing from font" in str(w.message)]
        assert missing == []


@needs_cjk_font
def test_a_title_a_caller_passes_as_a_text_is_drawn_in_chinese_too():
    with using("zh"):
        fig = image_plots.image_grid(np.zeros((0, 3, 4, 4), dtype=np.uint8),
                               title=i18n.text("plots.hidden.empty_title"))
        curves = curve_plots.epoch_curves({"cnn": [[{"epoch": 1, "train_acc": 0.5, "val_acc": 0.4}]],
                                     "mlp": [[{"epoch": 1, "train_acc": 0.3, "val_acc": 0.2}]]})
    assert fig.get_suptitle() == ZH["plots.hidden.empty_title"]
    assert ZH["plots.empty.images"] in [t.get_text() for t in fig.axes[0].texts]
    legend = [t.get_text() for t in curves.axes[0].get_legend().get_texts()]
    assert legend[:2] == [f"cnn：{ZH['plots.legend.train']}", f"cnn：{ZH['plots.legend.validation']}"]


def test_plots_say_when_they_cannot_speak_chinese(monkeypatch):
    assert plot_style.font_notice("en") is None
    monkeypatch.setattr(plot_style, "cjk_font", lambda: None)
    notice = plot_style.font_notice("zh")
    assert notice is not None and re.search(r"[\u4e00-\u9fff]", render(notice, "zh"))
    with using("zh"):
        assert plot_style.font_notice() == notice
        # Without the font the figure falls back to English rather than drawing empty boxes.
        assert curve_plots.loss_curve([], []).axes[0].get_title() == "Training loss per iteration"


def test_a_dataset_error_raised_by_the_library_renders_in_chinese(tmp_path):
    from vision_lab.datasets import load_dataset

    with pytest.raises(ValueError) as unknown:
        load_dataset("imagenet")
    message = unknown.value.args[0]
    assert str(unknown.value).startswith("Unknown dataset 'imagenet'. Available: shapes")
    assert render(message, "zh").startswith("未知的数据集 'imagenet'。")

    (tmp_path / "cat").mkdir()
    with pytest.raises(ValueError) as one_class:
        load_dataset(f"folder:{tmp_path}")
    said = render(one_class.value.args[0], "zh")
    assert "只有一个类别文件夹" in said and "<类别名>/<图像>" in said   # the nested Text too


def test_the_app_shows_a_library_error_in_the_visitors_language():
    pytest.importorskip("gradio")
    from vision_lab.checkpoints import CheckpointError, read_metadata
    from vision_lab.ui.language import user_error

    with pytest.raises(CheckpointError) as missing:
        read_metadata("nowhere.safetensors")
    assert user_error(missing.value, "zh").message == "检查点 nowhere.safetensors 不存在。"
    assert user_error(missing.value, "en").message == "Checkpoint nowhere.safetensors does not exist."


def test_a_folder_dataset_reports_in_both_languages():
    from vision_lab.datasets import folders

    _, why = folders.choose_image_size([(28, 28), (28, 28), (96, 128)])
    assert why.startswith("Your images come in 2 sizes")
    assert render(why, "zh").startswith("你的图像共有 2 种尺寸，从 28×28 到 96×128：每张都缩放到 28×28")
    skipped = folders._skip_messages({"not_image": [f"{i}.txt" for i in range(7)]})
    assert skipped == ["Skipped 7 files that are not images: 0.txt, 1.txt, 2.txt, 3.txt, 4.txt "
                       "and 2 more."]
    assert render(skipped[0], "zh") == ("跳过了 7 个文件（不是图像）：0.txt, 1.txt, 2.txt, 3.txt, 4.txt "
                                        "等（另有 2 个）。")


def test_a_field_error_names_the_field_in_the_visitors_language():
    """A field checks its value before anyone knows who is asking: it hands the handler a
    WrongValue, which friendly_errors says in the visitor's language."""
    gr = pytest.importorskip("gradio")
    from vision_lab.ui import language
    from vision_lab.ui.fields import Number
    from vision_lab.ui.language import WrongValue, friendly_errors, ui_text

    field = Number(label=ui_text("your_runs.share_name"), minimum=1, precision=0)
    assert isinstance(field.preprocess(0), WrongValue) and field.preprocess(3) == 3

    @friendly_errors
    def handler(value, request=None):
        return value

    language.remember(_request("visitor-zh"), lang="zh")
    with pytest.raises(gr.Error) as english:
        handler(field.preprocess(0))
    assert english.value.message == "Name in the shared folder (optional) must be at least 1, got 0."
    with pytest.raises(gr.Error) as chinese:
        handler(field.preprocess("x"), request=_request("visitor-zh"))
    assert chinese.value.message == f"{ZH['your_runs.share_name']} 必须是数字，收到的是 'x'。"


def _request(session: str):
    """A gr.Request as gradio hands one to a handler: its session and headers."""
    import gradio as gr

    return gr.Request(headers={}, session_hash=session)
