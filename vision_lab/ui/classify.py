"""Classify tab: try one or more checkpoints on your own image, photo or drawing.

A drawing goes to a 28×28 digit model the way MNIST was made (`vision_lab.sketch.mnist_style`);
every model shows the input it really gets next to its top-5 answer. Opening Draw picks a digit
model when none is picked (the shared input and its wiring live in model_view.py).
"""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from ..checkpoints import SUFFIX
from ..datasets.class_names import class_label
from ..i18n import render, text
from . import common
from .common import with_settings
from .language import ui_text
from .model_view import (checkpoint_dropdown, choose_input, load_cached, model_input,
                         refreshed_choices, source_tabs, what_the_model_sees, wire_source_tabs)
from .storage import owner_of, resolve_checkpoint

MAX_MODELS = 3  # the picker's label says so: classify.checkpoints


def classify(settings, image, sketch=None, checkpoints=None, source="image", digit_mode=True,
             owner=None):
    """Every chosen checkpoint's answer for one image.

    Returns a list of {"checkpoint", "top": [{"label", "prob"}, ... all classes, most likely
    first]} and, per checkpoint, the input it saw (H, W, 3 uint8, enlarged).
    """
    from ..network_view import predict

    if isinstance(checkpoints, str):
        checkpoints = [checkpoints]
    checkpoints = [c for c in (checkpoints or []) if c]
    if not checkpoints:
        raise gr.Error(render(text("classify.choose_one")), print_exception=False)
    if len(checkpoints) > MAX_MODELS:
        raise gr.Error(render(text("classify.too_many", count=MAX_MODELS)), print_exception=False)
    image, drawn = choose_input(source, image, sketch)
    results, seen = [], []
    for value in checkpoints:
        ckpt = load_cached(resolve_checkpoint(settings, value, owner))
        x, shown = what_the_model_sees(ckpt, model_input(ckpt.metadata, image, drawn, digit_mode))
        # All classes, so the probabilities add up to 1; the Label shows the top 5.
        top = predict(ckpt.model, x, ckpt.classes, top_k=len(ckpt.classes))[0]
        results.append({"checkpoint": ckpt.path.stem,
                        "top": [{"label": label, "prob": round(prob, 6)} for label, prob in top]})
        seen.append(shown)
    return results, seen


def layout(settings) -> dict:
    """Draw the tab. Returns its components by name; `labels` and `seens` are lists, one panel
    per checkpoint that can be chosen."""
    gr.Markdown(ui_text("classify.intro"))
    with gr.Row():
        with gr.Column(scale=1, min_width=320):
            view = source_tabs("classify", ui_text("classify.draw_hint"))
            examples = common.example_images(settings)
            if examples:
                gr.Examples(examples=[[p] for p in examples], inputs=[view["image"]],
                            label=ui_text("features.examples"), examples_per_page=12,
                            elem_id="classify-examples")
        with gr.Column(scale=1, min_width=320):
            view["checkpoints"] = checkpoint_dropdown(
                settings, label=ui_text("classify.checkpoints"), multiselect=True,
                elem_id="classify-checkpoints")
            view["digit_mode"] = gr.Checkbox(value=True, label=ui_text("features.digit_mode"))
            view["run"] = gr.Button(ui_text("classify.run"), variant="primary",
                                    elem_id="classify-run")
            view["labels"], view["seens"] = [], []
            with gr.Row(equal_height=False):
                for i in range(MAX_MODELS):
                    with gr.Column(min_width=180):
                        view["labels"].append(gr.Label(label=ui_text("classify.top5"),
                                                       num_top_classes=5, visible=i == 0,
                                                       elem_id=f"classify-label-{i}"))
                        view["seens"].append(gr.Image(label=ui_text("classify.seen"), height=200,
                                                      format="png", interactive=False,
                                                      visible=i == 0, elem_id=f"classify-seen-{i}"))
            with gr.Accordion(ui_text("classify.api"), open=False):
                view["raw"] = gr.JSON(label=ui_text("classify.results"))
    return view


# The /classify API's parameters, in this order (`source` is a State: not part of the API).
# client.predict(handle_file("cat.png"), ["mnist_cnn"], api_name="/classify")
FORM = ("image", "checkpoints", "sketch", "source", "digit_mode")


@common.friendly_errors
def show_classification(settings, request: gr.Request = None, *, image, checkpoints, sketch=None,
                        source="image", digit_mode=True):
    """Classify one image (or drawing) with up to three checkpoints: the JSON results (every
    class's probability), then a top-5 panel and the model's input per checkpoint.

    Values only: the panels' titles and visibility follow the picker (`new_panels`). A property
    update would make gradio build a new component and its API schema for each of the six panels
    on every call, which cost more of the server's time than the models themselves."""
    results, seen = classify(settings, image, sketch, checkpoints, source, digit_mode,
                             owner_of(request))
    # The panels name the classes in the visitor's language; the JSON keeps the names (data).
    labels = [{class_label(t["label"]): t["prob"] for t in results[i]["top"]} if i < len(results)
              else None
              for i in range(MAX_MODELS)]
    seens = [seen[i] if i < len(seen) else None for i in range(MAX_MODELS)]
    return (results, *labels, *seens)  # a tuple: friendly_errors says the labels in it


def _names(checkpoints) -> list[str]:
    """The picked checkpoints' names (a picker value is a path, an API caller may give a name)."""
    if isinstance(checkpoints, str):
        checkpoints = [checkpoints]
    return [Path(str(c)).name.removesuffix(SUFFIX) for c in (checkpoints or []) if c][:MAX_MODELS]


def _panels(checkpoints, **clear) -> tuple:
    names = _names(checkpoints)
    shown = max(1, len(names))
    labels = [gr.update(visible=i < shown, **clear,
                        label=names[i] if i < len(names) else text("classify.top5"))
              for i in range(MAX_MODELS)]
    seens = [gr.update(visible=i < shown, **clear,
                       label=text("classify.seen_by", name=names[i]) if i < len(names)
                       else text("classify.seen"))
             for i in range(MAX_MODELS)]
    return (*labels, *seens)


@common.friendly_errors
def panel_titles(checkpoints, request: gr.Request = None):
    """One top-5 panel and one "what it sees" per picked checkpoint, titled by its name."""
    return _panels(checkpoints)


@common.friendly_errors
def new_panels(checkpoints, request: gr.Request = None):
    """Panels for a new choice of checkpoints; the answers shown belonged to other models."""
    return _panels(checkpoints, value=None)


@common.friendly_errors
def on_tab(settings, current, request: gr.Request):
    """The tab opened: new checkpoints, labelled in the visitor's language."""
    return refreshed_choices(settings, current, multiselect=True, owner=owner_of(request))


def build(settings, tab=None) -> None:
    view = layout(settings)
    wire_source_tabs(settings, view, view["checkpoints"])
    view["run"].click(with_settings(show_classification, settings),
                      inputs_kwargs={name: view[name] for name in FORM},
                      outputs=[view["raw"], *view["labels"], *view["seens"]], api_name="classify",
                      concurrency_limit=2)
    answers = [*view["labels"], *view["seens"]]
    view["checkpoints"].change(new_panels, view["checkpoints"], answers,
                               api_visibility="private", queue=False)
    if tab is not None:
        tab.select(with_settings(on_tab, settings), view["checkpoints"], view["checkpoints"],
                   api_visibility="private", queue=False).then(
            panel_titles, view["checkpoints"], answers, api_visibility="private", queue=False)
