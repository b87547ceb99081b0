"""Feature maps tab: look inside a trained network.

Pick a checkpoint and an image; see the input exactly as the model sees it, what each convolution
responds to, the first layer's filters, where the evidence for a class lies (Grad-CAM) and the
top-5 prediction. A fully connected network has no spatial maps: it says so and shows its hidden
activations instead.

The helpers at the top (cached checkpoint loading, an image input that lets broken files reach the
handler, turning an upload or a sketch into the model's input) are shared with the Classify tab.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import gradio as gr
import numpy as np

from . import common
from .fields import Number, Slider
from .storage import owner_of

PREDICTED = "the predicted class"
DISPLAY_SIZE = 224  # small inputs are enlarged (nearest neighbour) to about this many pixels


# ---- shared with the Classify tab -----------------------------------------------------------------

class LenientImage(gr.Image):
    """gr.Image that hands the uploaded file itself to the handler, as a path.

    gr.Image would open every upload with PIL and write a re-encoded copy before the handler runs:
    a corrupt file would end as a generic error (`vision_lab.preprocessing` explains what is wrong
    instead, and applies its own size limit, EXIF rotation and first-frame rule), and the copy is
    written in place under a name taken from its content, so when several visitors send the same
    image at once one of them can read it while another is rewriting it: 0 bytes (the concurrency
    benchmark hit it). The uploaded file is moved into gradio's cache atomically and never rewritten.
    """

    def get_block_name(self) -> str:
        return "image"

    def get_block_class(self) -> str:
        return "image"

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
        raise CheckpointError(f"Checkpoint {path} does not exist.") from None
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
        raise gr.Error("Choose a checkpoint first (train one in the Train tab if the list is empty).",
                       print_exception=False)
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
    names = ", ".join(info.name for info in infos) or "none yet"
    raise CheckpointError(f"No checkpoint named '{Path(value).name}'. Available: {names}.")


def is_digit_model(metadata) -> bool:
    """A 28×28 grayscale model of handwritten digits, which expects MNIST-style input."""
    dataset = str(metadata.get("dataset", "")).lower()
    return (int(metadata["channels"]) == 1 and int(metadata["image_size"]) == 28
            and "fashion" not in dataset)


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
        raise ImageError("No image yet: upload one, pick an example or draw one first.")
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


def source_tabs(prefix, label="Image"):
    """An upload/webcam image and a sketchpad in two tabs, with a State saying which is in use."""
    source = gr.State("image")
    with gr.Tabs():
        with gr.Tab("Upload, webcam or example", id="image", elem_id=f"{prefix}-image-tab") as image_tab:
            image = LenientImage(label=label, type="filepath", format="png", height=300,
                                 sources=["upload", "webcam", "clipboard"], elem_id=f"{prefix}-image")
        with gr.Tab("Draw", id="sketch", elem_id=f"{prefix}-sketch-tab") as sketch_tab:
            sketch = gr.Sketchpad(label="Draw here (a digit for MNIST models)", type="numpy",
                                  image_mode="RGBA", canvas_size=(400, 400), height=480,
                                  brush=gr.Brush(default_size=18, colors=["#000000"],
                                                 color_mode="fixed"),
                                  layers=False, elem_id=f"{prefix}-sketch")
    image_tab.select(lambda: "image", None, source, queue=False, api_name=False)
    sketch_tab.select(lambda: "sketch", None, source, queue=False, api_name=False)
    return source, image, sketch


def choose_input(source, image, sketch):
    """(image, sketch) with only the one in use kept: API callers pass an image and no source."""
    drawn = sketch_image(sketch)
    if source == "sketch" or (image is None and drawn is not None):
        if drawn is None:
            from ..sketch import EMPTY_MESSAGE
            raise ValueError(EMPTY_MESSAGE)
        return None, drawn
    return image, None


def checkpoint_dropdown(settings, label="Checkpoint", multiselect=False, default_count=1,
                        elem_id=None):
    choices = common.checkpoint_choices(settings)
    values = [value for _, value in choices]
    value = values[:default_count] if multiselect else (values[0] if values else None)
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


# ---- this tab -----------------------------------------------------------------------------------

def _render(fig):
    from ..plots import figure_to_image

    return figure_to_image(fig)


_FILTERS: dict = {}


def _filters_image(ckpt):
    """The first layer's filters as an image; they do not depend on the input, so drawn once."""
    from ..inspect import first_layer_filters
    from ..plots import filter_grid

    key = id(ckpt.model)
    if key not in _FILTERS:
        if len(_FILTERS) >= _MODELS_KEPT:
            _FILTERS.clear()
        _FILTERS[key] = (ckpt.model, _render(filter_grid(first_layer_filters(ckpt.model))))
    return _FILTERS[key][1]


def checkpoint_controls(settings, checkpoint, owner=None) -> tuple[list[str], list[str], str]:
    """Conv layers, Grad-CAM class choices and a one-line description of a checkpoint."""
    from ..datasets import dataset_info
    from ..inspect import NO_SPATIAL_MESSAGE
    from ..models import conv_layers

    if not checkpoint:
        return [], [PREDICTED], "No checkpoint yet: train one in the Train tab."
    ckpt = load_cached(resolve_checkpoint(settings, checkpoint, owner))
    meta = ckpt.metadata
    layers = [name for name, _ in conv_layers(ckpt.model)]
    dataset = str(meta.get("dataset", "?"))
    size = meta["image_size"]
    note = f"**{Path(checkpoint).stem}**: {meta['model']} trained on {dataset}, " \
           f"input {meta['channels']}×{size}×{size}."
    if not layers:
        note += " " + NO_SPATIAL_MESSAGE
    try:
        available = not dataset_info(dataset, settings.data_root)["needs_download"]
    except (ValueError, RuntimeError, OSError):
        available = False
    if not available:
        note += f" Samples of {dataset} are not available offline here: upload or draw an image."
    return layers, [PREDICTED] + ckpt.classes, note


def _safe_controls(settings, checkpoint, owner=None):
    try:
        return checkpoint_controls(settings, checkpoint, owner)
    except (ValueError, RuntimeError, OSError) as e:
        return [], [PREDICTED], str(e)


def run_feature_maps(settings, checkpoint, image, sketch=None, source="image", layer=None,
                     channels=16, cam_class=PREDICTED, digit_mode=True, owner=None):
    """Everything the tab shows for one checkpoint and one image.

    Returns (model input, feature maps or hidden activations, filters, Grad-CAM overlay,
    top-5 {label: prob}, note).
    """
    from ..inspect import (NoSpatialFeatures, feature_maps, grad_cam, hidden_activations,
                           overlay_heatmap, predict)
    from ..models import conv_layers
    from ..plots import feature_map_mosaic, hidden_activation_plot

    ckpt = load_cached(resolve_checkpoint(settings, checkpoint, owner))
    image, drawn = choose_input(source, image, sketch)
    x, shown = what_the_model_sees(ckpt, model_input(ckpt.metadata, image, drawn, digit_mode))
    top = predict(ckpt.model, x, ckpt.classes, top_k=5)[0]
    label = {name: prob for name, prob in top}

    layers = [name for name, _ in conv_layers(ckpt.model)]
    if not layers:
        activations = hidden_activations(ckpt.model, x)
        return (shown, _render(hidden_activation_plot(activations)), None, None, label,
                str(NoSpatialFeatures()) + " Below: which hidden units fire for this image.")

    layer = layer if layer in layers else layers[0]
    channels = int(channels or 16)
    (name, maps), = feature_maps(ckpt.model, x, layers=[layer], max_channels=channels)
    maps_img = feature_map_mosaic(maps)
    maps_note = (f"Feature maps of **{name}**: the first {len(maps)} of "
                 f"{dict(conv_layers(ckpt.model))[name].out_channels} channels, "
                 f"{maps.shape[1]}×{maps.shape[2]} each; channel 0 is top left, then left to right, "
                 f"8 to a row; bright = strong response.")
    filters_img = _filters_image(ckpt)

    target = None if cam_class in (None, "", PREDICTED) else ckpt.classes.index(cam_class)
    heat, explained = grad_cam(ckpt.model, x, target_class=target)
    cam_img = overlay_heatmap(shown.transpose(2, 0, 1), heat)
    note = (f"{maps_note}\n\nGrad-CAM explains **{ckpt.classes[explained]}**"
            f"{' (the predicted class)' if target is None else ''}: warm colours mark the regions "
            f"whose features raised that class's score most (last conv layer).")
    return shown, maps_img, filters_img, cam_img, label, note


def dataset_sample_for(settings, checkpoint, index, owner=None):
    """A test image of the checkpoint's dataset (when available offline) into the image input."""
    from ..datasets import DatasetUnavailable, dataset_info

    ckpt = load_cached(resolve_checkpoint(settings, checkpoint, owner))
    dataset = str(ckpt.metadata.get("dataset", ""))
    try:
        missing = dataset_info(dataset, settings.data_root)["needs_download"]
    except ValueError:
        raise gr.Error(f"This checkpoint was trained on '{dataset}', which is not a dataset "
                       f"Vision Lab can load here.", print_exception=False) from None
    if missing:
        raise DatasetUnavailable(f"{dataset} is not available offline here (no files under the data "
                                 f"root); upload or draw an image instead.")
    image, label = common.dataset_sample(dataset, int(index), settings.data_root)
    # Not enlarged: the model must get the sample's own pixels back (PNG, lossless).
    return (common.chw_to_numpy(image),
            f"Test image #{int(index)} of {dataset}: true class **{label}**.", int(index) + 1)


def _warm_up():
    """Draw one small plot in the background: matplotlib's first figure costs seconds (fonts),
    which the first click would otherwise pay."""
    try:
        import torch

        from ..plots import filter_grid
        _render(filter_grid(torch.zeros(2, 1, 3, 3)))
    except Exception:  # only an optimisation
        pass


def build(settings, tab=None) -> None:
    threading.Thread(target=_warm_up, daemon=True).start()
    gr.Markdown("Look inside a trained network: what it sees, what its convolutions respond to, "
                "and where the evidence for its answer lies.")
    with gr.Row():
        with gr.Column(scale=1, min_width=320):
            checkpoint = checkpoint_dropdown(settings, elem_id="fm-checkpoint")
            layers0, classes0, note0 = _safe_controls(settings, checkpoint.value)
            source, image, sketch = source_tabs("fm")
            examples = common.example_images(settings)
            if examples:
                gr.Examples(examples=[[p] for p in examples], inputs=[image],
                            label="Bundled examples", examples_per_page=12,
                            elem_id="fm-examples")
            with gr.Row():
                sample_btn = gr.Button("Dataset sample", size="sm", variant="secondary")
                sample_index = Number(value=0, precision=0, label="Test image #", minimum=0,
                                         min_width=80)
            sample_note = gr.Markdown()
            digit_mode = gr.Checkbox(value=True, label="Digit models: convert uploads like MNIST "
                                     "(white digit on black, cropped, centred)")
            with gr.Row():
                layer = gr.Dropdown(label="Conv layer", choices=layers0,
                                    value=layers0[0] if layers0 else None)
                channels = Slider(1, 64, value=16, step=1, label="First N channels")
            cam_class = gr.Dropdown(label="Grad-CAM for", choices=classes0, value=PREDICTED)
            run_btn = gr.Button("Show feature maps", variant="primary", elem_id="fm-run")
        with gr.Column(scale=2):
            note = gr.Markdown(note0, elem_classes=["vl-status"])
            with gr.Row():
                seen = gr.Image(label="What the model sees (its real input, enlarged)", height=260, elem_id="fm-seen",
                                format="png", interactive=False)
                cam = gr.Image(label="Grad-CAM", height=260, elem_id="fm-cam", format="png", interactive=False)
                prediction = gr.Label(label="Prediction (top 5)", num_top_classes=5, elem_id="fm-label")
            maps = gr.Image(label="Feature maps", format="png", interactive=False, elem_id="fm-maps")
            filters = gr.Image(label="First layer's filters", format="png", interactive=False, height=320,
                               elem_id="fm-filters")
    def on_checkpoint(checkpoint, request: gr.Request):
        layers, classes, text = _safe_controls(settings, checkpoint, owner_of(request))
        return (gr.update(choices=layers, value=layers[0] if layers else None),
                gr.update(choices=classes, value=PREDICTED), text)

    checkpoint.change(on_checkpoint, [checkpoint], [layer, cam_class, note], api_name=False)

    @common.friendly_errors
    def handle(checkpoint, image, sketch=None, source="image", layer=None, channels=16,
               cam_class=PREDICTED, digit_mode=True, request: gr.Request = None):
        return run_feature_maps(settings, checkpoint, image, sketch, source, layer, channels,
                                cam_class, digit_mode, owner_of(request))

    run_btn.click(handle, [checkpoint, image, sketch, source, layer, channels, cam_class, digit_mode],
                  [seen, maps, filters, cam, prediction, note], api_name="feature_maps",
                  concurrency_limit=2)

    @common.friendly_errors
    def sample(checkpoint, index, request: gr.Request):
        return dataset_sample_for(settings, checkpoint, index, owner_of(request))

    sample_btn.click(sample, [checkpoint, sample_index], [image, sample_note, sample_index],
                     api_name=False)

    if tab is not None:
        def refresh(current, request: gr.Request):
            return refreshed_choices(settings, current, owner=owner_of(request))

        tab.select(refresh, [checkpoint], [checkpoint], api_name=False, queue=False)
