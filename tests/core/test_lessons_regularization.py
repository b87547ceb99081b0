"""The overfitting day's lessons: regularization (Dropout, L2, L1 against none) and early stopping.
Their plans compare what they say, their claim metrics read the right numbers, and the Compare
tab draws weight histograms and early-stopping marks. (Their claims on real data are measured by
the slow tests of test_lessons.py, which take every lesson.)"""
import pytest

from vision_lab.internals import near_zero_share, weight_size
from vision_lab.lessons import build_plan
from vision_lab.lesson_results import Claim, verdict
from vision_lab.train_config import EpochEnd, RunEnd, data_key

REGULARIZATION = "Overfitting & regularization (Dropout/L2/L1)"
EARLY = "Early stopping"


def test_the_regularization_lesson_changes_one_regularizer_per_run():
    plan = build_plan(REGULARIZATION, "mnist")
    configs = [c for _, c in plan.runs]
    assert [(c.model_options["dropout"], c.weight_decay, c.l1) for c in configs] == \
        [(0.0, 0.0, 0.0), (0.5, 0.0, 0.0), (0.0, plan.runs[2][1].weight_decay, 0.0),
         (0.0, 0.0, plan.runs[3][1].l1)]
    assert configs[2].weight_decay > 0 and configs[3].l1 > 0
    # Everything else is the same: model, data, epochs, optimizer; the last epoch is kept.
    plain = {k: v for k, v in configs[0].to_dict().items() if k not in ("model_options", "weight_decay", "l1")}
    for c in configs[1:]:
        assert {k: v for k, v in c.to_dict().items() if k in plain} == plain
    assert len({data_key(c) for c in configs}) == 1 and not configs[0].restore_best
    none, dropout, l2, l1 = (label for label, _ in plan.runs)
    assert [(c.weights, c.metric) for c in plan.claims] == [
        ({none: 1, dropout: -1}, "gap"), ({none: 1, l2: -1}, "gap"),
        ({none: 1, l2: -1}, "weight_size"), ({l1: 1, none: -1}, "near_zero")]
    assert plan.claims[2].relative_to == none and plan.inside == "weights"


def test_the_early_stopping_lesson_differs_only_in_patience_and_the_epoch_kept():
    plan = build_plan(EARLY, "cifar10")
    (full_label, full), (early_label, early) = plan.runs
    assert full.early_stopping_patience == 0 and not full.restore_best
    assert early.early_stopping_patience > 0 and early.restore_best
    same = lambda c: {k: v for k, v in c.to_dict().items()  # noqa: E731
                      if k not in ("early_stopping_patience", "restore_best")}
    assert same(full) == same(early) and early.epochs > early.early_stopping_patience
    assert [c.metric for c in plan.claims] == ["epochs", "seconds"]
    assert plan.claim.weights == {full_label: 1, early_label: -1}


def _record(*layers):
    """An epoch's internals with Linear layers of the given weight percentiles (1..99) and std."""
    return {"percentiles": [1, 5, 25, 50, 75, 95, 99],
            "layers": [{"name": str(i), "kind": "Linear", "grad_norm": 1.0, "activation": None,
                        "weight": {"percentiles": q, "std": std,
                                   "hist": {"lo": q[0], "hi": q[-1], "counts": [1] * 24}}}
                       for i, (q, std) in enumerate(layers)]
            + [{"name": "bn", "kind": "BatchNorm1d", "grad_norm": 1.0, "activation": None,
                "weight": {"percentiles": [1] * 7, "std": 0.0, "hist": {"lo": 1, "hi": 1, "counts": [24]}}}]}


UNIFORM = [-0.98, -0.9, -0.5, 0.0, 0.5, 0.9, 0.98]        # uniform on ±1
SPIKE = [-0.98, -0.2, -0.001, 0.0, 0.001, 0.2, 0.98]      # most weights at zero


def test_the_weight_metrics_read_sparsity_and_size_from_the_percentiles():
    # Uniform weights: 5% of them lie within 5% of the largest (BatchNorm is no connection).
    assert near_zero_share(_record((UNIFORM, 0.58))) == pytest.approx(0.049, abs=0.002)
    # Scaling every weight down (what L2 does) leaves the share alone; a spike at zero (L1) raises it.
    assert near_zero_share(_record(([v / 4 for v in UNIFORM], 0.14))) == pytest.approx(0.049, abs=0.002)
    # Half of them between ±0.001, then linear to ±0.2 (the 5th/95th): 0.5 + 2 × 0.2 × 0.048 / 0.199.
    assert near_zero_share(_record((SPIKE, 0.2))) == pytest.approx(0.596, abs=0.002)
    assert near_zero_share(_record((UNIFORM, 0.58), (SPIKE, 0.2))) == pytest.approx(
        (near_zero_share(_record((UNIFORM, 0.58))) + near_zero_share(_record((SPIKE, 0.2)))) / 2)
    assert weight_size(_record((UNIFORM, 0.6), (SPIKE, 0.2))) == pytest.approx(0.4)
    assert near_zero_share({"layers": []}) is None and weight_size({"layers": []}) is None


def _end(epochs, seconds=1.0, test_acc=0.8, reason="completed", best=None):
    history = [{"epoch": e, "train_acc": 0.9, "val_acc": 0.8, "seconds": seconds} for e in range(1, epochs + 1)]
    return RunEnd(reason, "", best or epochs, history, None, {"test_acc": test_acc})


def test_epochs_and_seconds_saved_are_claims_in_their_own_units():
    claim = Claim("early stopping trains fewer epochs", {"full": 1, "early": -1}, metric="epochs")
    v = verdict(claim, {"full": [_end(20)] * 3, "early": [_end(8), _end(9), _end(10)]})
    assert v.per_seed == [12, 11, 10] and v.holds
    assert "by 11.0 ± 1.0 epochs of training over 3 seeds" in v.text
    seconds = verdict(Claim("saves time", {"full": 1, "early": -1}, metric="seconds"),
                      {"full": [_end(20, 0.5)] * 2, "early": [_end(8, 0.5), _end(10, 0.5)]})
    assert seconds.per_seed == pytest.approx([6, 5]) and "5.5 ± 0.7 seconds of training time" in seconds.text
    # A run stopped by hand has no result: no verdict yet.
    assert verdict(claim, {"full": [_end(20)], "early": [RunEnd("stopped", "", 1, [], None, {})]}) is None


def test_weight_claims_read_the_last_epoch_internals_in_percent_or_points():
    ends = {"none": [_end(3)] * 2, "L2": [_end(3)] * 2, "L1": [_end(3)] * 2}
    inside = {"none": [_record((UNIFORM, 0.5))] * 2, "L2": [_record((UNIFORM, 0.2)), _record((UNIFORM, 0.3))],
              "L1": [_record((SPIKE, 0.4))] * 2}
    smaller = verdict(Claim("L2 shrinks", {"none": 1, "L2": -1}, metric="weight_size", relative_to="none"),
                      ends, inside)
    assert smaller.per_seed == pytest.approx([60, 40]) and "percent of weight size" in smaller.text
    sparse = verdict(Claim("L1 sparsifies", {"L1": 1, "none": -1}, metric="near_zero"), ends, inside)
    assert sparse.holds and sparse.margin > 50 and "points of the share of weights near zero" in sparse.text
    # Without internals (a replay from before them) there is no verdict, rather than a wrong one.
    assert verdict(sparse_claim := Claim("x", {"L1": 1, "none": -1}, metric="near_zero"), ends) is None
    assert verdict(sparse_claim, ends, {"L1": [None, None], "none": inside["none"]}) is None


def test_the_compare_tab_shows_weight_histograms_and_where_early_stopping_stopped():
    from vision_lab.ui.compare import LiveComparison

    plan = build_plan(REGULARIZATION, "shapes", "quick")
    live = LiveComparison(plan, None)
    for i, (label, _) in enumerate(plan.runs):
        q = SPIKE if i == 3 else UNIFORM
        live.add((label, 0, EpochEnd(1, 1.0, 0.9, 1.0, 0.7, 1e-3, 100, 0.1, internals=_record((q, 0.5), (q, 0.5)))))
        live.add((label, 0, _end(1)))
    inside = live.inside_figure()
    assert len(inside.axes) == 2                                 # one panel per Linear layer
    assert len(inside.axes[0].patches) == 4                      # one histogram per run
    assert "✅" not in live.verdict() and "with one seed" in live.verdict()
    assert live.verdict().count("\n\n") == len(plan.claims) - 1  # every claim, one paragraph each

    plan = build_plan(EARLY, "shapes", "quick")
    (full, _), (early, _) = plan.runs
    live = LiveComparison(plan, None)
    for label, epochs, reason in ((full, 6, "completed"), (early, 4, "early_stopped")):
        for e in range(1, epochs + 1):
            live.add((label, 0, EpochEnd(e, 1.0, 0.9, 1.0, 0.5 + e / 100, 1e-3, 100, 0.1)))
        live.add((label, 0, _end(epochs, reason=reason, best=2)))
    ax = live.figures()[0].axes[0]
    assert [line.get_xdata()[0] for line in ax.get_lines() if line.get_linestyle() == ":"] == [4]
    star = [line for line in ax.get_lines() if line.get_marker() == "*"]
    assert len(star) == 1 and list(star[0].get_xdata()) == [2] and list(star[0].get_ydata()) == [80]
    assert {"stopped early", "kept epoch"} <= {text.get_text() for text in ax.get_legend().get_texts()}
