"""The docs a reader follows: every relative link and image in README.md and docs/ resolves, and the
lecturer's guide's links open lessons that exist, on data sets the app offers; the README stays a
front door (short, with one file per reader in docs/ and a LICENSE); every file path the docs name
in backticks exists; and the docs read as a reference, not a diary."""
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

# The checkout's root, wherever in tests/ this file lives.
ROOT = next(p for p in Path(__file__).resolve().parents if (p / "vision_lab").is_dir())
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
# An HTML image, as the README's thumbnails are written.
IMG_SRC = re.compile(r'<img [^>]*src="([^"]+)"')
# One file per reader (see README's Documentation table).
DOC_FILES = ["teaching.md", "teaching.zh-CN.md", "tour.md", "deploy.md", "api.md", "performance.md",
             "architecture.md", "CONTRIBUTING.md", "translation.md"]
README_MAX_LINES = 250
# Wording that belongs in a commit message or a closing note, not in a reference: a figure is
# stated with its date and machine instead.
SESSION_LOG = re.compile(r"\b(this round|earlier the same day|re-measured|once more|not traced yet|"
                         r"not measured yet|not yet|today|previously|we changed|this session|now)\b|本轮",
                         re.IGNORECASE)
# A path in backticks under one of the checkout's folders, e.g. `vision_lab/serving/worker.py`.
PATH = re.compile(r"`((?:vision_lab|scripts|benchmarks|examples|checkpoints|tests|docs)/[\w./-]*)`")
# A test module named alone, e.g. `test_resume.py` (tests live in folders under tests/).
TEST_MODULE = re.compile(r"`(test_\w+\.py)`")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_relative_link_resolves(doc):
    broken = []
    markdown = doc.read_text(encoding="utf-8")
    for target in LINK.findall(markdown) + IMG_SRC.findall(markdown):
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


def test_the_readme_is_a_front_door_with_a_file_per_reader_behind_it():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; at most {README_MAX_LINES}"
    missing = [name for name in DOC_FILES if not (ROOT / "docs" / name).is_file()]
    assert missing == [], f"docs/ lacks {missing}"
    assert (ROOT / "LICENSE").is_file()
    readme = "\n".join(lines)
    unlinked = [name for name in DOC_FILES if f"docs/{name}" not in readme]
    assert unlinked == [], f"README.md does not link {unlinked}"


def session_log_wording(text: str) -> list[str]:
    return [m.group(0) for m in SESSION_LOG.finditer(text)]


def test_the_session_log_check_catches_diary_wording():
    assert session_log_wording("Re-measured once more today: 1.02, now 0.93 (this round).") == [
        "Re-measured", "once more", "today", "now", "this round"]
    assert session_log_wording("本轮重新测量") == ["本轮"]
    assert session_log_wording("Measured on 2026-12-02 on the 2-core VM; it knows nowhere.") == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_the_docs_read_as_a_reference_not_a_diary(doc):
    found = session_log_wording(doc.read_text(encoding="utf-8"))
    assert found == [], f"{doc.name}: session-log wording {found}; state the fact with its date"


def missing_paths(text: str) -> list[str]:
    tests = {p.name for p in (ROOT / "tests").rglob("test_*.py")}
    missing = [p for p in PATH.findall(text) if not (ROOT / p.rstrip("/")).exists()]
    return missing + [name for name in TEST_MODULE.findall(text) if name not in tests]


def test_the_path_check_catches_a_file_that_is_gone():
    text = "`vision_lab/no_such_module.py`, `vision_lab/models.py`, `test_no_such.py`, `test_docs.py`"
    assert missing_paths(text) == ["vision_lab/no_such_module.py", "test_no_such.py"]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_file_the_docs_name_exists(doc):
    missing = missing_paths(doc.read_text(encoding="utf-8"))
    assert missing == [], f"{doc.name} names files that do not exist: {missing}"


def heading_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a file's headings: lower case, punctuation dropped, spaces to '-'."""
    anchors = set()
    for line in markdown.splitlines():
        match = re.match(r"#{1,6} (.+)", line)
        if match:
            title = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower())
            anchors.add(title.replace(" ", "-"))
    return anchors


def test_the_anchor_check_reads_headings_as_github_does():
    assert heading_anchors("## Day 8 — Your own images: an ImageFolder data set\n### Latency (`latency.py`)") == {
        "day-8--your-own-images-an-imagefolder-data-set", "latency-latencypy"}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_link_to_a_section_names_a_heading(doc):
    broken = []
    for target in LINK.findall(doc.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target) or "#" not in target:
            continue
        file, anchor = target.split("#", 1)
        path = (doc.parent / file).resolve() if file else doc
        if path.suffix == ".md" and path.exists():
            if anchor not in heading_anchors(path.read_text(encoding="utf-8")):
                broken.append(target)
    assert broken == [], f"{doc.name}: links to sections that do not exist: {broken}"
