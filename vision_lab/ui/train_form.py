"""The Train form, drawn and read from its table of fields (train_fields.FIELDS).

`draw` puts each field in its place (a box of the form, side by side with its row) as the kind of
widget the table names; `make_config` turns the form's values (by field name: the /train API's
parameters) into a TrainConfig and `form_values` reads one back, for a link or an opened bundle.
`on_model`, `on_scheduler` and `on_dataset` show the fields that count for what was picked.
"""
from __future__ import annotations

from itertools import groupby
from pathlib import Path

import gradio as gr

from ..i18n import text
from ..train_fields import BY_NAME, FORM, default, scheduler_fields
from .common import FOLDER_UPLOAD, friendly_errors, sample_folder_choice
from .fields import Number, Slider
from .language import ui_text
from .live import static_text

# The augmentation picker's value for "use the Augment tab's transforms": the English text (API
# callers send it); the picker shows it in the page's language.
AUGMENT_TAB = str(text("train.augment_tab"))
ADVANCED = "vl-advanced"  # what a lecture folds away (lecture.py)
# The tab's twelve outputs (a run's status, curves and results), in the /train API's order.
OUTPUTS = ("status", "loss_plot", "acc_plot", "epoch_loss_plot", "lr_plot", "confusion_plot",
           "per_class_plot", "wrong", "checkpoint_name", "checkpoint_file", "command", "result")
# How each part of the form is drawn: a group, or an accordion (its title) a lecture folds away.
BOXES = {"data": None, "model": None, "optimizer": None, "scheduler": "train.scheduler_group",
         "more": "train.more_group"}
# Rows drawn otherwise than plainly: folded away in a lecture, or hidden until the model has
# pretrained weights (on_model).
ROWS = {"split": {"elem_classes": ADVANCED}, "penalties": {"elem_classes": ADVANCED},
        "resnet": {"visible": False}}
MODEL_FIELDS = tuple(f for f in FORM if f.shown == "model")
SCHEDULER_FIELDS = tuple(f for f in FORM if f.shown == "scheduler")
# Fields that map one to one onto TrainConfig. The dataset and augmentation pickers hold
# choices of the form's own (an upload, the Augment tab's transforms): make_config reads them.
PLAIN_FIELDS = tuple(f for f in FORM if f.shown is None and f.fills == f.name
                     and f.name not in ("dataset", "augment"))


# ---- drawing --------------------------------------------------------------------------------------

def draw(form: dict, view: dict, settings, *boxes: str) -> None:
    """Draw the fields of `boxes` into `form` (name -> component); rows go in view as
    `<row>_row`, and the Augment tab's note (`augment_note`) under the augmentation picker."""
    for box in boxes:
        title = BOXES[box]
        with (gr.Accordion(ui_text(title), open=False, elem_classes=ADVANCED) if title
              else gr.Group()):
            for row, fields in groupby((f for f in FORM if f.box == box), lambda f: f.row):
                if row is None:
                    for f in fields:
                        _draw_field(f, form, view, settings)
                    continue
                with gr.Row(**ROWS.get(row, {})) as view[f"{row}_row"]:
                    for f in fields:
                        _draw_field(f, form, view, settings)


def _draw_field(f, form: dict, view: dict, settings) -> None:
    kwargs = {"label": ui_text(f.label), "elem_id": "train-" + f.name.replace("_", "-"),
              "visible": _shown_at_first(f)}
    if f.info:
        kwargs["info"] = ui_text(f"{f.label}_info")
    value = default(f)
    if f.widget == "dropdown":
        form[f.name] = _dropdown(f, value, settings, kwargs)
    elif f.widget == "number":
        form[f.name] = Number(value, precision=0 if f.read in ("whole", "count") else None,
                              **f.checks, **kwargs)
    elif f.widget == "slider":
        form[f.name] = Slider(value=value, **f.checks, **kwargs)
    elif f.widget == "checkbox":
        form[f.name] = gr.Checkbox(value, **kwargs)
    elif f.widget == "text":
        form[f.name] = gr.Textbox(value, max_lines=1, **kwargs)
    elif f.widget == "file":
        form[f.name] = gr.File(file_types=[".zip"], type="filepath", **kwargs)
    if f.name == "augment":
        view["augment_note"] = gr.Markdown(visible=False)


def _dropdown(f, value, settings, kwargs: dict) -> gr.Dropdown:
    # Dataset, model, optimizer and scheduler names are what the CLI and the API take (PyTorch's,
    # for the optimizers and schedulers): shown as they are.
    from ..models import MODEL_DESCRIPTIONS
    from ..train_fields import choices

    options = choices(f.choices)
    if f.name == "dataset":
        options += sample_folder_choice(settings) + [(ui_text("common.folder_upload"),
                                                      FOLDER_UPLOAD)]
        kwargs["allow_custom_value"] = True
    elif f.name == "augment":
        options += [(ui_text("train.augment_tab"), AUGMENT_TAB)]
    elif f.name == "model":
        kwargs["info"] = static_text(MODEL_DESCRIPTIONS[value])
    return gr.Dropdown(options, value=value, **kwargs)


def _shown_at_first(f) -> bool:
    """Whether the field shows for the form's defaults (as on_model and on_scheduler decide)."""
    from ..models import model_options

    if f.shown == "model":
        return f.option in model_options(default(BY_NAME["model"]))
    if f.shown == "scheduler":
        return f.name in scheduler_fields(default(BY_NAME["scheduler"]))
    return f.shown not in ("upload", "folder")  # the default dataset is a built-in one


# ---- what was picked shows what counts ----------------------------------------------------------

def model_outputs(form: dict, view: dict) -> list:
    return [form["model"], *(form[f.name] for f in MODEL_FIELDS), view["resnet_row"]]


def model_values(model: str) -> dict:
    """The model's own options as its fields hold them (what picking it puts in the form)."""
    from ..models import model_options

    options = model_options(model)
    return {f.name: as_field_value(f, options[f.option]) for f in MODEL_FIELDS
            if f.option in options}


@friendly_errors
def on_model(name, request: gr.Request = None):
    from ..models import MODEL_DESCRIPTIONS, has_pretrained

    values = model_values(name)
    return (gr.update(info=static_text(MODEL_DESCRIPTIONS[name])),
            *(gr.update(visible=f.name in values, value=values.get(f.name, default(f)))
              for f in MODEL_FIELDS),
            gr.update(visible=has_pretrained(name)))


def on_scheduler(name):
    from ..train_config import SCHEDULER_DEFAULTS

    shown = scheduler_fields(name)
    gamma = SCHEDULER_DEFAULTS.get(name, {}).get("gamma", 0.1)
    return [gr.update(visible=f.name in shown, **({"value": gamma} if f.name == "gamma" else {}))
            for f in SCHEDULER_FIELDS]


def on_dataset(name):
    folder = name == FOLDER_UPLOAD or str(name).startswith("folder:")
    return gr.update(visible=name == FOLDER_UPLOAD), gr.update(visible=folder)


# ---- from the form to a TrainConfig and back ----------------------------------------------------

def _what(name: str):
    """A form field's name in a sentence about it (train.what.<name>)."""
    return text(f"train.what.{name}")


def _number(value, what, whole=False):
    """A form or API value as a float (or int), or ValueError naming the field: API callers can
    send anything, e.g. lr="abc". `what` is the field's name (train.what.<what>)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(text("train.not_a_number", what=_what(what), value=repr(value))) from None
    if whole:
        if not number.is_integer():
            raise ValueError(text("train.not_whole", what=_what(what), value=repr(value)))
        return int(number)
    return number


def _whole(value, what):
    return _number(value, what, whole=True)


def _count_or_none(value, what):
    """A number of images; 0 or empty means all of them."""
    if value in (None, ""):
        return None
    number = _whole(value, what)
    return number if number > 0 else None


def _int_list(value, what):
    try:
        return [int(v) for v in str(value).replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise ValueError(text("train.not_whole_numbers", what=_what(what),
                              value=repr(value))) from None


# A field's `read` -> how its value is read (the field's own name is its name in errors).
READERS = {"text": lambda value, what: str(value), "switch": lambda value, what: bool(value),
           "number": _number, "whole": _whole, "count": _count_or_none, "whole_list": _int_list}


def read(f, value):
    return READERS[f.read](value, f.name)


def as_field_value(f, value):
    """A config's value as its field holds it (read backwards)."""
    if f.read == "whole_list":
        return ", ".join(map(str, value))
    return value or 0 if f.read == "count" else value


def _model_options(model: str, form: dict) -> dict:
    """The model's options as the form sets them, those that differ from its defaults (so a
    default model is `{}`, as the CLI builds it). A dropout's range is checked with the
    config's (TrainConfig.validate), as the CLI's is."""
    from ..models import model_options

    defaults = model_options(model)
    options = {f.option: read(f, form.get(f.name, as_field_value(f, defaults[f.option])))
               for f in MODEL_FIELDS if f.option in defaults}
    sizes = options.get("hidden_sizes")
    if sizes is not None and (not sizes or min(sizes) < 1):
        raise ValueError(text("train.mlp_needs_a_layer", value=repr(form.get("hidden_sizes"))))
    return {name: value for name, value in options.items() if value != defaults[name]}


def _scheduler_options(scheduler: str, form: dict) -> dict:
    options = {}
    for name in sorted(scheduler_fields(scheduler)):
        f = BY_NAME[name]
        options[f.option] = read(f, form.get(name, default(f)))
    if scheduler == "cosine":
        options["t_max"] = options["t_max"] or None
    return options


def make_config(form: dict):
    """A TrainConfig from the form's values by field name (raises ValueError with one sentence if
    one is wrong). Fields left out keep the form's defaults."""
    from ..models import has_pretrained
    from ..train_config import TrainConfig

    dataset = form.get("dataset", default(BY_NAME["dataset"]))
    if dataset == FOLDER_UPLOAD:
        if not form.get("folder_zip"):
            raise ValueError(text("train.upload_first"))
        dataset = f"folder:{form['folder_zip']}"
    values = {f.fills: read(f, form[f.name]) for f in PLAIN_FIELDS if f.name in form}
    model = values.get("model", default(BY_NAME["model"]))
    pretrained = has_pretrained(model) and bool(form.get("pretrained"))
    augment = form.get("augment", default(BY_NAME["augment"]))
    config = TrainConfig(**{
        **values, "dataset": dataset,
        "image_size": (_whole(form.get("folder_image_size") or 0, "folder_image_size") or None
                       if dataset.startswith("folder:") else None),
        "model_options": _model_options(model, form), "pretrained": pretrained,
        "freeze_epochs": (_whole(form.get("freeze_epochs") or 0, "freeze_epochs")
                          if pretrained else 0),
        "unfreeze_lr": (_number(form["unfreeze_lr"], "unfreeze_lr")
                        if pretrained and form.get("unfreeze_lr") else None),
        "scheduler_options": _scheduler_options(values.get("scheduler",
                                                           default(BY_NAME["scheduler"])), form),
        "augment": list(form.get("augment_spec") or []) if augment == AUGMENT_TAB else augment,
    })
    config.validate()
    return config


def form_values(config) -> dict:
    """The Train form's values that give `config` (make_config read backwards); only the fields
    that count for this model and scheduler."""
    from ..models import has_pretrained, model_options

    values = {f.name: as_field_value(f, getattr(config, f.fills)) for f in PLAIN_FIELDS}
    values["dataset"] = config.dataset
    if isinstance(config.augment, list):
        values.update(augment=AUGMENT_TAB, augment_spec=list(config.augment))
    else:
        values["augment"] = config.augment
    options = {**model_options(config.model), **config.model_options}
    values.update({f.name: as_field_value(f, options[f.option]) for f in MODEL_FIELDS
                   if f.option in options})
    if has_pretrained(config.model):  # resnet18 (ImageNet) and cnn (the shipped texture backbone)
        values.update(pretrained=config.pretrained, freeze_epochs=config.freeze_epochs,
                      unfreeze_lr=config.unfreeze_lr or 0)
    params = config.scheduler_params()
    for name in scheduler_fields(config.scheduler):
        value = params[BY_NAME[name].option]
        values[name] = ", ".join(map(str, value)) if isinstance(value, list) else value or 0
    return values


def size_augmentation(config, image_size: int) -> None:
    """A spec from the Augment tab was sized for its preview image: size it for this dataset."""
    from .augment import resize_spec

    if isinstance(config.augment, list):
        config.augment = resize_spec(config.augment, image_size)


def cli_command(config) -> str:
    """The command line that repeats this run; an uploaded zip is named by its own file name."""
    from dataclasses import replace

    from ..command_line import command_for

    if config.dataset.startswith("folder:") and "gradio" in config.dataset:
        config = replace(config, dataset=f"folder:{Path(config.dataset[7:]).name}")
    if config.resume:  # the checkpoint as the visitor downloads it
        config = replace(config, resume=Path(config.resume).name)
    return command_for(config)
