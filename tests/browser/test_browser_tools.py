"""The Train tab's tools in a real browser (Debian Chromium via Playwright): the learning-rate
finder and its "use" buttons, and a finished run downloaded as ONNX.

Screenshots: lr_finder.png and export_onnx.png (see conftest.py for where they go).
"""

import pytest

from conftest import open_tab, train_in_browser

pytestmark = pytest.mark.slow


def test_the_lr_finder_draws_its_curve_and_a_suggestion_goes_into_the_lr_field(browser_page,
                                                                              screenshots):
    page = browser_page
    open_tab(page, "Train")
    lr = page.locator("#train-lr input")
    before = float(lr.input_value())
    page.locator("#train-lr-find").click()
    box = page.locator("#train-lr-find-box")
    box.locator("img").first.wait_for(timeout=240_000)   # the loss-against-lr curve
    note = page.locator("#train-lr-find-note").inner_text()
    assert "steepest" in note.lower(), note
    use = page.locator("#train-use-steepest")
    label = use.inner_text()
    assert "steepest" in label.lower(), label
    suggested = float(label.split()[1])           # "Use 0.0031 (steepest descent)"
    use.click()
    page.wait_for_function(
        f"Math.abs(parseFloat(document.querySelector('#train-lr input').value) - {suggested}) "
        f"< 1e-12", timeout=10_000)
    assert float(lr.input_value()) != before or suggested == before
    box.scroll_into_view_if_needed()
    box.screenshot(path=str(screenshots / "lr_finder.png"))


def test_a_finished_run_downloads_as_onnx(browser_page, screenshots):
    pytest.importorskip("onnx", reason="the optional onnx package is not installed")
    page = browser_page
    train_in_browser(page, images=300, epochs=1, seconds=300)
    page.locator("#train-export-onnx").click()
    link = page.locator("#train-onnx-file a").first
    link.wait_for(timeout=120_000)
    shown = page.locator("#train-onnx-file").inner_text()
    assert ".onnx" in shown and ".onnx" in (link.get_attribute("href") or ""), shown
    page.locator("#train-onnx-file").scroll_into_view_if_needed()
    page.screenshot(path=str(screenshots / "export_onnx.png"))
