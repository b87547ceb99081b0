"""'Your runs on this server', under the Train tab: a visitor's own runs, to share or delete.

Runs started in the app are private to their visitor (serving/storage.py); sharing copies one into
the shared folder, which every visitor's pickers list.
"""
from __future__ import annotations

import gradio as gr

from ..i18n import text
from .common import checkpoint_label, friendly_errors, with_settings
from .language import ui_text
from .storage import delete, folder_mb, own_checkpoints, owner_dir, owner_of, share


def note(settings, count: int, used_mb: float) -> str:
    """How many runs this visitor keeps and what the server allows (a catalogue Text)."""
    size = (text("your_runs.size_of_quota", used=used_mb, quota=settings.visitor_quota_mb)
            if settings.visitor_quota_mb else text("your_runs.size", used=used_mb))
    if settings.retention_hours:
        return text("your_runs.note_with_retention", count=count, size=size,
                    hours=settings.retention_hours)
    return text("your_runs.note", count=count, size=size)


def layout(settings) -> dict:
    panel = {}
    with gr.Accordion(ui_text("your_runs.title"), open=False, elem_id="own-runs",
                      elem_classes="vl-advanced"):  # folded away in lecture mode
        # Filled in for this visitor (in their language) when the tab opens.
        panel["note"] = gr.Markdown(ui_text("your_runs.private"))
        panel["picker"] = gr.Dropdown(label=ui_text("your_runs.picker"), choices=[],
                                      allow_custom_value=True, elem_id="own-runs-picker")
        with gr.Row():
            panel["share_name"] = gr.Textbox(label=ui_text("your_runs.share_name"), max_lines=1)
            panel["share"] = gr.Button(ui_text("your_runs.share"), elem_id="own-runs-share")
            panel["delete"] = gr.Button(ui_text("your_runs.delete"), variant="stop",
                                        elem_id="own-runs-delete")
    return panel


def picker_update(settings, owner, current=None):
    """The picker's choices and the note, for this visitor (labels in the current language)."""
    infos = own_checkpoints(settings, owner)
    choices = [(checkpoint_label(i), str(i.path)) for i in infos]
    values = [v for _, v in choices]
    value = current if current in values else (values[0] if values else None)
    used = folder_mb(owner_dir(settings, owner)) if owner else 0.0
    return gr.update(choices=choices, value=value), note(settings, len(infos), used)


@friendly_errors
def refresh(settings, current, request: gr.Request):
    return picker_update(settings, owner_of(request), current)


@friendly_errors
def share_run(settings, checkpoint, name="", request: gr.Request = None):
    """Copy one of your runs into the shared folder, where every visitor can pick it."""
    path = share(settings, owner_of(request), checkpoint, name)
    return (text("your_runs.shared", name=path.stem),
            picker_update(settings, owner_of(request), checkpoint)[0])


@friendly_errors
def delete_run(settings, checkpoint, request: gr.Request = None):
    """Delete one of your runs from the server."""
    name = delete(settings, owner_of(request), checkpoint)
    picker, summary = picker_update(settings, owner_of(request))
    return text("your_runs.deleted", name=name, note=summary), picker


def wire(settings, panel: dict, tab=None, after=None) -> None:
    """Connect the panel; it refreshes when the tab is opened and after `after` (a run) ends."""
    shown = [panel["picker"], panel["note"]]
    private = dict(queue=False, api_visibility="private")
    if after is not None:
        after.then(with_settings(refresh, settings), panel["picker"], shown, **private)
    if tab is not None:
        tab.select(with_settings(refresh, settings), panel["picker"], shown, **private)
    panel["share"].click(with_settings(share_run, settings), [panel["picker"], panel["share_name"]],
                         [panel["note"], panel["picker"]], api_name="share_run")
    panel["delete"].click(with_settings(delete_run, settings), panel["picker"],
                          [panel["note"], panel["picker"]], api_name="delete_run")
