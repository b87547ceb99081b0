"""The docs a reader follows: every relative link and image in README.md and docs/ resolves, and the
lecturer's guide's links open lessons that exist, on data sets the app offers."""
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_relative_link_resolves(doc):
    broken = []
    for target in LINK.findall(doc.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (doc.parent / target.split("#")[0]).resolve()
        if not path.exists():
            broken.append(target)
    assert broken == [], f"{doc.name}: links to nothing: {broken}"


@pytest.mark.parametrize("guide", ["teaching.md", "teaching.zh-CN.md"])
def test_the_guides_links_open_real_lessons_tabs_and_data_sets(guide):
    from vision_lab.datasets import list_datasets
    from vision_lab.lessons import LESSONS
    from vision_lab.ui import TABS

    text = (ROOT / "docs" / guide).read_text(encoding="utf-8")
    links = [t for t in LINK.findall(text) if t.startswith("http://127.0.0.1:7860/?")]
    assert len(links) >= 15
    lessons = set()
    for link in links:
        query = {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}
        assert query["tab"] in TABS, link
        assert query.get("dataset", "shapes") in list_datasets(), link
        assert query["lang"] == ("zh" if "zh" in guide else "en") and query["lecture"] == "1", link
        if "lesson" in query:
            assert query["lesson"] in LESSONS, link
            lessons.add(query["lesson"])
    assert lessons == set(LESSONS)   # every lesson has its day
    assert "MEASURED_ON" not in text and "_NUMBERS" not in text and "COURSE_DAYS" not in text
