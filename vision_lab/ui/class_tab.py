"""The Class tab: what a class makes together — a class board (ui/board.py) and a class dataset
(ui/class_data.py), kept in the class's database (serving.class_db).

Students use it as it comes. The lecturer types the key set at launch (`--lecturer-key`) into the
password box: it goes with each lecturer action in the request's body, never into the address.
"""
from __future__ import annotations

import gradio as gr

from .language import ui_text


def build(settings, tab=None) -> None:
    from . import board, class_data

    gr.Markdown(ui_text("class.intro"))
    with gr.Accordion(ui_text("class.lecturer_group"), open=False, elem_id="class-lecturer"):
        key = gr.Textbox(label=ui_text("class.key_label"), info=ui_text("class.key_info"),
                         type="password", max_lines=1, elem_id="class-key")
    with gr.Tabs():
        with gr.Tab(ui_text("class.board_tab"), id="board"):
            board.build(settings, key, tab=tab)
        with gr.Tab(ui_text("class.data_tab"), id="class_data"):
            class_data.build(settings, key, tab=tab)
