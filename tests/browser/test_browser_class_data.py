"""The class dataset in real browsers, from the first drawing to the comparison: the lecturer
types the key and opens a collection of two classes, two students (two browser contexts) draw
with the mouse on the sketchpad, a ring for "0" and a stroke for "1", and add their drawings; the
counts show them; the lecturer trains on the drawings and presses the comparison: both
accuracies show. Then the same comparison for a zh-CN visitor.

Screenshots: class_data.png, class_data_student.png and zh/class_data.png in the screenshots
folder (VISION_LAB_SCREENSHOTS=docs/screenshots refreshes the docs')."""
from __future__ import annotations

import math
import re
import time

import pytest

from conftest import LECTURER_KEY, open_tab
from zh_text import english_left

pytestmark = pytest.mark.slow

VIEWPORT = {"width": 1400, "height": 1000}
EACH = 2   # drawings of each class, from each student


def class_data_page(browser, url, tab="Class", inner="Class dataset", **options):
    context = browser.new_context(viewport=VIEWPORT, **options)
    page = context.new_page()
    page.goto(url)
    open_tab(page, tab)
    page.get_by_role("tab", name=inner, exact=True).click()
    return context, page


def as_lecturer(page):
    page.locator("#class-lecturer").click()
    page.locator("#class-key input").fill(LECTURER_KEY)
    page.locator("#class-data-lecturer").click()


def textbox_has(page, elem_id, part, timeout=60_000):
    page.wait_for_function(
        "([id, part]) => (document.querySelector(`#${id} textarea, #${id} input`)?.value || '')"
        ".includes(part)", arg=[elem_id, part], timeout=timeout, polling=200)
    return page.locator(f"#{elem_id} textarea, #{elem_id} input").first.input_value()


def draw(page, label: str, variant: int):
    """A "0" as a ring, a "1" as a stroke, each a little different, drawn with the mouse (few
    moves: each one makes the page redraw its canvas, slow in a software-rendered browser)."""
    page.wait_for_function("document.querySelector('#class-sketch button[title=Brush]')"
                           "?.classList.contains('highlight')", timeout=30_000, polling=200)
    box = page.locator("#class-sketch canvas").first.bounding_box()
    cx = box["x"] + box["width"] * (0.45 + 0.05 * variant)
    cy = box["y"] + box["height"] * (0.5 - 0.03 * variant)
    r = min(box["width"], box["height"]) * (0.22 + 0.04 * variant)
    if label == "0":
        points = [(cx + 0.7 * r * math.cos(k / 10 * 2 * math.pi), cy + r * math.sin(k / 10 * 2 * math.pi))
                  for k in range(11)]
    else:
        slant = 0.25 * r * (variant - 0.5)
        points = [(cx - slant, cy - r), (cx, cy), (cx + slant, cy + r)]
    page.mouse.move(*points[0])
    page.mouse.down()
    for point in points[1:]:
        page.mouse.move(*point, steps=2 if label == "0" else 4)
    page.mouse.up()


def pick_class(page, label: str):
    picker = page.locator("#class-label input")
    picker.click()
    picker.fill(label)
    page.get_by_role("option", name=label, exact=True).click()
    page.keyboard.press("Escape")
    page.wait_for_function("label => document.querySelector('#class-label input').value === label",
                           arg=label, timeout=5_000)


def table_cells(page, elem_id, columns: int) -> list[str]:
    """A gr.Dataframe's cells as shown, after its label and its headings (the first says
    "Class"); gradio 6 draws its rows outside <tr>."""
    parts = [part.strip() for part in page.locator(f"#{elem_id}").inner_text().split("\n")
             if part.strip()]
    return parts[parts.index("Class") + columns:]


def counts(page) -> dict[str, str]:
    cells = table_cells(page, "class-counts", 2)
    return dict(zip(cells[::2], cells[1::2]))


def test_two_students_draw_then_train_and_compare(browser, app_url, screenshots):
    lecturer_context, lecturer = class_data_page(browser, app_url)
    contexts = [lecturer_context]
    try:
        as_lecturer(lecturer)
        lecturer.locator("#class-name input").fill("0–1")
        lecturer.locator("#class-classes textarea").fill("0, 1")
        lecturer.locator("#class-per-student input").fill("10")
        lecturer.locator("#class-open").click()
        textbox_has(lecturer, "class-lecturer-status", "is open")

        students = []
        for _ in range(2):
            context, page = class_data_page(browser, app_url)
            contexts.append(context)
            textbox_has(page, "class-collection", "0–1: 0 of at most 2000", timeout=30_000)
            # Phones draw with a finger: the canvas takes touches itself instead of scrolling.
            page.locator("#class-sketch canvas").first.wait_for()
            assert page.evaluate("getComputedStyle(document.querySelector('#class-sketch canvas'))"
                                 ".touchAction") == "none"
            students.append(page)
        for n, page in enumerate(students):
            for label in ("0", "1"):
                pick_class(page, label)
                for variant in range(EACH):
                    draw(page, label, variant)
                    page.locator("#class-add").click()
                    textbox_has(page, "class-mine", f"You added {variant + 1 + EACH * int(label)} of your 10",
                                timeout=60_000)
                    textbox_has(page, "class-added", f"“{label}”", timeout=5_000)
        students[0].screenshot(path=str(screenshots / "class_data_student.png"), full_page=True)
        # Each student's page shows the whole class's counts (refreshed every few seconds).
        textbox_has(students[0], "class-collection", "0–1: 8 of at most 2000", timeout=30_000)
        deadline = time.time() + 15
        while counts(students[0]) != {"0": "4", "1": "4"} and time.time() < deadline:
            time.sleep(1)
        assert counts(students[0]) == {"0": "4", "1": "4"}

        lecturer.locator("#class-epochs input").fill("8")
        lecturer.locator("#class-train").click()
        lecturer.locator("#class-train-status").get_by_text("Finished 8 epoch").wait_for(timeout=180_000)
        assert textbox_has(lecturer, "class-train-about", "held out").startswith(
            "Trains on 6 drawings of 2 classes; 2 drawings are held out")
        class_model = lecturer.locator("#class-model input").input_value()
        assert class_model
        lecturer.locator("#class-compare").click()
        scores = {}
        for which in ("mnist", "class"):
            score = lecturer.locator(f"#class-score-{which}")
            score.locator("h1").get_by_text("%").wait_for(timeout=60_000)
            scores[which] = int(re.search(r"(\d+)%", score.inner_text()).group(1))
            assert 0 <= scores[which] <= 100
        assert "Trained on MNIST" in lecturer.locator("#class-score-mnist").inner_text()
        assert "domain shift" in lecturer.locator("#class-compare-note").inner_text()
        cells = table_cells(lecturer, "class-per-class", 3)   # class, MNIST model, class model
        assert len(cells) == 2 * 3 and cells[0] == "0" and cells[3] == "1"
        lecturer.locator("#class-score-mnist").scroll_into_view_if_needed()
        lecturer.screenshot(path=str(screenshots / "class_data.png"), full_page=True)

        # The same lecturer in Chinese (the class model is kept with their browser's runs): every
        # word in Chinese.
        zh = lecturer_context.new_page()
        zh.goto(app_url + "?lang=zh-CN")
        open_tab(zh, "课堂")
        zh.get_by_role("tab", name="班级数据集", exact=True).click()
        as_lecturer(zh)
        zh.locator("#class-model input").fill(class_model)
        zh.locator("#class-compare").click()
        zh.locator("#class-score-class h1").get_by_text("%").wait_for(timeout=60_000)
        assert "用班级绘图训练" in zh.locator("#class-score-class").inner_text()
        assert "领域偏移" in zh.locator("#class-compare-note").inner_text()
        assert english_left(zh, names=[class_model, "cnn"]) == []
        folder = screenshots / "zh"
        folder.mkdir(exist_ok=True)
        zh.locator("#class-score-mnist").scroll_into_view_if_needed()
        zh.screenshot(path=str(folder / "class_data.png"), full_page=True)
    finally:
        for context in contexts:
            context.close()
