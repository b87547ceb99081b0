"""Runs in a child process (vision_lab.serving.worker): the same training as in-process, Stop reaches the
child, and a child that dies or fails is reported as a sentence with its resources freed."""
import os
import threading

import pytest
import torch

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


def test_a_finished_run_leaves_its_process_warm_and_the_next_run_trains_exactly_alike(tmp_path, tiny):
    """The next run goes to the process the last one finished in (a fresh process's first epoch
    pays PyTorch's warm-up), and trains to the same numbers, bit for bit, as in a fresh one."""
    from safetensors.torch import load_file

    from vision_lab.serving.worker import end_warm_children

    def run(name, seed):
        config = TrainConfig(model="cnn", epochs=2, batch_size=32, augment="standard", seed=seed,
                             out=str(tmp_path / f"{name}.safetensors"))
        process = train_in_process(config, tiny)
        items = collect(process)
        return process.pid, [vars(e) | {"seconds": 0} for e in items if isinstance(e, EpochEnd)], items[-2]

    end_warm_children()
    fresh_pid, fresh, fresh_end = run("fresh", seed=5)
    other_pid, _, _ = run("other", seed=6)
    warm_pid, warm, warm_end = run("warm", seed=5)
    assert fresh_pid == other_pid == warm_pid
    assert warm == fresh and warm_end.metrics == fresh_end.metrics
    a, b = load_file(tmp_path / "fresh.safetensors"), load_file(tmp_path / "warm.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert end_warm_children() == 1


def test_a_failed_or_killed_run_leaves_no_process_behind_for_the_next():
    first = ProcessRun(targets.count, n=3)
    collect(first)
    failed = ProcessRun(targets.raise_value_error)
    collect(failed)
    assert failed.pid == first.pid             # it ran in the warm process, which then ended
    after_failure = ProcessRun(targets.count, n=3)
    collect(after_failure)
    assert after_failure.pid != failed.pid
    killed = ProcessRun(targets.yield_then_die)
    assert isinstance(collect(killed)[-2], RunDied)
    after_kill = ProcessRun(targets.count, n=3)
    assert collect(after_kill) == [0, 1, 2, None] and after_kill.pid != killed.pid


def test_a_stopped_run_does_not_stop_the_next_one_in_its_process():
    stop = threading.Event()
    stopped = ProcessRun(targets.wait_for_stop, stop=stop)
    assert stopped.events.get(timeout=60) == "started"
    stop.set()
    assert collect(stopped)[-2:] == ["stopped", None]
    after = ProcessRun(targets.stop_already_set)
    assert collect(after) == [False, None] and after.pid == stopped.pid


def test_a_server_that_trains_two_at_once_gives_each_run_its_share_of_the_threads():
    """set_threads (app.py's --train-threads) reaches the run's process; new processes only, so
    no warm one from before is reused with another count."""
    from vision_lab.serving import worker

    worker.end_warm_children()
    try:
        worker.set_threads(1)
        assert collect(ProcessRun(targets.torch_threads))[0] == 1
        worker.end_warm_children()
        worker.set_threads(None)
        assert collect(ProcessRun(targets.torch_threads))[0] == torch.get_num_threads()
    finally:
        worker.set_threads(None)
        worker.end_warm_children()
    with pytest.raises(ValueError, match="at least 1"):
        worker.set_threads(0)
