"""The visitor's language, English or Simplified Chinese, for the whole page.

Static text (labels, info texts, Markdown, buttons) goes through gradio's I18n: the page shows it
in the browser's language from the first paint, and the EN | 中文 switch changes it in place.
What handlers write (status lines, errors, verdicts, tables, plots) is rendered on the server in
the visitor's language, which the page reports when it loads and whenever the switch changes; an
API caller gets the language of its Accept-Language header (English by default).
"""
from __future__ import annotations

import functools
import inspect
import threading
from collections import OrderedDict

import gradio as gr

from ..i18n import LANGUAGES, NAMES, Text, catalogue, language_from, render, using
from .gradio_internals import CHANGE_LOCALE_JS

# Static keys are the catalogue's own; gradio's page looks a browser's locale up as "zh-CN" first,
# then "zh".
I18N = gr.I18n(**{"en": catalogue("en"), "zh": catalogue("zh"), "zh-CN": catalogue("zh")})


def ui_text(key: str):
    """A static text the page translates itself (a catalogue key without parameters)."""
    return I18N(key)


_LANGUAGE_OF: OrderedDict[str, str] = OrderedDict()   # session -> language, most recent last
_LOCK = threading.Lock()
_REMEMBERED = 20_000


def remember(request, lang: str) -> None:
    session = getattr(request, "session_hash", None)
    if session and lang in LANGUAGES:
        with _LOCK:
            _LANGUAGE_OF[session] = lang
            _LANGUAGE_OF.move_to_end(session)
            while len(_LANGUAGE_OF) > _REMEMBERED:
                _LANGUAGE_OF.popitem(last=False)


def language_of(request) -> str:
    with _LOCK:
        lang = _LANGUAGE_OF.get(getattr(request, "session_hash", None))
    if lang:
        return lang
    headers = getattr(request, "headers", None) or {}
    return language_from(headers.get("accept-language"))


# The switch changes the language of the page's static text the way gradio's own Settings panel
# does (gradio_internals.CHANGE_LOCALE_JS). The choice is kept in the browser, so a reload keeps
# it; `?lang=zh` in the address picks it too.
SWITCH_JS = """
async (choice) => {
  const lang = choice === "%s" ? "zh-CN" : "en";
  localStorage.setItem("vision_lab_lang", lang);
%s
  return choice;
}
""" % (NAMES["zh"], CHANGE_LOCALE_JS)
INITIAL_JS = """
() => {
  const asked = new URLSearchParams(location.search).get("lang");
  const lang = asked || localStorage.getItem("vision_lab_lang") || navigator.language || "en";
  return lang.toLowerCase().startsWith("zh") ? "%(zh)s" : "%(en)s";
}
""" % NAMES


def switch():
    return gr.Radio([NAMES[lang] for lang in LANGUAGES], value=NAMES["en"], show_label=False,
                    container=False, elem_id="language-switch", min_width=120)


def on_switch(choice: str, request: gr.Request):
    remember(request, next(lang for lang, name in NAMES.items() if name == choice))


def wire(demo: gr.Blocks, radio: gr.Radio) -> None:
    """The page reports its language on load (which also moves the switch), then on every change."""
    radio.change(on_switch, radio, None, js=SWITCH_JS, queue=False, api_visibility="private")
    demo.load(None, None, radio, js=INITIAL_JS)


# ---- handlers speak the visitor's language --------------------------------------------------------

# Errors the library raises for things a user did (RuntimeError covers DatasetUnavailable,
# PretrainedWeightsUnavailable; ValueError covers CheckpointError, ImageError and bad options).
USER_ERRORS = (ValueError, RuntimeError, OSError)


def user_error(error: BaseException, lang: str | None = None) -> gr.Error:
    """A library error as the sentence a visitor reads (no traceback)."""
    message = error.args[0] if error.args and isinstance(error.args[0], Text) else str(error)
    return gr.Error(render(message, lang).strip() or type(error).__name__, print_exception=False)


def _said(value, lang: str):
    """An output with every message in it rendered in `lang`."""
    if isinstance(value, Text):
        return render(value, lang)
    if isinstance(value, tuple):
        return tuple(_said(v, lang) for v in value)
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
            lang = language_of(_request_in(args, kwargs))
            steps = fn(*args, **kwargs)
            try:
                while True:
                    # Each step may run on another of gradio's threads: say the language each time.
                    with using(lang):
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
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        lang = language_of(_request_in(args, kwargs))
        with using(lang):
            try:
                return _said(fn(*args, **kwargs), lang)
            except gr.Error:
                raise
            except USER_ERRORS as error:
                raise user_error(error, lang) from None
    return wrapper
