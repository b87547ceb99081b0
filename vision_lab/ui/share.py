"""Shareable runs and setups, for the Train and Compare tabs.

- "Download this run" (/download_run) writes the finished run as one bundle (bundles.py): its
  config, metrics, history, checkpoint and the command line that trains it again.
- "Open a run bundle" (/open_run) checks a bundle somebody sent, shows its curves and test-set
  results, keeps its checkpoint among the visitor's runs (Feature maps and Classify list it) and
  fills the Train form with its settings: pressing Start training reproduces it.
- The page's address fills a form when the page opens: the Train form takes any of its field names
  (`?model=mlp&lr=0.05&epochs=2`), each value checked as if it were typed (a wrong one is named in
  the status line and left out, the others still apply); `?tab=compare&lesson=...&dataset=...&size=
  quick` fills the Compare tab. "Link to this setup" under each form is the address of what the
  form holds now, to copy.
"""
from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlencode

import gradio as gr

from ..i18n import join, text
from ..train_fields import BY_NAME, linked
from ..train_fields import choices as field_choices
from .common import dataset_choices, friendly_errors, with_settings
from .language import WrongValue, ui_text
from .storage import check_quota, owner_dir, owner_of
from .train_form import (OUTPUTS, SCHEDULER_FIELDS, form_values, make_config, model_outputs,
                         model_values, on_dataset, on_model, on_scheduler)

# Train form fields an address may set (train_fields.FIELDS' `linked`), in the order they are
# applied (the model and scheduler first: which other fields count depends on them). An uploaded
# zip, its image size and the Augment tab's spec cannot travel in an address.
LINKED = linked()
SWITCHES = tuple(name for name in LINKED if BY_NAME[name].read == "switch")
YES, NO = ("true", "1", "yes", "on"), ("false", "0", "no", "off")
# The Compare tab's lesson picker's value for "your own runs": the English text (API callers
# send it).
CUSTOM = str(text("compare.custom"))
COMPARE_FIELDS = ("lesson", "dataset", "size")


# ---- layout (called from train.py and compare.py) -----------------------------------------------

def link_box(elem_id: str) -> gr.Textbox:
    """'Link to this setup': the address of the form as it is now, with a copy button."""
    return gr.Textbox(label=ui_text("share.link"), info=ui_text("share.link_info"),
                      interactive=False, buttons=["copy"], max_lines=2, elem_id=elem_id)


def download_layout(view: dict) -> None:
    view["download_run"] = gr.Button(ui_text("share.download"), size="sm",
                                     elem_id="train-download-run")
    view["bundle_file"] = gr.File(label=ui_text("share.bundle_file"), interactive=False,
                                  elem_id="train-bundle-file")


def open_layout(view: dict) -> None:
    with gr.Accordion(ui_text("share.open_group"), open=False, elem_id="train-open-run"):
        gr.Markdown(ui_text("share.open_info"))
        view["open_bundle"] = gr.File(label=ui_text("share.open"), file_types=[".zip"],
                                      type="filepath", elem_id="train-open-bundle")


def query_for(values: dict, defaults: dict) -> str:
    """The query string of a setup: the model and dataset always, other fields where they
    differ from the form's defaults."""
    pairs = []
    for name in LINKED:
        value = values.get(name)
        if name not in values or (name not in ("model", "dataset") and value == defaults.get(name)):
            continue
        pairs.append((name, str(value).lower() if isinstance(value, bool) else str(value)))
    return urlencode(pairs)


def page_url(request) -> str:
    """The page's own address, without a query (behind a proxy too: gradio's own reading)."""
    from gradio.route_utils import get_root_url

    raw = getattr(request, "request", None)
    if raw is None:
        return "/"
    path = raw.url.path
    route = path[path.find("/gradio_api"):] if "/gradio_api" in path else path
    return get_root_url(raw, route, raw.scope.get("root_path") or None) + "/"


def _default_values(form: dict, model: str = "cnn") -> dict:
    """The form's values as the page first draws them, with `model` picked (its own options)."""
    return form_values(make_config({**_initial(form), **model_values(model), "model": model}))


def _initial(form: dict) -> dict:
    return {name: getattr(field, "value", None) for name, field in form.items()}


# ---- the address fills the Train form ----------------------------------------------------------

def _read_query_value(form: dict, name: str, raw: str):
    """A query value as its field would hand it to the handler, or a WrongValue saying why not."""
    from .fields import _checked

    f = BY_NAME[name]
    if f.choices:  # the table's own: no server paths, no upload, no Augment tab from an address
        allowed = field_choices(f.choices)
        if raw not in allowed:
            return WrongValue(text("share.bad_choice", field=name, value=repr(raw),
                                   choices=", ".join(allowed)))
        return raw
    if name in SWITCHES:
        if raw.lower() not in YES + NO:
            return WrongValue(text("share.not_yes_no", field=name, value=repr(raw)))
        return raw.lower() in YES
    if f.read == "whole_list":
        return raw
    checked = _checked(form[name], raw)
    if isinstance(checked, WrongValue) or checked is None:
        return checked
    return int(checked) if form[name].precision == 0 else checked


def values_from_query(form: dict, query: dict) -> tuple[dict, list]:
    """The Train form's values with the query's applied, and a sentence for each value left out.
    Each is applied only if the whole form still makes a valid run (make_config)."""
    values, wrong = _initial(form), []
    for name in LINKED:
        if name not in query:
            continue
        value = _read_query_value(form, name, str(query[name]).strip())
        if isinstance(value, WrongValue):
            wrong.append(value.message)
            continue
        if name == "model":  # a model brings its own options' defaults, as picking it does
            values.update(model_values(value))
        trial = {**values, name: value}
        try:
            make_config(trial)
        except ValueError as error:
            wrong.append(error.args[0])
            continue
        values = trial
    return values, wrong


def form_updates(form: dict, view: dict, values: dict) -> dict:
    """Updates that put `values` in the Train form, with the fields each model and scheduler
    show (what on_model and on_scheduler do when a person picks them)."""
    updates = dict(zip(model_outputs(form, view), on_model(values.get("model", "cnn"))))
    for f, shown in zip(SCHEDULER_FIELDS, on_scheduler(values.get("scheduler", "none"))):
        updates[form[f.name]] = shown
    updates[form["folder_zip"]], updates[form["folder_image_size"]] = on_dataset(
        values.get("dataset"))
    for name, value in values.items():
        if name in LINKED or name == "augment_spec":
            updates[form[name]] = {**updates.get(form[name], {"__type__": "update"}),
                                   "value": value}
    return updates


def train_outputs(form: dict, view: dict) -> list:
    return [*(form[name] for name in (*LINKED, "augment_spec", "folder_zip", "folder_image_size")),
            view["resnet_row"]]


@friendly_errors
def prefill_train(parts, request: gr.Request = None):
    """On page load: the Train form as the address sets it, and the link to it. `parts` is the
    tab's (form, view)."""
    form, view = parts
    query = dict(getattr(request, "query_params", None) or {})
    if query.get("tab", "train") != "train" or not set(LINKED) & set(query):
        return {view["link"]: train_link(form, request, **_initial(form))}
    values, wrong = values_from_query(form, query)
    updates = form_updates(form, view, values)
    updates[view["link"]] = train_link(form, request, **values)
    note = text("share.prefilled")
    updates[view["status"]] = join(note, *wrong, sep="\n\n") if wrong else note
    return updates


@friendly_errors  # a number its field refuses (out of range) is said as the field says it
def train_link(form, request: gr.Request = None, **values) -> str:
    """The address of the Train form as it is now (unchanged while the form makes no valid run:
    Start training says what is wrong with it)."""
    try:
        config = make_config(values)
    except ValueError:
        return gr.skip()
    shown = form_values(config)
    if shown["dataset"].startswith("folder:"):
        # An upload or a folder on this server: an address neither carries nor accepts one.
        del shown["dataset"]
    query = query_for(shown, _default_values(form, config.model))
    return page_url(request) + ("?" + query if query else "")


# ---- bundles ------------------------------------------------------------------------------------



@friendly_errors
def download_run(settings, checkpoint_name, request: gr.Request = None):
    """The finished run (any checkpoint this visitor may see, by name) as one .zip bundle: its
    config, metrics, history, checkpoint and the command line that trains it again."""
    from ..bundles import write_bundle
    from .common import made_from

    if not checkpoint_name:
        raise ValueError(text("share.nothing_to_download"))
    path, out = made_from(settings, checkpoint_name, owner_of(request), "bundles", ".zip")
    return str(write_bundle(path, out))


def _new_run_path(folder: Path, stem: str) -> Path:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-.") or "opened-run"
    path, n = folder / f"{stem}.safetensors", 1
    while path.exists():
        n += 1
        path = folder / f"{stem}-{n}.safetensors"
    return path


@friendly_errors
def open_run(settings, bundle, request: gr.Request = None):
    """Open a run bundle: its curves and test-set results, its checkpoint kept among your runs
    (Feature maps and Classify list it), and its settings for the Train form (the summary's
    `config`; the page fills the form with them)."""
    from ..bundles import open_bundle

    if not bundle:
        raise ValueError(text("share.open_nothing"))
    owner = owner_of(request)
    check_quota(settings, owner)
    folder = owner_dir(settings, owner) or Path(settings.runs_dir) / "runs"
    # "_opened": a name of its own, not the shipped or shared run it may have been made from.
    opened = open_bundle(bundle, _new_run_path(folder, Path(str(bundle)).stem + "_opened"))
    return opened_outputs(opened)


def opened_outputs(opened) -> tuple:
    """The Train tab's twelve results (train_form.OUTPUTS) for an opened bundle."""
    from ..curve_plots import epoch_curves, lr_curve
    from ..evaluation_plots import confusion_matrix, per_class_accuracy
    from ..plot_style import figure_to_image

    config, metrics, name = opened.config, opened.metrics, opened.checkpoint.stem
    label = text("train.run_label", model=config.model, dataset=config.dataset)
    histories = {str(label): [opened.history]}
    loss = figure_to_image(epoch_curves(histories, "loss")) if opened.history else None
    acc = figure_to_image(epoch_curves(histories, "acc")) if opened.history else None
    lr = figure_to_image(lr_curve(opened.history)) if opened.history else None
    confusion = per_class = None
    if metrics.get("confusion"):
        confusion = figure_to_image(confusion_matrix(metrics["confusion"], opened.classes))
    if metrics.get("per_class_acc"):
        per_class = figure_to_image(per_class_accuracy(metrics["per_class_acc"], opened.classes))
    said = [text("share.opened", model=config.model, dataset=config.dataset,
                 epochs=len(opened.history))]
    if metrics.get("test_acc") is not None:
        said.append(text("train.test_acc", acc=metrics["test_acc"]))
    said.append(text("share.reproduce", name=name))
    summary = {"reason": "opened", "checkpoint": str(opened.checkpoint),
               "test_acc": metrics.get("test_acc"), "test_loss": metrics.get("test_loss"),
               "classes": opened.classes, "per_class_acc": metrics.get("per_class_acc"),
               "history": opened.history, "metrics": metrics, "config": config.to_dict(),
               "command": opened.command}
    return (join(*said), loss, acc, loss, lr, confusion, per_class, [], name,
            str(opened.checkpoint), opened.command, summary)


@friendly_errors
def fill_from_summary(parts, summary, request: gr.Request = None):
    """After a bundle is opened: the Train form holds its settings."""
    from ..train_config import TrainConfig

    form, view = parts
    config = (summary or {}).get("config")
    if (summary or {}).get("reason") != "opened" or not isinstance(config, dict):
        return {}
    return form_updates(form, view, form_values(TrainConfig.from_dict(config)))


# ---- the Compare tab ----------------------------------------------------------------------------

def compare_choices() -> dict:
    from ..lessons import LESSONS, SIZES

    return {"lesson": [*LESSONS, CUSTOM], "dataset": dataset_choices(), "size": list(SIZES)}


@friendly_errors
def prefill_compare(view, request: gr.Request = None):
    """On page load: the Compare tab's lesson, dataset and size as `?tab=compare&...` sets them
    (a value it does not know is named in the status line), and the link to them."""
    query = dict(getattr(request, "query_params", None) or {})
    values = {name: view[name].value for name in COMPARE_FIELDS}
    wrong = []
    if query.get("tab") == "compare":
        for name, choices in compare_choices().items():
            if name in query and query[name] in choices:
                values[name] = query[name]
            elif name in query:
                wrong.append(text("share.bad_choice", field=name, value=repr(query[name]),
                                  choices=", ".join(choices)))
    status = join(*wrong, sep="\n\n") if wrong else gr.skip()
    return (values["lesson"], values["dataset"], values["size"],
            compare_link(*values.values(), request=request), status)


def compare_link(lesson, dataset, size, request: gr.Request = None) -> str:
    query = urlencode([("tab", "compare"), ("lesson", lesson), ("dataset", dataset),
                       ("size", size)])
    return f"{page_url(request)}?{query}"


# ---- wiring -------------------------------------------------------------------------------------

def wire_train(settings, form: dict, view: dict, your_runs_panel: dict) -> None:
    from . import your_runs

    private = dict(queue=False, api_visibility="private")
    filled = train_outputs(form, view)
    gr.on(None, with_settings(prefill_train, (form, view)), None,
          [*filled, view["status"], view["link"]], **private)  # no inputs: on load only
    fields = [form[name] for name in LINKED]
    gr.on([field.change for field in fields], with_settings(train_link, form),
          inputs_kwargs={name: form[name] for name in LINKED}, outputs=view["link"],
          trigger_mode="always_last", **private)
    view["download_run"].click(with_settings(download_run, settings), view["checkpoint_name"],
                               view["bundle_file"], api_name="download_run", concurrency_limit=2)
    opened = view["open_bundle"].upload(
        with_settings(open_run, settings), view["open_bundle"],
        [view[name] for name in OUTPUTS], api_name="open_run", concurrency_limit=2)
    opened.success(with_settings(fill_from_summary, (form, view)), view["result"], filled,
                   **private)
    opened.success(with_settings(your_runs.refresh, settings), your_runs_panel["picker"],
                   [your_runs_panel["picker"], your_runs_panel["note"]], **private)


def wire_compare(view: dict) -> None:
    inputs = [view["lesson"], view["dataset"], view["size"]]
    private = dict(queue=False, api_visibility="private")
    gr.on(None, with_settings(prefill_compare, view), None,
          [*inputs, view["link"], view["status"]], **private)  # no inputs: on load only
    gr.on([field.change for field in inputs], compare_link, inputs, view["link"], **private)
