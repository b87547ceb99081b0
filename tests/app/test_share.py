"""Links to a setup (ui/share.py): the Train form as an address's query and back, every value
checked as if typed."""
from urllib.parse import parse_qsl

import gradio as gr
import pytest

from vision_lab.i18n import render
from vision_lab.train_config import TrainConfig
from vision_lab.ui import share, train, train_form


def config_from_query(form, query: dict):
    values, wrong = share.values_from_query(form, query)
    return train_form.make_config(values), [render(w) for w in wrong]


def test_an_address_fills_the_form_and_gives_the_same_run(train_tab):
    form, _ = train_tab
    config, wrong = config_from_query(form, {"model": "mlp", "lr": "0.05", "epochs": "2",
                                             "dataset": "mnist", "lang": "zh"})
    assert wrong == []
    assert (config.model, config.lr, config.epochs, config.dataset) == ("mlp", 0.05, 2, "mnist")
    # The rest is the form's own defaults, with the MLP's options as picking it gives.
    assert config.subset_train == 2000 and config.model_options == {}


def test_a_setup_goes_through_its_link_unchanged(train_tab):
    form, _ = train_tab
    config = TrainConfig(dataset="fashion_mnist", model="mlp", model_options={"hidden_sizes": [128],
                         "dropout": 0.3}, epochs=4, subset_train=1000, subset_test=300,
                         optimizer="sgd", lr=0.02, scheduler="step",
                         scheduler_options={"step_size": 2, "gamma": 0.5}, augment="light",
                         early_stopping_patience=2, seed=7)
    query = share.query_for(train_form.form_values(config), share._default_values(form, "mlp"))
    pairs = dict(parse_qsl(query))
    assert pairs["model"] == "mlp" and pairs["hidden_sizes"] == "128" and pairs["gamma"] == "0.5"
    assert "batch_size" not in pairs  # at its default: the link stays short
    again, wrong = config_from_query(form, pairs)
    assert wrong == [] and again.to_dict() == config.to_dict()


@pytest.mark.parametrize("query, message", [
    ({"lr": "fast"}, "Learning rate must be a number, got 'fast'"),
    ({"val_fraction": "0.9"}, "at most 0.5"),
    ({"epochs": "0"}, "epochs"),
    ({"model": "transformer"}, "The address sets model to 'transformer', which is not one of"),
    ({"dataset": "folder:/etc"}, "The address sets dataset to 'folder:/etc'"),
    ({"batch_norm": "maybe"}, "it takes true or false"),
    ({"scheduler": "multistep", "milestones": "5, 9"}, "milestone"),
])
def test_a_wrong_value_is_named_and_the_rest_still_applies(train_tab, query, message):
    form, _ = train_tab
    config, wrong = config_from_query(form, {**query, "seed": "5", "optimizer": "sgd"})
    assert len(wrong) == 1 and message in wrong[0], wrong
    assert config.seed == 5 and config.optimizer == "sgd"


def test_the_link_names_the_page_and_leaves_a_folder_out(train_tab):
    form, _ = train_tab
    values = {**share._initial(form), **train_form.model_values("mlp"), "model": "mlp", "lr": 0.05}
    link = share.train_link(form, None, **values)
    assert link.startswith("/?") and dict(parse_qsl(link[2:])) == {
        "model": "mlp", "dataset": "shapes", "lr": "0.05"}
    uploaded = share.train_link(form, None, **{**values, "dataset": train.FOLDER_UPLOAD,
                                               "folder_zip": "/tmp/x.zip"})
    typed = share.train_link(form, None, **{**values, "dataset": "folder:/srv/photos"})
    assert "dataset" not in dict(parse_qsl(uploaded[2:])) | dict(parse_qsl(typed[2:]))
    assert dict(parse_qsl(typed[2:]))["model"] == "mlp"


def test_form_updates_show_the_fields_of_the_model_and_scheduler(train_tab):
    form, view = train_tab
    values, _ = share.values_from_query(form, {"model": "resnet18", "scheduler": "cosine"})
    updates = share.form_updates(form, view, values)
    assert updates[view["resnet_row"]]["visible"] is True
    assert updates[form["hidden_sizes"]]["visible"] is False
    assert updates[form["t_max"]]["visible"] is True and updates[form["gamma"]]["visible"] is False
    assert updates[form["model"]]["value"] == "resnet18"


def test_an_address_fills_the_compare_tab_and_names_what_it_does_not_know():
    from types import SimpleNamespace

    from vision_lab.ui import compare

    with gr.Blocks():
        view = compare.layout()
    asked = SimpleNamespace(query_params={"tab": "compare", "lesson": "Pixel permutation",
                                          "size": "huge", "dataset": "mnist"})
    lesson, dataset, size, link, status = share.prefill_compare(view, asked)
    assert (lesson, dataset, size) == ("Pixel permutation", "mnist", "default")
    assert "The address sets size to 'huge', which is not one of quick, default" in status
    assert link == "/?tab=compare&lesson=Pixel+permutation&dataset=mnist&size=default"
    # Without tab=compare the address is the Train tab's: the Compare tab keeps its defaults.
    train_only = SimpleNamespace(query_params={"dataset": "mnist"})
    assert share.prefill_compare(view, train_only)[:3] == ("MLP vs CNN", "shapes", "default")
