"""The Compare tab's library: every lesson builds valid runs, a comparison runs each over its
seeds, and every lesson's claim holds on real data by more than its seed-to-seed spread."""
import threading

import pytest

from vision_lab.datasets import load_dataset
from vision_lab.custom_comparison import custom_plan
from vision_lab.lesson_results import SUMMARY_COLUMNS, Claim, Plan, format_spread, summary_row, verdict
from vision_lab.lessons import LESSONS, SIZES, build_plan, check_requirements, run_comparison, run_lesson
from vision_lab.train_config import BatchEnd, EpochEnd, RunEnd, TrainConfig, data_key


@pytest.mark.parametrize("name", list(LESSONS))
@pytest.mark.parametrize("size", list(SIZES))
def test_every_lesson_builds_valid_configs_on_one_dataset(name, size):
    plan = build_plan(name, "shapes", size)
    assert len(plan.runs) >= 2 and plan.seeds == SIZES[size]["seeds"]
    labels = [label for label, _ in plan.runs]
    assert len(set(labels)) == len(labels)
    for _, config in plan.runs:
        assert isinstance(config, TrainConfig)
        config.validate()
        # All runs of a lesson train on the same data, loaded once.
        assert data_key(config) == data_key(plan.runs[0][1])
    if size == "quick":
        assert all(c.epochs <= SIZES["quick"]["epochs"] for _, c in plan.runs)
    # The claim is about runs the lesson has.
    assert set(plan.claim.weights) <= set(labels)


def test_lessons_compare_what_they_say():
    perm = dict(build_plan("Pixel permutation").runs)
    assert len(perm) == 4
    assert perm["MLP 8-8"].model_options["hidden_sizes"] == [8, 8]
    assert [c.permute_pixels for c in perm.values()] == [False, True, False, True]
    bn = [c.model_options["batch_norm"] for _, c in build_plan("BatchNorm vs none").runs]
    assert bn == [True, False]
    augment = build_plan("Augmentation vs none (the overfitting gap)", "mnist")
    assert [c.augment for _, c in augment.runs] == ["none", "digits"]
    assert augment.claim.metric == "gap"
    assert [c.scheduler for _, c in build_plan("LR schedulers").runs] == ["none", "step", "cosine"]
    resnet = [c for _, c in build_plan("Pretrained vs from-scratch ResNet18").runs]
    assert resnet[0].pretrained and resnet[0].freeze_epochs == 1 and not resnet[1].pretrained


def test_unknown_lesson_and_size_are_plain_errors():
    with pytest.raises(ValueError, match="Unknown lesson"):
        build_plan("nope")
    with pytest.raises(ValueError, match="Unknown size"):
        build_plan("MLP vs CNN", size="huge")


def test_custom_runs_from_table_rows():
    rows = [{"label": "bn", "model": "cnn", "batch_norm": "true", "lr": 0.01, "scheduler": "cosine"},
            {"label": "", "model": "mlp", "augment": "light", "epochs": 2},
            {"model": ""}]
    plan = custom_plan(rows, "shapes", "default")
    assert [label for label, _ in plan.runs] == ["bn", "2: mlp"]
    assert plan.runs[0][1].lr == 0.01 and plan.runs[0][1].scheduler == "cosine"
    assert plan.runs[1][1].augment == "light" and plan.runs[1][1].epochs == 2
    assert plan.claim is None and plan.seeds == 3
    with pytest.raises(ValueError, match="unknown model"):
        custom_plan([{"model": "transformer"}])
    with pytest.raises(ValueError, match="learning rate"):
        custom_plan([{"model": "cnn", "lr": 0}])
    with pytest.raises(ValueError, match="at most 4"):
        custom_plan([{"model": "cnn", "label": str(i)} for i in range(5)])


def test_check_requirements_passes_without_pretrained_runs():
    check_requirements(build_plan("MLP vs CNN"))


@pytest.fixture(scope="module")
def tiny_shapes():
    return load_dataset("shapes", subset_train=120, subset_test=48, val_fraction=0.2)


def _tiny(plan, seeds=1):
    runs = [(label, TrainConfig(**{**config.to_dict(), "epochs": 1, "batch_size": 32, "subset_train": 120,
                                   "subset_test": 48, "val_fraction": 0.2}))
            for label, config in plan.runs]
    return Plan(runs, seeds, plan.claim)


def test_run_comparison_runs_every_seed_and_summarises_each_run(tiny_shapes, tmp_path):
    plan = _tiny(build_plan("MLP vs CNN", "shapes", "quick"), seeds=2)
    seen, ends = {}, {}
    order = []
    for label, seed, ev in run_comparison(plan, tiny_shapes, out_dir=tmp_path):
        seen.setdefault(label, set()).add(type(ev))
        if isinstance(ev, RunEnd):
            ends.setdefault(label, []).append(ev)
            order.append((label, seed))
    # Seeds go round the runs, so a stopped comparison still compares like with like.
    assert order == [("MLP", 0), ("CNN", 0), ("MLP", 1), ("CNN", 1)]
    for label in seen:
        assert {BatchEnd, EpochEnd, RunEnd} <= seen[label]
        assert all(e.reason == "completed" and "seed" in e.checkpoint for e in ends[label])
    # Different seeds train differently on the same data.
    assert ends["CNN"][0].history[0]["train_loss"] != ends["CNN"][1].history[0]["train_loss"]
    rows = [summary_row(label, config, ends[label], tiny_shapes) for label, config in plan.runs]
    assert [r["run"] for r in rows] == ["MLP", "CNN"]
    for row in rows:
        assert set(row) == set(SUMMARY_COLUMNS) and row["seeds"] == 2
        assert row["parameters"] > 1000 and row["seconds per epoch"] > 0
        assert " ± " in row["test acc (%)"] and " ± " in row["best val acc (%)"]
    # The MLP has more parameters than the CNN at 32x32: a point the lesson makes.
    assert rows[0]["parameters"] > rows[1]["parameters"]


def test_a_comparison_refuses_runs_on_different_data(tiny_shapes):
    runs = [("a", TrainConfig(subset_train=100)), ("b", TrainConfig(subset_train=200))]
    with pytest.raises(ValueError, match="same data"):
        next(run_comparison(Plan(runs, 1), tiny_shapes))


def test_stop_ends_the_comparison(tiny_shapes, tmp_path):
    plan = _tiny(build_plan("Pixel permutation", "shapes", "quick"))
    stop = threading.Event()
    labels = []
    for label, _, ev in run_comparison(plan, tiny_shapes, stop, out_dir=tmp_path):
        labels.append(label)
        if isinstance(ev, BatchEnd):
            stop.set()
    assert set(labels) == {"MLP 8-8"}


def _end(test_acc, train_acc=0.9, val_acc=0.8):
    history = [{"epoch": 1, "train_acc": train_acc, "val_acc": val_acc}]
    return RunEnd("completed", "", 1, history, None, {"test_acc": test_acc})


def test_a_verdict_needs_a_margin_larger_than_the_seed_spread():
    claim = Claim("the CNN beats the MLP", {"CNN": 1, "MLP": -1})
    clear = verdict(claim, {"CNN": [_end(0.80), _end(0.82), _end(0.81)],
                            "MLP": [_end(0.70), _end(0.71), _end(0.69)]})
    assert clear.holds and clear.per_seed == pytest.approx([10, 11, 12])
    assert clear.margin == pytest.approx(11) and clear.spread == pytest.approx(1)
    assert clear.text == ("The CNN beats the MLP: by 11.0 ± 1.0 points of test accuracy over 3 "
                          "seeds, more than the seed-to-seed spread.")
    noisy = verdict(claim, {"CNN": [_end(0.80), _end(0.70), _end(0.90)],
                            "MLP": [_end(0.75), _end(0.78), _end(0.77)]})
    assert noisy.holds is False and noisy.text.startswith("Not shown this time: the CNN beats the MLP")
    one = verdict(claim, {"CNN": [_end(0.8)], "MLP": [_end(0.7)]})
    assert one.holds is None and "with one seed" in one.text
    assert verdict(claim, {"CNN": [_end(0.8)], "MLP": []}) is None
    gap = verdict(Claim("augmentation narrows the gap", {"plain": 1, "aug": -1}, metric="gap"),
                  {"plain": [_end(0.7, train_acc=1.0, val_acc=0.7)] * 2,
                   "aug": [_end(0.7, train_acc=0.8, val_acc=0.75), _end(0.7, train_acc=0.8, val_acc=0.7)]})
    assert gap.per_seed == pytest.approx([25, 20]) and gap.holds
    assert format_spread([0.5, 0.6]) == "55.0 ± 7.1" and format_spread([0.5]) == "50.0"
    assert format_spread([None]) is None


# ---- a plan larger than its data set -------------------------------------------------------------

def test_a_lesson_on_fewer_images_than_its_plan_uses_them_all_and_says_so_once(tmp_path):
    from test_datasets import _class_folders

    from vision_lab.i18n import render
    from vision_lab.lessons import fit_plan
    from vision_lab.train_config import load_data

    folder = "folder:" + str(_class_folders(tmp_path / "pets", per_class=10))  # 16 train, 4 test
    plan = build_plan("MLP vs CNN", folder, "quick")                          # asks 300 and 100
    with pytest.raises(ValueError, match="subset_train=300 is larger than the 16 training images"):
        load_data(plan.runs[0][1])       # elsewhere (the CLI, the Train tab) it stays an error
    data = load_data(plan.runs[0][1], fit_subsets=True)
    notes = fit_plan(plan, data)
    assert [str(n) for n in notes] == [
        f"Asked for 300 training images, but '{folder}' has 16: all 16 are used.",
        f"Asked for 100 test images, but '{folder}' has 4: all 4 are used."]
    assert render(notes[1], "zh") == f"计划使用 100 张测试集图像，但 '{folder}' 只有 4 张，于是使用全部 4 张。"
    # Every run now says what it trains on, and that reloads the very same images.
    assert {(c.subset_train, c.subset_test) for _, c in plan.runs} == {(16, 4)}
    again = load_data(plan.runs[0][1])
    assert again.train_images.equal(data.train_images) and again.test_images.equal(data.test_images)
    assert fit_plan(plan, again) == []

    result = run_lesson("MLP vs CNN", folder, "quick", out_dir=tmp_path / "runs")
    assert [str(n) for n in result.notes] == [str(n) for n in notes]
    assert [row["seeds"] for row in result.rows] == [1, 1] and result.verdict.seeds == 1


def test_lessons_asking_more_test_images_than_a_partial_cifar10_has_use_all_it_has(shared_cifar10):
    from vision_lab.lessons import fit_plan
    from vision_lab.train_config import load_data

    fitted = []
    for name in CLAIMED:
        plan = build_plan(name, "cifar10", "default")
        (asked,) = {config.subset_test for _, config in plan.runs}
        for _, config in plan.runs:
            config.data_root = str(shared_cifar10)
        data = load_data(plan.runs[0][1], fit_subsets=True)   # 600 test images
        notes = fit_plan(plan, data)
        assert len(data.test_images) == min(asked, 600)
        assert {config.subset_test for _, config in plan.runs} == {min(asked, 600)}
        assert len(notes) == (asked > 600)
        fitted += [name] * len(notes)
    assert "LR schedulers" in fitted    # it asks for 2,000: a partial CIFAR-10 once ended in a ValueError


# ---- every lesson's claim, measured -------------------------------------------------------------

CLAIMED = [name for name, lesson in LESSONS.items() if not lesson.needs_pretrained]


@pytest.mark.parametrize("name", CLAIMED)
def test_every_lesson_claim_holds_on_shapes_in_its_shipped_replays(name):
    """On `shapes` a class sees each lesson's shipped replays (checkpoints/replays/): every run of
    the lesson at its default size has one made by this code, and every claim holds in them by
    more than the seed spread. A replay is the run itself (on a CPU a run is determined by its
    config, data and code: test_run_cache.py), so this judges the same runs as training them again
    would, without the quarter of an hour that takes. After a change to the training code,
    `python scripts/make_replays.py` makes them anew (and benchmarks/lessons.py trains them)."""
    import json

    from vision_lab.lesson_results import verdicts
    from vision_lab.serving import run_cache, run_key, run_record

    plan = build_plan(name, "shapes", "default")
    ends = {label: [] for label, _ in plan.runs}
    inside = {label: [] for label, _ in plan.runs}
    for label, seed, config in run_key.comparison_runs(plan):
        path = run_cache.SHIPPED / f"{run_key.run_key(config)}.json"
        assert path.is_file(), (f"{name}: no replay of '{label}', seed {seed}, made by this code: "
                                "run python scripts/make_replays.py")
        events = run_record.replay_events(json.loads(path.read_text(encoding="utf-8"))["events"])
        ends[label].append(events[-1])
        inside[label].append([e for e in events if isinstance(e, EpochEnd)][-1].internals)
    judged = verdicts(plan, ends, inside)
    print(f"{name}: {[v.text for v in judged]}")
    # Every claim of the lesson (the regularization and early-stopping lessons make several).
    assert judged and all(v.holds for v in judged), [v.text for v in judged]


@pytest.mark.slow
@pytest.mark.parametrize("name", CLAIMED)
def test_every_lesson_claim_holds_on_real_mnist_beyond_its_seed_spread(name, shared_mnist, tmp_path):
    result = run_lesson(name, "mnist", "default", data_root=str(shared_mnist), out_dir=tmp_path)
    print(f"{name}: {[v.text for v in result.verdicts]} ({result.seconds:.0f} s)")
    # Every claim of the lesson (the regularization and early-stopping lessons make several).
    assert all(v.holds for v in result.verdicts), [v.text for v in result.verdicts]


# ---- the learning-curves lesson -----------------------------------------------------------------

from vision_lab.lesson_results import curve_points  # noqa: E402
from vision_lab.lessons import CURVE_SHARES  # noqa: E402

CURVES = "Learning curves: MLP vs CNN"


def test_learning_curves_train_each_model_on_growing_shares_for_the_same_steps():
    plan = build_plan(CURVES, "shapes", "default")
    assert [(c.model, c.train_fraction) for _, c in plan.runs] == \
        [(m, s) for m in ("mlp", "cnn") for s in CURVE_SHARES]
    # One dataset loaded once; the shares are taken from its training images.
    assert len({data_key(c) for _, c in plan.runs}) == 1
    # Each run takes the same number of steps: a smaller share is seen for more epochs.
    passes = {round(c.epochs * c.train_fraction, 1) for _, c in plan.runs}
    assert passes == {3.0}
    assert set(plan.curve.values()) == {"MLP", "CNN"} and set(plan.curve) == {l for l, _ in plan.runs}
    assert plan.claim.weights == {"MLP, 100% of the images": 1, "MLP, 5% of the images": -1,
                                  "CNN, 100% of the images": 1, "CNN, 5% of the images": -1}


def test_a_train_share_keeps_every_class_and_grows_by_adding_images(tiny_shapes):
    import torch

    small, large = tiny_shapes.with_train_share(0.25, 0), tiny_shapes.with_train_share(0.5, 0)
    n = len(tiny_shapes.train_images)
    assert len(small.train_images) < len(large.train_images) < n
    assert set(small.train_labels.tolist()) == set(tiny_shapes.train_labels.tolist())
    # The smaller share's images are among the larger one's (a curve adds images, never swaps).
    flat = lambda d: {bytes(img.numpy()) for img in d.train_images}  # noqa: E731
    assert flat(small) <= flat(large)
    assert torch.equal(small.val_images, tiny_shapes.val_images)
    assert torch.equal(small.test_images, tiny_shapes.test_images)
    assert tiny_shapes.with_train_share(1.0, 0) is tiny_shapes


def test_a_run_on_a_share_learns_from_that_many_images(tiny_shapes, tmp_path):
    from vision_lab.training import train

    config = TrainConfig(model="mlp", epochs=1, batch_size=16, train_fraction=0.25,
                         out=str(tmp_path / "share.safetensors"))
    end = [ev for ev in train(config, data=tiny_shapes) if isinstance(ev, RunEnd)][0]
    assert end.history[0]["images"] == len(tiny_shapes.with_train_share(0.25, 0).train_images)
    with pytest.raises(ValueError, match="share of training images"):
        TrainConfig(train_fraction=0).validate()


def test_the_learning_curve_plots_test_accuracy_against_images_on_a_log_axis():
    from vision_lab.curve_plots import learning_curve

    plan = build_plan(CURVES, "shapes", "default")
    labels = [label for label, _ in plan.runs]

    def end(images, acc):
        return RunEnd("completed", "", 1, [{"epoch": 1, "images": images}], None, {"test_acc": acc})

    ends = {labels[0]: [end(90, 0.1), end(90, 0.2)], labels[3]: [end(1800, 0.3), end(1800, 0.5)],
            labels[7]: [end(1800, 0.9)], labels[4]: [RunEnd("stopped", "", 1, [], None, {})]}
    lines = curve_points(plan, ends)
    assert lines == {"MLP": {90: [0.1, 0.2], 1800: [0.3, 0.5]}, "CNN": {1800: [0.9]}}
    fig = learning_curve(lines)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    mlp = ax.get_lines()[0]
    assert list(mlp.get_xdata()) == [90, 1800] and list(mlp.get_ydata()) == pytest.approx([15, 40])
    assert [tick.get_text() for tick in ax.get_xticklabels()] == ["90", "1800"]


def test_the_compare_tab_shows_a_learning_curve_for_the_lesson(tiny_shapes):
    from vision_lab.ui.compare import LiveComparison

    plan = build_plan(CURVES, "shapes", "quick")
    live = LiveComparison(plan, tiny_shapes)
    label = plan.runs[0][0]
    live.add((label, 0, RunEnd("completed", "", 1, [{"epoch": 1, "images": 14, "seconds": 0.1}],
                               None, {"test_acc": 0.2})))
    acc, loss = live.figures()
    assert acc.axes[0].get_xscale() == "log" and loss.axes[0].get_xscale() == "linear"
    assert list(acc.axes[0].get_lines()[0].get_xdata()) == [14]
    plain = LiveComparison(build_plan("MLP vs CNN", "shapes", "quick"), tiny_shapes)
    assert plain.figures()[0].axes[0].get_xscale() == "linear"
