"""The regularization lesson in a real browser: pick it in Compare, run it at the quick size, and
read one verdict line per claim, the four runs in the table, and each run's weight histograms in
the Inside the network tab. Saves compare_regularization.png (see conftest.py's `screenshots`)."""
import pytest

from conftest import open_tab

pytestmark = pytest.mark.slow


def test_regularization_lesson_shows_every_claim_and_the_weight_histograms(browser_page, screenshots):
    page = browser_page
    open_tab(page, "Compare")
    lesson = page.locator("#compare-lesson input")
    lesson.click()
    lesson.fill("Overfitting")
    page.get_by_role("option", name="Overfitting & regularization (Dropout/L2/L1)").first.click()
    page.keyboard.press("Escape")
    page.wait_for_function("document.querySelector('#compare-question').innerText.includes('weight decay')")
    page.get_by_label("quick").check()
    page.locator("#compare-start").click()
    page.wait_for_function(
        "document.querySelector('#compare-status').innerText.includes('Done')", timeout=300_000)
    table = page.locator("#compare-table").inner_text()
    for run in ("no regularization", "Dropout 0.5", "L2 (weight decay 0.1)", "L1 0.001"):
        assert run in table
    verdict = page.locator("#compare-verdict").inner_text()
    # One seed at the quick size: every claim says it shows no spread yet, each on its own line.
    assert verdict.count("with one seed") == 4
    assert "L1 makes the weights sparse" in verdict and "makes the weights smaller" in verdict
    page.get_by_role("tab", name="Inside the network", exact=True).click()
    page.locator("#compare-inside-plot img").first.wait_for(timeout=30_000)
    page.screenshot(path=str(screenshots / "compare_regularization.png"), full_page=True)
