"""GPU against CPU: the same speedrun, its images per second and its time to accuracy on each.

One config, the speedrun recipe (`TrainConfig(model="speedrun")`) on shapes (or MNIST with
--dataset mnist --data-root DIR), trained by `vision_lab.training.train()` exactly as the CLI and
the app train it, once with device "cuda" and once with device "cpu"; the order alternates over
--rounds and the figures are medians. On the GPU the run uses what train() does there: the uint8
images moved to the GPU once and augmented there, bf16 autocast (fp16 with a gradient scaler on
GPUs without bf16), channels_last, and torch.compile when the run is long enough to repay it
(`--compile on|off` forces it).

Printed for each device:
- images/s: training images per second over each epoch's steps (what the BatchEnd events
  report), epochs after the first, median over epochs and rounds;
- time to accuracy: wall seconds from calling train() to the end of the first epoch whose
  validation accuracy reaches --target (the test set is looked at once, at the end, as always);
- test accuracy at the end;
and the GPU/CPU ratios of the first two. Without a CUDA GPU it says so and exits with status 2.

    python benchmarks/gpu.py                       # shapes, 10,000 training images, 8 epochs
    python benchmarks/gpu.py --dataset mnist --data-root ../shared/data --target 0.99
"""
from __future__ import annotations

import sys
import tempfile
import time

from _common import emit, machine, median, parser

import torch

from vision_lab.serving.malloc import keep_freed_memory
from vision_lab.train_config import BatchEnd, EpochEnd, RunEnd, Status, TrainConfig, load_data
from vision_lab.training import train


def one_run(config: TrainConfig, data, target: float) -> dict:
    started = time.perf_counter()
    rates, reached, device_line, end = {}, None, None, None
    for ev in train(config, data=data):
        if isinstance(ev, BatchEnd) and ev.epoch > 1:
            rates[ev.epoch] = ev.images_per_sec  # the epoch's rate so far: its last is the epoch's
        elif isinstance(ev, EpochEnd) and reached is None and ev.val_acc is not None and ev.val_acc >= target:
            reached = time.perf_counter() - started
        elif isinstance(ev, Status) and ev.message.startswith("Device:"):
            device_line = ev.message
        elif isinstance(ev, RunEnd):
            end = ev
    return {"images_per_sec": median(rates.values()),
            "seconds_to_target": reached, "seconds": time.perf_counter() - started,
            "test_acc": end.metrics.get("test_acc"), "device": device_line, "reason": end.reason}


def main(argv=None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--dataset", default="shapes")
    p.add_argument("--data-root", default=None)
    p.add_argument("--train-images", type=int, default=10000)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--target", type=float, default=0.98, help="validation accuracy to reach")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--compile", choices=["auto", "on", "off"], default="auto")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("benchmarks/gpu.py compares a CUDA GPU with the CPU, and PyTorch finds no CUDA GPU "
              "here (torch.cuda.is_available() is False): nothing was measured.", file=sys.stderr)
        return 2
    keep_freed_memory()
    if args.quick:
        args.train_images, args.epochs, args.rounds = 1000, 2, 1
    base = dict(dataset=args.dataset, data_root=args.data_root, subset_train=args.train_images,
                subset_test=2000, model="speedrun", epochs=args.epochs, compile=args.compile)
    data = load_data(TrainConfig(**base))
    runs = {"cuda": [], "cpu": []}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as out_dir:
        # One short run on each device first: CUDA's context, cuDNN's autotuning and the CPU's
        # thread pool start once per process and would otherwise count against the first.
        for device in ("cuda", "cpu"):
            one_run(TrainConfig(**{**base, "epochs": 1, "device": device, "out": f"{out_dir}/w.safetensors"}),
                    data, 2.0)
        for r in range(args.rounds):
            for device in (("cuda", "cpu") if r % 2 == 0 else ("cpu", "cuda")):
                config = TrainConfig(**{**base, "device": device, "out": f"{out_dir}/{device}{r}.safetensors"})
                runs[device].append(one_run(config, data, args.target))
    result = {"machine": {**machine(), "gpu": torch.cuda.get_device_name(0)}, "dataset": args.dataset,
              "train_images": len(data.train_images), "epochs": args.epochs, "target": args.target,
              "seconds": round(time.perf_counter() - t0, 1), "runs": runs}
    rows = []
    for device, rs in runs.items():
        result[f"{device}_images_per_sec"] = median([r["images_per_sec"] for r in rs])
        reached = [r["seconds_to_target"] for r in rs if r["seconds_to_target"] is not None]
        result[f"{device}_seconds_to_target"] = median(reached) if len(reached) == len(rs) else None
        result[f"{device}_test_acc"] = median([r["test_acc"] for r in rs])
        rows += [(f"{device}: {rs[0]['device']}", "", ""),
                 (f"{device} images/s", result[f"{device}_images_per_sec"], ""),
                 (f"{device} seconds to {args.target:.0%} validation accuracy",
                  "not reached" if result[f"{device}_seconds_to_target"] is None
                  else result[f"{device}_seconds_to_target"], ""),
                 (f"{device} test accuracy", result[f"{device}_test_acc"], "")]
    result["gpu_vs_cpu_images_per_sec"] = result["cuda_images_per_sec"] / result["cpu_images_per_sec"]
    if result["cuda_seconds_to_target"] and result["cpu_seconds_to_target"]:
        result["cpu_vs_gpu_time_to_target"] = result["cpu_seconds_to_target"] / result["cuda_seconds_to_target"]
    rows += [("GPU / CPU images per second", result["gpu_vs_cpu_images_per_sec"], ""),
             ("CPU / GPU time to the target", result.get("cpu_vs_gpu_time_to_target", "n/a"), "")]
    emit("gpu", result, rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
