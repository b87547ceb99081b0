"""Number and Slider fields that say which field is wrong and why.

Gradio's own checks fail on a value an API caller sends as text (`seed="x"`) with a generic
"error" and no word on which field, and word a range error without naming the field. These
check first and raise gr.Error with a sentence; the browser gets the same sentence. The sentence
and the field's name in it (its label, a `ui_text` key the catalogue translates) are said in the
current language (i18n.using).
"""
from __future__ import annotations

import math

import gradio as gr
from gradio.i18n import I18nData

from ..i18n import catalogue, render, text
from .gradio_internals import drawn_as


def field_name(field):
    """The field's label as a catalogue Text (or as written), for a sentence about it."""
    label = field.label
    if isinstance(label, I18nData):
        return text(label.key) if label.key in catalogue("en") else label.key
    return label or text("fields.this_value")


def _wrong(field, key: str, **params) -> gr.Error:
    return gr.Error(render(text(key, label=field_name(field), **params)), print_exception=False)


def _checked(field, payload):
    """`payload` as a finite number within the field's bounds, or gr.Error naming the field."""
    if payload is None or isinstance(payload, bool):
        if payload is None:
            return None
        raise _wrong(field, "fields.not_a_number", value=repr(payload))
    if not isinstance(payload, (int, float)):
        try:
            payload = float(str(payload).strip())
        except ValueError:
            raise _wrong(field, "fields.not_a_number", value=repr(payload)) from None
    if not math.isfinite(payload):
        raise _wrong(field, "fields.not_finite", value=payload)
    if field.precision == 0 and not float(payload).is_integer():
        raise _wrong(field, "fields.not_whole", value=payload)
    if field.minimum is not None and payload < field.minimum:
        raise _wrong(field, "fields.too_small", minimum=field.minimum, value=payload)
    if field.maximum is not None and payload > field.maximum:
        raise _wrong(field, "fields.too_large", maximum=field.maximum, value=payload)
    return payload


@drawn_as("number")  # the browser draws it as a plain gr.Number
class Number(gr.Number):
    def preprocess(self, payload):
        return super().preprocess(_checked(self, payload))


@drawn_as("slider")
class Slider(gr.Slider):
    def preprocess(self, payload):
        return super().preprocess(_checked(self, payload))
