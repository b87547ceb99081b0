"""Number and Slider fields that say which field is wrong and why.

Gradio's own checks fail on a value an API caller sends as text (`seed="x"`) with a generic
"error" and no word on which field, and word a range error without naming the field. These
check first and raise gr.Error with a sentence; the browser gets the same sentence.
"""
from __future__ import annotations

import math

import gradio as gr

from .gradio_internals import drawn_as


def _checked(field, payload):
    """`payload` as a finite number within the field's bounds, or gr.Error naming the field."""
    label = field.label or "This value"
    if payload is None or isinstance(payload, bool):
        if payload is None:
            return None
        raise gr.Error(f"{label} must be a number, got {payload!r}.", print_exception=False)
    if not isinstance(payload, (int, float)):
        try:
            payload = float(str(payload).strip())
        except ValueError:
            raise gr.Error(f"{label} must be a number, got {payload!r}.", print_exception=False) from None
    if not math.isfinite(payload):
        raise gr.Error(f"{label} must be a finite number, got {payload}.", print_exception=False)
    if field.precision == 0 and not float(payload).is_integer():
        raise gr.Error(f"{label} must be a whole number, got {payload:g}.", print_exception=False)
    if field.minimum is not None and payload < field.minimum:
        raise gr.Error(f"{label} must be at least {field.minimum:g}, got {payload:g}.",
                       print_exception=False)
    if field.maximum is not None and payload > field.maximum:
        raise gr.Error(f"{label} must be at most {field.maximum:g}, got {payload:g}.",
                       print_exception=False)
    return payload


@drawn_as("number")  # the browser draws it as a plain gr.Number
class Number(gr.Number):
    def preprocess(self, payload):
        return super().preprocess(_checked(self, payload))


@drawn_as("slider")
class Slider(gr.Slider):
    def preprocess(self, payload):
        return super().preprocess(_checked(self, payload))
