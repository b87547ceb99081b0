"""Number and Slider fields that say which field is wrong and why.

Gradio's own checks fail on a value an API caller sends as text (`seed="x"`) with a generic
"error" and no word on which field, and word a range error without naming the field. These
check first; a wrong value reaches the handler as a `WrongValue` holding the sentence, which the
handler's `friendly_errors` raises in the visitor's language (a field checks its value before
anyone knows who is asking). The browser gets the same sentence.
"""
from __future__ import annotations

import math

import gradio as gr
from gradio.i18n import I18nData

from ..i18n import catalogue, text
from .gradio_internals import drawn_as
from .language import WrongValue


def field_name(field):
    """The field's label as a catalogue Text (or as written), for a sentence about it."""
    label = field.label
    if isinstance(label, I18nData):
        return text(label.key) if label.key in catalogue("en") else label.key
    return label or text("fields.this_value")


def _wrong(field, key: str, **params) -> WrongValue:
    return WrongValue(text(key, label=field_name(field), **params))


def _checked(field, payload):
    """`payload` as a finite number within the field's bounds, or a WrongValue naming the field."""
    if payload is None:
        return None
    if isinstance(payload, bool):
        return _wrong(field, "fields.not_a_number", value=repr(payload))
    if not isinstance(payload, (int, float)):
        try:
            payload = float(str(payload).strip())
        except ValueError:
            return _wrong(field, "fields.not_a_number", value=repr(payload))
    if not math.isfinite(payload):
        return _wrong(field, "fields.not_finite", value=payload)
    if field.precision == 0 and not float(payload).is_integer():
        return _wrong(field, "fields.not_whole", value=payload)
    if field.minimum is not None and payload < field.minimum:
        return _wrong(field, "fields.too_small", minimum=field.minimum, value=payload)
    if field.maximum is not None and payload > field.maximum:
        return _wrong(field, "fields.too_large", maximum=field.maximum, value=payload)
    return payload


def _preprocess(field, parent, payload):
    checked = _checked(field, payload)
    return checked if isinstance(checked, WrongValue) else parent.preprocess(field, checked)


@drawn_as("number")  # the browser draws it as a plain gr.Number
class Number(gr.Number):
    def preprocess(self, payload):
        return _preprocess(self, gr.Number, payload)


@drawn_as("slider")
class Slider(gr.Slider):
    def preprocess(self, payload):
        return _preprocess(self, gr.Slider, payload)
