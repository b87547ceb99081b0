"""The learning-curves lesson in a real browser: pick it in Compare, run it, and read a learning
curve (test accuracy against training images, log axis) with the usual table and verdict.
Saves learning_curves.png (see conftest.py's `screenshots`)."""
import pytest

pytestmark = pytest.mark.slow


def test_learning_curves_lesson_draws_accuracy_against_training_images(browser_page, screenshots):
    page = browser_page
    page.get_by_role("tab", name="Compare", exact=True).click()
    page.locator("#compare-lesson input").click()
    page.get_by_role("option", name="Learning curves: MLP vs CNN").click()
    page.wait_for_function(
        "document.querySelector('#compare-question').innerText.includes('5%, 20%, 50%')")
    page.get_by_label("quick").check()
    page.locator("#compare-start").click()
    page.wait_for_function(
        "document.querySelector('#compare-status').innerText.includes('Done')", timeout=300_000)
    table = page.locator("#compare-table").inner_text()
    for model in ("MLP", "CNN"):
        for percent in (5, 20, 50, 100):
            assert f"{model}, {percent}% of the images" in table
    # One seed at the quick size: the verdict says it shows no spread yet.
    assert "one seed" in page.locator("#compare-verdict").inner_text()
    # The accuracy tab's image is the learning curve (tests/core/test_lessons.py checks the figure).
    page.locator("#compare-acc-plot img").first.wait_for(timeout=30_000)
    page.screenshot(path=str(screenshots / "learning_curves.png"), full_page=True)
