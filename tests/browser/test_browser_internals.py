"""Inside the network in a real browser (Debian Chromium via Playwright): the Train tab's
"Inside the network" accordion after a run, and the BatchNorm lesson's layer profile and pointer.

Screenshots: train_inside.png and compare_inside.png (see conftest.py for where they go).
"""

import pytest

from conftest import open_tab, train_in_browser

pytestmark = pytest.mark.slow


def test_train_tab_shows_inside_the_network_after_a_run(browser_page, screenshots):
    page = browser_page
    train_in_browser(page, images=800, epochs=4, seconds=400)
    page.locator("#train-inside").get_by_text("Inside the network").first.click()   # open it
    page.locator("#train-inside-weights img").first.wait_for(timeout=60_000)
    note = page.locator("#train-inside-note").inner_text()
    assert "gradient norm" in note and "validation images" in note
    # Each quantity has its own figure: the activations' tab draws another one.
    page.get_by_role("tab", name="Activations", exact=True).click()
    page.locator("#train-inside-activations img").first.wait_for(timeout=30_000)
    page.get_by_role("tab", name="Weights", exact=True).click()
    page.locator("#train-inside").scroll_into_view_if_needed()
    page.locator("#train-inside").screenshot(path=str(screenshots / "train_inside.png"))


def test_the_batchnorm_lesson_points_inside_the_network(browser_page, screenshots):
    page = browser_page
    open_tab(page, "Compare")
    lesson = page.locator("#compare-lesson")
    lesson.locator("input").click()
    lesson.locator("input").fill("BatchNorm")
    page.get_by_role("option", name="BatchNorm vs none").first.click()
    page.keyboard.press("Escape")
    page.get_by_label("quick").check()
    page.locator("#compare-start").click()
    page.wait_for_function(
        "document.querySelector('#compare-status').innerText.includes('Done')", timeout=240_000)
    verdict = page.locator("#compare-verdict").inner_text()
    assert "Inside the network" in verdict and "without BatchNorm" in verdict and "→" in verdict
    page.get_by_role("tab", name="Inside the network", exact=True).click()
    page.locator("#compare-inside-plot img").first.wait_for(timeout=30_000)
    page.screenshot(path=str(screenshots / "compare_inside.png"), full_page=True)
