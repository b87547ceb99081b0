"""Two languages, one catalogue each: every key in both, the same parameters in both, every key the
code uses in them, and no sentence a person sees written past the catalogue."""
import ast
import json
import pickle
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

from vision_lab import i18n
from vision_lab.i18n import Text, join, render, text, using

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "vision_lab"
# Where people read what the code writes. The CLI speaks English (design.md), and serving/ only
# reports to the server's log and through the app.
CLI_ONLY = {"cli.py", "command_line.py", "__main__.py"}


def test_both_catalogues_have_the_same_keys_and_parameters():
    en, zh = i18n.catalogue("en"), i18n.catalogue("zh")
    assert en, "the English catalogue is empty"
    assert sorted(set(en) ^ set(zh)) == [], "keys in one catalogue only"
    different = [key for key in en if i18n.fields(en[key]) != i18n.fields(zh[key])]
    assert different == [], "the two languages' templates take different parameters"
    untranslated = [key for key in en if zh[key] == en[key] and re.search(r"[A-Za-z]{4}", en[key])
                    and not re.search(r"[\u4e00-\u9fff]", zh[key])]
    assert untranslated == [], "Chinese entries that are still English"


def test_every_key_the_code_uses_is_in_the_catalogue():
    used = set()
    for path in PACKAGE.rglob("*.py"):
        used |= i18n.keys_used_in(path.read_text(encoding="utf-8"))
    missing = sorted(used - set(i18n.catalogue("en")))
    assert missing == [], "keys the code uses but the catalogue lacks"


def test_a_text_is_its_english_sentence_and_says_itself_in_chinese():
    key = next(k for k, v in i18n.catalogue("en").items() if not i18n.fields(v))
    message = text(key)
    assert isinstance(message, str) and message == i18n.catalogue("en")[key]
    assert render(message, "zh") == i18n.catalogue("zh")[key]
    with using("zh"):
        assert i18n.t(key) == i18n.catalogue("zh")[key] and i18n.current() == "zh"
    assert i18n.current() == "en"
    # It survives the trips a message makes: pickled from the training process, copied into an
    # event's dict, written as JSON by the CLI.
    again = pickle.loads(pickle.dumps(message))
    assert isinstance(again, Text) and render(again, "zh") == render(message, "zh")

    @dataclass
    class Event:
        message: str

    copied = asdict(Event(message))["message"]
    assert render(copied, "zh") == render(message, "zh")
    assert json.loads(json.dumps({"m": message})) == {"m": str(message)}
    both = join(message, "42")
    assert both == f"{message} 42" and render(both, "zh") == f"{render(message, 'zh')} 42"
    assert i18n.language_from("zh-CN,zh;q=0.9,en;q=0.8") == "zh"
    assert i18n.language_from("en-GB,en") == "en" and i18n.language_from(None) == "en"


# ---- nothing a person reads bypasses the catalogue ----------------------------------------------

def _literal(node) -> bool:
    """A hand-written sentence: a string or f-string with letters in it."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return bool(re.search(r"[A-Za-z]{2}", node.value))
    if isinstance(node, ast.JoinedStr):
        return any(_literal(v) for v in node.values if isinstance(v, ast.Constant))
    if isinstance(node, ast.BinOp):
        return _literal(node.left) or _literal(node.right)
    return False


# Component arguments people read, and calls whose first argument people read.
SHOWN_KEYWORDS = {"label", "info", "placeholder", "title"}
SHOWN_FIRST_ARGUMENT = {"Markdown", "Button", "Tab", "Accordion", "Error", "Warning", "Info",
                        "Status", "RunEnd"}


def _bypasses(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            shown = SHOWN_KEYWORDS | {"message"} | ({"value"} if name == "Markdown" else set())
            for keyword in node.keywords:
                if keyword.arg in shown and _literal(keyword.value):
                    found.append(f"{path.name}:{node.lineno} {name}({keyword.arg}=...)")
            if name in SHOWN_FIRST_ARGUMENT and node.args and _literal(node.args[0]):
                found.append(f"{path.name}:{node.lineno} {name}(...)")
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and node.exc.args \
                and _literal(node.exc.args[0]):
            found.append(f"{path.name}:{node.lineno} raise ...")
    return found


@pytest.mark.parametrize("path", sorted(p for p in PACKAGE.rglob("*.py") if p.name not in CLI_ONLY),
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_sentence_a_person_reads_bypasses_the_catalogue(path):
    assert _bypasses(path) == []


def test_every_handler_of_a_number_field_speaks_for_its_visitor(tmp_path):
    """A wrong number reaches its handler as a WrongValue, which only friendly_errors turns into
    the visitor's sentence: every handler that takes such a field must be wrapped by it."""
    from vision_lab.ui import Settings, build_app
    from vision_lab.ui.fields import Number, Slider

    demo = build_app(Settings(runs_dir=str(tmp_path)))
    unwrapped = []
    for dependency in demo.fns.values():
        if any(isinstance(block, (Number, Slider)) for block in dependency.inputs):
            fn, wrapped = dependency.fn, False
            while fn is not None and not wrapped:
                wrapped = getattr(fn, "speaks_for_visitor", False)
                fn = getattr(fn, "__wrapped__", None)
            if not wrapped:
                unwrapped.append(dependency.name)
    assert unwrapped == []
