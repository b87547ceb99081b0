"""The Feature maps tab's "Compare with another checkpoint" accordion: two models, one image.

The tab's checkpoint (A) and a second one (B) get the tab's image, each prepared its own way (a
28x28 grey digit model and a 32x32 colour model each get their own input, as each would in the
Classify tab). For each: what it sees, the saliency map the tab's method picker chose, the top 5.
Below, the activations that differ: each layer's mean, spread and share of zeros for both models
(`vision_lab.activations`), lined up by depth, with one sentence on what to look at.
API: /feature_maps_pair (checkpoint_a, checkpoint_b, image, method -> images, labels, table, note).
"""
from __future__ import annotations

import gradio as gr

from ..datasets.class_names import class_label
from ..i18n import join, t, text
from . import common
from .common import friendly_errors, with_settings
from .language import ui_text
from .model_view import (
    DEFAULT_METHOD,
    choose_input,
    load_cached,
    method_idea,
    model_input,
    refreshed_choices,
    saliency_overlay,
    what_the_model_sees,
)
from .storage import owner_of, resolve_checkpoint

SIDES = ("a", "b")
OUTPUTS = ("seen_a", "saliency_a", "top_a", "seen_b", "saliency_b", "top_b", "table", "note")


def _one_side(settings, checkpoint, image, drawn, method, digit_mode, owner) -> dict:
    """One checkpoint on the image: its input, saliency overlay, top 5 and layer activity."""
    from ..activations import layer_activity
    from ..network_view import predict

    ckpt = load_cached(resolve_checkpoint(settings, checkpoint, owner))
    x, shown = what_the_model_sees(ckpt, model_input(ckpt.metadata, image, drawn, digit_mode))
    overlay, note = saliency_overlay(ckpt, x, shown, method)
    return {"ckpt": ckpt, "seen": shown, "saliency": overlay, "note": note,
            "top": {class_label(name): prob
                    for name, prob in predict(ckpt.model, x, ckpt.classes, top_k=5)[0]},
            "activity": layer_activity(ckpt.model, x)}


def activity_table(a: dict, b: dict) -> dict:
    """Both sides' layer activity as the table's value (headers in the visitor's language:
    tables are not rendered later)."""
    from ..activations import side_by_side

    columns = [t(f"pair.{name}") for name in ("layer", "units", "mean", "std", "zeros")]
    headers = [t("pair.depth"), *[f"{side} {column}" for side in ("A", "B")
                                  for column in columns]]
    return {"headers": headers, "data": side_by_side(a["activity"], b["activity"])}


def _about(side: str, found: dict):
    meta = found["ckpt"].metadata
    return join(f"**{side}** ·", text("features.about_checkpoint", name=found["ckpt"].path.stem,
                                    model=meta["model"], dataset=meta.get("dataset", "?"),
                                    channels=meta["channels"], size=meta["image_size"]),
                found["note"])


def run_pair(settings, checkpoint_a, checkpoint_b, image, sketch=None, *, source="image",
             method=DEFAULT_METHOD, digit_mode=True, owner=None):
    """Two checkpoints on one image: OUTPUTS (each side's input, saliency overlay and top-5
    {label: prob}, the activity table and a note on what is shown and what to look at)."""
    image, drawn = choose_input(source, image, sketch)
    a, b = (_one_side(settings, checkpoint, image, drawn, method or DEFAULT_METHOD, digit_mode,
                      owner) for checkpoint in (checkpoint_a, checkpoint_b))
    note = join(_about("A", a), _about("B", b), method_idea(method or DEFAULT_METHOD),
                text("pair.look"), sep="\n\n")
    return (a["seen"], a["saliency"], a["top"], b["seen"], b["saliency"], b["top"],
            activity_table(a, b), note)


# ---- this accordion -------------------------------------------------------------------------------

def layout(settings) -> dict:
    """Draw the accordion (in the Feature maps tab, below its images). Returns its components."""
    choices = common.checkpoint_choices(settings)
    values = [value for _, value in choices]
    view = {}
    with gr.Accordion(ui_text("pair.group"), open=False, elem_id="fm-pair"):
        gr.Markdown(ui_text("pair.intro"))
        with gr.Row():
            # B starts as another checkpoint than A (the tab's picker starts with the first).
            view["checkpoint_b"] = gr.Dropdown(
                choices=choices, value=values[1] if len(values) > 1 else (values or [None])[0],
                label=ui_text("pair.checkpoint_b"), allow_custom_value=True,
                elem_id="fm-pair-checkpoint")
            view["run"] = gr.Button(ui_text("pair.run"), variant="primary", elem_id="fm-pair-run")
        view["note"] = gr.Markdown(elem_id="fm-pair-note")
        with gr.Row():
            for side in SIDES:
                with gr.Column(min_width=300):
                    with gr.Row():
                        view[f"seen_{side}"] = gr.Image(
                            label=ui_text(f"pair.seen_{side}"), height=220, format="png",
                            interactive=False, elem_id=f"fm-pair-seen-{side}")
                        view[f"saliency_{side}"] = gr.Image(
                            label=ui_text(f"pair.saliency_{side}"), height=220, format="png",
                            interactive=False, elem_id=f"fm-pair-saliency-{side}")
                    view[f"top_{side}"] = gr.Label(label=ui_text(f"pair.top_{side}"),
                                                   num_top_classes=5, elem_id=f"fm-pair-top-{side}")
        view["table"] = gr.Dataframe(label=ui_text("pair.table"), interactive=False,
                                     elem_id="fm-pair-table")
    return view


@friendly_errors
def show_pair(settings, request: gr.Request = None, *, checkpoint_a, checkpoint_b, image,
              sketch=None, method=DEFAULT_METHOD, **options):
    """Two checkpoints side by side on one image: what each sees, its saliency map and top 5,
    and their layers' activity. `sketch` and `method` may be left out by API callers."""
    return run_pair(settings, checkpoint_a, checkpoint_b, image, sketch, method=method,
                    owner=owner_of(request), **options)


@friendly_errors
def on_tab(settings, current, request: gr.Request = None):
    """The tab opened: B's picker lists the visitor's checkpoints as they are now."""
    return refreshed_choices(settings, current, owner=owner_of(request))


def wire(settings, view: dict, tab_view: dict, tab=None) -> None:
    """Connect the accordion; `tab_view` is the Feature maps tab's components (A's picker, the
    image, the sketch and the saliency method come from there)."""
    form = {"checkpoint_a": tab_view["checkpoint"], "checkpoint_b": view["checkpoint_b"],
            "image": tab_view["image"], "sketch": tab_view["sketch"],
            "source": tab_view["source"], "method": tab_view["method"],
            "digit_mode": tab_view["digit_mode"]}
    view["run"].click(with_settings(show_pair, settings), inputs_kwargs=form,
                      outputs=[view[name] for name in OUTPUTS], api_name="feature_maps_pair",
                      concurrency_limit=2)
    if tab is not None:
        tab.select(with_settings(on_tab, settings), view["checkpoint_b"], view["checkpoint_b"],
                   api_visibility="private", queue=False)
