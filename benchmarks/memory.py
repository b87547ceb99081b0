"""Target 6: peak RSS of a CIFAR-10-sized training (50,000 shapes images) vs the idle app's RSS.

The training runs in its own process (the CLI, one epoch, batch 64) so its peak (VmHWM) is its
own; the idle app is launched, its first page loaded, and its resident memory read.
"""
from __future__ import annotations

import os
import subprocess
import tempfile
import time

from _common import PYTHON, ROOT, emit, free_port, machine, parser, rss_mb, wait_for_http

LIMIT_MB = 1.5 * 1024


def training_peak_mb(n_train: int, n_test: int, subset_steps: int | None) -> float:
    """Run a training process and sample its peak resident memory until it exits."""
    code = (
        "import sys; sys.path.insert(0, '.');"
        "from vision_lab.datasets import load_dataset;"
        "from vision_lab.training import TrainConfig, train;"
        f"d = load_dataset('shapes', n_train={n_train}, n_test={n_test}, seed=0);"
        "c = TrainConfig(model='cnn', epochs=1, batch_size=64, augment='standard', "
        "out=sys.argv[1]);"
        "import itertools;"
        f"[None for _ in itertools.islice(train(c, data=d), {subset_steps or 10**9})]"
    )
    out = os.path.join(tempfile.mkdtemp(prefix="vl-mem-"), "run.safetensors")
    proc = subprocess.Popen([PYTHON, "-c", code, out], cwd=ROOT)
    peak = 0.0
    while proc.poll() is None:
        try:
            peak = max(peak, rss_mb(proc.pid)["peak_rss_mb"] or 0)
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    if proc.returncode != 0:
        raise RuntimeError(f"the training process failed with exit code {proc.returncode}")
    return peak


def idle_app_mb() -> float:
    port = free_port()
    env = {**os.environ, "VISION_LAB_CHECKPOINTS": tempfile.mkdtemp(prefix="vl-mem-app-"),
           "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.Popen([PYTHON, "app.py", "--host", "127.0.0.1", "--port", str(port)], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/", 180, proc)
        time.sleep(2)  # let start-up work (warm-up threads) settle
        return rss_mb(proc.pid)["rss_mb"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main(argv=None):
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    # A full epoch on 50,000 training images (CIFAR-10's size) with 10,000 test images, so the
    # end-of-epoch evaluation and checkpoint write are inside the measured peak.
    n_train, n_test = (2000, 200) if args.quick else (50_000, 10_000)
    steps = 20 if args.quick else None
    idle = idle_app_mb()
    peak = training_peak_mb(n_train, n_test, steps)
    above = peak - idle
    result = {"machine": machine(), "train_images": n_train, "idle_app_rss_mb": idle,
              "training_peak_rss_mb": peak, "training_peak_above_idle_app_mb": above,
              "limit_mb": LIMIT_MB, "ratio_of_limit": above / LIMIT_MB}
    emit("memory", result, [
        ("idle app RSS", idle, "MB"),
        (f"training peak RSS ({n_train:,} images)", peak, "MB"),
        ("peak above the idle app", above, "MB"),
        ("ratio of the 1.5 GB limit", above / LIMIT_MB, "(≤ 1 meets the target)"),
    ], args.json)


if __name__ == "__main__":
    main()
