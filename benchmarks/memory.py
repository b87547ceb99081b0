"""Memory: a CIFAR-10-sized training as the app runs it, against the idle app.

- idle app: `python app.py` launched, its first page served, then (after its forkserver has
  started) the resident memory of the app process and of the forkserver its runs fork from.
- training: what the app does for a run, done here: this process holds the dataset (50,000
  training and 10,000 test CIFAR-shaped uint8 images, random pixels like torchvision's FakeData:
  pixel values do not change the memory) as the app's dataset cache would, and trains one epoch of
  the cnn with the `standard` augmentation, batch 64, in a child process forked from a forkserver
  (vision_lab.serving.worker, as the app does), including the epoch's evaluation of the 10,000 test
  images, the final evaluation and the checkpoint saves. The child's resident memory is sampled
  every 0.2 s: its peak RSS, and its peak private memory (USS: the pages only it uses; the rest it
  shares with the forkserver, which the idle app already has).

Target: the training's memory above the idle app < 1.5 GB, counted as the dataset copy the app
keeps plus the training process's peak private memory. Also shown: the child's peak RSS (which
counts the shared PyTorch libraries again).
"""
from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

from _common import App, emit, machine, parser, rss_mb

LIMIT_MB = 1536


def private_mb(pid: int) -> float | None:
    """Unique set size: Private_Clean + Private_Dirty from smaps_rollup, in MB."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    total = 0
    for line in text.splitlines():
        if line.startswith(("Private_Clean:", "Private_Dirty:")):
            total += int(line.split()[1])
    return total / 1024


def make_data(n_train: int, n_test: int):
    import torch

    from vision_lab.datasets import ImageData

    g = torch.Generator().manual_seed(0)
    return ImageData("fake-cifar10", [str(i) for i in range(10)], 3, 32, (0.5,) * 3, (0.25,) * 3,
                     torch.randint(0, 256, (n_train, 3, 32, 32), dtype=torch.uint8, generator=g),
                     torch.randint(0, 10, (n_train,), generator=g),
                     torch.randint(0, 256, (n_test, 3, 32, 32), dtype=torch.uint8, generator=g),
                     torch.randint(0, 10, (n_test,), generator=g))


def training(n_train: int, n_test: int, out: str) -> dict:
    from vision_lab.train_config import BatchEnd, RunEnd, TrainConfig
    from vision_lab.serving.worker import train_in_process

    data = make_data(n_train, n_test)
    data_mb = sum(t.numel() * t.element_size() for t in (data.train_images, data.train_labels,
                                                         data.test_images, data.test_labels)) / 2**20
    config = TrainConfig(model="cnn", augment="standard", epochs=1, batch_size=64, device="cpu", out=out)
    t = time.perf_counter()
    run = train_in_process(config, data)
    peaks = {"rss": 0.0, "uss": 0.0}
    done = threading.Event()

    def sample():
        while not done.is_set():
            try:
                status = rss_mb(run.pid)
                peaks["rss"] = max(peaks["rss"], status["peak_rss_mb"] or 0)
            except (OSError, TypeError):
                pass
            uss = private_mb(run.pid)
            if uss:
                peaks["uss"] = max(peaks["uss"], uss)
            done.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    steps, end = 0, None
    while True:
        item = run.events.get(timeout=600)
        if item is None:
            break
        if isinstance(item, BaseException):
            raise item
        if isinstance(item, BatchEnd):
            steps = item.step
        if isinstance(item, RunEnd):
            end = item
    done.set()
    sampler.join()
    return {"dataset_mb": data_mb, "child_peak_rss_mb": peaks["rss"], "child_peak_private_mb": peaks["uss"],
            "steps": steps, "reason": end.reason if end else None,
            "seconds": round(time.perf_counter() - t, 1)}


def idle_app(tmp: str) -> dict:
    with App(tmp) as app:
        time.sleep(8)  # the forkserver starts a few seconds after the first page
        own = rss_mb(app.proc.pid)["rss_mb"]
        server = 0.0
        for child in Path(f"/proc/{app.proc.pid}/task").glob("*/children"):
            for pid in child.read_text().split():
                try:
                    if b"forkserver" in Path(f"/proc/{pid}/cmdline").read_bytes():
                        server += rss_mb(int(pid))["rss_mb"]
                except OSError:
                    continue
        return {"idle_app_rss_mb": own, "idle_forkserver_rss_mb": server}


def main(argv=None):
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--n-train", type=int, default=50_000)
    p.add_argument("--n-test", type=int, default=10_000)
    p.add_argument("--no-app", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.n_train, args.n_test = 512, 128
    t0 = time.perf_counter()
    result = {"machine": machine(), "n_train": args.n_train, "n_test": args.n_test}
    with tempfile.TemporaryDirectory() as tmp:
        train = training(args.n_train, args.n_test, f"{tmp}/mem.safetensors")
        result |= {f"training_{k}": v for k, v in train.items()}
        above = train["dataset_mb"] + train["child_peak_private_mb"]
        result["training_above_idle_app_mb"] = above
        result["ratio_of_limit"] = above / LIMIT_MB
        if not args.no_app:
            result |= idle_app(tmp)
    rows = [(k, float(v), "MB" if k.endswith("_mb") else "") for k, v in result.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)]
    rows = [(k, v, "target < 1536 MB" if k == "training_above_idle_app_mb" else n) for k, v, n in rows]
    result["seconds"] = round(time.perf_counter() - t0, 1)
    emit("memory", result, rows, args.json)
    return result


if __name__ == "__main__":
    main()
