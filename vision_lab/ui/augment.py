"""Augment tab: preview what a data-augmentation pipeline does to one image, and get its code.

The controls are built from `transforms.OPS`, so every op the library supports shows up here with
its parameters. The spec the controls describe is kept in a `gr.State` the Train tab can use.
"""
from __future__ import annotations

import gradio as gr

from .common import chw_to_numpy, dataset_choices, enlarge, example_images, friendly_errors, sample_data
from .fields import Number, Slider

DEFAULT_SIZE = 64
# Ops whose first effect is the image's size: their `size` follows the image-size slider.
PREVIEW_NOTE = ("Normalize runs after augmentation and turns pixels into floats around 0; "
                "the preview shows the images just before it.")


class Control:
    """One UI input for one op parameter (a range is two sliders: its min and its max)."""

    def __init__(self, op, param, info, part=None):
        self.op, self.param, self.info, self.part = op, param, info, part
        self.component = None


def _param_controls(op, params, step, size):
    """The inputs for one op's parameters, showing `step` (its spec entry) or the defaults."""
    controls = []
    for name, info in params.items():
        controls += [Control(op, name, info)] if info["type"] != "range" else [
            Control(op, name, info, 0), Control(op, name, info, 1)]
    values = _control_values(controls, step, size)
    for c, value in zip(controls, values):
        info = c.info
        if info["type"] == "floats":
            c.component = gr.Textbox(value=value, label=f"{c.param} (one per channel)", max_lines=1)
        else:
            label = c.param if c.part is None else f"{c.param} {('min', 'max')[c.part]}"
            c.component = Slider(info["min"], info["max"], value=value, step=info["step"],
                                    label=label)
    return controls


def _control_values(controls, step, size):
    out = []
    for c in controls:
        info = c.info
        if step is not None and c.param in step:
            v = step[c.param]
        elif info["type"] == "size":
            v = size
        else:
            v = info["default"]
        if c.part is not None:
            v = v[c.part] if isinstance(v, (list, tuple)) else v
        if info["type"] == "floats":
            v = ", ".join(f"{x:g}" for x in v) if v else "0.5, 0.5, 0.5"
        elif info["type"] == "size" and isinstance(v, (list, tuple)):
            v = v[0]
        out.append(v)
    return out


def resize_spec(spec, size):
    """The same spec with every op's output `size` set to `size` (e.g. a dataset's own size)."""
    return [{**s, "size": int(size)} if "size" in s else s for s in spec]


def _value(control, raw):
    kind = control.info["type"]
    if kind == "floats":
        try:
            return [float(v) for v in str(raw).replace(";", ",").split(",") if v.strip()]
        except ValueError:
            raise gr.Error(f"{control.op}: {control.param} must be numbers separated by commas, "
                           f"got {raw!r}.", print_exception=False) from None
    if kind in ("int", "size"):
        return int(round(raw))
    return float(raw)


def build_spec(ops, order, values):
    """The spec the controls describe: enabled ops, in the preset's order when one was applied."""
    values = iter(values)
    steps = {}
    for op, enabled, controls in ops:
        on = next(values)
        step = {"op": op}
        for c in controls:
            v = _value(c, next(values))
            if c.part is None:
                step[c.param] = v
            else:
                step.setdefault(c.param, [None, None])[c.part] = v
        if on:
            steps[op] = step
    rank = {name: i for i, name in enumerate(order or [])}
    names = [op for op, _, _ in ops]
    return [steps[op] for op in sorted(steps, key=lambda o: (rank.get(o, len(rank)), names.index(o)))]


def controls_from_spec(ops, spec, size):
    """Values for every control (checkbox, then parameters) showing `spec`."""
    by_op = {step["op"]: step for step in spec}
    out = []
    for op, _, controls in ops:
        out.append(op in by_op)
        out += _control_values(controls, by_op.get(op), size)
    return out


def load_image(image, size):
    """uint8 (3, size, size) tensor of the chosen image; a shapes sample when none is given."""
    from ..preprocessing import image_to_tensor

    if image is None:
        from .common import dataset_sample

        sample, _ = dataset_sample("shapes", 0)
        image = chw_to_numpy(sample)
    return image_to_tensor(image, channels=3, image_size=int(size))


def augment_images(image, spec, size, n, seed):
    """The original and n augmented copies, as uint8 (C, H, W) tensors (what training sees)."""
    import torch

    from ..transforms import BatchAugmenter

    original = load_image(image, size)
    # A crop larger than the image cannot be taken (e.g. an API call that changed only the size).
    spec = [{**s, "size": min(s["size"], int(size))} if s["op"] in ("RandomCrop", "CenterCrop")
            and isinstance(s.get("size"), int) else s for s in spec]
    augmenter = BatchAugmenter(spec, int(size))
    batch = augmenter(original.unsqueeze(0).repeat(int(n), 1, 1, 1),
                      torch.Generator().manual_seed(int(seed)))
    return original, list(batch)


def build(settings, augment_spec=None, tab=None):
    from ..transforms import OPS, list_presets, preset, to_code, validate_spec

    examples = example_images(settings)
    ops = []  # (op name, enable checkbox, [Control])
    first_preset = "standard"
    spec0 = preset(first_preset, DEFAULT_SIZE)
    by_op = {s["op"]: s for s in spec0}
    if augment_spec is None:
        augment_spec = gr.State(spec0)
    else:
        augment_spec.value = spec0

    gr.Markdown("Pick an image, switch transforms on, and see what the network would get to see. "
                "Each transform's parameters are the torchvision v2 ones; the code below the grid "
                "builds the same pipeline.")
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=320):
            image = gr.Image(label="Image (upload, pick an example, or sample a dataset)",
                             type="numpy", sources=["upload", "clipboard"], height=240,
                             value=examples[0] if examples else None)
            if examples:
                gr.Examples(examples, inputs=image, label="Example images", examples_per_page=12)
            with gr.Row():
                dataset = gr.Dropdown(dataset_choices(), value="shapes", label="Dataset", scale=2)
                sample_btn = gr.Button("Sample from dataset", scale=1)
            with gr.Row():
                preset_name = gr.Dropdown(list_presets(), value=first_preset, label="Preset",
                                          info="sets the controls below")
                image_size = Slider(16, 256, value=DEFAULT_SIZE, step=1, label="Image size (px)",
                                       info="the image is resized to this square first")
            with gr.Row():
                n = Slider(8, 32, value=16, step=1, label="N (augmented copies)")
                seed = Number(value=0, precision=0, label="Seed", minimum=0)
            run = gr.Button("Augment", variant="primary", elem_id="augment-run")
            gr.Markdown("### Transforms")
            for op, spec in OPS.items():
                with gr.Accordion(op, open=op in ("RandomCrop", "RandomHorizontalFlip", "ColorJitter",
                                                  "RandomRotation")):
                    enabled = gr.Checkbox(value=op in by_op, label=f"use {op}",
                                          info=spec["description"])
                    controls = _param_controls(op, spec["params"], by_op.get(op), DEFAULT_SIZE)
                ops.append((op, enabled, controls))
        with gr.Column(scale=2):
            with gr.Row(equal_height=False):
                original = gr.Image(label="Original", interactive=False, height=240, scale=1,
                                    buttons=[])
                gr.Markdown(PREVIEW_NOTE, elem_classes="vl-note")
            gallery = gr.Gallery(label="Augmented copies", columns=6, height="auto", elem_id="augment-gallery",
                                 object_fit="contain", allow_preview=True)
            code = gr.Code(to_code(spec0), language="python", interactive=False,
                           label="torchvision code (paste into your notebook)")
            with gr.Row():
                batch_dataset = gr.Dropdown(dataset_choices(), value="shapes", label="Dataset", scale=2)
                batch_augmented = gr.Checkbox(value=True, label="apply these transforms", scale=1)
                batch_btn = gr.Button("Show a labelled batch from the dataset", scale=2)
            batch_plot = gr.Plot(label="A labelled batch", format="png")

    order = gr.State([s["op"] for s in spec0])  # op order of the last applied preset
    all_controls = []
    for _, enabled, controls in ops:
        all_controls.append(enabled)
        all_controls += [c.component for c in controls]
    size_controls = [c.component for _, _, cs in ops for c in cs if c.info["type"] == "size"]

    def current_spec(order_value, values):
        spec = build_spec(ops, order_value, values)
        return validate_spec(spec)

    def apply_preset(name, size, order_value):
        spec = preset(name, int(size))
        return [[s["op"] for s in spec], spec, to_code(spec),
                *controls_from_spec(ops, spec, int(size))]

    def show_spec(order_value, *values):
        try:
            spec = current_spec(order_value, values)
        except (ValueError, gr.Error):
            return gr.skip(), gr.skip()
        return spec, to_code(spec)

    @friendly_errors
    def augment(image, size, count, seed_value, order_value, *values):
        spec = current_spec(order_value, values)
        original_image, copies = augment_images(image, spec, size, count, seed_value or 0)
        pictures = [enlarge(chw_to_numpy(c)) for c in copies]
        return enlarge(chw_to_numpy(original_image)), pictures, to_code(spec), spec

    @friendly_errors
    def sample(name, seed_value):
        img, label = dataset_sample_image(name, seed_value)
        return chw_to_numpy(img), img.shape[-1]

    def dataset_sample_image(name, seed_value):
        from .common import dataset_sample

        return dataset_sample(name, int(seed_value or 0), settings.data_root)

    def resize_controls(size):
        return [int(size)] * len(size_controls)

    @friendly_errors
    def labelled_batch(name, use_transforms, order_value, *values):
        import torch

        from ..datasets import sample_grid
        from ..plots import image_grid
        from ..transforms import BatchAugmenter

        data = sample_data(name, settings.data_root)
        images, labels = sample_grid(data, 24, "train", seed=0)
        title = f"{data.name}: 24 training images"
        if use_transforms:
            spec = resize_spec(current_spec(order_value, values), data.image_size)
            images = BatchAugmenter(spec, data.image_size)(images, torch.Generator().manual_seed(0))
            title += ", augmented"
        return image_grid(images, titles=labels, ncols=8, title=title)

    # API parameter names: image, size, count, seed_value, then use_<Op> and <Op>_<param>[_min|_max],
    # each defaulting to what the page shows first.
    import inspect

    names = ["image", "size", "count", "seed_value", "order_value"]
    for op, _, controls in ops:
        names.append(f"use_{op}")
        names += [f"{op}_{c.param}" + ("" if c.part is None else ("_min", "_max")[c.part])
                  for c in controls]
    components = [image, image_size, n, seed, order, *all_controls]
    augment.__signature__ = inspect.Signature([
        inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                          default=None if c is image else c.value)
        for name, c in zip(names, components)])

    spec_outputs = [order, augment_spec, code, *all_controls]
    preset_name.input(apply_preset, [preset_name, image_size, order], spec_outputs,
                      queue=False, api_visibility="private")
    gr.on([c.input for c in all_controls], show_spec, [order, *all_controls], [augment_spec, code],
          queue=False, trigger_mode="always_last", api_visibility="private")
    image_size.input(resize_controls, image_size, size_controls, queue=False,
                     api_visibility="private")
    sample_btn.click(sample, [dataset, seed], [image, image_size], api_visibility="private").then(
        resize_controls, image_size, size_controls, queue=False, api_visibility="private")
    run.click(augment, [image, image_size, n, seed, order, *all_controls],
              [original, gallery, code, augment_spec], api_name="augment")
    batch_btn.click(labelled_batch, [batch_dataset, batch_augmented, order, *all_controls], batch_plot,
                    api_visibility="private")
