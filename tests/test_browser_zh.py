"""The Augment, Feature maps and Classify tabs for a Chinese visitor: a zh-CN browser gets every
label, note and error in Chinese (English terms only in parentheses beside the Chinese ones), and
the EN | 中文 switch turns the page's static text to English and back.

Screenshots go to the screenshots folder's zh/ (docs/screenshots/zh with
VISION_LAB_SCREENSHOTS=docs/screenshots)."""
from pathlib import Path

import pytest

from zh_text import english_left

ROOT = Path(__file__).resolve().parents[1]
ZH, EN = "中文", "EN"


def checkpoint_names() -> list[str]:
    """Checkpoint names are names: shown as they are in both languages."""
    return [path.stem for path in (ROOT / "checkpoints").glob("*.safetensors")]


def need(name):
    if not (ROOT / "checkpoints" / f"{name}.safetensors").is_file():
        pytest.skip(f"checkpoints/{name}.safetensors has not been trained yet")


def no_english_left(page, where):
    left = english_left(page, names=checkpoint_names())
    assert left == [], f"{where}: English a Chinese visitor reads: {left}"


def button_says(page, elem_id, words, timeout=10_000):
    page.wait_for_function("([id, w]) => document.getElementById(id).innerText.trim() === w",
                           arg=[elem_id, words], timeout=timeout)


def switch_shows(page, choice, timeout=15_000):
    page.wait_for_function(
        "c => [...document.querySelectorAll('#language-switch input')]"
        ".some(i => i.checked && i.value === c)", arg=choice, timeout=timeout)


@pytest.fixture
def zh_page(browser, app_url):
    """The app in a browser whose language is Simplified Chinese."""
    context = browser.new_context(locale="zh-CN", viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(app_url)
    page.get_by_role("tab", name="数据增强", exact=True).wait_for(timeout=30_000)
    switch_shows(page, ZH)  # the page has told the server its language
    yield page
    context.close()


@pytest.fixture
def zh_shots(screenshots):
    folder = screenshots / "zh"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def open_tab(page, name):
    page.get_by_role("tab", name=name, exact=True).click()


def choose(page, dropdown_id, name, multiselect=False):
    dropdown = page.locator(f"#{dropdown_id}")
    if multiselect:
        dropdown.locator(".remove-all").click()  # its title is said in the page's language
    dropdown.locator("input").click()
    dropdown.locator("input").fill(name)
    page.get_by_role("option", name=name).first.click()
    page.keyboard.press("Escape")


def test_augment_tab_in_chinese(zh_page, zh_shots):
    page = zh_page
    # A preset's explanation follows the preset.
    choose(page, "augment-preset", "strong")
    page.locator("#augment-preset-note").get_by_text("强力增强").wait_for(timeout=10_000)
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
    page.get_by_text("启用 Normalize").wait_for()
    assert "数据增强 (data augmentation)" in page.locator("body").inner_text()
    no_english_left(page, "Augment")


def test_feature_maps_tab_in_chinese(zh_page, zh_shots):
    need("shapes_cnn")
    page = zh_page
    open_tab(page, "特征图")
    choose(page, "fm-checkpoint", "shapes_cnn")
    page.locator("#fm-note").get_by_text("在 shapes 上训练的").wait_for(timeout=15_000)
    page.locator('#fm-examples button:has(img[src$="shape_star.png"])').click()
    page.locator("#fm-image img").first.wait_for(timeout=15_000)
    page.locator("#fm-run").click()
    for element in ("fm-seen", "fm-maps", "fm-filters", "fm-cam"):
        page.locator(f"#{element} img").first.wait_for(timeout=30_000)
    page.locator("#fm-note").get_by_text("Grad-CAM 解释的是").wait_for(timeout=15_000)
    assert "star" in page.locator("#fm-label").inner_text()
    no_english_left(page, "Feature maps")
    page.screenshot(path=str(zh_shots / "feature_maps.png"), full_page=True)


def test_classify_tab_in_chinese(zh_page, zh_shots):
    need("mnist_cnn")
    page = zh_page
    open_tab(page, "分类")
    choose(page, "classify-checkpoints", "mnist_cnn", multiselect=True)
    page.locator('#classify-examples button:has(img[src$="digit_7.png"])').click()
    page.locator("#classify-image img").first.wait_for(timeout=15_000)
    page.locator("#classify-run").click()
    page.locator("#classify-seen-0 img").first.wait_for(timeout=30_000)
    seen = page.locator("#classify-seen-0")
    seen.get_by_text("mnist_cnn 看到的图像").wait_for(timeout=10_000)
    assert page.locator("#classify-label-0 [data-testid=label-output-value]").inner_text() \
        .strip().startswith("7")
    no_english_left(page, "Classify")
    page.screenshot(path=str(zh_shots / "classify.png"), full_page=True)

    # Draw: the hint, and the error of an empty page, in Chinese.
    page.locator("#classify-sketch-tab-button").click()
    page.locator("#classify-draw-hint").get_by_text("画一个数字").wait_for(timeout=10_000)
    page.locator("#classify-run").click()
    page.get_by_text("画布是空的：请先画一个数字。").first.wait_for(timeout=15_000)
    no_english_left(page, "Classify, Draw")
    page.screenshot(path=str(zh_shots / "classify_draw.png"), full_page=True)


def test_the_language_switch_flips_the_static_text_both_ways(zh_page):
    page = zh_page
    run, note = page.locator("#augment-run"), page.locator("#augment-preset-note")
    assert run.inner_text().strip() == "执行数据增强"
    # The preset's explanation, set by a handler, is a static text too: it follows the switch.
    choose(page, "augment-preset", "light")
    note.get_by_text("带填充的随机裁剪，加上水平翻转").wait_for(timeout=10_000)
    page.locator("#language-switch").get_by_text(EN, exact=True).click()
    switch_shows(page, EN)
    page.get_by_text("Pick an image, switch transforms on").wait_for(timeout=10_000)
    button_says(page, "augment-run", "Augment")
    note.get_by_text("random crop with padding plus horizontal flip").wait_for(timeout=10_000)
    assert page.locator("#augment-preset [data-testid=block-info]").inner_text().strip() == "Preset"
    page.locator("#language-switch").get_by_text(ZH, exact=True).click()
    switch_shows(page, ZH)
    button_says(page, "augment-run", "执行数据增强")
    note.get_by_text("带填充的随机裁剪，加上水平翻转").wait_for(timeout=10_000)
    assert page.locator("#augment-preset [data-testid=block-info]").inner_text().strip() \
        == "预设方案 (preset)"
    no_english_left(page, "Augment after the switch")


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
