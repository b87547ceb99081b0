"""Inside a training run (vision_lab/internals.py): what each epoch records, that it sees a real
difference (BatchNorm), that it changes nothing about training, and how it is drawn."""
import json

import pytest
import torch

from vision_lab.internals import (ACTIVATION_IMAGES, BINS, PERCENTILES, SAMPLE, InternalsRecorder,
                                  handed_on_spread, recorded_layers, summarise)
from vision_lab.models import create_model
from vision_lab.train_config import EpochEnd, TrainConfig, data_key, load_data
from vision_lab.training import train

SMALL = dict(dataset="shapes", subset_train=300, subset_test=50, epochs=2, model="cnn",
             optimizer="sgd", lr=0.01)


def _run(tmp_path, name, **overrides):
    config = TrainConfig(**{**SMALL, **overrides, "out": str(tmp_path / f"{name}.safetensors")})
    return [ev for ev in train(config, data=_data(config)) if isinstance(ev, EpochEnd)]


_DATA = {}


def _data(config=None):
    """The run's data, loaded once per module (shapes is generated: seconds on a busy machine)."""
    config = config or TrainConfig(**SMALL)
    key = data_key(config)
    if key not in _DATA:
        _DATA[key] = load_data(config)
    return _DATA[key]


@pytest.fixture(scope="module")
def batchnorm_runs(tmp_path_factory):
    """The BatchNorm lesson's pair at a small size: the same CNN with and without BatchNorm."""
    folder = tmp_path_factory.mktemp("internals")
    return {bn: _run(folder, f"bn-{bn}", model_options={"batch_norm": bn}) for bn in (True, False)}


def test_every_epoch_records_every_layer(batchnorm_runs):
    epochs = batchnorm_runs[True]
    model = create_model("cnn", num_classes=len(_data().classes), in_channels=3, image_size=32,
                         batch_norm=True)
    layers = recorded_layers(model)
    assert [type(m).__name__ for _, m in layers] == ["Conv2d", "BatchNorm2d"] * 3 + ["Linear"] * 2
    val_images = len(_data().val_images)
    for ev in epochs:
        record = json.loads(json.dumps(ev.internals))       # plain JSON data, as events travel
        assert record == ev.internals
        assert record["percentiles"] == list(PERCENTILES)
        assert record["activation_images"] == min(ACTIVATION_IMAGES, val_images)
        assert record["grad_steps"] >= 1
        assert [layer["name"] for layer in record["layers"]] == [name for name, _ in layers]
        for layer, (_, module) in zip(record["layers"], layers):
            for quantity in ("weight", "activation"):
                summary = layer[quantity]
                assert summary["percentiles"] == sorted(summary["percentiles"])
                assert len(summary["hist"]["counts"]) == BINS
                assert summary["hist"]["lo"] <= summary["percentiles"][0] <= summary["hist"]["hi"]
            assert sum(layer["weight"]["hist"]["counts"]) == min(SAMPLE, module.weight.numel())
            assert layer["grad_norm"] > 0
    # The weights move between epochs, and the record sees it.
    first, last = epochs[0].internals["layers"][0], epochs[-1].internals["layers"][0]
    assert first["weight"]["percentiles"] != last["weight"]["percentiles"]


def test_batchnorm_shows_inside_the_network(batchnorm_runs):
    """Without BatchNorm the signal fades layer after layer and the first layer's gradient is
    tiny; with it, what each layer hands on keeps its spread. The record must show both."""
    with_bn = batchnorm_runs[True][-1].internals
    without = batchnorm_runs[False][-1].internals
    spread_with = [std for _, std in handed_on_spread(with_bn)]
    spread_without = [std for _, std in handed_on_spread(without)]
    assert len(spread_with) == len(spread_without) == 5      # 3 conv + 2 linear layers
    # Without BatchNorm each layer hands on less than the one before it.
    assert all(b < a for a, b in zip(spread_without, spread_without[1:])), spread_without
    # The last hidden layer hands on a clearly larger spread with BatchNorm.
    assert spread_with[3] > 1.5 * spread_without[3], (spread_with, spread_without)
    grad_with, grad_without = with_bn["layers"][0]["grad_norm"], without["layers"][0]["grad_norm"]
    assert grad_with > 5 * grad_without, (grad_with, grad_without)


def test_recording_changes_nothing_about_training(tmp_path, batchnorm_runs):
    off = _run(tmp_path, "off", model_options={"batch_norm": True}, record_internals=False)
    assert all(ev.internals is None for ev in off)
    on = batchnorm_runs[True]
    keys = ("train_loss", "train_acc", "val_loss", "val_acc")
    assert [[getattr(ev, k) for k in keys] for ev in off] == [[getattr(ev, k) for k in keys] for ev in on]


def test_a_run_without_validation_images_records_activations_on_training_images(tmp_path):
    epochs = _run(tmp_path, "noval", model="mlp", val_fraction=0.0, epochs=1, optimizer="adam", lr=1e-3,
                  data_seed=1)
    record = epochs[0].internals
    assert record["activation_images"] == ACTIVATION_IMAGES        # 300 training images, 256 used
    assert all(layer["activation"] is not None for layer in record["layers"])


def test_gradient_norms_follow_the_loss_scale():
    """The recorder reads the gradients as backward left them; a loss scaler's factor is undone."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    x = torch.randn(8, 4)
    norms = []
    for factor, scale in ((1.0, 1.0), (8.0, 1.0), (8.0, lambda: 8.0)):   # a scaler's get_scale too
        recorder = InternalsRecorder(model)
        model.zero_grad()
        (factor * model(x).square().mean()).backward()
        recorder.after_backward(scale=scale)
        norms.append([layer["grad_norm"] for layer in recorder.epoch_record()["layers"]])
    assert norms[1] == pytest.approx([8 * n for n in norms[0]], rel=1e-3)   # four digits kept
    assert norms[2] == pytest.approx(norms[0], rel=1e-3)


def test_a_constant_tensor_is_summarised_without_error():
    summary = summarise(torch.full((3, 3), 0.5))
    assert summary["percentiles"] == [0.5] * len(PERCENTILES) and summary["std"] == 0
    assert sum(summary["hist"]["counts"]) == 9


def test_old_replays_without_internals_still_replay_and_draw():
    """Events recorded before internals existed (shipped replays) come back with None, and every
    figure and the lesson's pointer cope with that."""
    from vision_lab.lessons import build_plan
    from vision_lab.internals_plots import gradient_norms, internals_over_epochs, layer_profile
    from vision_lab.serving.run_record import replay_events

    old = {"event": "epoch", "epoch": 1, "train_loss": 1.0, "train_acc": 0.5, "val_loss": 1.0,
           "val_acc": 0.5, "lr": 0.01, "images": 10, "seconds": 1.0}
    (ev,) = replay_events([old])
    assert isinstance(ev, EpochEnd) and ev.internals is None
    assert internals_over_epochs([], "weight").axes and gradient_norms([None]).axes
    plan = build_plan("BatchNorm vs none", size="quick")
    labels = [label for label, _ in plan.runs]
    assert layer_profile({label: [None] for label in labels}).axes
    assert plan.pointer({label: [None] for label in labels}) is None


def test_figures_and_the_batchnorm_pointer_from_real_records(batchnorm_runs):
    from vision_lab.i18n import render
    from vision_lab.lessons import build_plan
    from vision_lab.internals_plots import gradient_norms, internals_over_epochs, layer_profile

    records = [{"epoch": ev.epoch, **ev.internals} for ev in batchnorm_runs[True]]
    weights = internals_over_epochs(records, "weight")
    assert len(weights.axes) == 8                                    # one panel per layer
    assert len(gradient_norms(records).axes[0].lines) == 8
    plan = build_plan("BatchNorm vs none", size="quick")
    (with_bn, _), (without, _) = plan.runs
    last = {with_bn: [batchnorm_runs[True][-1].internals], without: [batchnorm_runs[False][-1].internals]}
    profile = layer_profile(last)
    assert [len(ax.lines) for ax in profile.axes] == [2, 2]
    pointer = plan.pointer(last)
    assert "without BatchNorm" in pointer and "→" in pointer
    assert "批归一化" in render(pointer, "zh")
    with pytest.raises(ValueError):
        internals_over_epochs(records, "bias")


def test_the_train_tab_draws_the_insides_from_the_summary(batchnorm_runs):
    pytest.importorskip("gradio")
    from vision_lab.ui.train import internals_of, show_internals

    history = [{"epoch": ev.epoch, "internals": ev.internals} for ev in batchnorm_runs[False]]
    summary = {"reason": "completed", "internals": internals_of(history)}
    note, weights, activations, grads = show_internals(summary)
    assert "gradient norm" in note and all(f is not None for f in (weights, activations, grads))
    note, *figures = show_internals({"reason": "completed", "internals": []})
    assert "recorded nothing" in note and figures == [None, None, None]
