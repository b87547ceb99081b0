"""English left on a page a Chinese visitor reads: the browser tests of every tab use this.

`english_left(page)` collects the text the page shows now (what is visible: hidden tabs and
closed accordions do not count) and returns the runs of three or more English words in it. Two
kinds of English are wanted and do not count:

- an English term in parentheses beside its Chinese one, `卷积层 (convolutional layer)`, the way
  the course writes them (docs/translation.md);
- names a person types, kept as they are in both languages: model, dataset, checkpoint and file
  names, PyTorch classes (RandomResizedCrop), upper-case names (MNIST, CNN), and code.

A run counts when it has at least two words that are not names: "cnn trained on shapes" does,
"RandomCrop RandomHorizontalFlip ColorJitter" does not.

    from zh_text import english_left
    assert english_left(page, names=["my_run"]) == []
"""
from __future__ import annotations

import re

# Three or more English words separated by spaces or hyphens; a word may be a name with digits
# or underscores in it (mnist_cnn), so that "What mnist_cnn sees" is one run.
WORD = r"[A-Za-z][A-Za-z0-9_]*[A-Za-z0-9]"
RUN = re.compile(rf"{WORD}(?:[ -]{WORD}){{2,}}")
# An English term beside a Chinese one, in ASCII or full-width parentheses (innermost first).
PARENTHESES = re.compile(r"\([^()]*\)|（[^（）]*）")
FILE_NAME = re.compile(r"\S+\.[A-Za-z0-9]{2,5}\b")
CAMEL_CASE = re.compile(r"^[A-Z]?[a-z0-9]+(?:[A-Z][a-z0-9]*)+$")   # RandomCrop, BatchNorm, fooBar
UPPER_CASE = re.compile(r"^[A-Z0-9]{2,}$")                          # MNIST, CNN, JSON

# Code is what a student pastes, not what they read: a code block's text does not count.
CODE = "pre, code, .cm-editor"

# The visible text of the page, with code hidden while it is read; the values shown in text
# inputs (a dropdown shows its choice in one) come after it, one a line.
_VISIBLE_TEXT_JS = """
(code) => {
  // CodeMirror's own style says display: flex !important.
  const hidden = [...document.querySelectorAll(code)].map(el => [el, el.style.cssText]);
  hidden.forEach(([el]) => { el.style.setProperty("display", "none", "important"); });
  try {
    const shown = el => el.checkVisibility ? el.checkVisibility({checkVisibilityCSS: true})
                                           : el.offsetParent !== null;
    const values = [...document.querySelectorAll("input[type=text], input:not([type])")]
      .filter(shown).map(el => el.value);
    return [document.body.innerText, ...values].join("\\n");
  } finally {
    hidden.forEach(([el, css]) => { el.style.cssText = css; });
  }
}
"""


def default_names() -> set[str]:
    """Names the app shows as they are: its models and datasets, and the app's own name."""
    from vision_lab.datasets import list_datasets
    from vision_lab.models import list_models

    return {*list_models(), *list_datasets(), "Vision", "Lab", "Grad", "CAM", "torchvision"}


def visible_text(page) -> str:
    return page.evaluate(_VISIBLE_TEXT_JS, CODE)


def is_name(word: str, names) -> bool:
    return (word.lower() in names or bool(CAMEL_CASE.match(word)) or bool(UPPER_CASE.match(word)))


def english_runs(text: str, names=()) -> list[str]:
    """The runs of English words in `text` a Chinese reader should not meet (see the module)."""
    names = {name.lower() for name in (*default_names(), *names)}
    words_in_names = {part for name in names for part in re.split(r"[^a-z]+", name) if part}
    names |= words_in_names
    found = []
    for line in text.splitlines():
        previous = None
        while previous != line:   # nested parentheses: innermost first
            previous, line = line, PARENTHESES.sub(" ", line)
        line = FILE_NAME.sub(" ", line)
        for run in RUN.findall(line):
            plain = [w for w in re.split(r"[ -]", run) if not is_name(w, names)]
            plain = [w for w in plain if re.fullmatch(r"[A-Za-z]+", w)]  # v2, top_k: code
            if len(plain) >= 2:
                found.append(run)
    return list(dict.fromkeys(found))


def english_left(page, names=()) -> list[str]:
    """Runs of English the page shows now that a Chinese visitor should not meet."""
    return english_runs(visible_text(page), names)
