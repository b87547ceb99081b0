"""The Feature maps tab's "How one value is computed" panel: the convolution arithmetic, on screen.

Click a position on the feature-map mosaic (it picks the channel and the position) or on the
enlarged map of one channel below it (it picks the position), and the panel shows the input patch
under the kernel (grey: zero padding), the kernel's weights, their products, each input channel's
partial sum, the bias, the BatchNorm step and the ReLU, ending on the number the map shows; and
the layer's parameter count beside a fully connected layer's with the same input and output sizes.
The numbers come from `vision_lab.convolution`; this module only lays them out.
API: /conv_arithmetic (checkpoint, image, layer, channel, row, col -> map, table, note, numbers).
"""
from __future__ import annotations

import html

import gradio as gr
import numpy as np

from ..i18n import listing, t, text
from .common import friendly_errors, with_settings
from .fields import Number
from .language import ui_text
from .model_view import choose_input, load_cached, model_input, what_the_model_sees
from .storage import owner_of, resolve_checkpoint

MAP_TILE = 320  # the enlarged map is about this many pixels wide: a cell is easy to click
MARK = np.array([255, 40, 40], np.uint8)  # the clicked cell's outline
COLUMNS = 8  # partial sums per row of their table
OUTPUTS = ("map", "arithmetic", "note", "numbers")
POSITION = ("channel", "row", "col")

# Big enough to read on a projector; scoped to the panel's own block.
STYLE = ("<style>.vl-conv{font-size:1.15rem;line-height:1.5}"
         ".vl-conv table{border-collapse:collapse;margin:0 1.2rem 0.6rem 0}"
         ".vl-conv td{border:1px solid #999;padding:0.2rem 0.45rem;text-align:right;"
         "font-family:ui-monospace,monospace}.vl-conv td.pad{background:#d9d9d9}"
         ".vl-conv td.what{text-align:left;font-family:inherit}"
         ".vl-conv .grids{display:flex;flex-wrap:wrap;align-items:flex-start;gap:0 1.5rem}"
         ".vl-conv p{margin:0.4rem 0}</style>")


def layout() -> dict:
    """Draw the panel (in the Feature maps tab, below the mosaic). Returns its components."""
    view = {}
    with gr.Accordion(ui_text("conv.group"), open=True, elem_id="fm-conv"):
        gr.Markdown(ui_text("conv.intro"))
        with gr.Row():
            # No label on the picture: it would cover the top-left cells, which one clicks too.
            view["map"] = gr.Image(label=ui_text("conv.map"), show_label=False, format="png",
                                   interactive=False, height=MAP_TILE, elem_id="fm-conv-map")
            with gr.Column(min_width=200):
                view["channel"] = Number(value=0, precision=0, minimum=0,
                                         label=ui_text("conv.channel"), elem_id="fm-conv-channel")
                view["row"] = Number(value=0, precision=0, minimum=0, label=ui_text("conv.row"),
                                     elem_id="fm-conv-row")
                view["col"] = Number(value=0, precision=0, minimum=0, label=ui_text("conv.col"),
                                     elem_id="fm-conv-col")
                view["run"] = gr.Button(ui_text("conv.run"), elem_id="fm-conv-run")
        view["note"] = gr.Markdown(elem_id="fm-conv-note", elem_classes=["vl-status"])
        view["arithmetic"] = gr.HTML(elem_id="fm-conv-arithmetic")
        with gr.Accordion(ui_text("conv.numbers"), open=False):
            view["numbers"] = gr.JSON(label=ui_text("conv.numbers"), elem_id="fm-conv-numbers")
    return view


# ---- the numbers, laid out ----------------------------------------------------------------------

def _grid(title, values, padded, digits=3) -> str:
    # + 0.0 turns -0.0 (a negative weight times a padded zero) into 0.0.
    rows = ["".join(f'<td{" class=pad" if padded[i][j] else ""}>{v + 0.0:.{digits}f}</td>'
                    for j, v in enumerate(line)) for i, line in enumerate(values)]
    return (f"<div><div><b>{html.escape(title)}</b></div>"
            f"<table>{''.join(f'<tr>{r}</tr>' for r in rows)}</table></div>")


def _partial_sums(found, shown) -> str:
    """Every input channel's partial sum, 8 to a row; the channel shown in full in bold."""
    pairs = list(enumerate(zip(found.input_channels, found.partial_sums)))
    cells = [f"<td>{'<b>' if i == shown else ''}{html.escape(t('conv.channel_short', channel=c))}"
             f": {s:.4f}{'</b>' if i == shown else ''}</td>" for i, (c, s) in pairs]
    rows = ["".join(cells[i:i + COLUMNS]) for i in range(0, len(cells), COLUMNS)]
    title = t("conv.partial_sums", channels=len(pairs), shown=found.input_channels[shown])
    return (f"<div><b>{html.escape(title)}</b></div>"
            f"<table>{''.join(f'<tr>{r}</tr>' for r in rows)}</table>")


def _steps(found) -> list[tuple[str, float]]:
    """(what happens, the value after it), from the sum to the number on the map."""
    steps = [(t("conv.step_sum", channels=len(found.input_channels)), found.total)]
    if found.bias is None:
        steps.append((t("conv.step_no_bias"), found.conv_output))
    else:
        steps.append((t("conv.step_bias", bias=found.bias), found.conv_output))
    bn = found.batch_norm
    if bn is not None:
        steps.append((t("conv.step_batch_norm", name=bn.name, z=found.conv_output, mean=bn.mean,
                        var=bn.var, eps=bn.eps, gamma=bn.weight, beta=bn.bias), bn.output))
    if found.added is not None:
        steps.append((t("conv.step_added", added=found.added), found.value))
    if found.relu:
        steps.append((t("conv.step_relu"), found.value))
    steps.append((t("conv.step_map", channel=found.channel, row=found.row, col=found.col),
                  found.map_value))
    return steps


def arithmetic_html(found, counts) -> str:
    """The window, one input channel's kernel × patch in full, every channel's partial sum, the
    steps to the map's value and the parameter counts, as one HTML block. The channel shown in
    full is the one that adds the most (largest |partial sum|): after a ReLU and a max-pool many
    input channels are all zeros under the kernel, and a grid of zeros teaches nothing."""
    (kh, kw), first = found.kernel_size, int(np.abs(found.partial_sums).argmax())
    top, left = found.origin
    (sh, sw), (dh, dw) = found.stride, found.dilation
    window = t("conv.window", kh=kh, kw=kw, top=top, bottom=top + dh * (kh - 1), left=left,
               right=left + dw * (kw - 1), stride=f"{sh}×{sw}",
               padding=f"{found.padding[0]}×{found.padding[1]}", dilation=f"{dh}×{dw}")
    channel = found.input_channels[first]
    grids = "".join([
        _grid(t("conv.patch", channel=channel), found.patch[first], found.padded),
        _grid(t("conv.kernel", channel=channel), found.weights[first], np.zeros_like(found.padded)),
        _grid(t("conv.products", channel=channel), found.products[first], found.padded, 4)])
    parts = [f"<p>{html.escape(window)}</p>", f'<div class="grids">{grids}</div>']
    if found.padded.any():
        parts.append(f"<p>{html.escape(t('conv.padding_note'))}</p>")
    if len(found.input_channels) > 1:
        parts.append(_partial_sums(found, first))
    rows = "".join(f"<tr><td class=what>{html.escape(what)}</td><td><b>{value:.4f}</b></td></tr>"
                   for what, value in _steps(found))
    parts += [f"<table>{rows}</table>",
              f"<p>{html.escape(parameters_sentence(found, counts))}</p>"]
    return f'{STYLE}<div class="vl-conv">{"".join(parts)}</div>'


def parameters_sentence(found, counts) -> str:
    (kh, kw), cin = found.kernel_size, len(found.input_channels)
    bias = t("conv.with_bias", kernels=counts["kernels"]) if found.bias is not None else ""
    return t("conv.params", layer=found.layer, conv=counts["conv"], kernels=counts["kernels"],
             cin=cin, kh=kh, kw=kw, bias=bias, inputs=counts["in_features"],
             outputs=counts["out_features"], dense=counts["dense"],
             ratio=counts["dense"] / counts["conv"], uses=counts["uses"])


def note(found):
    """One sentence: which value this is and what gives it."""
    steps = [text("conv.note_bias")] if found.bias is not None else []
    steps += [text("conv.note_batch_norm")] if found.batch_norm is not None else []
    steps += [text("conv.note_added")] if found.added is not None else []
    steps += [text("conv.note_relu")] if found.relu else []
    return text("conv.note", layer=found.layer, channel=found.channel, row=found.row,
                col=found.col, channels=len(found.input_channels), value=found.map_value,
                steps=text("conv.note_steps", steps=listing(*steps)) if steps else "")


def marked_map(maps, channel, row, col) -> np.ndarray:
    """One channel's map enlarged (the mosaic's colours), the chosen cell outlined."""
    from ..image_plots import feature_map_mosaic

    image = feature_map_mosaic(maps[channel:channel + 1], ncols=1, tile=MAP_TILE, gap=0).copy()
    scale = image.shape[0] // maps.shape[1]
    line = max(3, scale // 5)
    top, left = row * scale, col * scale
    box = image[top:top + scale, left:left + scale]
    box[:line], box[-line:], box[:, :line], box[:, -line:] = MARK, MARK, MARK, MARK
    return image


# ---- the handlers -------------------------------------------------------------------------------

def _model_and_input(settings, checkpoint, image, sketch, source, digit_mode, owner):
    ckpt = load_cached(resolve_checkpoint(settings, checkpoint, owner))
    image, drawn = choose_input(source, image, sketch)
    x, _ = what_the_model_sees(ckpt, model_input(ckpt.metadata, image, drawn, digit_mode))
    return ckpt, x


def _layer_maps(ckpt, x, layer):
    """(layer, every channel's map): the first conv when no layer is given."""
    from ..convolution import conv_names, find_conv
    from ..network_view import feature_maps

    layer = layer or conv_names(ckpt.model)[0]
    find_conv(ckpt.model, layer)  # a clear sentence for a name the model lacks
    (_, maps), = feature_maps(ckpt.model, x, layers=[layer], max_channels=10_000)
    return layer, maps


def explain(ckpt, x, layer, maps, channel, row, col):
    """OUTPUTS for one position of one conv layer's map (`maps`: all its channels)."""
    from ..convolution import as_dict, conv_arithmetic, parameter_counts

    found = conv_arithmetic(ckpt.model, x, layer, int(channel or 0), int(row or 0), int(col or 0))
    counts = parameter_counts(ckpt.model, layer, found.input_shape, found.map_shape)
    numbers = {**as_dict(found), "parameters": counts}
    return (marked_map(maps.numpy(), found.channel, found.row, found.col),
            arithmetic_html(found, counts), note(found), numbers)


def run_conv(settings, checkpoint, image, sketch=None, *, source="image", layer=None, channel=0,
             row=0, col=0, digit_mode=True, owner=None):
    """OUTPUTS for one position of one conv layer's map, for one checkpoint and one image."""
    ckpt, x = _model_and_input(settings, checkpoint, image, sketch, source, digit_mode, owner)
    layer, maps = _layer_maps(ckpt, x, layer)
    return explain(ckpt, x, layer, maps, channel, row, col)


@friendly_errors
def show_conv(settings, request: gr.Request = None, *, checkpoint, image, sketch=None, layer=None,
              channel=0, row=0, col=0, **options):
    """The arithmetic behind one feature-map value. `sketch` and `layer` may be left out by API
    callers (the first conv layer then)."""
    return run_conv(settings, checkpoint, image, sketch, layer=layer, channel=channel, row=row,
                    col=col, owner=owner_of(request), **options)


def _clicked(settings, request, where, *, checkpoint, image, sketch, layer, source="image",
             digit_mode=True, channel=None, channels=None):
    """POSITION + OUTPUTS for a click at `where` (x, y) on the mosaic (`channels` shown in it) or,
    with `channel`, on that channel's enlarged map; nothing changes for a click between tiles or
    on an MLP's plot."""
    from ..models import conv_layers
    from ..image_plots import mosaic_cell

    ckpt, x = _model_and_input(settings, checkpoint, image, sketch, source, digit_mode,
                               owner_of(request))
    if not conv_layers(ckpt.model):  # an MLP's plot of hidden activations: nothing to explain
        return (gr.skip(),) * (len(POSITION) + len(OUTPUTS))
    layer, maps = _layer_maps(ckpt, x, layer)
    if channel is None:
        cell = mosaic_cell(tuple(maps[:int(channels or 16)].shape), *where)
    else:
        cell = mosaic_cell((1, *maps.shape[1:]), *where, ncols=1, tile=MAP_TILE, gap=0)
        cell = cell and (int(channel or 0), *cell[1:])
    if cell is None:
        return (gr.skip(),) * (len(POSITION) + len(OUTPUTS))
    return (*cell, *explain(ckpt, x, layer, maps, *cell))


@friendly_errors
def on_mosaic(settings, evt: gr.SelectData, request: gr.Request = None, *, checkpoint, image,
              sketch=None, layer=None, channels=16, **options):
    """A click on the mosaic: the channel and position under it, and their arithmetic."""
    return _clicked(settings, request, evt.index, checkpoint=checkpoint, image=image,
                    sketch=sketch, layer=layer, channels=channels, **options)


@friendly_errors
def on_map(settings, evt: gr.SelectData, request: gr.Request = None, *, checkpoint, image,
           sketch=None, layer=None, channel=0, **options):
    """A click on the enlarged map: the position under it, in the same channel."""
    return _clicked(settings, request, evt.index, checkpoint=checkpoint, image=image,
                    sketch=sketch, layer=layer, channel=channel, **options)


def wire(settings, view: dict, tab_view: dict) -> None:
    """Connect the panel; `tab_view` is the Feature maps tab's components (checkpoint, image,
    sketch, layer, channel count and the mosaic come from there)."""
    form = {name: tab_view[name] for name in ("checkpoint", "image", "sketch", "source", "layer",
                                              "digit_mode")}
    outputs = [view[name] for name in OUTPUTS]
    position = [view[name] for name in POSITION]
    view["run"].click(with_settings(show_conv, settings),
                      inputs_kwargs={**form, **{name: view[name] for name in POSITION}},
                      outputs=outputs, api_name="conv_arithmetic", concurrency_limit=2)
    tab_view["maps"].select(with_settings(on_mosaic, settings),
                            inputs_kwargs={**form, "channels": tab_view["channels"]},
                            outputs=position + outputs, api_visibility="private",
                            concurrency_limit=2)
    view["map"].select(with_settings(on_map, settings),
                       inputs_kwargs={**form, "channel": view["channel"]},
                       outputs=position + outputs, api_visibility="private", concurrency_limit=2)
    # New maps (another image, layer or checkpoint): numbers of the old ones would mislead.
    for changed in (tab_view["run"].click, tab_view["layer"].change, tab_view["checkpoint"].change):
        changed(lambda: (None, "", "", None), outputs=outputs, api_visibility="private",
                queue=False)

