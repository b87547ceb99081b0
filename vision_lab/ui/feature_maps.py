"""Feature maps tab: look inside a trained network.

Pick a checkpoint and an image; see the input exactly as the model sees it, what each convolution
responds to, the first layer's filters, where the evidence for a class lies (a saliency map:
Grad-CAM, Grad-CAM++, occlusion or the input gradient, each with its one-line idea on screen) and
the top-5 prediction. A fully connected network has no spatial maps: it says so, shows its hidden
activations instead and is offered the two saliency methods that need no convolutions. Below, the
"Compare with another checkpoint" accordion (pair.py, /feature_maps_pair) puts a second checkpoint
beside the first on the same image, and the "Errors" accordion (errors.py, /errors) shows the
checkpoint's confusion matrix on its test set and the images behind any cell.

What it shares with the Classify tab and its own panels (cached checkpoint loading, the
upload/draw input and turning either into the model's input, the saliency methods) is in
model_view.py; this file is the tab: what it computes, `layout`, the handlers and `build`.

What it says comes from the catalogue (`features.*`): static text through `ui_text`, what the
handlers write as `text(...)`, said in the visitor's language by `friendly_errors`.
"""
from __future__ import annotations

import threading
from pathlib import Path

import gradio as gr

from ..datasets.class_names import class_label, class_text
from ..i18n import Text, current as current_language, join, render, t, text
from ..lru import LRU
from . import common, conv_view, errors, pair
from .common import with_settings
from .fields import Number, Slider
from .language import ui_text
from .model_view import (
    DEFAULT_METHOD,
    MODELS_KEPT,
    PREDICTED,
    checkpoint_dropdown,
    choose_input,
    load_cached,
    method_choices,
    method_idea,
    model_input,
    refreshed_choices,
    saliency_overlay,
    source_tabs,
    what_the_model_sees,
    wire_source_tabs,
)
from .storage import owner_of, resolve_checkpoint


# ---- what this tab computes -----------------------------------------------------------------------

def cam_choices(classes, static=False) -> list:
    """The Grad-CAM picker's choices: the predicted class (its label in the visitor's language;
    `static`: a text the page translates itself), then the model's classes (values: their names)."""
    label = ui_text("features.predicted") if static else t("features.predicted")
    shown = [class_text(name) for name in classes]
    shown = [(ui_text(said.key) if static else render(said)) if isinstance(said, Text) else said
             for said in shown]
    return [(label, PREDICTED), *zip(shown, classes)]


def _render(fig):
    from ..plot_style import figure_to_image

    return figure_to_image(fig)


_FILTERS = LRU(MODELS_KEPT)  # by (model, language): as many as load_cached keeps models


def _filters_image(ckpt):
    """The first layer's filters as an image; they do not depend on the input, so drawn once."""
    from ..network_view import first_layer_filters
    from ..image_plots import filter_grid

    key = (id(ckpt.model), current_language())  # its title is in the visitor's language
    # The model is kept with its image so that its id cannot be reused by another model.
    return _FILTERS.get_or_make(key, lambda: (
        ckpt.model, _render(filter_grid(first_layer_filters(ckpt.model)))))[1]


def checkpoint_controls(settings, checkpoint, owner=None) -> tuple[list[str], list[str], str]:
    """Conv layers, Grad-CAM class choices and a one-line description of a checkpoint."""
    from ..datasets import dataset_info
    from ..network_view import NO_SPATIAL_MESSAGE
    from ..models import conv_layers

    if not checkpoint:
        return [], [PREDICTED], text("features.no_checkpoint_yet")
    ckpt = load_cached(resolve_checkpoint(settings, checkpoint, owner))
    meta = ckpt.metadata
    layers = [name for name, _ in conv_layers(ckpt.model)]
    dataset = str(meta.get("dataset", "?"))
    size = meta["image_size"]
    notes = [text("features.about_checkpoint", name=Path(checkpoint).stem, model=meta["model"],
                  dataset=dataset, channels=meta["channels"], size=size)]
    if not layers:
        notes.append(NO_SPATIAL_MESSAGE)
    try:
        available = not dataset_info(dataset, settings.data_root)["needs_download"]
    except (ValueError, RuntimeError, OSError):
        available = False
    if not available:
        notes.append(text("features.samples_offline", dataset=dataset))
    return layers, [PREDICTED] + ckpt.classes, join(*notes)


def _safe_controls(settings, checkpoint, owner=None):
    try:
        return checkpoint_controls(settings, checkpoint, owner)
    except (ValueError, RuntimeError, OSError) as e:
        # The library's own sentence (a catalogue Text when it has one).
        return [], [PREDICTED], e.args[0] if e.args and isinstance(e.args[0], str) else str(e)


def run_feature_maps(settings, checkpoint, image, sketch=None, *, source="image", layer=None,
                     channels=16, cam_class=PREDICTED, digit_mode=True, method=DEFAULT_METHOD,
                     owner=None):
    """Everything the tab shows for one checkpoint and one image.

    Returns (model input, feature maps or hidden activations, filters, saliency overlay (the
    `method` of `saliency.METHODS`), top-5 {label: prob}, note).
    """
    from ..network_view import NO_SPATIAL_MESSAGE, hidden_activations, predict
    from ..models import conv_layers
    from ..image_plots import hidden_activation_plot
    from ..plot_style import font_notice

    ckpt = load_cached(resolve_checkpoint(settings, checkpoint, owner))
    image, drawn = choose_input(source, image, sketch)
    x, shown = what_the_model_sees(ckpt, model_input(ckpt.metadata, image, drawn, digit_mode))
    top = predict(ckpt.model, x, ckpt.classes, top_k=5)[0]
    label = {class_label(name): prob for name, prob in top}  # shown in the visitor's language
    saliency_img, saliency_note = saliency_overlay(ckpt, x, shown, method, cam_class)
    # The plots are labelled in the visitor's language, or say why not (no Chinese font).
    notice = font_notice()
    if not conv_layers(ckpt.model):
        activations = hidden_activations(ckpt.model, x)
        return (shown, _render(hidden_activation_plot(activations)), None, saliency_img, label,
                join(join(NO_SPATIAL_MESSAGE, text("features.hidden_below")), saliency_note,
                     notice, sep="\n\n"))
    maps_img, maps_note = _feature_maps(ckpt, x, layer, int(channels or 16))
    return (shown, maps_img, _filters_image(ckpt), saliency_img, label,
            join(maps_note, saliency_note, notice, sep="\n\n"))


def _feature_maps(ckpt, x, layer, channels):
    """The mosaic of one conv layer's first `channels` maps (the first layer when `layer` is not
    one of the model's), and a sentence on how to read it."""
    from ..network_view import feature_maps
    from ..models import conv_layers
    from ..image_plots import feature_map_mosaic

    convs = dict(conv_layers(ckpt.model))
    layer = layer if layer in convs else next(iter(convs))
    (name, maps), = feature_maps(ckpt.model, x, layers=[layer], max_channels=channels)
    note = text("features.maps_note", layer=name, shown=len(maps),
                channels=convs[name].out_channels, height=maps.shape[1], width=maps.shape[2])
    return feature_map_mosaic(maps), note


def dataset_sample_for(settings, checkpoint, index, owner=None):
    """A test image of the checkpoint's dataset (when available offline) into the image input."""
    from ..datasets import DatasetUnavailable, dataset_info

    ckpt = load_cached(resolve_checkpoint(settings, checkpoint, owner))
    dataset = str(ckpt.metadata.get("dataset", ""))
    try:
        missing = dataset_info(dataset, settings.data_root)["needs_download"]
    except ValueError:
        raise gr.Error(render(text("features.unknown_dataset", dataset=dataset)),
                       print_exception=False) from None
    if missing:
        raise DatasetUnavailable(text("features.dataset_offline", dataset=dataset))
    image, label = common.dataset_sample(dataset, int(index), settings.data_root)
    # Not enlarged: the model must get the sample's own pixels back (PNG, lossless).
    return (common.chw_to_numpy(image),
            text("features.sample_note", index=int(index), dataset=dataset,
                 label=class_text(label)),
            int(index) + 1)


def _warm_up():
    """Draw one small plot in the background: matplotlib's first figure costs seconds (fonts),
    which the first click would otherwise pay."""
    try:
        import torch

        from ..image_plots import filter_grid
        _render(filter_grid(torch.zeros(2, 1, 3, 3)))
    except Exception:  # only an optimisation
        pass


# ---- this tab -------------------------------------------------------------------------------------

def layout(settings) -> dict:
    """Draw the tab. Returns its components by name."""
    gr.Markdown(ui_text("features.intro"))
    with gr.Row():
        with gr.Column(scale=1, min_width=320):
            view = {"checkpoint": checkpoint_dropdown(settings, elem_id="fm-checkpoint")}
            layers, classes, note = _safe_controls(settings, view["checkpoint"].value)
            view.update(source_tabs("fm", ui_text("features.draw_hint")))
            examples = common.example_images(settings)
            if examples:
                gr.Examples(examples=[[p] for p in examples], inputs=[view["image"]],
                            label=ui_text("features.examples"), examples_per_page=12,
                            elem_id="fm-examples")
            with gr.Row():
                view["sample"] = gr.Button(ui_text("features.sample"), size="sm",
                                           variant="secondary")
                view["sample_index"] = Number(value=0, precision=0,
                                              label=ui_text("features.sample_index"), minimum=0,
                                              min_width=80)
            view["sample_note"] = gr.Markdown()
            view["digit_mode"] = gr.Checkbox(value=True, label=ui_text("features.digit_mode"))
            # Their choices are the first checkpoint's: an API call for another checkpoint names
            # its own layers and classes (run_feature_maps checks them).
            with gr.Row():
                view["layer"] = gr.Dropdown(label=ui_text("features.layer"), choices=layers,
                                            value=layers[0] if layers else None,
                                            allow_custom_value=True)
                view["channels"] = Slider(1, 64, value=16, step=1,
                                          label=ui_text("features.channels"))
            view["cam_class"] = gr.Dropdown(label=ui_text("features.cam_class"),
                                            choices=cam_choices(classes[1:], static=True),
                                            value=PREDICTED, allow_custom_value=True)
            view.update(_saliency_picker(bool(layers) or not view["checkpoint"].value))
            view["run"] = gr.Button(ui_text("features.run"), variant="primary", elem_id="fm-run")
        with gr.Column(scale=2):
            # In English until the tab opens (`on_tab` says it in the visitor's language).
            view["note"] = gr.Markdown(note, elem_classes=["vl-status"], elem_id="fm-note")
            with gr.Row():
                view["seen"] = gr.Image(label=ui_text("features.seen"),
                                        height=260, elem_id="fm-seen", format="png",
                                        interactive=False)
                view["cam"] = gr.Image(label=ui_text("features.cam"), height=260, elem_id="fm-cam",
                                       format="png", interactive=False)
                view["prediction"] = gr.Label(label=ui_text("features.prediction"),
                                              num_top_classes=5, elem_id="fm-label")
            view["maps"] = gr.Image(label=ui_text("features.maps"), format="png", interactive=False,
                                    elem_id="fm-maps")
            view["conv"] = conv_view.layout()
            view["filters"] = gr.Image(label=ui_text("features.filters"), format="png",
                                       interactive=False, height=320, elem_id="fm-filters")
    view["pair"] = pair.layout(settings)
    view["errors"] = errors.layout()
    return view


def _saliency_picker(has_convs: bool) -> dict:
    """The saliency method picker and, below it, the picked method's one-line idea."""
    method = DEFAULT_METHOD if has_convs else "occlusion"
    return {"method": gr.Radio(method_choices(has_convs, static=True), value=method,
                               label=ui_text("saliency.method"), elem_id="fm-method"),
            "method_idea": gr.Markdown(ui_text(f"saliency.{method}.idea"),
                                       elem_id="fm-method-idea")}


# The /feature_maps API's parameters, in this order (`source` is a State: not part of the API).
# `method` came last, with a default: calls written before it existed still work.
FORM = ("checkpoint", "image", "sketch", "source", "layer", "channels", "cam_class", "digit_mode",
        "method")
OUTPUTS = ("seen", "maps", "filters", "cam", "prediction", "note")


@common.friendly_errors
def show_feature_maps(settings, request: gr.Request = None, *, checkpoint, image, sketch=None,
                      layer=None, method=DEFAULT_METHOD, **options):
    """Feature maps, first-layer filters, a saliency map and the top-5 prediction for one image.

    `sketch`, `layer` and `method` have defaults here so that the API may leave them out (their
    components can start empty, and gradio then takes a parameter's default from here)."""
    return run_feature_maps(settings, checkpoint, image, sketch, layer=layer, method=method,
                            owner=owner_of(request), **options)


def _controls(settings, checkpoint, owner, layer=None, cam_class=PREDICTED,
              method=DEFAULT_METHOD):
    """Updates of the layer, class and saliency pickers, the method's idea and the note for
    `checkpoint`, keeping the picked layer, class and method when the checkpoint has them. A
    model without convolutions is offered only the methods that work for it."""
    layers, classes, note = _safe_controls(settings, checkpoint, owner)
    has_convs = bool(layers) or not checkpoint
    offered = [value for _, value in method_choices(has_convs)]
    # A method still offered is not sent back: a click on the picker made while this ran stays.
    kept = {} if method in offered else {"value": offered[0]}
    return (gr.update(choices=layers, value=layer if layer in layers else
                      (layers[0] if layers else None)),
            gr.update(choices=cam_choices(classes[1:]),
                      value=cam_class if cam_class in classes else PREDICTED),
            gr.update(choices=method_choices(has_convs), **kept),
            method_idea(kept.get("value", method), has_convs), note)


@common.friendly_errors
def on_checkpoint(settings, checkpoint, method, request: gr.Request):
    """The layers, classes, saliency methods and the note of a newly picked checkpoint."""
    return _controls(settings, checkpoint, owner_of(request), method=method)


@common.friendly_errors
def on_method(settings, checkpoint, method, request: gr.Request = None):
    """The picked saliency method's one-line idea (for a model without convolutions, with the
    sentence on why two methods are missing: a new checkpoint's pick also lands here)."""
    layers, _, _ = _safe_controls(settings, checkpoint, owner_of(request))
    return method_idea(method, bool(layers) or not checkpoint)


@common.friendly_errors
def show_sample(settings, checkpoint, index, request: gr.Request):
    return dataset_sample_for(settings, checkpoint, index, owner_of(request))


@common.friendly_errors
def on_tab(settings, current, layer, cam_class, method, request: gr.Request):
    """The tab opened: new checkpoints, and the pickers' labels and the note said in the
    visitor's language (the page was drawn before anybody's language was known)."""
    owner = owner_of(request)
    picker = refreshed_choices(settings, current, owner=owner)
    return (picker, *_controls(settings, picker["value"], owner, layer, cam_class, method))


def build(settings, tab=None) -> None:
    threading.Thread(target=_warm_up, daemon=True).start()
    view = layout(settings)
    wire_source_tabs(settings, view, view["checkpoint"])
    controls = [view[name] for name in ("layer", "cam_class", "method", "method_idea", "note")]
    view["checkpoint"].change(with_settings(on_checkpoint, settings),
                              [view["checkpoint"], view["method"]], controls,
                              api_visibility="private")
    view["method"].change(with_settings(on_method, settings), [view["checkpoint"], view["method"]],
                          view["method_idea"], api_visibility="private")
    view["run"].click(with_settings(show_feature_maps, settings),
                      inputs_kwargs={name: view[name] for name in FORM},
                      outputs=[view[name] for name in OUTPUTS], api_name="feature_maps",
                      concurrency_limit=2)
    view["sample"].click(with_settings(show_sample, settings),
                         [view["checkpoint"], view["sample_index"]],
                         [view["image"], view["sample_note"], view["sample_index"]],
                         api_visibility="private")
    errors.wire(settings, view["errors"], view["checkpoint"])
    pair.wire(settings, view["pair"], view, tab)
    conv_view.wire(settings, view["conv"], view)
    if tab is not None:
        tab.select(with_settings(on_tab, settings),
                   [view[name] for name in ("checkpoint", "layer", "cam_class", "method")],
                   [view["checkpoint"], *controls], api_visibility="private", queue=False)
