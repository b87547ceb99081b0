"""What recording the network's internals costs a training run (target: at most 3% of throughput).

The same run of `vision_lab.training.train()` with `record_internals` off and on (internals.py:
each layer's gradient norm read every few steps, and at each epoch's end the weight summaries and
the activations caught during the validation pass), on the `shapes` data the app's Train tab
starts with. Throughput is the training images of all epochs over the sum of the epochs'
`seconds`: training, validation and the recording, everything but the checkpoint save. Rounds
interleave the two (the order swapped every round, as the machine's speed drifts); the cost is
1 - the median of the per-round ratios on/off.

On a busy shared machine that ratio is noisier than the 3% it checks, so the recording's own
time is also measured directly: every call of the recorder's work (gradient norms after backward,
each summary of a weight or activation tensor) is timed in the "on" runs, and its share of the
epochs' seconds is printed beside the ratio.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from _common import emit, machine, median, parser

from vision_lab import internals
from vision_lab.serving.malloc import keep_freed_memory
from vision_lab.train_config import EpochEnd, TrainConfig, load_data
from vision_lab.training import train

TARGET_COST = 0.03
_SPENT = [0.0]   # seconds inside the recorder's work, while timing is on


def _timed(fn):
    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            _SPENT[0] += time.perf_counter() - t0
    return timed


def time_the_recorder() -> None:
    """Wrap the recorder's work in timers (summarise is what the hooks and epoch_record call)."""
    internals.summarise = _timed(internals.summarise)
    internals.InternalsRecorder.after_backward = _timed(internals.InternalsRecorder.after_backward)


def run_once(config: TrainConfig, data, record: bool, out: Path) -> tuple[float, float]:
    """Images per second over the run's epochs (validation and recording included), and the
    share of the epochs' seconds spent in the recorder's work."""
    config = TrainConfig(**{**config.to_dict(), "record_internals": record, "out": str(out)})
    images = seconds = 0.0
    _SPENT[0] = 0.0
    for event in train(config, data=data):
        if isinstance(event, EpochEnd):
            images += event.images
            seconds += event.seconds
            assert (event.internals is not None) == record
    return images / seconds, _SPENT[0] / seconds


def bench_model(model: str, rounds: int, subset_train: int, epochs: int, out_dir: Path) -> dict:
    config = TrainConfig(dataset="shapes", model=model, subset_train=subset_train, subset_test=100,
                         epochs=epochs, seed=0)
    data = load_data(config)
    run_once(config, data, True, out_dir / "warm.safetensors")   # first-run allocations
    off, on, shares = [], [], []
    for r in range(rounds):
        order = (False, True) if r % 2 == 0 else (True, False)
        for record in order:
            rate, share = run_once(config, data, record, out_dir / f"{model}-{record}.safetensors")
            (on if record else off).append(rate)
            if record:
                shares.append(share)
    ratios = [a / b for a, b in zip(on, off)]
    ratio = median(ratios)
    return {"off_images_per_sec": median(off), "on_images_per_sec": median(on),
            "on_vs_off": ratio, "cost": 1 - ratio, "recorder_share": median(shares),
            "within_target": max(1 - ratio, median(shares)) <= TARGET_COST,
            "round_ratios": [round(x, 4) for x in ratios]}


def main(argv=None):
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--models", default="cnn,mlp")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--subset-train", type=int, default=2000,
                   help="training images, validation included (the Train tab's default)")
    p.add_argument("--epochs", type=int, default=2)
    args = p.parse_args(argv)
    keep_freed_memory()   # as vision_lab's training processes run
    time_the_recorder()
    if args.quick:
        args.rounds, args.subset_train, args.epochs = 1, 300, 1
    t0 = time.perf_counter()
    result = {"machine": machine(), "rounds": args.rounds, "subset_train": args.subset_train,
              "epochs": args.epochs, "target_cost": TARGET_COST}
    rows = []
    with tempfile.TemporaryDirectory() as out_dir:
        for model in args.models.split(","):
            r = bench_model(model, args.rounds, args.subset_train, args.epochs, Path(out_dir))
            result[model] = r
            rows += [(f"{model} internals off", r["off_images_per_sec"], "images/s"),
                     (f"{model} internals on", r["on_images_per_sec"], "images/s"),
                     (f"{model} on / off", r["on_vs_off"],
                      f"cost {r['cost']:.1%} (target <= {TARGET_COST:.0%}); rounds {r['round_ratios']}"),
                     (f"{model} time in the recorder", r["recorder_share"], "share of the epochs' seconds")]
    result["seconds"] = round(time.perf_counter() - t0, 1)
    emit("internals", result, rows, args.json)
    return result


if __name__ == "__main__":
    main()
