"""The Train form is written once (train_fields.FIELDS): the form drawn, the config it makes, the
fields a link carries and a custom comparison's columns all come from that table."""
import dataclasses

import pytest

from vision_lab.custom_comparison import CUSTOM_COLUMNS
from vision_lab.train_config import TrainConfig
from vision_lab.train_fields import CONFIG, FIELDS, FORM, default
from vision_lab.ui import share, train_form
from vision_lab.ui.common import FOLDER_UPLOAD

# A value other than the default for every field of the form, with what the config holds then,
# and what else the form needs for the field to count (its model, scheduler, dataset).
CHANGED = {
    "dataset": ("mnist", "mnist", {}),
    "subset_train": (300, 300, {}),
    "subset_test": (100, 100, {}),
    "val_fraction": (0.2, 0.2, {}),
    "data_seed": (3, 3, {}),
    "folder_zip": ("/tmp/photos.zip", "folder:/tmp/photos.zip", {"dataset": FOLDER_UPLOAD}),
    "folder_image_size": (48, 48, {"dataset": FOLDER_UPLOAD, "folder_zip": "/tmp/photos.zip"}),
    "model": ("mlp", "mlp", {}),
    "hidden_sizes": ("64, 32", [64, 32], {"model": "mlp"}),
    "dropout": (0.3, 0.3, {}),
    "batch_norm": (False, False, {}),
    "pretrained": (True, True, {"model": "resnet18"}),
    "freeze_epochs": (2, 2, {"model": "resnet18", "pretrained": True}),
    "unfreeze_lr": (0.01, 0.01, {"model": "resnet18", "pretrained": True}),
    "epochs": (7, 7, {}),
    "batch_size": (32, 32, {}),
    "optimizer": ("sgd", "sgd", {}),
    "lr": (0.05, 0.05, {}),
    "momentum": (0.5, 0.5, {}),
    "weight_decay": (0.01, 0.01, {}),
    "l1": (0.001, 0.001, {}),
    "scheduler": ("exponential", "exponential", {}),
    "step_size": (2, 2, {"scheduler": "step"}),
    "gamma": (0.5, 0.5, {"scheduler": "step"}),
    "milestones": ("2; 4", [2, 4], {"scheduler": "multistep"}),
    "t_max": (4, 4, {"scheduler": "cosine"}),
    "eta_min": (0.001, 0.001, {"scheduler": "cosine"}),
    "plateau_factor": (0.5, 0.5, {"scheduler": "plateau"}),
    "plateau_patience": (3, 3, {"scheduler": "plateau"}),
    "early_stopping_patience": (2, 2, {}),
    "early_stopping_min_delta": (0.01, 0.01, {}),
    "restore_best": (False, False, {}),
    "augment": ("light", "light", {}),
    "augment_spec": ([{"op": "RandomHorizontalFlip", "p": 0.5}],
                     [{"op": "RandomHorizontalFlip", "p": 0.5}],
                     {"augment": train_form.AUGMENT_TAB}),
    "permute_pixels": (True, True, {}),
    "permutation_seed": (4, 4, {}),
    "seed": (5, 5, {}),
}


def filled(config, path: str):
    """The config's value at a table's `fills` ("lr", "model_options.dropout", ...)."""
    where, _, option = path.rpartition(".")
    return getattr(config, where).get(option) if where else getattr(config, path)


def test_the_form_draws_the_tables_fields_in_its_order(train_tab):
    form, view = train_tab
    # The /train API takes the form's fields as parameters in this order (gradio_client callers
    # may pass them by position).
    assert list(form) == [f.name for f in FORM]
    for f in FORM[1:]:   # augment_spec is the Augment tab's State, handed in
        assert form[f.name].value == default(f), f.name
    assert form["val_fraction"].maximum == 0.5 and form["epochs"].precision == 0
    assert view["resnet_row"].visible is False and form["hidden_sizes"].visible is False


def test_every_field_of_the_table_sets_its_config_field():
    assert set(CHANGED) == {f.name for f in FORM}
    plain = train_form.make_config({})
    for f in FORM:
        value, expected, needs = CHANGED[f.name]
        config = train_form.make_config({**needs, f.name: value})
        assert filled(config, f.fills) == expected != filled(plain, f.fills), f.name


def test_a_table_default_is_trainconfigs_where_the_table_says_so(train_tab):
    form, _ = train_tab
    drawn = train_form.make_config({name: field.value for name, field in form.items()})
    plain = TrainConfig()
    same = [f for f in FORM if f.default == CONFIG and "." not in f.fills]
    assert {f.name for f in same} >= {"lr", "batch_size", "optimizer", "val_fraction", "seed"}
    for f in same:
        assert filled(drawn, f.fills) == getattr(plain, f.fills), f.name
    # Where the form starts elsewhere, the table says so.
    own = {f.name: f.default for f in FORM if f.default != CONFIG}
    assert [own.get(name) for name in ("epochs", "subset_train", "subset_test")] == [3, 2000, 500]
    assert (drawn.epochs, drawn.subset_train, drawn.subset_test) == (3, 2000, 500)
    assert drawn.model_options == {} and drawn.scheduler_options == {}


def test_every_fills_names_a_trainconfig_field_once():
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    fills = [f.fills for f in FIELDS]
    assert {path.partition(".")[0] for path in fills} <= names
    # Two fields fill one config field only where the form offers its own choice: an uploaded
    # folder for the dataset, the Augment tab's spec for the augmentation.
    twice = sorted({path for path in fills if fills.count(path) > 1})
    assert twice == ["augment", "dataset"]


def test_a_link_and_a_custom_comparison_take_their_fields_from_the_table():
    linked = [f.name for f in FIELDS if f.linked]
    assert sorted(share.LINKED) == sorted(linked) and len(share.LINKED) == len(linked)
    assert share.LINKED[:2] == ("model", "scheduler")
    # Everything on the form travels in a link but what an address cannot carry: an uploaded zip,
    # its image size and the Augment tab's spec.
    assert {f.name for f in FORM} - set(share.LINKED) == {"augment_spec", "folder_zip",
                                                          "folder_image_size"}
    numbered = sorted((f.column, f.name) for f in FIELDS if f.column)
    # Columns are read by position (an older API call sends the first eight): no gaps, no moves.
    assert [n for n, _ in numbered] == list(range(1, len(numbered) + 1))
    assert CUSTOM_COLUMNS == ("label", *(name for _, name in numbered))
    assert CUSTOM_COLUMNS[:8] == ("label", "model", "augment", "batch_norm", "optimizer", "lr",
                                  "scheduler", "epochs")


@pytest.mark.parametrize("model", ["cnn", "resnet18"])
def test_a_pretrained_run_keeps_its_pretrained_fields_through_the_form(model):
    # form_values once kept these for resnet18 only, so a pretrained cnn's link trained from scratch.
    config = dataclasses.replace(TrainConfig(model=model), pretrained=True, freeze_epochs=2,
                                 unfreeze_lr=0.001)
    again = train_form.make_config(train_form.form_values(config))
    assert (again.pretrained, again.freeze_epochs, again.unfreeze_lr) == (True, 2, 0.001)
