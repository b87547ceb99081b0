"""'Your runs on this server', under the Train tab: a visitor's own runs, to share or delete.

Runs started in the app are private to their visitor (serving/storage.py); sharing copies one into
the shared folder, which every visitor's pickers list.
"""
from __future__ import annotations

import gradio as gr

from .common import checkpoint_label, friendly_errors, with_settings
from .storage import delete, folder_mb, own_checkpoints, owner_dir, owner_of, share


def note(settings, count: int, used_mb: float) -> str:
    quota = (f" of the {settings.visitor_quota_mb:,.0f} MB this server keeps per visitor"
             if settings.visitor_quota_mb else "")
    kept = (f" Runs older than {settings.retention_hours:g} hours are deleted."
            if settings.retention_hours else "")
    return (f"{count} run(s), {used_mb:,.1f} MB{quota}. Your runs are yours alone (this browser); "
            f"**Share** copies one into the shared folder for everybody.{kept}")


def layout(settings) -> dict:
    panel = {}
    with gr.Accordion("Your runs on this server", open=False, elem_id="own-runs"):
        panel["note"] = gr.Markdown(note(settings, 0, 0.0))
        panel["picker"] = gr.Dropdown(label="Your runs (only you see them until you share one)",
                                      choices=[], allow_custom_value=True, elem_id="own-runs-picker")
        with gr.Row():
            panel["share_name"] = gr.Textbox(label="Name in the shared folder (optional)", max_lines=1)
            panel["share"] = gr.Button("Share with everyone", elem_id="own-runs-share")
            panel["delete"] = gr.Button("Delete", variant="stop", elem_id="own-runs-delete")
    return panel


def picker_update(settings, owner, current=None):
    """The picker's choices and the note, for this visitor."""
    infos = own_checkpoints(settings, owner)
    choices = [(checkpoint_label(i), str(i.path)) for i in infos]
    values = [v for _, v in choices]
    value = current if current in values else (values[0] if values else None)
    used = folder_mb(owner_dir(settings, owner)) if owner else 0.0
    return gr.update(choices=choices, value=value), note(settings, len(infos), used)


def refresh(settings, current, request: gr.Request):
    return picker_update(settings, owner_of(request), current)


@friendly_errors
def share_run(settings, checkpoint, name="", request: gr.Request = None):
    """Copy one of your runs into the shared folder, where every visitor can pick it."""
    path = share(settings, owner_of(request), checkpoint, name)
    return (f"Shared as **{path.stem}**: every visitor now finds it in Feature maps and Classify.",
            picker_update(settings, owner_of(request), checkpoint)[0])


@friendly_errors
def delete_run(settings, checkpoint, request: gr.Request = None):
    """Delete one of your runs from the server."""
    name = delete(settings, owner_of(request), checkpoint)
    picker, text = picker_update(settings, owner_of(request))
    return f"Deleted **{name}**. " + text, picker


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
