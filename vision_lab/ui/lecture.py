"""Lecture mode: the page as a lecturer shows it on a projector.

Larger type (and plots drawn with larger text, plots.LECTURE_TEXT_SCALE), advanced controls
folded away (components with the class `vl-advanced`), and each Compare lesson in three steps —
the question, the run, the answer with its numbers — so the lecturer can stop before revealing the
result (compare.py). It is on with `?lecture=1` in the address, with the toggle at the top of the
page, or for every visitor with `python app.py --lecture`. The page keeps the visitor's choice.
"""
from __future__ import annotations

import gradio as gr

from .language import remember, ui_text

CSS = """
body.vl-lecture .gradio-container { zoom: 1.3; }
body.vl-lecture .vl-advanced { display: none !important; }
body:not(.vl-lecture) .vl-lecture-only { display: none !important; }
body.vl-lecture .vl-question p { font-size: 1.35rem; line-height: 1.5; }
body.vl-lecture:not(.vl-revealed) .vl-answer { display: none !important; }
/* The class board (board.py) from the back of a room: its table and rules in large type. */
body.vl-lecture .vl-board [role=gridcell] { font-size: 1.45rem !important; }
body.vl-lecture .vl-board [role=columnheader] { font-size: 1.1rem !important; }
body.vl-lecture .vl-board textarea { font-size: 1.25rem !important; }
/* The class dataset (class_data.py): counts per class and the two accuracies, large. */
.vl-class-score h1 { font-size: 3rem !important; margin: 0.2em 0; }
body.vl-lecture .vl-class-big [role=gridcell] { font-size: 1.45rem !important; }
body.vl-lecture .vl-class-big [role=columnheader] { font-size: 1.1rem !important; }
body.vl-lecture .vl-class-big textarea { font-size: 1.25rem !important; }
body.vl-lecture .vl-class-score h1 { font-size: 4.5rem !important; }
body.vl-lecture .vl-class-score p { font-size: 1.35rem !important; }
"""

# Whether the page is in lecture mode: the address (?lecture=1 or 0) first, then what this browser
# chose last time, then the server's default (the toggle's value as the page arrives).
INITIAL_JS = """
(serverDefault) => {
  const asked = new URLSearchParams(location.search).get("lecture");
  const kept = localStorage.getItem("vision_lab_lecture");
  const on = asked !== null ? asked === "1" : kept !== null ? kept === "1" : serverDefault;
  document.body.classList.toggle("vl-lecture", on);
  return on;
}
"""
TOGGLE_JS = """
(on) => {
  document.body.classList.toggle("vl-lecture", on);
  localStorage.setItem("vision_lab_lecture", on ? "1" : "0");
  return on;
}
"""


def toggle(default: bool) -> gr.Checkbox:
    return gr.Checkbox(value=default, label=ui_text("app.lecture_mode"), container=False,
                       elem_id="lecture-switch", min_width=160)


def on_toggle(on: bool, request: gr.Request) -> bool:
    remember(request, lecture=bool(on))
    return bool(on)


def wire(demo: gr.Blocks, checkbox: gr.Checkbox) -> None:
    """The page applies lecture mode on load and on every change, and tells the server (which
    draws the plots) each time."""
    checkbox.change(on_toggle, checkbox, None, js=TOGGLE_JS, queue=False, api_visibility="private")
    demo.load(on_toggle, checkbox, checkbox, js=INITIAL_JS, queue=False, api_visibility="private")
