"""Runs in a child process (vision_lab.serving.worker): the same training as in-process, Stop reaches the
child, and a child that dies or fails is reported as a sentence with its resources freed."""
import os
import threading

import pytest

from vision_lab.datasets import load_dataset
from vision_lab.train_config import BatchEnd, EpochEnd, RunEnd, TrainConfig
from vision_lab.training import train
from vision_lab.serving.worker import ProcessRun, RunDied, train_in_process

import _worker_targets as targets


@pytest.fixture(scope="module")
def tiny():
    return load_dataset("shapes", n_train=256, n_test=64, seed=0, val_fraction=0.1)


def collect(run: ProcessRun, timeout: float = 120.0) -> list:
    """Every item the run delivers, up to and including the closing None."""
    items = []
    while True:
        item = run.events.get(timeout=timeout)
        items.append(item)
        if item is None:
            return items


def test_a_child_trains_exactly_like_the_main_process(tmp_path, tiny):
    config = dict(model="cnn", epochs=2, batch_size=32, augment="standard", seed=3)
    here_events = list(train(TrainConfig(**config, out=str(tmp_path / "here.safetensors")), data=tiny))
    here = [e for e in here_events if isinstance(e, EpochEnd)]
    run = train_in_process(TrainConfig(**config, out=str(tmp_path / "child.safetensors")), tiny)
    items = collect(run)
    child = [e for e in items if isinstance(e, EpochEnd)]
    assert items[-1] is None and isinstance(items[-2], RunEnd) and items[-2].reason == "completed"
    assert [e.train_loss for e in child] == pytest.approx([e.train_loss for e in here], rel=1e-5)
    assert [e.val_acc for e in child] == [e.val_acc for e in here]
    assert items[-2].metrics["test_acc"] == here_events[-1].metrics["test_acc"]
    assert items[-2].checkpoint == str(tmp_path / "child.safetensors")


def test_stop_reaches_the_child_within_a_batch_and_frees_the_run(tmp_path, tiny):
    stop, exited = threading.Event(), threading.Event()
    run = train_in_process(TrainConfig(model="mlp", epochs=50, batch_size=16,
                                       out=str(tmp_path / "s.safetensors")), tiny, stop=stop)
    run.on_exit(exited.set)
    batches = 0
    while True:
        item = run.events.get(timeout=120)
        if isinstance(item, BatchEnd):
            batches += 1
            if batches == 3:
                stop.set()
        if isinstance(item, RunEnd):
            end = item
        if item is None:
            break
    assert end.reason == "stopped"
    assert batches < 3 + 16 * 2, "the child went on for more than an epoch after Stop"
    assert exited.is_set() and run.done() and run.join(5)


def test_a_child_killed_by_the_system_is_reported_and_its_resources_freed():
    exited = threading.Event()
    run = ProcessRun(targets.yield_then_die)
    run.on_exit(exited.set)
    items = collect(run)
    assert items[:2] == ["first", "second"] and items[-1] is None
    assert isinstance(items[-2], RunDied)
    assert "killed (SIGKILL)" in str(items[-2]) and "ran out of memory" in str(items[-2])
    assert exited.is_set()
    late = threading.Event()
    run.on_exit(late.set)  # a callback added after the end runs at once
    assert late.is_set()


def test_errors_come_back_as_themselves_or_as_their_sentence():
    items = collect(ProcessRun(targets.raise_value_error))
    assert items[0] == "before" and isinstance(items[1], ValueError) and items[2] is None
    assert str(items[1]) == "the sentence a user should see"
    items = collect(ProcessRun(targets.raise_unpicklable))
    assert type(items[1]) is RuntimeError
    assert str(items[1]) == "a lambda inside makes this unpicklable"


def test_data_reaches_the_child_intact(tiny):
    items = collect(ProcessRun(targets.tensor_sums, data=tiny))
    assert items[0] == {"train": int(tiny.train_images.sum()), "test": int(tiny.test_images.sum()),
                        "classes": tiny.classes, "dtype": "torch.uint8"}


def test_many_events_arrive_in_order():
    items = collect(ProcessRun(targets.count, n=5000))
    assert items[:-1] == list(range(5000))


def test_runs_yield_the_cores_to_the_server():
    """A run is niced below the server, its threads too, so requests are answered first."""
    from vision_lab.serving.worker import NICENESS

    items = collect(ProcessRun(targets.niceness_of_threads))
    expected = min(os.nice(0) + NICENESS, 19)
    assert items[0] == {"main": expected, "thread": expected}
