"""Every sentence a person sees, in English, Simplified and Traditional Chinese: one catalogue per
language (en.json, zh.json, zh-TW.json beside this file), the same keys in each. zh-TW.json is made
from zh.json by scripts/make_zh_tw.py (OpenCC, Taiwan phrasing), never edited by hand.

A message is a `Text`: the English sentence itself — a str, so the CLI, the JSON events, logs and
exceptions read exactly as before — that also remembers its catalogue key and parameters, so the
app can say it in the visitor's language: `render(message, "zh")`. Build one with
`text(key, **params)`; templates use str.format fields (`{epoch}`, `{acc:.1%}`), and a parameter
that is itself a Text is rendered in the same language, and `{name!u}` begins a sentence with it
(its first letter upper case, for languages that have cases). `join(*parts)` strings messages
together; `listing(*parts)` lists them with the language's own separator (", " / "，").

Code that draws (plots) or writes (the app's handlers) for one visitor says which language it
works in with `using(lang)`; `t(key, **params)` renders in that language. The CLI speaks English.

Chinese terms follow Chinese deep-learning teaching, with the English term beside the first use
(卷积神经网络 (CNN)), so students can match their course notes and PyTorch's documentation.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import json
import re
import string
from pathlib import Path

LANGUAGES = ("en", "zh", "zh-TW")
NAMES = {"en": "EN", "zh": "简", "zh-TW": "繁"}
CHINESE = ("zh", "zh-TW")
_HERE = Path(__file__).resolve().parent
_language: contextvars.ContextVar[str] = contextvars.ContextVar("vision_lab_language", default="en")


@functools.cache
def catalogue(lang: str) -> dict[str, str]:
    """key -> template for one language."""
    if lang not in LANGUAGES:
        raise ValueError(text("i18n.unknown_language", lang=repr(lang), choices=", ".join(LANGUAGES)))
    return json.loads((_HERE / f"{lang}.json").read_text(encoding="utf-8"))


class Text(str):
    """An English sentence that knows how to say itself in another language."""

    key: str
    params: dict

    def __new__(cls, key: str, params: dict, english: str):
        value = super().__new__(cls, english)
        value.key, value.params = key, params
        return value

    def __reduce__(self):
        # Messages travel from the training process to the server pickled: rebuild from the key.
        return _rebuild, (self.key, self.params)

    def __deepcopy__(self, memo):  # dataclasses.asdict copies event fields
        return self


def _rebuild(key: str, params: dict) -> Text:
    return text(key, **params)


def text(key: str, **params) -> Text:
    """The message `key` with its parameters, as English text (KeyError for an unknown key)."""
    if key == _JOIN:
        return Text(key, params, params["sep"].join(map(str, params["parts"])))
    return Text(key, params, _format(catalogue("en")[key], params, "en"))


_JOIN = "@join"


def join(*parts, sep: str = " ") -> Text:
    """Messages (or plain strings) one after another, each said in the reader's language (`sep`
    too, when it is a Text)."""
    return text(_JOIN, parts=[p for p in parts if p], sep=sep)


def listing(*parts) -> Text:
    """Messages (or plain strings) as a list, separated as the reader's language does (", " in
    English, "，" in Chinese)."""
    return join(*parts, sep=text("i18n.list_separator"))


def render(value, lang: str | None = None) -> str:
    """`value` in `lang` (default: the current language) if it is a Text; as it is otherwise."""
    lang = lang or _language.get()
    if not isinstance(value, Text):
        return value if isinstance(value, str) else str(value)
    if value.key == _JOIN:
        return render(value.params["sep"], lang).join(render(p, lang) for p in value.params["parts"])
    template = catalogue(lang).get(value.key) or catalogue("en")[value.key]
    return _format(template, value.params, lang)


class _Formatter(string.Formatter):
    """str.format, plus the conversion `!u`: the value with its first letter upper case, so a
    sentence can begin with a parameter (`{claim!u}: by ...`)."""

    def convert_field(self, value, conversion):
        if conversion == "u":
            value = str(value)
            return value[:1].upper() + value[1:]
        return super().convert_field(value, conversion)


_FORMATTER = _Formatter()


def _format(template: str, params: dict, lang: str) -> str:
    said = {k: render(v, lang) if isinstance(v, Text) else v for k, v in params.items()}
    return _FORMATTER.vformat(template, (), said)


def t(key: str, **params) -> str:
    """`text(key, **params)` said in the current language."""
    return render(text(key, **params))


def current() -> str:
    return _language.get()


@contextlib.contextmanager
def using(lang: str):
    """Say everything in `lang` inside this block (this thread or task only)."""
    token = _language.set(lang if lang in LANGUAGES else "en")
    try:
        yield
    finally:
        _language.reset(token)


def is_chinese(lang: str) -> bool:
    """Simplified or Traditional: the same CJK font, the same punctuation."""
    return lang in CHINESE


# Traditional characters are written in Taiwan, Hong Kong and Macau, and wherever the script is
# named (zh-Hant); a script named zh-Hans wins over the region (zh-Hans-HK is Simplified).
TRADITIONAL_REGIONS = ("tw", "hk", "mo")


def language_from(accept_language: str | None) -> str:
    """The catalogue language for a browser's Accept-Language header, navigator.language or a
    `?lang=` address: zh-TW, zh-HK, zh-MO and zh-Hant-* are Traditional; zh, zh-CN, zh-SG and
    zh-Hans-* Simplified; the first Chinese or English tag decides, English when there is none.
    (language.INITIAL_JS says the same in the browser.)"""
    for part in (accept_language or "").split(","):
        subtags = part.split(";")[0].strip().lower().replace("_", "-").split("-")
        if subtags[0] == "zh":
            traditional = "hant" in subtags or (
                "hans" not in subtags and any(region in subtags for region in TRADITIONAL_REGIONS))
            return "zh-TW" if traditional else "zh"
        if subtags[0] == "en":
            return "en"
    return "en"


def fields(template: str) -> set[str]:
    """The parameter names a template uses (for the catalogue test)."""
    return {name.split(".")[0].split("[")[0] for _, name, _, _ in string.Formatter().parse(template)
            if name}


def keys_used_in(source: str) -> set[str]:
    """Catalogue keys a Python source mentions as text("...") / t("...") / i18n("...")."""
    return set(re.findall(r"""\b(?:text|t|i18n|ui_text)\(\s*["']([a-z][\w.]*)["']""", source))
