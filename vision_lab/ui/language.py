"""The visitor's language, English, Simplified or Traditional Chinese, for the whole page.

Static text (labels, info texts, Markdown, buttons) goes through gradio's I18n: the page shows it
in the browser's language from the first paint, and the EN | 简 | 繁 switch changes it in place.
What handlers write (status lines, errors, verdicts, tables, plots) is rendered on the server in
the visitor's language, which the page reports when it loads and whenever the switch changes; an
API caller gets the language of its Accept-Language header (English by default).
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import json
import threading
from collections import OrderedDict

import gradio as gr

from ..i18n import (LANGUAGES, NAMES, TRADITIONAL_REGIONS, Text, catalogue, language_from, render,
                    text, using)
from .gradio_internals import CHANGE_LOCALE_JS, TOAST_TITLE_JS

# The page's locale for each catalogue language: gradio's own names for its Chinese locales, so
# that a zh-CN or zh-TW browser gets its catalogue from the first paint.
LOCALES = {"en": "en", "zh": "zh-CN", "zh-TW": "zh-TW"}
# Static keys are the catalogue's own; gradio's page looks a browser's locale up as "zh-CN" first,
# then "zh".
I18N = gr.I18n(**{"en": catalogue("en"), "zh": catalogue("zh"),
                  **{LOCALES[lang]: catalogue(lang) for lang in ("zh", "zh-TW")}})


def ui_text(key: str):
    """A static text the page translates itself (a catalogue key without parameters)."""
    return I18N(key)


# What each page told the server about its visitor: "lang", and "lecture" (lecture.py).
_PREFERENCES: OrderedDict[str, dict] = OrderedDict()   # session -> preferences, most recent last
_LOCK = threading.Lock()
_REMEMBERED = 20_000


def remember(request, **preferences) -> None:
    session = getattr(request, "session_hash", None)
    if not session:
        return
    with _LOCK:
        _PREFERENCES.setdefault(session, {}).update(preferences)
        _PREFERENCES.move_to_end(session)
        while len(_PREFERENCES) > _REMEMBERED:
            _PREFERENCES.popitem(last=False)


def preference(request, name: str, default=None):
    with _LOCK:
        return _PREFERENCES.get(getattr(request, "session_hash", None), {}).get(name, default)


def language_of(request) -> str:
    lang = preference(request, "lang")
    if lang in LANGUAGES:
        return lang
    headers = getattr(request, "headers", None) or {}
    return language_from(headers.get("accept-language"))


@contextlib.contextmanager
def _for_visitor(request, lang: str):
    """Draw and write as this visitor sees the page: in their language, and with the larger plot
    text of lecture mode when they have it on."""
    from ..plot_style import LECTURE_TEXT_SCALE, larger_text

    with using(lang), larger_text(LECTURE_TEXT_SCALE if preference(request, "lecture") else 1.0):
        yield


# The switch changes the language of the page's static text the way gradio's own Settings panel
# does (gradio_internals.CHANGE_LOCALE_JS). The choice is kept in the browser, so a reload keeps
# it; `?lang=zh` (or zh-TW) in the address picks it too.
SWITCH_JS = """
async (choice) => {
  const lang = %s[choice];
  localStorage.setItem("vision_lab_lang", lang);
%s
  return choice;
}
""" % (json.dumps({NAMES[lang]: LOCALES[lang] for lang in LANGUAGES}), CHANGE_LOCALE_JS)
# A language tag (zh-HK, zh-Hant-TW, en-US ...) -> the catalogue language, as i18n.language_from
# chooses for one tag.
LANGUAGE_OF_TAG_JS = """
(tag) => {
  const subtags = tag.toLowerCase().replace(/_/g, "-").split("-");
  const traditional = subtags.includes("hant")
    || (!subtags.includes("hans") && %s.some((region) => subtags.includes(region)));
  return subtags[0] !== "zh" ? "en" : traditional ? "zh-TW" : "zh";
}
""" % json.dumps(TRADITIONAL_REGIONS)
# On load: the address (?lang=zh-TW), else this browser's last choice, else its own language.
INITIAL_JS = """
async () => {
  const asked = new URLSearchParams(location.search).get("lang");
  const kept = localStorage.getItem("vision_lab_lang");
  const language = (%s)(asked || kept || navigator.language || "en");
  const lang = %s[language];
%s
  return %s[language];
}
""" % (LANGUAGE_OF_TAG_JS, json.dumps(LOCALES), CHANGE_LOCALE_JS, json.dumps(NAMES))


def switch():
    return gr.Radio([NAMES[lang] for lang in LANGUAGES], value=NAMES["en"], show_label=False,
                    container=False, elem_id="language-switch", min_width=200)


def on_switch(choice: str, request: gr.Request) -> str:
    remember(request, lang=next(lang for lang, name in NAMES.items() if name == choice))
    return choice


def wire(demo: gr.Blocks, radio: gr.Radio) -> None:
    """The page reports its language on load (which also moves the switch), then on every change.

    gradio translates a tab's name once, when the tab is drawn, so the switch sends every tab its
    name again to have it translated in the new language."""
    from gradio.i18n import I18nData

    tabs = [block for block in demo.blocks.values()
            if isinstance(block, gr.Tab) and isinstance(block.label, I18nData)]

    def switched(choice: str, request: gr.Request):
        on_switch(choice, request)
        return [gr.Tab(label=tab.label) for tab in tabs]

    radio.change(switched, radio, tabs, js=SWITCH_JS, queue=False, api_visibility="private")
    demo.load(on_switch, radio, radio, js=INITIAL_JS, queue=False, api_visibility="private")
    titles = {NAMES[lang]: catalogue(lang)["app.error_title"] for lang in LANGUAGES}
    demo.load(None, js=TOAST_TITLE_JS % json.dumps(titles, ensure_ascii=False))


# ---- handlers speak the visitor's language --------------------------------------------------------

# Errors the library raises for things a user did (RuntimeError covers DatasetUnavailable,
# PretrainedWeightsUnavailable; ValueError covers CheckpointError, ImageError and bad options).
USER_ERRORS = (ValueError, RuntimeError, OSError)


class WrongValue:
    """What a field hands its handler instead of a value it cannot accept (fields.py): the sentence
    saying why, which `friendly_errors` raises in the visitor's language."""

    def __init__(self, message: Text):
        self.message = message


def _refuse_wrong_values(args, kwargs, lang: str) -> None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, WrongValue):
            raise gr.Error(render(value.message, lang), title=render(text("app.error_title"), lang),
                           print_exception=False)


def user_error(error: BaseException, lang: str | None = None) -> gr.Error:
    """A library error as the sentence a visitor reads (no traceback)."""
    message = error.args[0] if error.args and isinstance(error.args[0], Text) else str(error)
    return gr.Error(render(message, lang).strip() or type(error).__name__,
                    title=render(text("app.error_title"), lang), print_exception=False)


def _said(value, lang: str):
    """An output with every message in it rendered in `lang`."""
    if isinstance(value, Text):
        return render(value, lang)
    if isinstance(value, (tuple, list)):
        return type(value)(_said(v, lang) for v in value)
    if isinstance(value, dict) and value.get("__type__") == "update":
        return {k: _said(v, lang) for k, v in value.items()}
    return value


def _request_in(args, kwargs):
    for value in (*args, *kwargs.values()):
        if isinstance(value, gr.Request):
            return value
    return None


def friendly_errors(fn):
    """Run a handler for one visitor: in their language (messages it returns or yields are
    rendered, plots it draws are labelled in it) and with the library's errors turned into
    gr.Error with the library's own sentence."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            request = _request_in(args, kwargs)
            lang = language_of(request)
            _refuse_wrong_values(args, kwargs, lang)
            steps = fn(*args, **kwargs)
            try:
                while True:
                    # Each step may run on another of gradio's threads: say the language each time.
                    with _for_visitor(request, lang):
                        try:
                            item = next(steps)
                        except StopIteration:
                            return
                        except gr.Error:
                            raise
                        except USER_ERRORS as error:
                            raise user_error(error, lang) from None
                    yield _said(item, lang)
            finally:
                steps.close()   # a closed page closes the handler (see run_queue.line)
        gen_wrapper.speaks_for_visitor = True
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        request = _request_in(args, kwargs)
        lang = language_of(request)
        _refuse_wrong_values(args, kwargs, lang)
        with _for_visitor(request, lang):
            try:
                return _said(fn(*args, **kwargs), lang)
            except gr.Error:
                raise
            except USER_ERRORS as error:
                raise user_error(error, lang) from None
    wrapper.speaks_for_visitor = True
    return wrapper
