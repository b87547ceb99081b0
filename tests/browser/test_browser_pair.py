"""The Feature maps tab's saliency picker and its two-checkpoint comparison in a real browser."""
from pathlib import Path

from test_browser_inspect import need, open_tab, pick

ROOT = Path(__file__).resolve().parents[2]


def top_class(page, label_id) -> str:
    return page.locator(f"{label_id} [data-testid=label-output-value]").inner_text().strip()


def test_saliency_method_and_two_checkpoints_side_by_side(browser_page, screenshots):
    need("mnist_cnn")
    need("shapes_cnn")
    page = browser_page
    open_tab(page, "Feature maps")
    pick(page, "fm-checkpoint", "mnist_cnn")
    # The picked checkpoint's controls have arrived (a click before could race with them).
    page.locator("#fm-note").get_by_text("mnist_cnn").first.wait_for(timeout=15_000)
    page.locator('#fm-examples button:has(img[src$="digit_7.png"])').click()
    page.locator("#fm-image img").first.wait_for(timeout=15_000)

    idea = page.locator("#fm-method-idea")
    assert "Weigh each map of the last convolution" in idea.inner_text()
    page.locator("#fm-method").get_by_text("Occlusion", exact=True).click()
    idea.get_by_text("Hide one patch at a time").wait_for(timeout=15_000)
    page.locator("#fm-run").click()
    page.locator("#fm-note").get_by_text("Occlusion explains").first.wait_for(timeout=30_000)
    page.locator("#fm-cam img").first.wait_for(timeout=10_000)
    assert top_class(page, "#fm-label").startswith("7")
    page.screenshot(path=str(screenshots / "feature_maps_saliency.png"), full_page=True)

    page.locator("#fm-pair").get_by_text("Compare with another checkpoint").click()
    pick(page, "fm-pair-checkpoint", "shapes_cnn")
    page.locator("#fm-pair-run").click()
    for element in ("fm-pair-seen-a", "fm-pair-saliency-a", "fm-pair-seen-b", "fm-pair-saliency-b"):
        page.locator(f"#{element} img").first.wait_for(timeout=30_000)
    table = page.locator("#fm-pair-table")
    table.get_by_text("features.10").first.wait_for(timeout=10_000)
    note = page.locator("#fm-pair-note").inner_text()
    assert "input 1×28×28" in note and "input 3×32×32" in note and "What to look at" in note
    assert top_class(page, "#fm-pair-top-a").startswith("7")
    page.locator("#fm-pair").screenshot(path=str(screenshots / "feature_maps_pair.png"))


def test_the_method_picker_and_the_pair_speak_chinese(browser, app_url):
    """A visitor whose browser speaks Chinese reads the picker, its idea, the pair's notes and
    its table in Chinese, English terms only beside the Chinese ones."""
    from zh_text import english_left

    need("mnist_cnn")
    need("shapes_cnn")
    context = browser.new_context(locale="zh-CN", viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    try:
        page.goto(app_url)
        open_tab(page, "特征图")
        pick(page, "fm-checkpoint", "mnist_cnn")
        page.locator("#fm-note").get_by_text("mnist_cnn").first.wait_for(timeout=15_000)
        page.locator('#fm-examples button:has(img[src$="digit_7.png"])').click()
        page.locator("#fm-image img").first.wait_for(timeout=15_000)
        page.locator("#fm-method").get_by_text("输入梯度 (input gradient)").click()
        page.locator("#fm-method-idea").get_by_text("越亮的像素").wait_for(timeout=15_000)
        page.locator("#fm-pair").get_by_text("与另一个检查点对比").click()
        pick(page, "fm-pair-checkpoint", "shapes_cnn")
        page.locator("#fm-pair-run").click()
        page.locator("#fm-pair-table").get_by_text("features.10").first.wait_for(timeout=30_000)
        assert "B 零值 %" in page.locator("#fm-pair-table").inner_text()
        page.locator("#fm-pair-note").get_by_text("看点").wait_for(timeout=5_000)
        names = [path.stem for path in (ROOT / "checkpoints").glob("*.safetensors")]
        assert english_left(page, names=names) == []
    finally:
        context.close()
