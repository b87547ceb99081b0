"""The Augment, Train and Compare tabs in a real browser (Debian Chromium via Playwright).

Each test saves a screenshot of its tab, <tab>.png, in a temp folder;
`VISION_LAB_SCREENSHOTS=docs/screenshots` puts them where the docs show them (see conftest.py).
"""
import time

import pytest

from conftest import open_tab

pytestmark = pytest.mark.slow


def _plot_src(page, selector):
    img = page.locator(f"{selector} img")
    return img.first.get_attribute("src") if img.count() else None


def test_augment_tab_shows_a_grid(browser_page, screenshots):
    page = browser_page
    open_tab(page, "Augment")
    # Change a control: switch vertical flips on.
    page.get_by_text("RandomVerticalFlip", exact=True).click()   # open its accordion
    page.get_by_label("use RandomVerticalFlip").check()
    page.locator("#augment-run").click()
    images = page.locator("#augment-gallery img")
    images.first.wait_for(timeout=60_000)
    page.wait_for_function("document.querySelectorAll('#augment-gallery img').length >= 16",
                           timeout=30_000)
    assert images.count() >= 16
    code = page.locator(".cm-content").first.inner_text()
    assert "RandomVerticalFlip" in code and "v2.Compose" in code
    page.screenshot(path=str(screenshots / "augment.png"), full_page=True)


def test_train_tab_live_curves_and_stop(browser_page, screenshots):
    page = browser_page
    open_tab(page, "Train")
    page.get_by_label("Epochs").fill("30")      # long enough that Stop has something to stop
    page.locator("#train-start").click()
    status = page.locator("#train-status")

    seen, deadline = set(), time.time() + 120
    while len(seen) < 3 and time.time() < deadline:  # the empty plot, then two live updates
        src = _plot_src(page, "#train-loss-plot")
        if src:
            seen.add(src)
        time.sleep(0.3)
    assert len(seen) >= 3, f"the loss curve changed only {len(seen)} time(s); status: {status.inner_text()}"
    assert "Training" in status.inner_text()

    pressed = time.time()
    page.locator("#train-stop").click()
    page.wait_for_function(
        "document.querySelector('#train-status').innerText.includes('Stopped')", timeout=10_000)
    took = time.time() - pressed
    assert took < 5, f"Stop took {took:.1f} s"
    assert "kept epoch" in status.inner_text() or "nothing was saved" in status.inner_text()
    page.screenshot(path=str(screenshots / "train.png"), full_page=True)


def test_compare_tab_quick_preset_table(browser_page, screenshots):
    page = browser_page
    open_tab(page, "Compare")
    page.get_by_label("quick").check()
    page.locator("#compare-start").click()
    page.wait_for_function(
        "document.querySelector('#compare-status').innerText.includes('Done')", timeout=120_000)
    table = page.locator("#compare-table").inner_text()
    assert "MLP" in table and "CNN" in table
    # Wait for the overlay plot to be drawn before the screenshot.
    page.locator("#compare-acc-plot img").first.wait_for(timeout=30_000)
    page.screenshot(path=str(screenshots / "compare.png"), full_page=True)


def test_lecture_mode_folds_controls_and_reveals_the_answer_on_request(browser, app_url, screenshots):
    """?lecture=1: larger type, advanced controls gone, and a lesson's answer (table, curves,
    verdict) hidden after the run until the lecturer presses Reveal."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    try:
        page.goto(app_url + "?lecture=1")
        page.wait_for_function("document.body.classList.contains('vl-lecture')", timeout=30_000)
        zoom = page.evaluate("getComputedStyle(document.querySelector('.gradio-container')).zoom")
        assert float(zoom) > 1.2
        open_tab(page, "Train")
        advanced = page.locator(".vl-advanced")
        assert advanced.count() > 0 and not advanced.first.is_visible()
        open_tab(page, "Compare")
        page.get_by_text("① The question").wait_for(timeout=10_000)
        page.get_by_label("quick").check()
        page.locator("#compare-start").click()
        page.wait_for_function(
            "document.querySelector('#compare-status').innerText.includes('Done')", timeout=180_000)
        answer = page.locator("#compare-answer")
        assert not answer.is_visible()                       # the room guesses first
        page.locator("#compare-reveal").click()
        answer.wait_for(state="visible", timeout=10_000)
        assert "CNN" in page.locator("#compare-table").inner_text()
        page.locator("#compare-acc-plot img").first.wait_for(timeout=30_000)
        page.screenshot(path=str(screenshots / "lecture_compare.png"), full_page=True)
        # Off again: everything is back, the answer shown as soon as it exists.
        page.locator("#lecture-switch input").uncheck()
        page.wait_for_function("!document.body.classList.contains('vl-lecture')", timeout=10_000)
        open_tab(page, "Train")
        assert page.locator(".vl-advanced").first.is_visible()
    finally:
        context.close()
