"""The convolution arithmetic in the Feature maps tab, in a real browser: click a position on the
mosaic, then on the enlarged map, and read how the value is computed; in English and in Chinese
(a zh-CN browser). Screenshots: feature_maps_conv.png and zh/feature_maps_conv.png."""
from pathlib import Path

import pytest

from conftest import open_tab
from zh_text import english_left

ROOT = Path(__file__).resolve().parents[2]
# (tab name, the Products grid's title, what the padding note starts with, the page's locale)
LANGUAGES = {"en": ("Feature maps", "Products", "Grey cells", "en-US"),
             "zh": ("特征图", "逐元素乘积", "灰色格子", "zh-CN")}


def pick(page, dropdown_id, name):
    dropdown = page.locator(f"#{dropdown_id}")
    dropdown.locator("input").click()
    dropdown.locator("input").fill(name)
    page.get_by_role("option", name=name).first.click()
    page.keyboard.press("Escape")


def click_at(page, image_id, x, y):
    """Click the shown image at (x, y) in its own pixels (it may be drawn smaller or larger)."""
    img = page.locator(f"#{image_id} img").first
    box = img.bounding_box()
    width, height = img.evaluate("el => [el.naturalWidth, el.naturalHeight]")
    # object-fit: contain keeps the aspect ratio: the picture is centred in the element's box.
    scale = min(box["width"] / width, box["height"] / height)
    left = (box["width"] - width * scale) / 2
    top = (box["height"] - height * scale) / 2
    img.click(position={"x": left + (x + 0.5) * scale, "y": top + (y + 0.5) * scale})


def number_in(page, elem_id):
    return int(page.locator(f"#{elem_id} input").input_value())


def walk(page, lang):
    tab, products, padding, _ = LANGUAGES[lang]
    open_tab(page, tab)
    pick(page, "fm-checkpoint", "shapes_cnn")
    page.locator('#fm-examples button:has(img[src$="shape_star.png"])').click()
    page.locator("#fm-image img").first.wait_for(timeout=15_000)
    page.locator("#fm-run").click()
    page.locator("#fm-maps img").first.wait_for(timeout=30_000)
    # The mosaic of features.0 (32×32 maps, 96-pixel tiles, 6-pixel gaps): the middle of the
    # second tile of the second row is channel 9, row 16, column 16.
    click_at(page, "fm-maps", 102 + 16 * 3 + 1, 102 + 16 * 3 + 1)
    arithmetic = page.locator("#fm-conv-arithmetic")
    arithmetic.get_by_text(products).first.wait_for(timeout=30_000)
    assert [number_in(page, f"fm-conv-{n}") for n in ("channel", "row", "col")] == [9, 16, 16]
    assert padding not in arithmetic.inner_text()  # the middle: no padding under the kernel
    # Then the enlarged map's top-left cell: an edge, where the kernel hangs over the padding.
    page.locator("#fm-conv-map img").first.wait_for(timeout=15_000)
    click_at(page, "fm-conv-map", 3, 3)
    arithmetic.get_by_text(padding).first.wait_for(timeout=30_000)
    assert [number_in(page, f"fm-conv-{n}") for n in ("channel", "row", "col")] == [9, 0, 0]
    return arithmetic.inner_text(), page.locator("#fm-conv-note").inner_text()


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_click_a_feature_map_position_and_read_its_arithmetic(browser, app_url, screenshots, lang):
    if not (ROOT / "checkpoints" / "shapes_cnn.safetensors").is_file():
        pytest.skip("checkpoints/shapes_cnn.safetensors has not been trained yet")
    context = browser.new_context(locale=LANGUAGES[lang][3],
                                  viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    try:
        page.goto(app_url)
        table, note = walk(page, lang)
        if lang == "en":
            assert "features.0, channel 9, row 0, column 0" in note
            assert "the value on the feature map" in note
            assert "BatchNorm features.1" in table and "parameter sharing" in table
        else:
            assert "features.0 通道 9、第 0 行、第 0 列" in note and "即特征图上的值" in note
            assert "批归一化 features.1" in table and "参数共享" in table
            left = english_left(page, names=["shapes_cnn", "mnist_cnn"])
            assert left == [], f"English a Chinese visitor reads: {left}"
        folder = screenshots / "zh" if lang == "zh" else screenshots
        folder.mkdir(parents=True, exist_ok=True)
        # From the mosaic down to the end of the arithmetic (boxes are relative to the viewport).
        scrolled = page.evaluate("window.scrollY")
        top = page.locator("#fm-maps").bounding_box()
        bottom = page.locator("#fm-conv-arithmetic").bounding_box()
        page.screenshot(path=str(folder / "feature_maps_conv.png"), full_page=True,
                        clip={"x": top["x"] - 10, "y": top["y"] + scrolled - 10,
                              "width": top["width"] + 20,
                              "height": bottom["y"] + bottom["height"] - top["y"] + 20})
    finally:
        context.close()
