"""The Compare tab's library: every lesson builds valid runs, and a comparison reports each run."""
import threading

import pytest

from vision_lab.datasets import load_dataset
from vision_lab.experiments import (EXPERIMENTS, SIZES, SUMMARY_COLUMNS, build_runs, check_requirements,
                                    custom_runs, run_comparison, summary_row)
from vision_lab.training import BatchEnd, EpochEnd, RunEnd, TrainConfig


@pytest.mark.parametrize("name", list(EXPERIMENTS))
@pytest.mark.parametrize("size", list(SIZES))
def test_every_experiment_builds_valid_configs(name, size):
    runs = build_runs(name, "shapes", size)
    assert len(runs) >= 2
    labels = [label for label, _ in runs]
    assert len(set(labels)) == len(labels)
    for _, config in runs:
        assert isinstance(config, TrainConfig)
        config.validate()
        # All runs of a lesson train on the same data, loaded once.
        assert (config.dataset, config.subset_train, config.subset_test) == (
            runs[0][1].dataset, runs[0][1].subset_train, runs[0][1].subset_test)
    if size == "quick":
        assert all(c.epochs <= SIZES["quick"]["epochs"] for _, c in runs)


def test_lessons_compare_what_they_say():
    perm = dict(build_runs("Pixel permutation"))
    assert len(perm) == 4
    assert perm["MLP 8-8"].model_options["hidden_sizes"] == [8, 8]
    assert [c.permute_pixels for c in perm.values()] == [False, True, False, True]
    bn = [c.model_options["batch_norm"] for _, c in build_runs("BatchNorm vs none")]
    assert bn == [True, False]
    assert [c.augment for _, c in build_runs("Augmentation vs none (the overfitting gap)", "mnist")] == [
        "none", "digits"]
    assert [c.scheduler for _, c in build_runs("LR schedulers")] == ["none", "step", "cosine"]
    resnet = [c for _, c in build_runs("Pretrained vs from-scratch ResNet18")]
    assert resnet[0].pretrained and resnet[0].freeze_epochs == 1 and not resnet[1].pretrained


def test_unknown_experiment_and_size_are_plain_errors():
    with pytest.raises(ValueError, match="Unknown experiment"):
        build_runs("nope")
    with pytest.raises(ValueError, match="Unknown size"):
        build_runs("MLP vs CNN", size="huge")


def test_custom_runs_from_table_rows():
    rows = [{"label": "bn", "model": "cnn", "batch_norm": "true", "lr": 0.01, "scheduler": "cosine"},
            {"label": "", "model": "mlp", "augment": "light", "epochs": 2},
            {"model": ""}]
    runs = custom_runs(rows, "shapes", "default")
    assert [label for label, _ in runs] == ["bn", "2: mlp"]
    assert runs[0][1].lr == 0.01 and runs[0][1].scheduler == "cosine"
    assert runs[1][1].augment == "light" and runs[1][1].epochs == 2
    with pytest.raises(ValueError, match="unknown model"):
        custom_runs([{"model": "transformer"}])
    with pytest.raises(ValueError, match="learning rate"):
        custom_runs([{"model": "cnn", "lr": 0}])
    with pytest.raises(ValueError, match="at most 4"):
        custom_runs([{"model": "cnn", "label": str(i)} for i in range(5)])


def test_check_requirements_passes_without_pretrained_runs():
    check_requirements(build_runs("MLP vs CNN"))


@pytest.fixture(scope="module")
def tiny_shapes():
    return load_dataset("shapes", n_train=96, n_test=48, seed=0)


def _tiny(runs):
    return [(label, TrainConfig(**{**config.to_dict(), "epochs": 1, "batch_size": 32}))
            for label, config in runs]


def test_run_comparison_tags_events_and_summarises_each_run(tiny_shapes, tmp_path):
    runs = _tiny(build_runs("MLP vs CNN", "shapes", "quick"))
    seen, ends = {}, {}
    for label, ev in run_comparison(runs, tiny_shapes):
        seen.setdefault(label, set()).add(type(ev))
        if isinstance(ev, RunEnd):
            ends[label] = ev
    assert set(seen) == {"MLP", "CNN"}
    for label in seen:
        assert {BatchEnd, EpochEnd, RunEnd} <= seen[label]
        assert ends[label].reason == "completed" and ends[label].checkpoint
        assert "compare" in ends[label].checkpoint   # kept apart from the Train tab's runs
    rows = [summary_row(label, config, ends[label], tiny_shapes) for label, config in runs]
    assert [r["run"] for r in rows] == ["MLP", "CNN"]
    for row in rows:
        assert set(row) == set(SUMMARY_COLUMNS)
        assert row["parameters"] > 1000 and row["epochs"] == 1 and row["seconds per epoch"] > 0
        assert 0 <= row["best test acc (%)"] <= 100
    # The MLP has more parameters than the CNN at 32x32: a point the lesson makes.
    assert rows[0]["parameters"] > rows[1]["parameters"]


def test_stop_ends_the_comparison(tiny_shapes):
    runs = _tiny(build_runs("Pixel permutation", "shapes", "quick"))
    stop = threading.Event()
    labels = []
    for label, ev in run_comparison(runs, tiny_shapes, stop):
        labels.append(label)
        if isinstance(ev, BatchEnd):
            stop.set()
    assert set(labels) == {"MLP 8-8"}
