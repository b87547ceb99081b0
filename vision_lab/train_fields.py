"""The options a person sets for one run, as one table: the Train form's fields (ui/train_form.py
draws them and reads them into a TrainConfig), which of them a link to the form carries
(ui/share.py), and the columns of a comparison of your own (custom_comparison.py).

No gradio here: the table says what each field is and where it sits; how a kind of widget or a
place on the page is drawn is the UI's. Each field's label is the catalogue's `train.<name>`, its
help text (where it has one) `train.<name>_info`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

CONFIG = "the TrainConfig default"  # a `default`: the same as TrainConfig's own


@dataclass(frozen=True)
class Field:
    name: str                  # the form's field, the /train API's parameter, the address's key
    widget: str | None         # dropdown, number, slider, checkbox, text, file, state; None: not on the form
    read: str                  # how a value is read (the form, an address, a table cell): text,
                               # number, whole, count (of images; 0 or empty: all), switch,
                               # whole_list (whole numbers separated by commas), path, spec
    fills: str | None          # the TrainConfig field it sets; "model_options.X", "scheduler_options.X"
    box: str | None = None     # the part of the form it sits in: data, model, optimizer, scheduler, more
    row: str | None = None     # fields of one row sit side by side
    default: object = CONFIG   # what the form starts with
    choices: str | None = None   # the list it picks from (choices())
    checks: dict = field(default_factory=dict)   # bounds (and step) the field enforces
    info: bool = False         # has help text under it (train.<name>_info)
    shown: str | None = None   # shown only for: "model" (has this option), "pretrained", "scheduler"
                               # (uses this option), "upload", "folder" (datasets)
    linked: bool = True        # a link to the form (?name=value) and a bundle's settings carry it
    column: int | None = None  # its place in a custom comparison's table, after the run's label

    @property
    def label(self) -> str:
        return f"train.{self.name}"

    @property
    def option(self) -> str:
        """The key it sets inside model_options or scheduler_options (else the field itself)."""
        return self.fills.rpartition(".")[2]


# In the form's order (the /train API takes its parameters in this order, after augment_spec).
# A custom comparison's columns keep their numbers: an older API call's table reads by position.
FIELDS = (
    Field("augment_spec", "state", "spec", "augment", default=[], linked=False),
    Field("dataset", "dropdown", "text", "dataset", "data", choices="datasets", info=True),
    Field("subset_train", "number", "count", "subset_train", "data", "subsets", 2000, info=True),
    Field("subset_test", "number", "count", "subset_test", "data", "subsets", 500),
    Field("val_fraction", "number", "number", "val_fraction", "data", "split",
          checks={"minimum": 0, "maximum": 0.5}, info=True),
    Field("data_seed", "number", "whole", "data_seed", "data", "split", info=True),
    Field("folder_zip", "file", "path", "dataset", "data", default=None, shown="upload",
          linked=False),
    Field("folder_image_size", "slider", "whole", "image_size", "data", default=0,
          checks={"minimum": 0, "maximum": 256, "step": 8}, shown="folder", linked=False),
    Field("model", "dropdown", "text", "model", "model", choices="models", column=1),
    Field("hidden_sizes", "text", "whole_list", "model_options.hidden_sizes", "model",
          default="512, 256", shown="model"),
    Field("dropout", "slider", "number", "model_options.dropout", "model", "regularization",
          checks={"minimum": 0, "maximum": 0.9, "step": 0.05}, shown="model", column=8),
    Field("batch_norm", "checkbox", "switch", "model_options.batch_norm", "model",
          "regularization", shown="model", column=3),
    Field("pretrained", "checkbox", "switch", "pretrained", "model", "resnet",
          shown="pretrained"),
    Field("freeze_epochs", "number", "whole", "freeze_epochs", "model", "resnet",
          shown="pretrained", info=True),
    Field("unfreeze_lr", "number", "number", "unfreeze_lr", "model", "resnet", 0,
          shown="pretrained"),
    Field("epochs", "number", "whole", "epochs", "optimizer", "length", 3, column=7),
    Field("batch_size", "number", "whole", "batch_size", "optimizer", "length"),
    Field("optimizer", "dropdown", "text", "optimizer", "optimizer", "step",
          choices="optimizers", column=4),
    Field("lr", "number", "number", "lr", "optimizer", "step", column=5),
    Field("momentum", "number", "number", "momentum", "optimizer", "penalties"),
    Field("weight_decay", "number", "number", "weight_decay", "optimizer", "penalties",
          column=9),
    Field("l1", "number", "number", "l1", "optimizer", "penalties", column=10),
    Field("scheduler", "dropdown", "text", "scheduler", "scheduler", choices="schedulers",
          info=True, column=6),
    # Named as PyTorch names them (gamma, T_max); a scheduler shows those it uses.
    Field("step_size", "number", "whole", "scheduler_options.step_size", "scheduler", "schedule",
          shown="scheduler"),
    Field("gamma", "number", "number", "scheduler_options.gamma", "scheduler", "schedule",
          shown="scheduler"),
    Field("milestones", "text", "whole_list", "scheduler_options.milestones", "scheduler",
          "schedule", shown="scheduler"),
    Field("t_max", "number", "whole", "scheduler_options.t_max", "scheduler", "schedule",
          shown="scheduler"),
    Field("eta_min", "number", "number", "scheduler_options.eta_min", "scheduler", "schedule",
          shown="scheduler"),
    Field("plateau_factor", "number", "number", "scheduler_options.factor", "scheduler",
          "schedule", shown="scheduler"),
    Field("plateau_patience", "number", "whole", "scheduler_options.patience", "scheduler",
          "schedule", shown="scheduler"),
    Field("early_stopping_patience", "number", "whole", "early_stopping_patience", "more",
          "early_stopping", info=True, column=11),
    Field("early_stopping_min_delta", "number", "number", "early_stopping_min_delta", "more",
          "early_stopping"),
    Field("restore_best", "checkbox", "switch", "restore_best", "more", "early_stopping"),
    Field("augment", "dropdown", "text", "augment", "more", choices="presets", column=2),
    Field("permute_pixels", "checkbox", "switch", "permute_pixels", "more", "seeds"),
    Field("permutation_seed", "number", "whole", "permutation_seed", "more", "seeds"),
    Field("seed", "number", "whole", "seed", "more", "seeds", info=True),
    # Not on the Train form: a learning curve's share of the training images, a column only.
    Field("train_fraction", None, "number", "train_fraction", linked=False, column=12),
)
BY_NAME = {f.name: f for f in FIELDS}
FORM = tuple(f for f in FIELDS if f.widget)


def choices(name: str) -> list[str]:
    """The values a `choices` list holds (the form may add its own, e.g. an uploaded folder)."""
    if name == "datasets":
        from .datasets import list_datasets
        return list_datasets()
    if name == "models":
        from .models import list_models
        return list_models()
    if name == "presets":
        from .transforms import list_presets
        return list_presets()
    from .train_config import OPTIMIZERS, SCHEDULERS
    return list({"optimizers": OPTIMIZERS, "schedulers": SCHEDULERS}[name])


def default(f: Field):
    """What the form starts with: the table's value, or TrainConfig's own default (a model
    option: the default model's; a scheduler option: the first scheduler that uses it's)."""
    from .train_config import SCHEDULER_DEFAULTS, TrainConfig

    if f.default != CONFIG:
        return f.default
    if f.fills.startswith("model_options."):
        from .models import model_options
        return model_options(TrainConfig.model)[f.option]
    if f.fills.startswith("scheduler_options."):
        value = next(params[f.option] for params in SCHEDULER_DEFAULTS.values()
                     if f.option in params)
        return ", ".join(map(str, value)) if isinstance(value, list) else value or 0
    return getattr(TrainConfig(), f.fills)


def scheduler_fields(scheduler: str) -> set[str]:
    """The fields the scheduler uses (training.SCHEDULER_DEFAULTS names its options)."""
    from .train_config import SCHEDULER_DEFAULTS

    params = SCHEDULER_DEFAULTS.get(scheduler, {})
    return {f.name for f in FIELDS if f.shown == "scheduler" and f.option in params}


def linked() -> tuple[str, ...]:
    """The fields a link carries, in the order they are applied: the model and the scheduler
    first (which other fields count depends on them)."""
    names = [f.name for f in FIELDS if f.linked]
    return tuple(sorted(names, key=lambda name: name not in ("model", "scheduler")))


def columns() -> tuple[Field, ...]:
    """A custom comparison's option columns, in their order."""
    return tuple(sorted((f for f in FIELDS if f.column), key=lambda f: f.column))
