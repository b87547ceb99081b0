"""The Compare tab's custom table in a Chinese visitor's browser: a column for every option a
lesson varies, headed in Chinese (the API's English key beside it)."""
from conftest import open_tab


def test_a_chinese_visitor_reads_the_custom_tables_headings_in_chinese(browser, app_url):
    context = browser.new_context(locale="zh-CN", viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    try:
        page.goto(app_url)
        open_tab(page, "对比")
        page.locator("#compare-lesson input").click()
        page.get_by_role("option", name="自定义（编辑表格）").click()
        table = page.locator("#compare-custom")
        table.get_by_text("训练集比例 (train_fraction)").first.wait_for(timeout=15_000)
        headings = " | ".join(table.locator("th").all_inner_texts())
        for heading in ("模型 (model)", "随机失活比例 (dropout)", "权重衰减 (weight_decay)",
                        "L1 正则化系数 (l1)", "早停耐心轮数 (early_stopping_patience)"):
            assert heading in headings, headings
        assert "weight_decay |" not in headings and not headings.startswith("label")
    finally:
        context.close()
