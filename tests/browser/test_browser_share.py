"""Shareable runs and setups in a real browser: an address fills the Train and Compare forms and
each shows its "Link to this setup"; a run bundle opens in the Train tab."""
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture
def new_page(browser):
    contexts = []

    def open_page(url):
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        contexts.append(context)
        page = context.new_page()
        page.goto(url)
        return page

    yield open_page
    for context in contexts:
        context.close()


def link_has(page, link_id, *parts, timeout=20_000):
    page.wait_for_function(
        "([id, parts]) => { const t = document.querySelector(`#${id} textarea`);"
        " return t && parts.every(p => t.value.includes(p)); }",
        arg=[link_id, list(parts)], timeout=timeout)
    return page.locator(f"#{link_id} textarea").input_value()


def test_an_address_fills_the_train_form_and_shows_its_link(new_page, app_url, screenshots):
    page = new_page(app_url + "?model=mlp&lr=0.05&epochs=2")
    link = link_has(page, "train-link", "model=mlp", "lr=0.05", "epochs=2")
    assert link.startswith(app_url + "?")
    assert page.get_by_role("tab", name="Train", exact=True).get_attribute("aria-selected") == "true"
    assert page.locator("#train-model input").input_value() == "mlp"
    assert page.locator("#train-lr input").input_value() == "0.05"
    assert page.locator("#train-epochs input").input_value() == "2"
    assert page.locator("#train-hidden-sizes textarea, #train-hidden-sizes input").first.is_visible()
    assert "settings from the page's address" in page.locator("#train-status").inner_text()
    # The link follows the form.
    page.locator("#train-epochs input").fill("4")
    page.locator("#train-epochs input").press("Tab")
    assert "epochs=4" in link_has(page, "train-link", "epochs=4")
    # The form from its top down to the link.
    box = page.locator("#train-link").bounding_box()
    page.screenshot(path=str(screenshots / "share_link.png"), full_page=True,
                    clip={"x": 0, "y": 0, "width": 1400, "height": box["y"] + box["height"] + 20})
    # Picking another model by hand still shows that model's own fields, and the link follows.
    model = page.locator("#train-model input")
    model.click()
    model.fill("cnn")
    page.get_by_role("option", name="cnn").first.click()
    page.keyboard.press("Escape")
    link_has(page, "train-link", "model=cnn")
    page.locator("#train-hidden-sizes").wait_for(state="hidden", timeout=10_000)


def test_a_wrong_value_in_the_address_is_named_and_the_rest_applies(new_page, app_url):
    page = new_page(app_url + "?model=mlp&lr=fast&epochs=2")
    page.wait_for_function("document.querySelector('#train-status')?.innerText.includes('fast')",
                           timeout=20_000)
    assert "Learning rate must be a number, got 'fast'" in page.locator("#train-status").inner_text()
    assert page.locator("#train-model input").input_value() == "mlp"
    assert page.locator("#train-epochs input").input_value() == "2"


def test_an_address_fills_the_compare_tab(new_page, app_url):
    page = new_page(app_url + "?tab=compare&lesson=Pixel+permutation&size=quick&dataset=mnist")
    link = link_has(page, "compare-link", "tab=compare", "lesson=Pixel+permutation", "size=quick")
    assert "dataset=mnist" in link
    assert page.get_by_role("tab", name="Compare", exact=True).get_attribute("aria-selected") == "true"
    assert page.locator("#compare-lesson input").input_value() == "Pixel permutation"


def test_a_run_bundle_opens_in_the_train_tab(new_page, app_url, screenshots, tmp_path):
    from vision_lab.bundles import write_bundle

    bundle = write_bundle(ROOT / "checkpoints" / "shapes_cnn.safetensors",
                          tmp_path / "shapes_cnn.zip")
    page = new_page(app_url)
    page.get_by_role("tab", name="Train", exact=True).click()
    page.locator("#train-open-run").get_by_text("Open a run bundle").click()
    page.locator("#train-open-bundle input[type=file]").set_input_files(str(bundle))
    page.wait_for_function(
        "document.querySelector('#train-status')?.innerText.includes('Opened a run bundle')",
        timeout=60_000)
    page.locator("#train-acc-plot img").first.wait_for(timeout=20_000)
    link_has(page, "train-link", "model=cnn", "dataset=shapes")
    status = page.locator("#train-status").inner_text()
    assert "cnn on shapes" in status and "Test accuracy" in status and "shapes_cnn_opened" in status
    page.screenshot(path=str(screenshots / "share_open.png"), full_page=True)
