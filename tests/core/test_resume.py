"""Continuing a run from its checkpoint (resume.py): the same curve as a run that never stopped,
and a clear sentence for a checkpoint that cannot be continued."""
import dataclasses
import json
import threading
import zipfile

import pytest
import torch
from safetensors import safe_open

from vision_lab.bundles import write_bundle
from vision_lab.checkpoints import TRAINING_STATE, load_checkpoint, model_only_bytes, read_metadata
from vision_lab.datasets import load_dataset
from vision_lab.serving.run_cache import rewrite_checkpoint
from vision_lab.serving.run_key import config_identity
from vision_lab.train_config import EpochEnd, RunEnd, Status, TrainConfig
from vision_lab.training import run_to_end, train

from test_cli import cli, json_lines


@pytest.fixture(scope="module")
def tiny():
    return load_dataset("shapes", n_train=3000, n_test=600, seed=0, subset_train=256, subset_test=128,
                        val_fraction=0.125)


def base(tmp_path, name, **kw):
    """A small run whose every random source matters: Dropout, augmentation, batch order."""
    settings = dict(dataset="shapes", model="mlp", model_options={"hidden_sizes": [32], "dropout": 0.3},
                    augment="light", batch_size=32, seed=5, record_internals=False,
                    out=str(tmp_path / f"{name}.safetensors"))
    return TrainConfig(**{**settings, **kw})


def stopped_after(config, epoch, data) -> RunEnd:
    """Train `config`, pressing Stop once epoch `epoch` has ended (its checkpoint is that epoch's)."""
    stop = threading.Event()
    for ev in train(config, stop=stop, data=data):
        if isinstance(ev, EpochEnd) and ev.epoch == epoch:
            stop.set()
        end = ev
    assert end.reason == "stopped"
    return end


def curve(end: RunEnd) -> list[tuple]:
    return [(h["epoch"], h["train_loss"], h["val_loss"], h["lr"]) for h in end.history]


@pytest.mark.parametrize("scheduler, optimizer, options", [
    ("none", "adam", {}),
    ("cosine", "adam", {}),                                   # T_max = the run's 4 epochs
    ("step", "sgd", {"step_size": 1, "gamma": 0.5}),
    ("onecycle", "adamw", {}),                                # per step
])
def test_stopped_and_continued_gives_the_uninterrupted_curve(tmp_path, tiny, scheduler, optimizer,
                                                              options):
    kw = dict(scheduler=scheduler, optimizer=optimizer, scheduler_options=options, epochs=4)
    whole = run_to_end(base(tmp_path, "whole", **kw), data=tiny)
    part = stopped_after(base(tmp_path, "part", **kw), 2, tiny)
    events = list(train(base(tmp_path, "continued", resume=part.checkpoint, **kw), data=tiny))
    continued = events[-1]
    assert continued.reason == "completed"
    assert [e.epoch for e in events if isinstance(e, EpochEnd)] == [3, 4]   # only the new epochs
    assert any("Continuing part.safetensors after epoch 2" in str(e.message)
               for e in events if isinstance(e, Status))
    # Bit for bit on a CPU: the same losses, learning rates, kept epoch and test figures.
    assert curve(continued) == curve(whole)
    assert continued.metrics["test_loss"] == whole.metrics["test_loss"]
    assert continued.best_epoch == whole.best_epoch
    a, b = load_checkpoint(whole.checkpoint).model, load_checkpoint(continued.checkpoint).model
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize("stopped_at", [1, 2])   # at the end of the frozen epoch, and after it
def test_freeze_then_unfreeze_continues_in_either_phase(tmp_path, tiny, stopped_at):
    from pathlib import Path

    if not (Path(__file__).resolve().parents[2] / "checkpoints/backbones/cnn_textures.safetensors").is_file():
        pytest.skip("the shipped backbone (scripts/make_backbone.py) is not made yet")
    kw = dict(model="cnn", model_options={}, pretrained=True, freeze_epochs=1, scheduler="onecycle",
              epochs=3)
    whole = run_to_end(base(tmp_path, "whole", **kw), data=tiny)
    part = stopped_after(base(tmp_path, "part", **kw), stopped_at, tiny)
    continued = run_to_end(base(tmp_path, "more", resume=part.checkpoint, **kw), data=tiny)
    assert curve(continued) == curve(whole)


def test_a_finished_run_keeping_its_best_epoch_continues_from_its_last(tmp_path, tiny):
    """A finished run's file holds the best epoch's weights; it continues from its last epoch's
    (stored beside them), and its best epoch stays a candidate for the one kept."""
    kw = dict(optimizer="sgd", lr=0.5, momentum=0.9)  # noisy enough that the best is not the last
    whole = run_to_end(base(tmp_path, "whole", epochs=5, **kw), data=tiny)
    first = run_to_end(base(tmp_path, "first", epochs=3, **kw), data=tiny)
    assert read_metadata(first.checkpoint)["training_state"]["last_weights"] == "stored"
    continued = run_to_end(base(tmp_path, "more", epochs=5, resume=first.checkpoint, **kw), data=tiny)
    assert curve(continued) == curve(whole)
    assert continued.best_epoch == whole.best_epoch
    assert continued.metrics["test_acc"] == whole.metrics["test_acc"]


def test_the_cli_resumes_to_the_same_validation_loss(tmp_path):
    flags = ["train", "--dataset", "shapes", "--model", "cnn", "--subset-train", "300",
             "--subset-test", "100", "--batch-size", "32", "--seed", "2", "--no-internals",
             "--no-restore-best", "--json"]
    whole = json_lines(cli(*flags, "--epochs", "3", "--out", tmp_path / "whole.safetensors").stdout)
    cli(*flags, "--epochs", "1", "--out", tmp_path / "a.safetensors")
    resumed = json_lines(cli(*flags, "--epochs", "3", "--resume", tmp_path / "a.safetensors",
                             "--out", tmp_path / "b.safetensors").stdout)
    val = [e["val_loss"] for e in whole if e["event"] == "epoch"]
    assert [e["epoch"] for e in resumed if e["event"] == "epoch"] == [2, 3]
    assert [e["val_loss"] for e in resumed if e["event"] == "epoch"] == pytest.approx(val[1:], rel=1e-6)
    assert resumed[-1]["metrics"]["test_loss"] == pytest.approx(whole[-1]["metrics"]["test_loss"], rel=1e-6)
    # The first run's file is left as it was: the continuation writes its own.
    assert read_metadata(tmp_path / "a.safetensors")["training_state"]["epoch"] == 1
    # As the course writes it: the options come from the checkpoint, only --epochs is typed again.
    short = json_lines(cli("train", "--epochs", "3", "--resume", tmp_path / "a.safetensors", "--json",
                           "--out", tmp_path / "c.safetensors").stdout)
    assert [e["val_loss"] for e in short if e["event"] == "epoch"] == pytest.approx(val[1:], rel=1e-6)
    typed = cli(*flags[:-2], "--epochs", "3", "--lr", "0.01", "--resume", tmp_path / "a.safetensors",
                check=False)
    assert typed.returncode != 0 and "with lr = 0.001, but this run asks for 0.01" in typed.stderr
    wrong = cli(*flags, "--epochs", "1", "--resume", tmp_path / "a.safetensors", check=False)
    assert wrong.returncode != 0 and "Traceback" not in wrong.stderr
    assert "a.safetensors has already trained 1 epoch(s)" in wrong.stderr


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory, tiny):
    folder = tmp_path_factory.mktemp("resume")
    end = run_to_end(base(folder, "two", epochs=2, optimizer="adam"), data=tiny)
    return folder / "two.safetensors", end


def refused(config, tiny) -> str:
    with pytest.raises(ValueError) as error:
        list(train(config, data=tiny))
    return str(error.value)


@pytest.mark.parametrize("change, said", [
    ({"model": "cnn", "model_options": {}}, "two.safetensors was trained with model = \"mlp\", but this run asks for \"cnn\""),
    ({"dataset": "mnist"}, "was trained with dataset = \"shapes\""),
    ({"lr": 0.01}, "was trained with lr = 0.001, but this run asks for 0.01"),
    ({"epochs": 2}, "has already trained 2 epoch(s): to continue it, ask for more than 2 epochs"),
    ({"budget_seconds": 5.0}, "A run with a time budget cannot be continued"),
])
def test_a_checkpoint_that_does_not_fit_is_refused_with_the_reason(tmp_path, tiny, two_epochs, change, said):
    path, _ = two_epochs
    config = dataclasses.replace(base(tmp_path, "x", epochs=4, optimizer="adam"), resume=str(path))
    with pytest.raises(ValueError, match=None) as error:
        dataclasses.replace(config, **change).validate()
    assert said in str(error.value)


def test_a_length_shaped_schedule_keeps_its_epochs(tmp_path, tiny):
    part = stopped_after(base(tmp_path, "cos", epochs=4, scheduler="cosine"), 1, tiny)
    said = refused(base(tmp_path, "more", epochs=6, scheduler="cosine", resume=part.checkpoint), tiny)
    assert "cosine schedule planned for 4 epochs" in said and "exactly 4 epochs" in said


def test_other_classes_or_an_old_checkpoint_are_refused(tmp_path, tiny, two_epochs):
    path, _ = two_epochs
    fewer = load_dataset("shapes", n_train=3000, n_test=600, seed=0, subset_train=256, subset_test=128,
                         val_fraction=0.125)
    fewer.classes = [c.upper() for c in fewer.classes]
    said = refused(base(tmp_path, "x", epochs=4, optimizer="adam", resume=str(path)), fewer)
    assert "was trained on other classes" in said
    old = tmp_path / "old.safetensors"            # as written before training state existed
    old.write_bytes(model_only_bytes(path))
    said = refused(base(tmp_path, "x", epochs=4, optimizer="adam", resume=str(old)), tiny)
    assert "holds a model but not the training state needed to continue it" in said
    assert load_checkpoint(old).classes == tiny.classes      # it still loads everywhere else
    pickle = tmp_path / "model.pt"
    pickle.write_bytes(b"\x80\x04\x95" + b"\0" * 64)
    said = refused(base(tmp_path, "x", epochs=4, optimizer="adam", resume=str(pickle)), tiny)
    assert "looks like a PyTorch pickle" in said


def test_damaged_training_state_is_one_sentence(tmp_path, tiny, two_epochs):
    from safetensors.torch import save_file

    path, _ = two_epochs
    with safe_open(str(path), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    tensors = {k: v for k, v in tensors.items() if ".rng." not in f".{k}"}
    save_file(tensors, str(tmp_path / "bad.safetensors"), metadata=meta)
    said = refused(base(tmp_path, "x", epochs=4, optimizer="adam", resume=str(tmp_path / "bad.safetensors")), tiny)
    assert said.startswith("bad.safetensors: its training state does not fit this run")


def test_the_state_rides_in_the_run_file_only(tmp_path, two_epochs):
    path, _ = two_epochs
    with safe_open(str(path), framework="pt") as f:
        keys = list(f.keys())
        state = json.loads(f.metadata()["vision_lab"])["training_state"]
        rng = {k: f.get_tensor(k) for k in keys if k.startswith(TRAINING_STATE + "rng.")}
    assert set(rng) == {TRAINING_STATE + "rng.torch", TRAINING_STATE + "rng.order",
                        TRAINING_STATE + "rng.augment"}
    assert all(v.dtype == torch.uint8 for v in rng.values())
    assert state["epoch"] == 2 and state["optimizer"]["param_groups"][0]["lr"] == 0.001
    model = load_checkpoint(path).model                    # the weights alone, as always
    assert set(model.state_dict()) == {k for k in keys if not k.startswith(TRAINING_STATE)}
    # A bundle carries the model only, and no path of this machine (the run it continued).
    continued = tmp_path / "continued.safetensors"
    continued.write_bytes(rewrite_checkpoint(path, {"resume": "/here/first.safetensors"}, {}))
    bundle = write_bundle(continued, tmp_path / "run.zip")
    with zipfile.ZipFile(bundle) as z:
        inner = z.read("model.safetensors")
        assert json.loads(z.read("config.json"))["resume"] is None
    assert len(inner) < path.stat().st_size / 2
    assert b"training_state" not in inner


def test_a_continued_run_is_cached_by_the_checkpoint_it_continues(tmp_path, two_epochs):
    path, _ = two_epochs
    plain = base(tmp_path, "x", epochs=4, optimizer="adam")
    assert "resume" not in config_identity(plain) and "resume_sha256" not in config_identity(plain)
    continued = config_identity(dataclasses.replace(plain, resume=str(path)))
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes(path.read_bytes())
    assert config_identity(dataclasses.replace(plain, resume=str(copy))) == continued
    assert continued != config_identity(plain)
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as f:   # another checkpoint at the same path
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    first = sorted(k for k in tensors if not k.startswith(TRAINING_STATE))[0]
    tensors[first] = tensors[first] + 1
    save_file(tensors, str(copy), metadata=meta)
    assert config_identity(dataclasses.replace(plain, resume=str(copy))) != continued
