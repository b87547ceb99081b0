"""The Feature maps tab's "Errors" accordion in a real browser: open it, click a cell of the
confusion matrix, see the images behind it."""
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_clicking_a_confusion_matrix_cell_shows_its_images(browser_page, screenshots):
    if not (ROOT / "checkpoints" / "shapes_cnn.safetensors").is_file():
        pytest.skip("checkpoints/shapes_cnn.safetensors has not been trained yet")
    page = browser_page
    page.get_by_role("tab", name="Feature maps", exact=True).click()
    picker = page.locator("#fm-checkpoint")
    picker.locator("input").click()
    picker.locator("input").fill("shapes_cnn")
    page.get_by_role("option", name="shapes_cnn").first.click()
    page.locator("#fm-errors").get_by_text("Errors: the images behind").first.click()
    page.locator("#fm-errors-matrix-note").get_by_text("test images of shapes").wait_for(timeout=60_000)
    table = page.locator("#fm-errors-matrix")
    cell = table.locator('[data-testid="cell-1-2"]')   # row ring, column ring
    cell.wait_for(timeout=10_000)
    cell.click()
    note = page.locator("#fm-errors-cell-note")
    note.get_by_text("of class ring predicted as ring").wait_for(timeout=30_000)
    page.locator("#fm-errors-gallery img").first.wait_for(timeout=30_000)
    assert page.locator("#fm-errors-gallery img").count() >= 1
    page.locator("#fm-errors").screenshot(path=str(screenshots / "errors.png"))
    # Another pick with the accordion open shows that checkpoint's matrix, or why it cannot: the
    # app's data folder holds no MNIST.
    if (ROOT / "checkpoints" / "mnist_cnn.safetensors").is_file():
        picker.locator("input").click()
        picker.locator("input").fill("mnist_cnn")
        page.get_by_role("option", name="mnist_cnn").first.click()
        page.locator("#fm-errors-matrix-note").get_by_text("not available offline").wait_for(
            timeout=30_000)
        assert page.locator("#fm-errors-gallery img").count() == 0
