"""The Augment tab's controls: their names (the /augment API's parameters) and the spec they give."""
import gradio as gr
import pytest

from vision_lab.transforms import OPS, list_presets, preset
from vision_lab.ui.augment import fields, spec_from_values, values_from_spec


def controls_showing(spec, size=64):
    return dict(zip((f.name for f in fields()), values_from_spec(spec, size)))


def test_every_op_parameter_has_a_named_control():
    names = [f.name for f in fields()]
    assert len(names) == len(set(names))
    for op, about in OPS.items():
        assert f"use_{op}" in names
        for param, info in about["params"].items():
            wanted = [f"{op}_{param}_min", f"{op}_{param}_max"] if info["type"] == "range" \
                else [f"{op}_{param}"]
            assert set(wanted) <= set(names)
    assert names[:3] == ["use_Resize", "Resize_size", "use_CenterCrop"]  # the page's order


@pytest.mark.parametrize("name", list_presets())
def test_the_controls_give_back_the_preset_they_show(name):
    spec = preset(name, 64)
    assert spec_from_values(controls_showing(spec), [s["op"] for s in spec]) == spec


def test_the_ops_come_in_the_presets_order_then_the_pages():
    values = controls_showing([{"op": "RandomHorizontalFlip", "p": 0.5},
                               {"op": "RandomCrop", "size": 64, "padding": 4}])
    assert [s["op"] for s in spec_from_values(values)] == ["RandomCrop", "RandomHorizontalFlip"]
    order = ["RandomHorizontalFlip", "RandomCrop"]
    assert [s["op"] for s in spec_from_values(values, order)] == order


def test_only_the_ops_switched_on_are_read():
    values = controls_showing([])
    values["Normalize_mean"] = "half"
    assert spec_from_values(values) == []
    values["use_Normalize"] = True
    with pytest.raises(gr.Error, match="Normalize: mean must be numbers separated by commas"):
        spec_from_values(values)
