"""The class board in real browsers, from open to Reveal: the lecturer types the key and opens a
board, three students (three browser contexts) train for it and submit, the board ranks them by
validation accuracy, the lecturer reveals the test set and the test accuracies and moves appear.
The same board in lecture mode (large table) and for a zh-CN visitor.

Screenshots: board.png, lecture_board.png and zh/board.png in the screenshots folder
(VISION_LAB_SCREENSHOTS=docs/screenshots refreshes the docs')."""
from __future__ import annotations

import re

import pytest

from conftest import LECTURER_KEY, open_tab

pytestmark = pytest.mark.slow

STUDENTS = {"Ada": ("0.003", "1"), "Bo": ("0.01", "2"), "李雷": ("0.001", "3")}
VIEWPORT = {"width": 1400, "height": 1000}


def class_page(browser, url):
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.goto(url)
    open_tab(page, "Class")
    return context, page


# The Dataframe's rows: gradio draws them as role="row" (the first is the header) in a virtual table.
ROWS_JS = """() => [...document.querySelectorAll('#board-table [role=row]')]
  .filter(row => Number(row.getAttribute('aria-rowindex')) > 1)
  .map(row => [...row.querySelectorAll('[role=gridcell]')].map(cell => cell.innerText.trim()))"""


def board_rows(page) -> list[list[str]]:
    return page.evaluate(ROWS_JS)


def wait_rows(page, n: int, columns: int, timeout=30.0) -> list[list[str]]:
    """The board as shown once it has n rows of `columns` filled cells (the page refreshes
    itself every few seconds)."""
    page.wait_for_function(
        f"(({ROWS_JS})()).filter(row => row.length === {columns} && row.every(Boolean)).length === {n}",
        timeout=timeout * 1000)
    return board_rows(page)


def test_three_students_then_reveal(browser, app_url, screenshots):
    lecturer_context, lecturer = class_page(browser, app_url)
    contexts = [lecturer_context]
    try:
        lecturer.locator("#class-lecturer").click()
        lecturer.locator("#class-key input").fill(LECTURER_KEY)
        lecturer.locator("#board-lecturer").click()
        lecturer.locator("#board-name input").fill("Shapes, lesson 3")
        lecturer.locator("#board-train-images input").fill("300")
        lecturer.locator("#board-test-images input").fill("200")
        lecturer.locator("#board-max-epochs input").fill("2")
        lecturer.locator("#board-open").click()
        lecturer.wait_for_function("document.querySelector('#board-lecturer-status textarea')"
                                   ".value.includes('is open')", timeout=60_000)
        assert "Shapes, lesson 3" in lecturer.locator("#board-rules textarea").input_value()

        students = {}
        for name, (lr, seed) in STUDENTS.items():
            context, page = class_page(browser, app_url)
            contexts.append(context)
            page.locator("#board-rules textarea").wait_for()
            model = page.locator("#board-model input")
            model.click()
            model.fill("mlp")
            page.get_by_role("option", name="mlp", exact=True).click()
            page.locator("#board-epochs input").fill("1")
            page.locator("#board-lr input").fill(lr)
            page.locator("#board-seed input").fill(seed)
            page.locator("#board-train").click()
            students[name] = page
        for name, page in students.items():   # they wait in the server's line, one after another
            status = page.locator("#board-status")
            status.get_by_text("Trained for the board").wait_for(timeout=120_000)
            assert "%" in status.inner_text() and "test accuracy stays hidden" in status.inner_text()
            page.locator("#board-acc-plot img").wait_for()
            page.locator("#board-nickname input").fill(name)
            page.locator("#board-submit").click()
            page.wait_for_function("document.querySelector('#board-submit-status textarea')"
                                   ".value.includes('on the board')", timeout=30_000)

        rows = wait_rows(lecturer, 3, 6)   # the lecturer's page refreshed itself
        assert sorted(row[2] for row in rows) == sorted(STUDENTS)
        val = [float(row[3].rstrip("%")) for row in rows]
        assert val == sorted(val, reverse=True) and [row[0] for row in rows] == ["1", "2", "3"]
        lecturer.locator("#board-plot img").wait_for()

        lecturer.locator("#board-reveal").click()
        lecturer.wait_for_function("document.querySelector('#board-lecturer-status textarea')"
                                   ".value.includes('Revealed')", timeout=30_000)
        rows = wait_rows(lecturer, 3, 9)
        test = [float(row[3].rstrip("%")) for row in rows]   # ranked by the test set now
        assert test == sorted(test, reverse=True) and [row[0] for row in rows] == ["1", "2", "3"]
        for row in rows:   # Move: validation rank - test rank
            move = int(row[6]) - int(row[0])
            assert row[4] == ("=" if move == 0 else f"↑{move}" if move > 0 else f"↓{-move}")
        # A student's page shows the revealed board too (its own refresh).
        seen = wait_rows(students["Ada"], 3, 9)
        assert all(re.fullmatch(r"\d+\.\d%", row[3]) for row in seen)
        lecturer.screenshot(path=str(screenshots / "board.png"), full_page=True)

        # Lecture mode: the table is drawn large for the back of the room.
        normal = _cell_font(lecturer)
        lecturer.locator("#lecture-switch input").check()
        lecturer.wait_for_function("document.body.classList.contains('vl-lecture')")
        assert _cell_font(lecturer) > 1.3 * normal
        lecturer.locator("#board-refresh").click()
        lecturer.locator("#board-table").scroll_into_view_if_needed()
        lecturer.screenshot(path=str(screenshots / "lecture_board.png"), full_page=True)

        # The same board for a Chinese visitor.
        zh_context = browser.new_context(viewport=VIEWPORT, locale="zh-CN")
        contexts.append(zh_context)
        zh = zh_context.new_page()
        zh.goto(app_url + "?lang=zh-CN")
        open_tab(zh, "课堂")
        zh.locator("#board-table").get_by_text("测试集准确率").wait_for(timeout=30_000)
        assert "排行榜" in zh.locator("#board-rules textarea").input_value()
        zh.locator("#board-plot img").wait_for()
        folder = screenshots / "zh"
        folder.mkdir(exist_ok=True)
        zh.screenshot(path=str(folder / "board.png"), full_page=True)
    finally:
        for context in contexts:
            context.close()


def _cell_font(page) -> float:
    return page.evaluate("parseFloat(getComputedStyle(document.querySelector('#board-table [role=gridcell]'))"
                         ".fontSize)")
