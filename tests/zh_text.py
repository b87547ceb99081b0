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


# ---- any Latin word, and Chinese punctuation ------------------------------------------------------
#
# `foreign_words(text)` is stricter than `english_runs`: it returns EVERY Latin-letter word a
# Chinese reader meets that is not one of these:
#
# - a short allowlist of names Chinese courses write in Latin letters (CNN, ReLU, Adam, MNIST …);
# - an English gloss in brackets right after its Chinese term: 轮次 (epoch);
# - code: a `code span` (the page's code elements are hidden before it is read), an identifier
#   with a digit, an underscore or a dot in it (resnet18, n_train, .safetensors), a quoted
#   identifier ('pretrained'), a command-line option (--epochs);
# - names a person types or picks: models, datasets, presets, optimizers, schedulers, transforms
#   and their parameters, checkpoint names (`names`);
# - a single letter (N, p, A/B, T恤), an acronym in capitals (JSON, GPU, MB) and a CamelCase
#   class name (BatchNorm, RandomCrop, PyTorch).

ALLOWED = {"cnn", "mlp", "relu", "adam", "adamw", "sgd", "rmsprop", "onnx", "mnist", "cifar",
           "pytorch", "resnet", "lenet", "vgg", "batchnorm", "dropout", "imagenet", "grad", "cam",
           "torchvision", "vision", "lab", "jupyter", "airbench", "speedrun", "zip", "pickle",
           "safetensors", "linear", "fashion", "python", "gradio", "true", "false"}
# Names of arguments the library's own error messages mention (an API caller typed them).
API_NAMES = {"metric", "smoothing", "limit", "split", "pixels", "compile", "tta", "spec", "op",
             "min", "max", "height", "width", "lr", "folder", "train", "val", "test"}
CJK = "\u3400-\u4dbf\u4e00-\u9fff"
# A gloss: an English term in ASCII brackets right after Chinese text (after a closing quote or
# Markdown bold too): 卷积层 (convolutional layer), **网络内部** (inside).
GLOSS = re.compile(rf"(?<=[{CJK}”*）])\s?\(([^(){CJK}（）]*)\)")
CODE_SPAN = re.compile(r"`[^`]*`")
QUOTED = re.compile(r"'[^'\s][^']*'|\"[^\"\s][^\"]*\"")
PLACEHOLDER = re.compile(r"\{[^{}]*\}")
OPTION = re.compile(r"(?<![\w-])--?[a-z][\w-]*")
TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9_.+#/-]*")
CAMEL = re.compile(r"^[A-Za-z][a-z0-9]*(?:[A-Z][A-Za-z0-9]*)+$")   # ReLU, BatchNorm, RandomCrop


def app_names() -> set[str]:
    """Names the app shows as they are, lower case (see the block above)."""
    from vision_lab import transforms
    from vision_lab.lessons import LESSONS
    try:
        from vision_lab import train_config as config
    except ImportError:   # before the training module's split
        from vision_lab import training as config

    names = {*default_names(), *transforms.OPS, *transforms.PRESETS, *LESSONS,
             *config.OPTIMIZERS, *config.SCHEDULERS, *config.TTA_MODES, *config.PRECISIONS,
             *config.COMPILE_MODES}
    names |= {param for op in transforms.OPS.values() for param in op["params"]}
    return {name.lower() for name in names}


def _word_is_fine(word: str, names: set[str]) -> bool:
    if len(word) == 1 or re.search(r"[0-9_.+#/]", word):
        return True
    if CAMEL.match(word) or (word.isupper() and len(word) >= 2):
        return True
    lower = word.lower()
    return lower in names or lower in ALLOWED or lower in API_NAMES


def foreign_words(text: str, names=()) -> list[str]:
    """The Latin-letter words in `text` that a Chinese reader should not meet (see above)."""
    known = app_names() | {name.lower() for name in names}
    known |= {part for name in known for part in re.split(r"[^a-z]+", name) if part}
    found = []
    for line in text.splitlines():
        for pattern in (CODE_SPAN, PLACEHOLDER, QUOTED, OPTION):
            line = pattern.sub(" ", line)
        previous = None
        while previous != line:   # nested brackets: innermost first
            previous, line = line, GLOSS.sub(" ", line)
        for token in TOKEN.findall(line):
            token = token.strip(".-/+")
            if not token or _word_is_fine(token, known):
                continue
            parts = [p for p in re.split(r"-", token) if p]
            if all(_word_is_fine(p, known) for p in parts):   # Grad-CAM, LeNet-5
                continue
            found.append(token)
    return list(dict.fromkeys(found))


def glosses(text: str) -> list[str]:
    """The English glosses in `text`: the terms in brackets right after Chinese ones."""
    return GLOSS.findall(text)


# Chinese punctuation in Chinese sentences: an ASCII , ; ? ! or : right after a Chinese character,
# or , ; ? ! right before one, and ASCII brackets around Chinese text.
_P = "\ue000"   # what a placeholder becomes: neither Chinese nor Latin
ASCII_PUNCTUATION = [
    re.compile(rf"[{CJK}]\s*[,;?!:]"),
    re.compile(rf"[,;?!]\s*[{CJK}]"),
    re.compile(rf"\([^()]*[{CJK}][^()]*\)"),
]


def ascii_punctuation(text: str) -> list[str]:
    """Places in a Chinese `text` where ASCII punctuation stands for Chinese punctuation."""
    text = PLACEHOLDER.sub(_P, CODE_SPAN.sub(_P, text))
    return [match.group(0) for pattern in ASCII_PUNCTUATION for match in pattern.finditer(text)]
