import threading

import pytest
import torch

from vision_lab import batches, evaluation, run_setup, training
from vision_lab.checkpoints import load_checkpoint
from vision_lab.datasets import load_dataset
from vision_lab.train_config import BatchEnd, EpochEnd, RunEnd, Status, TrainConfig
from vision_lab.training import run_to_end, train


@pytest.fixture(scope="module")
def shapes():
    return load_dataset("shapes", n_train=3000, n_test=600, seed=0, val_fraction=0.1)


@pytest.fixture(scope="module")
def tiny(shapes):
    """A few hundred images: enough for loop mechanics, fast enough to run many times."""
    return load_dataset("shapes", n_train=3000, n_test=600, seed=0, subset_train=256, subset_test=128,
                        val_fraction=0.125)


def config(tmp_path, **kw):
    kw.setdefault("out", str(tmp_path / "run.safetensors"))
    return TrainConfig(**kw)


def test_config_round_trips_through_json():
    c = TrainConfig(model="mlp", model_options={"hidden_sizes": [8, 8]}, scheduler="multistep",
                    scheduler_options={"milestones": [2]}, augment="standard", epochs=4)
    assert TrainConfig.from_json(c.to_json()) == c
    with pytest.raises(ValueError, match="Unknown training option"):
        TrainConfig.from_dict({"epochz": 3})


@pytest.mark.parametrize("kw, message", [
    ({"epochs": 0}, "epochs must be"),
    ({"lr": -1.0}, "learning rate must be a positive"),
    ({"optimizer": "lbfgs"}, "Unknown optimizer 'lbfgs'"),
    ({"scheduler": "multistep", "scheduler_options": {"milestones": [9]}, "epochs": 3},
     "milestone 9 is not before the last epoch"),
    ({"freeze_epochs": 1, "epochs": 3}, "only make sense with pretrained"),
])
def test_invalid_config_gives_a_plain_sentence(kw, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kw).validate()


def test_cnn_beats_mlp_on_shapes(tmp_path, shapes):
    common = dict(epochs=3, batch_size=64, lr=1e-3, seed=0)
    cnn = run_to_end(config(tmp_path, model="cnn", out=str(tmp_path / "c.safetensors"), **common), data=shapes)
    mlp = run_to_end(config(tmp_path, model="mlp", out=str(tmp_path / "m.safetensors"), **common), data=shapes)
    cnn_acc, mlp_acc = cnn.metrics["test_acc"], mlp.metrics["test_acc"]
    print(f"shapes after 3 epochs on 3000 images: cnn {cnn_acc:.3f}, mlp {mlp_acc:.3f}")
    assert cnn.reason == "completed" and len(cnn.history) == 3
    assert cnn_acc > 0.7, "chance is 0.1"
    assert cnn_acc > mlp_acc + 0.3


def test_events_carry_the_documented_fields(tmp_path, tiny):
    assert len(tiny.train_images) == 226 and len(tiny.val_images) == 30  # 4 batches of 64 or fewer
    events = list(train(config(tmp_path, model="mlp", epochs=2, batch_size=64), data=tiny))
    batches = [e for e in events if isinstance(e, BatchEnd)]
    epochs = [e for e in events if isinstance(e, EpochEnd)]
    assert [b.step for b in batches] == list(range(1, 9))
    assert {b.epoch for b in batches} == {1, 2} and all(b.total_steps == 8 for b in batches)
    assert all(b.images_per_sec > 0 and b.lr == 1e-3 for b in batches)
    assert [e.epoch for e in epochs] == [1, 2]
    assert all(0 <= e.train_acc <= 1 and 0 <= e.val_acc <= 1 and e.val_loss > 0 for e in epochs)
    assert not any("test" in key for e in epochs for key in vars(e))  # the test set waits
    assert any(isinstance(e, Status) for e in events)
    end = events[-1]
    assert isinstance(end, RunEnd) and end.reason == "completed"
    m = end.metrics
    assert len(m["confusion"]) == 10 and sum(map(sum, m["confusion"])) == 128
    assert len(m["per_class_acc"]) == 10
    assert all(w["true"] != w["predicted"] for w in m["most_confused"])
    probs = [w["prob"] for w in m["most_confused"]]
    assert probs == sorted(probs, reverse=True)


def test_same_seed_same_history(tmp_path, tiny):
    def history(seed):
        end = run_to_end(config(tmp_path, model="cnn", epochs=2, augment="standard", seed=seed,
                                out=str(tmp_path / f"s{seed}.safetensors")), data=tiny)
        return [{k: v for k, v in h.items() if k != "seconds"} for h in end.history]

    assert history(3) == history(3)
    assert history(3) != history(4)


def test_early_stopping_fires_and_restores_best(tmp_path, tiny):
    # min_delta larger than any loss: epoch 1 is the best there will ever be.
    end = run_to_end(config(tmp_path, model="mlp", epochs=6, early_stopping_patience=2,
                            early_stopping_min_delta=100.0), data=tiny)
    assert end.reason == "early_stopped"
    assert len(end.history) == 3 and end.best_epoch == 1
    ckpt = load_checkpoint(end.checkpoint)
    restored = evaluation.evaluate(ckpt.model, tiny.val_images, tiny.val_labels, ckpt.preprocessing, 10)
    assert restored.loss == pytest.approx(end.history[0]["val_loss"], rel=1e-5)
    tested = evaluation.evaluate(ckpt.model, tiny.test_images, tiny.test_labels, ckpt.preprocessing, 10)
    assert end.metrics["test_acc"] == pytest.approx(tested.acc)
    assert ckpt.metadata["metrics"]["kept_epoch"] == 1


def test_the_best_epoch_is_chosen_on_validation_and_the_test_set_is_seen_once(tmp_path, tiny,
                                                                               monkeypatch):
    # Validation and test disagree on purpose: validation is best at epoch 2, test at epoch 1.
    losses = {"val": iter([1.0, 0.5, 0.8]), "test": iter([0.1, 0.9, 0.9])}
    calls = []
    real_evaluate = training.evaluate

    def evaluate(model, images, labels, *args, **kwargs):
        split = "val" if images is tiny.val_images else "test" if images is tiny.test_images else "?"
        calls.append(split)
        result = real_evaluate(model, images, labels, *args, **kwargs)
        result.loss = next(losses[split])
        return result

    monkeypatch.setattr(training, "evaluate", evaluate)
    end = run_to_end(config(tmp_path, model="mlp", epochs=3, scheduler="plateau"), data=tiny)
    assert calls == ["val", "val", "val", "test"]
    assert end.best_epoch == 2
    assert [h["val_loss"] for h in end.history] == [1.0, 0.5, 0.8]
    assert end.metrics["test_loss"] == 0.1  # the one test evaluation, of the kept epoch 2


def test_early_stopping_and_plateau_need_a_validation_set(tmp_path, tiny):
    with pytest.raises(ValueError, match="needs a validation set: set the validation fraction above 0"):
        TrainConfig(early_stopping_patience=2, val_fraction=0).validate()
    with pytest.raises(ValueError, match="the plateau scheduler watches the validation loss"):
        TrainConfig(scheduler="plateau", val_fraction=0).validate()
    no_val = load_dataset("shapes", subset_train=64, subset_test=32)
    with pytest.raises(ValueError, match="this data has no validation images"):
        run_to_end(config(tmp_path, model="mlp", early_stopping_patience=1), data=no_val)
    # Without them a run keeps its last epoch and says so.
    end = run_to_end(config(tmp_path, model="mlp", epochs=2, val_fraction=0), data=no_val)
    assert end.reason == "completed" and end.history[-1]["val_loss"] is None
    assert "Kept the last epoch (2)" in end.message


def test_a_last_batch_of_one_image_joins_the_batch_before(tmp_path):
    # 65 images in batches of 64 would leave one image alone: BatchNorm cannot train on it.
    data = load_dataset("shapes", subset_train=65, subset_test=20)
    for model, options in (("mlp", {"batch_norm": True}), ("cnn", {"batch_norm": True})):
        events = list(train(config(tmp_path, model=model, model_options=options, epochs=1,
                                   val_fraction=0, out=str(tmp_path / f"{model}.safetensors")),
                            data=data))
        assert events[-1].reason == "completed"
        assert sum(isinstance(e, BatchEnd) for e in events) == 1
    assert batches.batch_bounds(65, 64) == [(0, 65)]
    assert batches.batch_bounds(129, 64) == [(0, 64), (64, 129)]
    assert batches.batch_bounds(66, 64) == [(0, 64), (64, 66)]
    assert batches.batch_bounds(1, 64) == [(0, 1)]


@pytest.mark.parametrize("scheduler, options, expected", [
    ("step", {"step_size": 1, "gamma": 0.5}, [1e-3, 5e-4, 2.5e-4]),
    ("multistep", {"milestones": [1], "gamma": 0.1}, [1e-3, 1e-4, 1e-4]),
    ("exponential", {"gamma": 0.5}, [1e-3, 5e-4, 2.5e-4]),
    ("cosine", {"t_max": 2}, [1e-3, 5e-4, 0.0]),
    ("none", {}, [1e-3, 1e-3, 1e-3]),
])
def test_schedulers_change_lr_per_epoch(tmp_path, tiny, scheduler, options, expected):
    end = run_to_end(config(tmp_path, model="mlp", epochs=3, optimizer="sgd", lr=1e-3,
                            scheduler=scheduler, scheduler_options=options), data=tiny)
    assert [h["lr"] for h in end.history] == pytest.approx(expected, abs=1e-12)


def test_plateau_scheduler_lowers_lr_when_validation_loss_stalls(tmp_path, tiny):
    # lr so small that the validation loss cannot improve by the scheduler's relative threshold (1e-4),
    # yet large enough that halving it exceeds ReduceLROnPlateau's eps (1e-8).
    end = run_to_end(config(tmp_path, model="mlp", epochs=3, lr=1e-6, optimizer="sgd",
                            model_options={"dropout": 0.0}, scheduler="plateau",
                            scheduler_options={"patience": 0, "factor": 0.5}), data=tiny)
    assert [h["lr"] for h in end.history] == pytest.approx([1e-6, 1e-6, 5e-7], rel=1e-6)


def test_stop_ends_within_one_batch_and_keeps_last_epoch(tmp_path, tiny):
    stop = threading.Event()
    events = train(config(tmp_path, model="cnn", epochs=5, batch_size=32), stop=stop, data=tiny)
    after_stop = []
    for ev in events:
        if stop.is_set():
            after_stop.append(ev)
        elif isinstance(ev, BatchEnd) and ev.epoch == 2 and ev.step == 11:
            stop.set()
    assert len(after_stop) == 1, "no further batch may run once stop is set"
    end = after_stop[0]
    assert isinstance(end, RunEnd) and end.reason == "stopped"
    assert "kept epoch 1" in end.message and "test set was not evaluated" in end.message
    assert end.metrics == {}
    ckpt = load_checkpoint(end.checkpoint)
    assert [h["epoch"] for h in ckpt.metadata["history"]] == [1]


def test_stop_before_first_epoch_saves_nothing(tmp_path, tiny):
    stop = threading.Event()
    stop.set()
    end = run_to_end(config(tmp_path, model="mlp"), stop=stop, data=tiny)
    assert end.reason == "stopped" and end.checkpoint is None
    assert "nothing was saved" in end.message
    assert not (tmp_path / "run.safetensors").exists()


def test_divergence_is_reported_with_advice(tmp_path, tiny):
    end = run_to_end(config(tmp_path, model="mlp", optimizer="sgd", lr=1e8, epochs=3), data=tiny)
    assert end.reason == "diverged"
    assert "lower learning rate" in end.message


def test_pixel_permutation_is_part_of_the_checkpoint(tmp_path, tiny):
    end = run_to_end(config(tmp_path, model="mlp", epochs=2, permute_pixels=True,
                            permutation_seed=7), data=tiny)
    ckpt = load_checkpoint(end.checkpoint)
    prep = ckpt.preprocessing
    assert prep.permutation_seed == 7
    # The loaded checkpoint reproduces the run's accuracy only with the same permutation...
    same = evaluation.evaluate(ckpt.model, tiny.test_images, tiny.test_labels, prep, 10)
    assert same.acc == pytest.approx(end.metrics["test_acc"])
    # ...and the permutation really moves pixels: it is a bijection that is not the identity.
    x = torch.arange(32 * 32, dtype=torch.float32).view(1, 1, 32, 32)
    moved = prep.permute(x)
    assert sorted(moved.flatten().tolist()) == x.flatten().tolist()
    assert (moved != x).float().mean() > 0.9


def test_freeze_then_unfreeze_schedule(tmp_path, tiny, monkeypatch):
    """Exactly the non-head parameters frozen, then all trainable with the new lr."""
    from vision_lab import models

    # Pretrained weights cannot be downloaded here: place a file where torchvision's cache looks.
    import torchvision
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    hub = tmp_path / "torch" / "hub"
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    (hub / "checkpoints").mkdir(parents=True)
    torch.save(torchvision.models.resnet18().state_dict(),
               hub / "checkpoints" / weights.url.rsplit("/", 1)[-1])

    built = {}
    real_create = run_setup.create_model

    def spy(*a, **kw):
        built["model"] = real_create(*a, **kw)
        return built["model"]

    monkeypatch.setattr(run_setup, "create_model", spy)
    small = load_dataset("shapes", n_train=3000, n_test=600, seed=0, subset_train=64, subset_test=32)
    cfg = config(tmp_path, model="resnet18", pretrained=True, epochs=2, freeze_epochs=1,
                 lr=1e-3, unfreeze_lr=1e-4, batch_size=32)
    seen = {}
    for ev in train(cfg, data=small):
        model = built.get("model")
        if isinstance(ev, BatchEnd) and ev.epoch not in seen:
            trainable = {n for n, p in model.named_parameters() if p.requires_grad}
            seen[ev.epoch] = (trainable, ev.lr)
        if isinstance(ev, Status) and "unfrozen" in ev.message:
            assert ev.message == "Backbone unfrozen, lr → 0.0001"
    all_names = {n for n, _ in built["model"].named_parameters()}
    head = {n for n in all_names if n.startswith(models.head_module_name(built["model"]) + ".")}
    assert seen[1] == (head, 1e-3)
    assert seen[2] == (all_names, 1e-4)


# ---- the data path: batches augmented a chunk at a time ------------------------------------------

@pytest.mark.parametrize("batch_size, channels, size", [
    (64, 3, 32), (64, 1, 28), (7, 3, 32), (1, 3, 32), (512, 3, 32), (64, 3, 224), (32, 3, 1000),
])
def test_a_chunk_is_whole_batches_within_its_byte_cap(batch_size, channels, size):
    chunk = batches.augment_chunk_size(batch_size, channels, size)
    assert chunk % batch_size == 0 and chunk >= batch_size
    chunk_bytes = chunk * channels * size * size * 4  # float32 pixels
    if chunk > batch_size:
        assert chunk_bytes <= batches.AUGMENT_CHUNK_BYTES
    # ...and it is the largest such chunk: one more batch would not fit.
    assert (chunk + batch_size) * channels * size * size * 4 > batches.AUGMENT_CHUNK_BYTES


def test_cifar_batches_are_chunked_and_large_images_are_not():
    assert batches.augment_chunk_size(64, 3, 32) >= 4 * 64
    # A batch larger than the cap (224 px images) is augmented on its own, as before chunking.
    assert batches.augment_chunk_size(64, 3, 224) == 64


def chunked(images, labels, order, batch_size, chunk_size, spec, seed=0, mean=None, std=None):
    """All batches of one epoch. By default mean 0 and std 1/255, so the 'normalised' values are
    the augmented pixels themselves."""
    from vision_lab.preprocessing import Preprocessing
    from vision_lab.batch_augment import BatchAugmenter

    channels = images.shape[1]
    augment = BatchAugmenter(spec, images.shape[-1])
    prep = Preprocessing(channels, images.shape[-1], mean or (0.0,) * channels, std or (1 / 255,) * channels)
    return list(batches.training_batches(images, labels, order, batch_size, chunk_size, augment, prep,
                                          torch.Generator().manual_seed(seed)))


def test_training_batches_follow_the_order_in_whole_batches():
    images = torch.randint(0, 256, (100, 3, 8, 8), dtype=torch.uint8)
    labels = torch.arange(100)
    order = torch.randperm(100, generator=torch.Generator().manual_seed(0))
    batches = chunked(images, labels, order, batch_size=16, chunk_size=48, spec=[])
    assert [len(y) for _, y in batches] == [16] * 6 + [4]
    assert torch.equal(torch.cat([y for _, y in batches]), order)
    # No augmentation: the pixels come through exactly, each with its own label.
    assert torch.equal(torch.cat([x for x, _ in batches]), images[order].float())


def test_training_batches_normalise_like_preprocessing():
    from vision_lab.preprocessing import Preprocessing

    images = torch.randint(0, 256, (40, 3, 8, 8), dtype=torch.uint8)
    mean, std = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
    x = torch.cat([x for x, _ in chunked(images, torch.zeros(40, dtype=torch.long), torch.arange(40),
                                         8, 24, spec=[], mean=mean, std=std)])
    expected = Preprocessing(3, 8, mean, std)(images)
    assert torch.allclose(x, expected, atol=1e-5)
    assert expected.abs().max() > 1  # normalised, not [0, 1]


def test_a_chunk_gives_every_image_its_own_random_parameters():
    # One image, 256 times: any difference between outputs comes from the random parameters.
    ramp = torch.arange(16, dtype=torch.uint8).mul(16).expand(256, 3, 16, 16).contiguous()
    flip = [{"op": "RandomHorizontalFlip", "p": 0.5}]
    batches = chunked(ramp, torch.zeros(256, dtype=torch.long), torch.arange(256), 32, 256, flip)
    assert len(batches) == 8  # one chunk, eight batches
    flipped = torch.stack([(x == ramp[:len(x)].flip(-1).float()).flatten(1).all(1) for x, _ in batches])
    unchanged = torch.stack([(x == ramp[:len(x)].float()).flatten(1).all(1) for x, _ in batches])
    assert torch.all(flipped ^ unchanged)
    # Per image, not per batch or per chunk: every batch has flipped and unflipped images.
    assert torch.all(flipped.any(1)) and torch.all(unchanged.any(1))
    assert 96 <= flipped.sum().item() <= 160

    crop = [{"op": "RandomCrop", "size": 16, "padding": 2}]
    x = torch.cat([x for x, _ in chunked(ramp, torch.zeros(256, dtype=torch.long), torch.arange(256), 32,
                                         256, crop)])
    assert len(torch.unique(x.flatten(1), dim=0)) == 25  # all 5 x 5 offsets occur


def test_chunking_keeps_the_augmentation_deterministic():
    images = torch.randint(0, 256, (96, 3, 16, 16), dtype=torch.uint8)
    labels, order = torch.arange(96), torch.randperm(96)
    spec = [{"op": "RandomCrop", "size": 16, "padding": 2}, {"op": "RandomHorizontalFlip", "p": 0.5},
            {"op": "ColorJitter", "brightness": 0.2, "contrast": 0.2, "saturation": 0.2, "hue": 0.1},
            {"op": "RandomRotation", "degrees": 15}]

    def pixels(seed):
        return torch.cat([x for x, _ in chunked(images, labels, order, 16, 48, spec, seed=seed)])

    assert torch.equal(pixels(1), pixels(1))
    assert not torch.equal(pixels(1), pixels(2))


def test_training_off_the_main_thread_gives_the_same_history(tmp_path, tiny):
    """The app trains in a child process on its main thread; any thread still trains the same."""
    def history(out):
        end = run_to_end(config(tmp_path, model="cnn", epochs=1, augment="standard", seed=5,
                                out=str(tmp_path / out)), data=tiny)
        return [{k: v for k, v in h.items() if k != "seconds"} for h in end.history]

    on_main = history("main.safetensors")
    result = {}
    worker = threading.Thread(target=lambda: result.update(history=history("thread.safetensors")))
    worker.start()
    worker.join()
    assert result["history"] == on_main


# ---- the speedrun recipe, time budgets, test-time augmentation, precision --------------------------

def test_a_recipe_fills_the_options_left_at_their_defaults():
    shapes = TrainConfig(model="speedrun")
    assert (shapes.optimizer, shapes.scheduler, shapes.augment, shapes.tta) == \
        ("adamw", "onecycle", "flip_translate", "flip")
    assert shapes.label_smoothing > 0 and shapes.weight_decay > 0 and shapes.lr > 1e-3
    # Digits are not mirror-symmetric: no flips, in training or at test time.
    digits = TrainConfig(model="speedrun", dataset="mnist")
    assert (digits.augment, digits.tta) == ("translate", "shift")
    # What is set explicitly wins; use_recipe=False trains the bare network as told.
    assert TrainConfig(model="speedrun", optimizer="sgd", lr=0.05).optimizer == "sgd"
    bare = TrainConfig(model="speedrun", use_recipe=False)
    assert (bare.optimizer, bare.scheduler, bare.augment, bare.tta) == ("adam", "none", "none", "none")
    assert TrainConfig(model="cnn") == TrainConfig()
    # A mirror image of scrambled pixels means nothing: no test-time augmentation then.
    permuted = TrainConfig(model="speedrun", permute_pixels=True)
    assert permuted.tta == "none" and permuted.augment == "flip_translate"
    permuted.validate()
    # Applying the recipe again changes nothing: JSON, replace() and the CLI give the same config.
    import dataclasses
    assert TrainConfig.from_json(shapes.to_json()) == shapes
    assert dataclasses.replace(shapes, seed=2) == TrainConfig(model="speedrun", seed=2)


@pytest.mark.parametrize("kw, message", [
    ({"label_smoothing": 1.0}, "label smoothing must be at least 0 and below 1"),
    ({"budget_seconds": -5}, "time budget must be a positive number of seconds"),
    ({"budget_seconds": 10, "scheduler": "cosine"}, "cosine scheduler needs t_max"),
    ({"tta": "rotate"}, "Unknown test-time augmentation 'rotate'"),
    ({"tta": "flip", "permute_pixels": True}, "set tta to none"),
    ({"precision": "fp8"}, "Unknown precision 'fp8'"),
    ({"compile": "maybe"}, "compile must be one of auto, on, off"),
])
def test_invalid_fast_training_options_give_a_plain_sentence(kw, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kw).validate()
    # A budget replaces the epochs, so what is checked against them is not.
    TrainConfig(budget_seconds=5, scheduler="multistep", scheduler_options={"milestones": [9]},
                epochs=3).validate()


def test_onecycle_warms_up_then_decays_to_its_end_each_step(tmp_path, tiny):
    f = run_setup.one_cycle_factor
    assert f(0, 100, 0.2, 0.1, 0.0) == pytest.approx(0.1)
    assert f(20, 100, 0.2, 0.1, 0.0) == pytest.approx(1.0)
    assert f(60, 100, 0.2, 0.1, 0.0) == pytest.approx(0.5)
    assert f(100, 100, 0.2, 0.1, 0.0) == pytest.approx(0.0)
    events = list(train(config(tmp_path, model="mlp", epochs=2, optimizer="sgd", lr=0.1,
                               scheduler="onecycle", scheduler_options={"warmup": 0.25}), data=tiny))
    lrs = [e.lr for e in events if isinstance(e, BatchEnd)]  # the lr each step used
    assert len(lrs) == 8
    assert lrs == pytest.approx([0.1 * f(i, 8, 0.25, 0.1, 0.0) for i in range(8)])
    assert max(lrs) == pytest.approx(0.1) and lrs[0] < lrs[1] and lrs[-1] < lrs[-2]


def test_label_smoothing_reaches_the_training_loss_only(tmp_path, tiny, monkeypatch):
    seen = []
    real = torch.nn.functional.cross_entropy

    def spy(*args, **kwargs):
        seen.append(kwargs.get("label_smoothing", 0.0))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "cross_entropy", spy)
    run_to_end(config(tmp_path, model="mlp", epochs=1, label_smoothing=0.3), data=tiny)
    # 4 training steps smooth their targets; validation and test measure the plain loss.
    assert seen.count(0.3) == 4 and seen.count(0.0) == len(seen) - 4


def test_a_time_budget_plans_the_steps_that_fit(tmp_path, tiny, monkeypatch):
    """A fake clock in which every training step takes 1/8 s and nothing else takes any time:
    a 3.75 s budget fits exactly 30 steps, and the onecycle schedule ends on the last one."""
    clock = [1000.0]
    monkeypatch.setattr(training.time, "perf_counter", lambda: clock[0])
    real_step = training.train_step

    def step(*args):
        totals = real_step(*args)
        clock[0] += 0.125
        return totals

    monkeypatch.setattr(training, "train_step", step)
    events = list(train(config(tmp_path, model="mlp", budget_seconds=3.75, epochs=1, optimizer="sgd",
                               lr=0.1, scheduler="onecycle"), data=tiny))
    batches = [e for e in events if isinstance(e, BatchEnd)]
    epochs = [e for e in events if isinstance(e, EpochEnd)]
    end = events[-1]
    assert len(batches) == 30 and batches[-1].total_steps == 30
    # 4 steps an epoch (226 images in batches of 64): 7 whole epochs and half of an eighth.
    assert [e.images for e in epochs] == [226] * 7 + [128]
    assert end.reason == "completed" and "Used the 3.75 s time budget: 8 epoch(s) in 30 steps" in end.message
    assert "the last one partial (128 of 226 images)" in end.message
    assert any(isinstance(e, Status) and e.message.startswith("Planned 30 steps") for e in events)
    # The steps timed for the plan hold the warm-up's starting lr; then the schedule runs to its end.
    lrs = [b.lr for b in batches]
    assert lrs[:4] == pytest.approx([0.01] * 4)
    assert lrs[4:] == pytest.approx([0.1 * run_setup.one_cycle_factor(i, 30, 0.2, 0.1, 0.0) for i in range(4, 30)])


def test_epochs_report_the_images_they_trained_on(tmp_path, tiny):
    end = run_to_end(config(tmp_path, model="mlp", epochs=2), data=tiny)
    assert [h["images"] for h in end.history] == [len(tiny.train_images)] * 2


def test_tta_averages_the_views_and_the_run_is_tested_with_it(tmp_path, tiny):
    x = torch.randn(4, 3, 8, 8)

    def model(batch):  # not mirror-symmetric: each view gives other logits
        return batch[:, 0, :, :5].sum(1)

    plain = model(x)
    assert torch.allclose(evaluation.tta_logits(model, x, "flip"), (plain + model(x.flip(-1))) / 2)
    moved = [model(torch.roll(x, (d, d), (-2, -1))) for d in (1, -1)]
    assert torch.allclose(evaluation.tta_logits(model, x, "shift"), 0.5 * plain + 0.25 * (moved[0] + moved[1]))
    end = run_to_end(config(tmp_path, model="speedrun", epochs=1), data=tiny)
    ckpt = load_checkpoint(end.checkpoint)
    assert ckpt.metadata["config"]["tta"] == "flip"
    with_tta = evaluation.evaluate(ckpt.model, tiny.test_images, tiny.test_labels, ckpt.preprocessing, 10,
                                 tta="flip")
    assert end.metrics["test_acc"] == pytest.approx(with_tta.acc)
    assert end.metrics["test_loss"] == pytest.approx(with_tta.loss, rel=1e-5)


def test_bfloat16_autocast_trains_on_the_cpu_and_fp16_needs_a_gpu(tmp_path, tiny):
    events = list(train(config(tmp_path, model="cnn", epochs=1, precision="bf16"), data=tiny))
    assert events[-1].reason == "completed" and events[-1].history[0]["train_loss"] < 10
    assert any(isinstance(e, Status) and "bfloat16 autocast" in e.message for e in events)
    with pytest.raises(ValueError, match="fp16 autocast needs a CUDA GPU"):
        run_to_end(config(tmp_path, model="cnn", epochs=1, precision="fp16", device="cpu"), data=tiny)


def test_a_status_line_says_where_and_how_the_run_computes(tmp_path, tiny):
    events = list(train(config(tmp_path, model="cnn", epochs=1, device="cpu"), data=tiny))
    lines = [e.message for e in events if isinstance(e, Status) and e.message.startswith("Device:")]
    threads = torch.get_num_threads()
    assert lines == [f"Device: cpu ({threads} thread{'s' * (threads != 1)}), float32, channels_last."]


def test_normalising_happens_on_the_batch_s_own_device():
    """What the CUDA path relies on, checked with PyTorch's "meta" device (shapes, no data): the
    normalising constants are made beside the batch, never on the CPU."""
    from vision_lab.preprocessing import Preprocessing

    for seed in (None, 3):
        prep = Preprocessing(3, 8, (0.5, 0.4, 0.3), (0.2, 0.2, 0.2), permutation_seed=seed)
        out = evaluation.normalize_on_device(prep, torch.zeros(2, 3, 8, 8, device="meta"))
        assert out.device.type == "meta" and out.shape == (2, 3, 8, 8)
    cpu = torch.full((1, 3, 8, 8), 255.0)
    expected = Preprocessing(3, 8, (0.5,) * 3, (0.25,) * 3)(cpu.to(torch.uint8))
    assert torch.equal(evaluation.normalize_on_device(Preprocessing(3, 8, (0.5,) * 3, (0.25,) * 3), cpu), expected)
