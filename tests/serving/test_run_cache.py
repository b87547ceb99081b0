"""The run cache (vision_lab.serving.run_cache): an identical run is replayed (same metrics and
curves, a new checkpoint file that loads), a damaged entry is trained again, the cache stays within
its size and age, and a replay never crosses configs, data or code versions."""
import json
import os
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from vision_lab.checkpoints import load_checkpoint, read_metadata
from vision_lab.serving import run_cache, run_record
from vision_lab.serving import run_key as run_key_module
from vision_lab.serving.run_cache import CHECKPOINT, RECORD, RunCache
from vision_lab.serving.run_key import comparison_runs, run_key
from vision_lab.serving.run_record import make_record
from vision_lab.train_config import BatchEnd, EpochEnd, RunEnd, TrainConfig, load_data
from vision_lab.training import train

TINY = dict(dataset="shapes", subset_train=96, subset_test=40, model="mlp",
            model_options={"hidden_sizes": [8]}, epochs=2, batch_size=32)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny run: its config, data and events."""
    folder = tmp_path_factory.mktemp("run")
    config = TrainConfig(**TINY, out=str(folder / "run.safetensors"))
    data = load_data(config)
    events = list(train(config, data=data))
    assert events[-1].reason == "completed"
    return config, data, events


def kept(cache, trained):
    config, data, events = trained
    return cache.put(run_key(config), events, config.out, data, seconds=1.0)


def test_an_identical_run_is_replayed_with_the_same_results_and_its_own_checkpoint(tmp_path, trained):
    config, data, events = trained
    cache = RunCache(tmp_path / "cache", max_mb=0, max_age_days=0)
    assert cache.get(run_key(config)) is None
    kept(cache, trained)
    # Asked again, by a config spelled another way (another place, the model's defaults written out).
    again = replace(config, out="elsewhere.safetensors", data_root="/some/data",
                    model_options={"hidden_sizes": [8], "dropout": 0.2}, lr=float(config.lr))
    replay = cache.get(run_key(again), need_checkpoint=True)
    assert replay is not None and "Replayed from an identical earlier run" in replay.note()
    mine = tmp_path / "visitor" / "mine.safetensors"
    path = cache.deliver(replay, mine, again)
    replayed = replay.events(checkpoint=str(path))
    end, original = replayed[-1], events[-1]
    assert isinstance(end, RunEnd) and end.checkpoint == str(mine)
    assert end.metrics == original.metrics and end.history == original.history
    assert end.reason == original.reason and end.best_epoch == original.best_epoch
    # The curves: every batch's loss and every epoch, in order.
    losses = lambda evs: [(e.step, e.loss) for e in evs if isinstance(e, BatchEnd)]
    epochs = lambda evs: [vars(e) for e in evs if isinstance(e, EpochEnd)]
    assert losses(replayed) == losses(events) and epochs(replayed) == epochs(events)
    # A new file of the visitor's own that loads, with the same weights as the run's.
    assert mine.is_file() and mine.resolve() != Path(config.out).resolve()
    theirs, ours = load_checkpoint(config.out), load_checkpoint(mine)
    for name, tensor in theirs.model.state_dict().items():
        assert torch.equal(tensor, ours.model.state_dict()[name])
    meta = read_metadata(mine)
    assert meta["config"]["out"] == str(mine) and meta["replay_of"] == replay.key
    # The cached entry itself names no one's folder.
    cached = read_metadata(replay.checkpoint)
    assert cached["config"]["out"] is None and cached["config"]["data_root"] is None


def test_records_are_json_and_safetensors_only(tmp_path, trained):
    cache = RunCache(tmp_path / "cache")
    replay = kept(cache, trained)
    entry = replay.checkpoint.parent
    assert sorted(p.name for p in entry.iterdir()) == [CHECKPOINT, RECORD]
    record = json.loads((entry / RECORD).read_text())
    assert record["events"][-1]["event"] == "done" and record["events"][-1]["checkpoint"] is None


@pytest.mark.parametrize("damage", ["checkpoint bytes", "truncated checkpoint", "record", "wrong key"])
def test_a_damaged_entry_is_removed_and_trained_again(tmp_path, trained, damage):
    cache = RunCache(tmp_path / "cache")
    replay = kept(cache, trained)
    entry = replay.checkpoint.parent
    if damage == "checkpoint bytes":
        body = bytearray(replay.checkpoint.read_bytes())
        body[-10] ^= 0xFF
        replay.checkpoint.write_bytes(bytes(body))
    elif damage == "truncated checkpoint":
        replay.checkpoint.write_bytes(replay.checkpoint.read_bytes()[:100])
    elif damage == "record":
        (entry / RECORD).write_text('{"format": 1, "key": "')
    else:
        record = json.loads((entry / RECORD).read_text())
        record["key"] = "0" * 32
        (entry / RECORD).write_text(json.dumps(record))
    fresh = RunCache(tmp_path / "cache")          # a restarted server: nothing remembered
    assert fresh.get(replay.key) is None
    assert not entry.exists()
    assert kept(fresh, trained) is not None      # trained again, kept again


def fake_entry(cache: RunCache, key: str, megabytes: float, created: float, used: float) -> Path:
    entry = cache.folder / key
    entry.mkdir(parents=True)
    (entry / "padding").write_bytes(b"\0" * int(megabytes * 2**20))
    (entry / RECORD).write_text("{}")
    os.utime(entry / RECORD, (used, used))
    os.utime(entry, (created, created))
    return entry


def test_the_cache_is_kept_within_its_size_and_age(tmp_path):
    now = time.time()
    cache = RunCache(tmp_path / "cache", max_mb=2.5, max_age_days=30)
    old = fake_entry(cache, "old", 0.1, created=now - 31 * 86400, used=now)
    a = fake_entry(cache, "a", 1.0, created=now - 3600, used=now - 300)     # least recently used
    b = fake_entry(cache, "b", 1.0, created=now - 7200, used=now - 10)
    c = fake_entry(cache, "c", 1.0, created=now - 60, used=now - 60)
    removed = cache.evict(now=now)
    assert sorted(removed) == ["a", "old"]
    assert not old.exists() and not a.exists() and b.exists() and c.exists()
    # Limits of 0 keep everything.
    assert RunCache(tmp_path / "cache", max_mb=0, max_age_days=0).evict(now=now + 10**9) == []


def test_putting_a_run_evicts_others_but_never_itself(tmp_path, trained):
    cache = RunCache(tmp_path / "cache", max_mb=0.001, max_age_days=30)
    fake_entry(cache, "older", 0.01, created=time.time(), used=time.time() - 100)
    replay = kept(cache, trained)                # bigger than the whole budget on its own
    assert replay is not None and [e["key"] for e in cache.entries()] == [replay.key]


def test_stopped_or_failed_runs_are_not_kept(tmp_path, trained):
    config, data, events = trained
    cache = RunCache(tmp_path / "cache")
    for reason in ("stopped", "failed"):
        end = replace(events[-1], reason=reason)
        assert cache.put(run_key(config), events[:-1] + [end], config.out, data) is None
    assert cache.get(run_key(config)) is None


def test_keys_differ_with_the_config_and_agree_with_its_spellings():
    base = TrainConfig(**TINY)
    key = run_key(base)
    for change in (dict(seed=1), dict(lr=0.01), dict(epochs=3), dict(subset_train=97),
                   dict(data_seed=1), dict(model_options={"hidden_sizes": [9]}),
                   dict(augment="light"), dict(val_fraction=0.2), dict(dataset="mnist"),
                   dict(permute_pixels=True), dict(scheduler="cosine")):
        assert run_key(replace(base, **change)) != key, change
    same = (dict(out="x.safetensors"), dict(data_root="/elsewhere"), dict(epochs=2.0),
            dict(model_options={"hidden_sizes": [8], "dropout": 0.2}), dict(permutation_seed=5),
            dict(scheduler_options={"step_size": 1}))   # options of a scheduler not in use
    for change in same:
        assert run_key(replace(base, **change)) == key, change
    step = replace(base, scheduler="step")
    assert run_key(step) == run_key(replace(step, scheduler_options={"step_size": 5, "gamma": 0.1}))


def test_keys_differ_with_the_code_version(monkeypatch):
    config = TrainConfig(**TINY)
    key = run_key(config)
    monkeypatch.setattr(run_key_module, "source_version", lambda: "another-version")
    assert run_key(config) != key
    monkeypatch.undo()
    monkeypatch.setattr(torch, "__version__", "9.9.9+cpu")
    assert run_key(config) != key


def test_the_source_version_ignores_comments_and_docstrings(tmp_path, monkeypatch):
    package = tmp_path / "pkg"
    package.mkdir()
    monkeypatch.setattr(run_key_module, "PACKAGE", package)
    monkeypatch.setattr(run_key_module, "CODE_MODULES", ("training.py",))

    def version(source):
        (package / "training.py").write_text(source)
        run_key_module._source_version.cache_clear()
        return run_key_module.source_version()

    try:
        plain = version("def f(x):\n    return x + 1\n")
        assert version('"""Doc."""\ndef f(x):\n    """What f does."""\n    # why\n    return x + 1\n') == plain
        assert version("def f(x):\n    return x + 2\n") != plain
    finally:
        run_key_module._source_version.cache_clear()


def write_folder(root: Path, colour: int) -> Path:
    from PIL import Image

    for label in ("a", "b"):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(6):
            Image.new("RGB", (8, 8), (colour if label == "a" else 0, i * 20, 0)).save(root / label / f"{i}.png")
    return root


def test_a_folder_dataset_is_known_by_its_contents(tmp_path):
    one = write_folder(tmp_path / "one", 200)
    two = write_folder(tmp_path / "two", 200)      # the same images under another name
    three = write_folder(tmp_path / "three", 100)  # other images
    keys = []
    for folder in (one, two, three):
        config = TrainConfig(dataset=f"folder:{folder}", model="mlp", epochs=1, val_fraction=0.2)
        keys.append(run_key(config, load_data(config)))
    assert keys[0] == keys[1] != keys[2]
    with pytest.raises(ValueError, match="load it first"):
        run_key(TrainConfig(dataset=f"folder:{one}"))


def test_shipped_records_are_read_only_and_have_no_checkpoint(tmp_path, trained):
    config, data, events = trained
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    key = run_key(config)
    (shipped / f"{key}.json").write_text(json.dumps(make_record(key, events, data, 1.0)))
    cache = RunCache(tmp_path / "cache", shipped=[shipped])
    replay = cache.get(key)
    assert replay is not None and replay.shipped and replay.checkpoint is None
    assert "ships with the app" in replay.note()
    assert replay.events()[-1].metrics == events[-1].metrics
    assert cache.get(key, need_checkpoint=True) is None   # the Train tab trains it (and keeps it)
    (shipped / f"{key}.json").write_text("{damaged")
    assert RunCache(tmp_path / "cache", shipped=[shipped]).get(key) is None
    assert (shipped / f"{key}.json").exists()             # never deleted: not ours to write


def test_long_runs_keep_their_loss_curve_thinned(monkeypatch, trained):
    monkeypatch.setattr(run_record, "MAX_BATCHES", 3)
    config, data, events = trained
    record = make_record("k", events, data)
    batches = [e for e in record["events"] if e["event"] == "batch"]
    assert len(batches) <= 3 + config.epochs
    ends_of_epochs = {e.step for i, e in enumerate(events) if isinstance(e, BatchEnd)
                      and not isinstance(events[i + 1], BatchEnd)}
    assert ends_of_epochs <= {b["step"] for b in batches}


def test_a_lesson_is_keyed_run_by_run_in_the_order_it_trains():
    from vision_lab.lessons import build_plan, run_comparison

    plan = build_plan("MLP vs CNN", "shapes", "default")
    runs = comparison_runs(plan)
    assert [(label, seed) for label, seed, _ in runs] == [
        (label, seed) for seed in range(plan.seeds) for label, _ in plan.runs]
    assert all(config.seed == seed for _, seed, config in runs)
    assert len({run_key(config) for *_, config in runs}) == len(runs)
    assert run_comparison  # the order above is the one lessons.run_comparison trains in


def test_the_shipped_replays_are_small_and_valid():
    folder = run_cache.SHIPPED
    records = sorted(folder.glob("*.json")) if folder.is_dir() else []
    if not records:
        pytest.skip("no shipped replays (scripts/make_replays.py makes them)")
    assert sum(p.stat().st_size for p in records) < 3 * 2**20
    assert not list(folder.glob("*.safetensors"))
    current = run_key_module.code_version()
    for path in records:
        record = json.loads(path.read_text())
        assert record["format"] == run_record.FORMAT and record["key"] == path.stem
        assert record["checkpoint"] is None and record["extra"]["lesson"]
        if record["extra"]["code"] == current:   # older ones are never looked up
            run_record._check_record(record, path.stem)


def test_a_run_with_a_time_budget_is_never_replayed(tmp_path, trained):
    config, data, events = trained
    if not hasattr(config, "budget_seconds"):
        pytest.skip("this TrainConfig has no time budget")
    timed = replace(config, budget_seconds=5.0)
    first, second = run_key(timed), run_key(timed)
    assert first != second                        # how far it gets depends on the machine
    cache = RunCache(tmp_path / "cache")
    assert cache.put(first, events, config.out, data) is None and cache.get(first) is None
