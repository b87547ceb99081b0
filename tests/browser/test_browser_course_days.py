"""The overfitting and transfer-learning days in a Chinese browser: the regularization, early
stopping and offline transfer lessons at their default size on `shapes` (what a lecturer shows;
they come from the shipped replays, so a class has them at once), each with its verdicts held in
Chinese and no English left on the page.

Screenshots go to the screenshots folder's zh/ (docs/screenshots/zh with
VISION_LAB_SCREENSHOTS=docs/screenshots)."""
import pytest

from test_browser_zh import choose, no_english_left, say, zh_page, zh_shots  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow


@pytest.fixture
def locale():
    """Simplified Chinese only: test_browser_zh.py walks every tab in Traditional Chinese too, and
    these lessons' pages hold the same strings (one walk per feature)."""
    return "zh-CN"

# lesson (its Chinese name in the picker), verdict lines it holds, run labels in its table, screenshot
DAYS = [
    ("过拟合与正则化（随机失活/L2/L1）", 4, ("不加正则化", "随机失活 0.5"), "compare_regularization.png"),
    ("早停", 2, ("保留最后一轮", "早停（耐心轮数 3），保留最佳"), "compare_early_stopping.png"),
    ("迁移学习：预训练的 CNN 与从零训练", 1, ("CNN，从零训练",), "compare_transfer.png"),
]


def test_the_new_course_days_lessons_hold_in_chinese(zh_page, zh_shots):
    page = zh_page
    page.get_by_role("tab", name="对比", exact=True).click()
    for lesson, claims, runs, shot in DAYS:
        choose(page, "compare-lesson", lesson)
        page.get_by_label("默认 (default)").check()
        before = page.locator("#compare-status").inner_text()
        page.locator("#compare-start").click()
        # Done with this lesson, not the last one: its line counts its own runs.
        page.wait_for_function(
            "b => { const s = document.querySelector('#compare-status').innerText;"
            " return s !== b && s.includes('完成'); }", arg=before, timeout=120_000)
        # The verdict shows once gradio has delivered every output: one line per claim, each held.
        page.wait_for_function(
            "n => document.querySelector('#compare-verdict').innerText"
            ".split('超过了随机种子之间的波动').length - 1 === n", arg=claims, timeout=30_000)
        verdict = page.locator("#compare-verdict").inner_text()
        assert "未能证实" not in verdict
        table = page.locator("#compare-table").inner_text()
        for run in runs:
            assert run in table, table
        page.locator("#compare-acc-plot img").first.wait_for(timeout=30_000)
        no_english_left(page, lesson)
        page.screenshot(path=str(zh_shots / shot), full_page=True)
