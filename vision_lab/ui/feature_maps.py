"""Feature maps tab: look inside a trained network.

Pick a checkpoint and an image; see the input exactly as the model sees it, what each convolution
responds to, the first layer's filters, where the evidence for a class lies (a saliency map:
Grad-CAM, Grad-CAM++, occlusion or the input gradient, each with its one-line idea on screen) and
the top-5 prediction. A fully connected network has no spatial maps: it says so, shows its hidden
activations instead and is offered the two saliency methods that need no convolutions. Below, the
"Compare with another checkpoint" accordion (pair.py, /feature_maps_pair) puts a second checkpoint
beside the first on the same image, and the "Errors" accordion (errors.py, /errors) shows the
checkpoint's confusion matrix on its test set and the images behind any cell.

The first half of this file (cached checkpoint loading, an image input that lets broken files
reach the handler, the upload/draw input and turning either into the model's input) is shared
with the Classify tab; `layout`, the handlers and `build` below it are this tab's own.

What it says comes from the catalogue (`features.*`): static text through `ui_text`, what the
handlers write as `text(...)`, said in the visitor's language by `friendly_errors`.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import gradio as gr
import numpy as np

from ..i18n import current as current_language, join, render, t, text
from . import common, errors
from .common import with_settings
from .fields import Number, Slider
from .gradio_internals import drawn_as
from .language import ui_text
from .storage import owner_of

# The Grad-CAM picker's value for "explain whatever the model predicts": the English text (API
# callers send it; `cam_choices` gives it a label in the visitor's language).
PREDICTED = str(text("features.predicted"))
DEFAULT_METHOD = "grad_cam"  # the saliency method the tab (and /feature_maps) starts with
# Methods that read a convolution's feature maps: an MLP has none, so it is offered the others.
CONV_METHODS = ("grad_cam", "grad_cam_plus_plus")
OCCLUSION_FLOOR = 0.01  # occlusion's colours span at least a 1-point drop in probability
DISPLAY_SIZE = 224  # small inputs are enlarged (nearest neighbour) to about this many pixels
CANVAS = (400, 400)
DIGIT_MODEL = "mnist_cnn"  # the digit model a drawing switches to, when there is one


# ---- shared with the Classify tab -----------------------------------------------------------------

@drawn_as("image")
class LenientImage(gr.Image):
    """gr.Image that hands the uploaded file itself to the handler, as a path.

    gr.Image would open every upload with PIL and write a re-encoded copy before the handler runs:
    a corrupt file would end as a generic error (`vision_lab.preprocessing` explains what is wrong
    instead, and applies its own size limit, EXIF rotation and first-frame rule), and the copy is
    written in place under a name taken from its content, so when several visitors send the same
    image at once one of them can read it while another is rewriting it: 0 bytes (the concurrency
    benchmark hit it). The uploaded file is moved into gradio's cache atomically and never rewritten.
    """

    def preprocess(self, payload):
        return str(payload.path) if payload is not None and payload.path else None


_MODELS: OrderedDict = OrderedDict()
_MODELS_LOCK = threading.Lock()
_MODELS_KEPT = 6


def load_cached(path):
    """load_checkpoint, remembering the last few (reloading costs far more than a forward pass).

    The key includes the file's modification time, so a retrained checkpoint is picked up.
    """
    from ..checkpoints import CheckpointError, load_checkpoint

    path = Path(path)
    try:
        key = (str(path.resolve()), path.stat().st_mtime_ns)
    except OSError:
        raise CheckpointError(text("checkpoints.missing", path=path)) from None
    with _MODELS_LOCK:
        if key in _MODELS:
            _MODELS.move_to_end(key)
            return _MODELS[key]
    ckpt = load_checkpoint(path)
    with _MODELS_LOCK:
        _MODELS[key] = ckpt
        while len(_MODELS) > _MODELS_KEPT:
            _MODELS.popitem(last=False)
    return ckpt


def resolve_checkpoint(settings, value, owner=None) -> str:
    """A picker value (a path) or, for API callers, a checkpoint name -> a path.

    Only checkpoints this visitor may see are accepted (shipped, shared, their own runs): a caller
    cannot make the server open an arbitrary file, or another visitor's run.
    """
    from ..checkpoints import CheckpointError, list_checkpoints
    from .storage import visible_dirs

    if not value:
        raise gr.Error(render(text("features.choose_checkpoint")), print_exception=False)
    value = str(value)
    infos = list_checkpoints(*visible_dirs(settings, owner))
    for info in infos:
        if value in (str(info.path), info.name, info.path.name):
            return str(info.path)
    try:
        wanted = Path(value).resolve()
        for info in infos:
            if info.path.resolve() == wanted:
                return str(info.path)
    except OSError:
        pass
    names = ", ".join(info.name for info in infos) or text("features.none_yet")
    raise CheckpointError(text("features.no_such_checkpoint", name=Path(value).name, names=names))


def is_digit_model(metadata) -> bool:
    """A 28×28 grayscale model of handwritten digits, which expects MNIST-style input."""
    dataset = str(metadata.get("dataset", "")).lower()
    return (int(metadata["channels"]) == 1 and int(metadata["image_size"]) == 28
            and "fashion" not in dataset)


def _is_digit_checkpoint(path) -> bool:
    from ..checkpoints import read_metadata

    try:
        return is_digit_model(read_metadata(path))
    except (ValueError, KeyError, OSError):
        return False


def digit_model_instead(settings, picked, owner=None):
    """A digit checkpoint to pick instead of `picked` (a picker value, or a list of them) when
    none of it is a digit model; None when it has one, or when no digit model is there.
    The shipped `mnist_cnn` comes first, then the newest digit model."""
    values = picked if isinstance(picked, list) else [picked]
    for value in filter(None, values):
        try:
            if _is_digit_checkpoint(resolve_checkpoint(settings, value, owner)):
                return None
        except (ValueError, OSError):  # a name that is not (or no longer) there: pick another
            continue
    paths = [path for _, path in common.checkpoint_choices(settings, owner)]
    paths.sort(key=lambda path: Path(path).stem != DIGIT_MODEL)
    digit = next((path for path in paths if _is_digit_checkpoint(path)), None)
    if digit is None:
        return None
    return [digit] if isinstance(picked, list) else digit


def sketch_image(sketch):
    """The composite of a Sketchpad value, or None when nothing was drawn."""
    if sketch is None:
        return None
    composite = sketch.get("composite") if isinstance(sketch, dict) else sketch
    if composite is None:
        return None
    a = np.asarray(composite)
    if a.size == 0:
        return None
    if a.ndim == 3 and a.shape[2] == 4 and a[..., 3].max() == 0:
        return None  # fully transparent: nothing drawn
    if a.min() == a.max():
        return None  # one flat colour: the blank page
    return composite


def model_input(metadata, image=None, sketch=None, digit_mode=True):
    """An upload (path) or a sketch -> uint8 (C, S, S) for this checkpoint.

    Digit models get MNIST's own conversion (white digit on black, cropped, scaled to 20 px,
    centred by mass) for sketches, and for uploads too when `digit_mode` is on; everything else is
    converted to the model's channels and size.
    """
    from ..preprocessing import ImageError, image_to_tensor
    from ..sketch import mnist_style

    channels, size = int(metadata["channels"]), int(metadata["image_size"])
    digit = is_digit_model(metadata)
    if sketch is not None:
        if digit:
            return mnist_style(sketch)
        return image_to_tensor(sketch, channels, size)
    if image is None:
        raise ImageError(text("features.no_image"))
    if digit and digit_mode:
        try:
            return mnist_style(image)
        except ImageError:
            raise
        except ValueError:  # a blank upload: classify it as it is
            pass
    return image_to_tensor(image, channels, size)


def what_the_model_sees(ckpt, x_uint8):
    """The normalized input the model gets (a batch of one) and, for display, that input
    denormalized and enlarged (pixel permutation included: it is what the model sees)."""
    from ..inspect import denormalize

    pre = ckpt.preprocessing
    x = pre(x_uint8[None])
    shown = common.enlarge(common.chw_to_numpy(denormalize(x, pre.mean, pre.std)), DISPLAY_SIZE)
    return x, shown


def source_tabs(prefix, draw_hint) -> dict:
    """An upload/webcam image and a sketchpad in two tabs, with a State saying which is in use.
    `draw_hint` (a static text) tells the student how to draw and which button to press then."""
    view = {"source": gr.State("image")}
    with gr.Tabs():
        with gr.Tab(ui_text("features.upload_tab"), id="image",
                    elem_id=f"{prefix}-image-tab") as view["image_tab"]:
            view["image"] = LenientImage(label=ui_text("features.image"), type="filepath",
                                         format="png", height=300,
                                         sources=["upload", "webcam", "clipboard"],
                                         elem_id=f"{prefix}-image")
        with gr.Tab(ui_text("features.draw_tab"), id="sketch",
                    elem_id=f"{prefix}-sketch-tab") as view["sketch_tab"]:
            gr.Markdown(draw_hint, elem_id=f"{prefix}-draw-hint")
            view["draw_note"] = gr.Markdown()
            view["sketch"] = gr.Sketchpad(
                label=ui_text("features.sketch"), type="numpy", image_mode="RGBA",
                canvas_size=CANVAS, height=480, layers=False, transforms=(),
                brush=gr.Brush(default_size=18, colors=["#000000"], color_mode="fixed"),
                elem_id=f"{prefix}-sketch")
    return view


@common.friendly_errors
def pick_digit_model(settings, picked, request: gr.Request = None):
    """The Draw tab was opened: pick a digit model when none is picked, and say why."""
    digit = digit_model_instead(settings, picked, owner_of(request))
    if digit is None:
        return gr.skip(), gr.skip()
    name = Path(digit[0] if isinstance(digit, list) else digit).stem
    return digit, text("features.picked_digit_model", name=name)


def _page_js(elem_id: str) -> tuple[str, str]:
    """Browser code that makes the sketchpad ready to draw on: (when Draw opens, when it is cleared).

    Gradio 6.31's editor starts with no tool chosen while its value is empty ("select the draw
    tool to start"), and with the brush once it holds a background: the first hands it a white page
    (once; its value stays). "Clear canvas" keeps the page but leaves no tool chosen: the second
    clicks the first button of its toolbar, the brush. Both run in the browser: a page sent by the
    server could arrive after the first stroke and wipe it. White, not transparent: it looks like
    paper, and to a model both are the same (`preprocessing` puts transparent pixels on white;
    `sketch_image` calls a flat page empty). tests/test_browser_inspect.py draws without
    choosing a tool, after opening Draw and after clearing.
    """
    import base64
    import io

    from PIL import Image

    png = io.BytesIO()
    Image.new("RGBA", CANVAS, (255, 255, 255, 255)).save(png, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(png.getvalue()).decode("ascii")
    page = f"{{background: {{url: '{url}', path: null, meta: {{_type: 'gradio.FileData'}}}}, " \
           f"layers: [], composite: null}}"
    first_page = f"(value) => (value?.background || value?.layers?.length) ? value : {page}"
    brush_again = f"() => {{ document.querySelector('#{elem_id} .toolbar-wrap button')?.click(); }}"
    return first_page, brush_again


def wire_source_tabs(settings, view: dict, picker) -> None:
    """Connect `source_tabs`; `picker` is the tab's checkpoint dropdown."""
    private = dict(queue=False, api_visibility="private")
    first_page, brush_again = _page_js(view["sketch"].elem_id)
    view["image_tab"].select(lambda: "image", None, view["source"], **private)
    view["sketch_tab"].select(lambda: "sketch", None, view["source"], **private)
    view["sketch_tab"].select(None, view["sketch"], view["sketch"], js=first_page, **private)
    view["sketch_tab"].select(with_settings(pick_digit_model, settings), picker,
                              [picker, view["draw_note"]], **private)
    view["sketch"].clear(None, js=brush_again, **private)


def choose_input(source, image, sketch):
    """(image, sketch) with only the one in use kept: API callers pass an image and no source."""
    drawn = sketch_image(sketch)
    if source == "sketch" or (image is None and drawn is not None):
        if drawn is None:
            from ..sketch import EMPTY_MESSAGE
            raise ValueError(EMPTY_MESSAGE)
        return None, drawn
    return image, None


def checkpoint_dropdown(settings, label=None, multiselect=False, elem_id=None):
    """The checkpoint picker (its labels in English until the tab opens: `refreshed_choices`
    says them in the visitor's language)."""
    label = label or ui_text("features.checkpoint")
    choices = common.checkpoint_choices(settings)
    values = [value for _, value in choices]
    value = values[:1] if multiselect else (values[0] if values else None)
    return gr.Dropdown(choices=choices, value=value, label=label, multiselect=multiselect,
                       allow_custom_value=True, max_choices=3 if multiselect else None,
                       elem_id=elem_id)


def refreshed_choices(settings, current, multiselect=False, owner=None):
    """New picker choices (checkpoints appear without a restart), keeping the selection if valid."""
    choices = common.checkpoint_choices(settings, owner)
    values = [v for _, v in choices]
    if multiselect:
        kept = [v for v in (current or []) if v in values] or values[:1]
    else:
        kept = current if current in values else (values[0] if values else None)
    return gr.update(choices=choices, value=kept)


# ---- what this tab computes -----------------------------------------------------------------------

def cam_choices(classes, static=False) -> list:
    """The Grad-CAM picker's choices: the predicted class (its label in the visitor's language;
    `static`: a text the page translates itself), then the model's classes by name."""
    label = ui_text("features.predicted") if static else t("features.predicted")
    return [(label, PREDICTED), *[(name, name) for name in classes]]


def _render(fig):
    from ..plots import figure_to_image

    return figure_to_image(fig)


_FILTERS: dict = {}


def _filters_image(ckpt):
    """The first layer's filters as an image; they do not depend on the input, so drawn once."""
    from ..inspect import first_layer_filters
    from ..plots import filter_grid

    key = (id(ckpt.model), current_language())  # its title is in the visitor's language
    if key not in _FILTERS:
        if len(_FILTERS) >= _MODELS_KEPT:
            _FILTERS.clear()
        # The model is kept with its image so that its id cannot be reused by another model.
        _FILTERS[key] = (ckpt.model, _render(filter_grid(first_layer_filters(ckpt.model))))
    return _FILTERS[key][1]


def checkpoint_controls(settings, checkpoint, owner=None) -> tuple[list[str], list[str], str]:
    """Conv layers, Grad-CAM class choices and a one-line description of a checkpoint."""
    from ..datasets import dataset_info
    from ..inspect import NO_SPATIAL_MESSAGE
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
    from ..inspect import NO_SPATIAL_MESSAGE, hidden_activations, predict
    from ..models import conv_layers
    from ..plots import font_notice, hidden_activation_plot

    ckpt = load_cached(resolve_checkpoint(settings, checkpoint, owner))
    image, drawn = choose_input(source, image, sketch)
    x, shown = what_the_model_sees(ckpt, model_input(ckpt.metadata, image, drawn, digit_mode))
    label = dict(predict(ckpt.model, x, ckpt.classes, top_k=5)[0])
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
    from ..inspect import feature_maps
    from ..models import conv_layers
    from ..plots import feature_map_mosaic

    convs = dict(conv_layers(ckpt.model))
    layer = layer if layer in convs else next(iter(convs))
    (name, maps), = feature_maps(ckpt.model, x, layers=[layer], max_channels=channels)
    note = text("features.maps_note", layer=name, shown=len(maps),
                channels=convs[name].out_channels, height=maps.shape[1], width=maps.shape[2])
    return feature_map_mosaic(maps), note


def method_choices(has_convs=True, static=False) -> list:
    """The saliency picker's (label, value) choices; without convolutions, only the methods that
    work for every model. `static`: labels the page translates itself."""
    from ..saliency import METHODS

    say = ui_text if static else t
    return [(say(f"saliency.{method}.name"), method) for method in METHODS
            if has_convs or method not in CONV_METHODS]


def method_idea(method, has_convs=True):
    """The method's one-line idea, and for a model without convolutions why two are missing."""
    from ..saliency import METHODS

    return join(METHODS.get(method, METHODS[DEFAULT_METHOD]),
                None if has_convs else text("saliency.mlp_methods"))


def _class_to_explain(ckpt, cam_class):
    """The class index `cam_class` names, or None for the predicted class."""
    if cam_class not in (None, "", PREDICTED, *ckpt.classes):
        raise ValueError(text("features.no_such_class", cam_class=cam_class, name=ckpt.path.stem,
                              classes=", ".join(ckpt.classes)))
    return None if cam_class in (None, "", PREDICTED) else ckpt.classes.index(cam_class)


def saliency_overlay(ckpt, x, shown, method=DEFAULT_METHOD, cam_class=PREDICTED):
    """One saliency map over the shown input, and a sentence on what it explains.

    For a method that needs convolutions the model lacks: no image, and the sentence says why and
    what to pick instead. Occlusion's map is a probability drop: its colours run from no drop to
    the largest one, which the sentence states (a confident model may lose only 1% to any one
    patch, and a map on the absolute scale would then be blank). The scale is never finer than
    OCCLUSION_FLOOR, so that a model no patch sways keeps a dark map instead of stretched noise.
    """
    from ..inspect import NoSpatialFeatures, overlay_heatmap
    from ..saliency import METHODS, saliency_map

    method = method or DEFAULT_METHOD
    if method not in METHODS:
        raise ValueError(text("saliency.unknown_method", method=repr(method),
                              available=", ".join(METHODS)))
    name = text(f"saliency.{method}.name")
    target = _class_to_explain(ckpt, cam_class)
    try:
        heat, explained = saliency_map(method, ckpt.model, x, target)
    except NoSpatialFeatures:
        return None, text("saliency.needs_convs", method=name)
    label = ckpt.classes[explained]
    if method == "grad_cam":
        note = text("features.cam_note_predicted" if target is None else "features.cam_note",
                    label=label)
    else:
        note = text("saliency.note_predicted" if target is None else "saliency.note",
                    method=name, label=label)
    if method == "occlusion":
        largest = float(heat.max())
        note = join(note, text("saliency.occlusion_drop", drop=largest))
        heat = heat.clamp(min=0) / max(largest, OCCLUSION_FLOOR)
    return overlay_heatmap(shown.transpose(2, 0, 1), heat), note


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
            text("features.sample_note", index=int(index), dataset=dataset, label=label),
            int(index) + 1)


def _warm_up():
    """Draw one small plot in the background: matplotlib's first figure costs seconds (fonts),
    which the first click would otherwise pay."""
    try:
        import torch

        from ..plots import filter_grid
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
            from . import conv_view  # here, not at the top: conv_view builds on this module

            view["conv"] = conv_view.layout()
            view["filters"] = gr.Image(label=ui_text("features.filters"), format="png",
                                       interactive=False, height=320, elem_id="fm-filters")
    from . import pair  # here, not at the top: pair.py builds on this module's helpers

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
    from . import pair  # see layout

    pair.wire(settings, view["pair"], view, tab)
    from . import conv_view  # see layout

    conv_view.wire(settings, view["conv"], view)
    if tab is not None:
        tab.select(with_settings(on_tab, settings),
                   [view[name] for name in ("checkpoint", "layer", "cam_class", "method")],
                   [view["checkpoint"], *controls], api_visibility="private", queue=False)
