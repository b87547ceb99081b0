"""Augment tab: preview what a data-augmentation pipeline does to one image, and get its code.

The controls are built from `transforms.OPS`, so every op the library supports shows up here with
its parameters. Each control has a name (`fields`), which is also its parameter in the /augment
API; the handlers get the controls by those names and turn them into a spec (`spec_from_values`).
The spec the controls describe is kept in a `gr.State` the Train tab can use.

What the tab says comes from the catalogue (`augment.*`): an op's explanation is
`augment.op.<op>` (the op's name in snake case), its parameters' labels `augment.param.<param>`
and their explanations `augment.param_info.<op>.<param>`, a preset's `augment.preset.<name>`.
The names themselves (RandomCrop, padding, standard) stay as they are: they are what a student
types in torchvision and on the command line.
"""
from __future__ import annotations

import re
from typing import NamedTuple

import gradio as gr

from ..i18n import catalogue, render, text
from .common import (chw_to_numpy, dataset_choices, dataset_sample, enlarge, example_images,
                     friendly_errors, sample_data, with_settings)
from .fields import Number, Slider
from .language import ui_text

DEFAULT_SIZE = 64
FIRST_PRESET = "standard"
OPEN_AT_START = ("RandomCrop", "RandomHorizontalFlip", "ColorJitter", "RandomRotation")
PREVIEW_NOTE = ui_text("augment.preview_note")
BATCH_SIZE = 24  # images in the labelled batch


# ---- what the controls say ------------------------------------------------------------------------

def snake(name: str) -> str:
    """RandomHorizontalFlip -> random_horizontal_flip (catalogue keys are lower case)."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def _static(key: str, fallback):
    """A static text by key; `fallback` (a name, as written) for an op, parameter or preset the
    catalogue does not know yet (tests/i18n/test_i18n_tabs.py says which)."""
    return ui_text(key) if key in catalogue("en") else fallback


def op_explanation(op: str, fallback=None):
    return _static(f"augment.op.{snake(op)}", fallback)


def use_label(op: str):
    return _static(f"augment.use.{snake(op)}", op)


def param_label(field: "Field"):
    """The parameter's name (what torchvision calls it) beside its meaning, with which end of a
    range it sets, or that it takes one number per channel."""
    key = f"augment.param.{field.param}"
    if field.part is not None:
        return _static(f"{key}.{('min', 'max')[field.part]}", f"{field.param}[{field.part}]")
    if field.info["type"] == "floats":
        return _static(f"{key}.per_channel", field.param)
    return _static(key, field.param)


def param_info(field: "Field"):
    """What the parameter does (on a range's first control only: the second is next to it)."""
    if field.part == 1:
        return None
    return _static(f"augment.param_info.{snake(field.op)}.{field.param}", None)


def preset_explanation(name: str):
    return _static(f"augment.preset.{snake(name)}", f"**{name}**")


# ---- the controls and the spec they describe ------------------------------------------------------

class Field(NamedTuple):
    """One control: `use_<Op>` switches an op on (param None); `<Op>_<param>` sets a parameter,
    and a range is two controls, `<Op>_<param>_min` and `_max` (part 0 and 1)."""
    name: str
    op: str
    param: str | None = None
    info: dict | None = None
    part: int | None = None


def op_fields(op: str, params: dict):
    yield Field(f"use_{op}", op)
    for param, info in params.items():
        if info["type"] == "range":
            yield Field(f"{op}_{param}_min", op, param, info, 0)
            yield Field(f"{op}_{param}_max", op, param, info, 1)
        else:
            yield Field(f"{op}_{param}", op, param, info)


def fields() -> list[Field]:
    """Every op's controls, in the order the page shows them."""
    from ..transforms import OPS

    return [f for op, about in OPS.items() for f in op_fields(op, about["params"])]


def field_value(field: Field, step: dict | None, size: int):
    """What `field` shows for `step` (its op's spec entry; None when the op is off): the step's
    own value, else the op's default (an output size: the preview's size)."""
    if field.param is None:
        return step is not None
    info = field.info
    if step is not None and field.param in step:
        value = step[field.param]
    else:
        value = size if info["type"] == "size" else info["default"]
    if field.part is not None and isinstance(value, (list, tuple)):
        value = value[field.part]
    if info["type"] == "floats":
        return ", ".join(f"{x:g}" for x in value) if value else "0.5, 0.5, 0.5"
    if info["type"] == "size" and isinstance(value, (list, tuple)):
        return value[0]
    return value


def values_from_spec(spec, size) -> list:
    """Every control's value (in `fields()` order) showing `spec`."""
    by_op = {step["op"]: step for step in spec}
    return [field_value(f, by_op.get(f.op), size) for f in fields()]


def _parse(field: Field, raw):
    kind = field.info["type"]
    if kind == "floats":
        try:
            return [float(v) for v in str(raw).replace(";", ",").split(",") if v.strip()]
        except ValueError:
            # Said in the visitor's language: the handlers run under i18n.using.
            message = text("augment.not_numbers", op=field.op, param=field.param, value=repr(raw))
            raise gr.Error(render(message), print_exception=False) from None
    if kind in ("int", "size"):
        return int(round(raw))
    return float(raw)


def spec_from_values(values: dict, order=None) -> list[dict]:
    """The (validated) spec the controls describe: the ops switched on, in `order` (the op order
    of the preset applied last) and then in the page's order."""
    from ..transforms import validate_spec

    steps = {}
    for f in fields():  # an op's checkbox comes before its parameters
        if f.param is None:
            if values[f.name]:
                steps[f.op] = {"op": f.op}
        elif f.op in steps:
            value = _parse(f, values[f.name])
            if f.part is None:
                steps[f.op][f.param] = value
            else:
                steps[f.op].setdefault(f.param, [None, None])[f.part] = value
    rank = {op: i for i, op in enumerate(order or [])}
    page = list(dict.fromkeys(f.op for f in fields()))
    ops = sorted(steps, key=lambda op: (rank.get(op, len(rank)), page.index(op)))
    return validate_spec([steps[op] for op in ops])


def resize_spec(spec, size):
    """The same spec with every op's output `size` set to `size` (e.g. a dataset's own size)."""
    return [{**s, "size": int(size)} if "size" in s else s for s in spec]


# ---- what the tab computes --------------------------------------------------------------------------

def load_image(image, size):
    """uint8 (3, size, size) tensor of the chosen image; a shapes sample when none is given."""
    from ..preprocessing import image_to_tensor

    if image is None:
        sample, _ = dataset_sample("shapes", 0)
        image = chw_to_numpy(sample)
    return image_to_tensor(image, channels=3, image_size=int(size))


def augment_images(image, spec, size, n, seed):
    """The original and n augmented copies, as uint8 (C, H, W) tensors (what training sees)."""
    import torch

    from ..batch_augment import BatchAugmenter

    original = load_image(image, size)
    # A crop larger than the image cannot be taken (e.g. an API call that changed only the size).
    spec = [{**s, "size": min(s["size"], int(size))} if s["op"] in ("RandomCrop", "CenterCrop")
            and isinstance(s.get("size"), int) else s for s in spec]
    augmenter = BatchAugmenter(spec, int(size))
    batch = augmenter(original.unsqueeze(0).repeat(int(n), 1, 1, 1),
                      torch.Generator().manual_seed(int(seed)))
    return original, list(batch)


# ---- the page --------------------------------------------------------------------------------------

def layout(settings, spec) -> tuple[dict, dict, dict]:
    """Draw the tab, its transform controls showing `spec`. Returns (form, controls, view): what
    /augment takes by name (the controls among it), the controls alone, and the rest."""
    from ..transforms import list_presets

    examples = example_images(settings)
    form, view = {}, {}
    gr.Markdown(ui_text("augment.intro"))
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=320):
            form["image"] = gr.Image(label=ui_text("augment.image"),
                                     type="numpy", sources=["upload", "clipboard"], height=240,
                                     value=examples[0] if examples else None)
            if examples:
                gr.Examples(examples, inputs=form["image"], label=ui_text("augment.examples"),
                            examples_per_page=12)
            with gr.Row():
                # Dataset and preset names are what the CLI and the API take: shown as they are.
                view["dataset"] = gr.Dropdown(dataset_choices(), value="shapes",
                                              label=ui_text("augment.dataset"), scale=2)
                view["sample"] = gr.Button(ui_text("augment.sample"), scale=1)
            with gr.Row():
                view["preset"] = gr.Dropdown(list_presets(), value=FIRST_PRESET,
                                             label=ui_text("augment.preset"),
                                             info=ui_text("augment.preset_info"),
                                             elem_id="augment-preset")
                form["size"] = Slider(16, 256, value=DEFAULT_SIZE, step=1,
                                      label=ui_text("augment.size"),
                                      info=ui_text("augment.size_info"))
            view["preset_note"] = gr.Markdown(preset_explanation(FIRST_PRESET),
                                              elem_id="augment-preset-note")
            with gr.Row():
                form["count"] = Slider(8, 32, value=16, step=1, label=ui_text("augment.count"))
                form["seed_value"] = Number(value=0, precision=0, label=ui_text("augment.seed"),
                                            minimum=0)
            # The op order of the preset applied last.
            form["order_value"] = gr.State([step["op"] for step in spec])
            view["run"] = gr.Button(ui_text("augment.run"), variant="primary",
                                    elem_id="augment-run")
            gr.Markdown(ui_text("augment.transforms"))
            controls = _controls_layout(spec, DEFAULT_SIZE)
        with gr.Column(scale=2):
            _results_layout(view, spec)
    return {**form, **controls}, controls, view


def _controls_layout(spec, size) -> dict:
    from ..transforms import OPS

    by_op = {step["op"]: step for step in spec}
    controls = {}
    for op, about in OPS.items():
        # The op's torchvision name, as a student writes it.
        with gr.Accordion(op, open=op in OPEN_AT_START):
            for f in op_fields(op, about["params"]):
                value = field_value(f, by_op.get(op), size)
                if f.param is None:
                    control = gr.Checkbox(value=value, label=use_label(op),
                                          info=op_explanation(op, about.get("description")))
                elif f.info["type"] == "floats":
                    control = gr.Textbox(value=value, label=param_label(f), info=param_info(f),
                                         max_lines=1)
                else:
                    control = Slider(f.info["min"], f.info["max"], value=value,
                                     step=f.info["step"], label=param_label(f),
                                     info=param_info(f))
                controls[f.name] = control
    return controls


def _results_layout(view: dict, spec) -> None:
    from ..transforms import to_code

    with gr.Row(equal_height=False):
        view["original"] = gr.Image(label=ui_text("augment.original"), interactive=False,
                                    height=240, scale=1, buttons=[])
        gr.Markdown(PREVIEW_NOTE, elem_classes="vl-note")
    view["gallery"] = gr.Gallery(label=ui_text("augment.gallery"), columns=6, height="auto",
                                 elem_id="augment-gallery", object_fit="contain", allow_preview=True)
    view["code"] = gr.Code(to_code(spec), language="python", interactive=False,
                           label=ui_text("augment.code"))
    with gr.Row():
        view["batch_dataset"] = gr.Dropdown(dataset_choices(), value="shapes",
                                            label=ui_text("augment.dataset"), scale=2)
        view["batch_augmented"] = gr.Checkbox(value=True, label=ui_text("augment.batch_augmented"),
                                              scale=1)
        view["batch"] = gr.Button(ui_text("augment.batch"), scale=2, elem_id="augment-batch")
    # Says so when the plot cannot be labelled in the visitor's language (no CJK font).
    view["batch_note"] = gr.Markdown(elem_classes="vl-note")
    view["batch_plot"] = gr.Plot(label=ui_text("augment.batch_plot"), format="png",
                                 elem_id="augment-batch-plot")


# ---- handlers ---------------------------------------------------------------------------------------

@friendly_errors
def augment(image=None, size=DEFAULT_SIZE, count=16, seed_value=0, order_value=None,
            request: gr.Request = None, **values):
    """The image and N augmented copies of it, with the torchvision code of the pipeline.

    `values` holds every transform control by name (use_<Op>, <Op>_<param>[_min|_max]). `image`
    defaults to None so that the API may leave it out: with no example images its component
    starts empty, and gradio then takes the parameter's default from here."""
    from ..transforms import to_code

    spec = spec_from_values(values, order_value)
    original, copies = augment_images(image, spec, size, count, seed_value or 0)
    pictures = [enlarge(chw_to_numpy(c)) for c in copies]
    return enlarge(chw_to_numpy(original)), pictures, to_code(spec), spec


@friendly_errors
def apply_preset(name, size, request: gr.Request = None):
    """Set every control to the preset's spec at this size."""
    from ..transforms import preset, to_code

    spec = preset(name, int(size))
    return [[s["op"] for s in spec], spec, to_code(spec), *values_from_spec(spec, int(size))]


def describe_preset(name):
    """The preset's explanation (a static text: the page says it in its own language)."""
    return preset_explanation(name) if name else ""


@friendly_errors
def show_spec(order_value=None, request: gr.Request = None, **values):
    """The spec and its code while the controls change; half-typed values change nothing."""
    from ..transforms import to_code

    try:
        spec = spec_from_values(values, order_value)
    except (ValueError, gr.Error):
        return gr.skip(), gr.skip()
    return spec, to_code(spec)


@friendly_errors
def sample(settings, name, seed_value, request: gr.Request = None):
    """A dataset image into the image input, and the size slider set to its size."""
    image, _ = dataset_sample(name, int(seed_value or 0), settings.data_root)
    return chw_to_numpy(image), image.shape[-1]


@friendly_errors
def resize_controls(size, request: gr.Request = None):
    """Every op's output size follows the image size."""
    return [int(size)] * len(_size_fields())


def _size_fields() -> list[str]:
    return [f.name for f in fields() if f.info is not None and f.info["type"] == "size"]


@friendly_errors
def labelled_batch(settings, name, use_transforms, order_value=None, request: gr.Request = None,
                   **values):
    """24 training images of a dataset with their labels, augmented or not (the plot labelled in
    the visitor's language), and a line when it cannot be."""
    import torch

    from ..batch_augment import BatchAugmenter
    from ..datasets import sample_grid
    from ..datasets.class_names import class_text
    from ..image_plots import image_grid
    from ..plot_style import font_notice

    data = sample_data(name, settings.data_root)
    images, labels = sample_grid(data, BATCH_SIZE, "train", seed=0)
    title = text("augment.batch_title", name=data.name, count=BATCH_SIZE)
    if use_transforms:
        spec = resize_spec(spec_from_values(values, order_value), data.image_size)
        images = BatchAugmenter(spec, data.image_size)(images, torch.Generator().manual_seed(0))
        title = text("augment.batch_title_augmented", name=data.name, count=BATCH_SIZE)
    titles = [class_text(name) for name in labels]  # in the visitor's language
    return font_notice() or "", image_grid(images, titles=titles, ncols=8, title=title)


# ---- wiring -----------------------------------------------------------------------------------------

def build(settings, augment_spec=None):
    from ..transforms import preset

    spec = preset(FIRST_PRESET, DEFAULT_SIZE)
    if augment_spec is None:
        augment_spec = gr.State(spec)
    else:
        augment_spec.value = spec
    form, controls, view = layout(settings, spec)
    order, sizes = form["order_value"], [controls[name] for name in _size_fields()]
    private = dict(queue=False, api_visibility="private")
    view["preset"].input(apply_preset, [view["preset"], form["size"]],
                         [order, augment_spec, view["code"], *controls.values()], **private)
    view["preset"].change(describe_preset, view["preset"], view["preset_note"], **private)
    gr.on([c.input for c in controls.values()], show_spec,
          inputs_kwargs={"order_value": order, **controls}, outputs=[augment_spec, view["code"]],
          trigger_mode="always_last", **private)
    form["size"].input(resize_controls, form["size"], sizes, **private)
    view["sample"].click(with_settings(sample, settings), [view["dataset"], form["seed_value"]],
                         [form["image"], form["size"]], api_visibility="private").then(
        resize_controls, form["size"], sizes, **private)
    # API parameters: image, size, count, seed_value, then use_<Op> and <Op>_<param>[_min|_max].
    view["run"].click(augment, inputs_kwargs=form,
                      outputs=[view["original"], view["gallery"], view["code"], augment_spec],
                      api_name="augment")
    view["batch"].click(with_settings(labelled_batch, settings),
                        inputs_kwargs={"name": view["batch_dataset"],
                                       "use_transforms": view["batch_augmented"],
                                       "order_value": order, **controls},
                        outputs=[view["batch_note"], view["batch_plot"]], api_visibility="private")
