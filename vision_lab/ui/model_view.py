"""What Classify, Feature maps and its Errors, Pair and convolution panels share: a model and
the input it really gets.

Cached checkpoint loading (`load_cached`), an image input that lets broken files reach the handler
(`LenientImage`), the upload/draw input and its wiring (`source_tabs`, `wire_source_tabs`: opening
Draw picks a digit model), turning either into the model's input (`choose_input`, `model_input`,
`what_the_model_sees`), the checkpoint picker, and the saliency methods with their overlay
(`saliency_overlay`, `PREDICTED`). Which checkpoints a visitor may name: storage.resolve_checkpoint.
"""
from __future__ import annotations

from pathlib import Path

import gradio as gr
import numpy as np

from ..datasets.class_names import class_text
from ..i18n import join, t, text
from ..lru import LRU
from . import common
from .common import with_settings
from .gradio_internals import drawn_as
from .language import ui_text
from .storage import owner_of, resolve_checkpoint

# The Grad-CAM picker's value for "explain whatever the model predicts": the English text (API
# callers send it; `feature_maps.cam_choices` gives it a label in the visitor's language).
PREDICTED = str(text("features.predicted"))
DEFAULT_METHOD = "grad_cam"  # the saliency method the tab (and /feature_maps) starts with
# Methods that read a convolution's feature maps: an MLP has none, so it is offered the others.
CONV_METHODS = ("grad_cam", "grad_cam_plus_plus")
OCCLUSION_FLOOR = 0.01  # occlusion's colours span at least a 1-point drop in probability
DISPLAY_SIZE = 224  # small inputs are enlarged (nearest neighbour) to about this many pixels
CANVAS = (400, 400)
DIGIT_MODEL = "mnist_cnn"  # the digit model a drawing switches to, when there is one


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


# Loaded checkpoints, by (file, modification time). The Feature maps tab keeps its filter images
# for as many (feature_maps._FILTERS).
MODELS_KEPT = 6
_MODELS = LRU(MODELS_KEPT)


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
    return _MODELS.get_or_make(key, lambda: load_checkpoint(path))


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
    from ..network_view import denormalize

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
    `sketch_image` calls a flat page empty). tests/browser/test_browser_inspect.py draws without
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


# ---- saliency: the methods and their overlay ------------------------------------------------------

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
    from ..network_view import NoSpatialFeatures, overlay_heatmap
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
    label = class_text(ckpt.classes[explained])
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
