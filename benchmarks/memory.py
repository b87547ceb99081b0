"""Memory: peak RSS of a CIFAR-10-sized training against the idle app's RSS.

- training: a subprocess imports vision_lab, builds 50,000 training and 10,000 test CIFAR-shaped
  uint8 images in memory (random pixels, like torchvision's FakeData: the pixel values do not
  change the memory), and runs vision_lab's train() for one epoch of the cnn with the `standard`
  augmentation, batch 64, including the epoch's evaluation of the 10,000 test images, the final
  evaluation and the checkpoint saves. It reports its RSS after the imports and its peak RSS
  (VmHWM) at the end.
- idle app: `python app.py` launched, its first page served, then its VmRSS after 3 s.

Target: training peak RSS - idle app RSS < 1.5 GB (also shown: the training's growth over its own
RSS after the imports).
"""
from __future__ import annotations

import json
import subprocess
import tempfile
import textwrap
import time

from _common import PYTHON, ROOT, App, emit, machine, parser, rss_mb

CHILD = textwrap.dedent("""
    import json, sys, threading
    sys.path.insert(0, {root!r})
    import torch
    from vision_lab.datasets import ImageData
    from vision_lab.training import RunEnd, TrainConfig, train

    def status():
        out = {{}}
        for line in open("/proc/self/status"):
            if line.startswith(("VmRSS:", "VmHWM:")):
                k, v = line.split(":")
                out[k] = int(v.split()[0]) / 1024
        return out

    after_import = status()["VmRSS"]
    n_train, n_test = {n_train}, {n_test}
    g = torch.Generator().manual_seed(0)
    data = ImageData("fake-cifar10", [str(i) for i in range(10)], 3, 32, (0.5,) * 3, (0.25,) * 3,
                     torch.randint(0, 256, (n_train, 3, 32, 32), dtype=torch.uint8, generator=g),
                     torch.randint(0, 10, (n_train,), generator=g),
                     torch.randint(0, 256, (n_test, 3, 32, 32), dtype=torch.uint8, generator=g),
                     torch.randint(0, 10, (n_test,), generator=g))
    config = TrainConfig(model="cnn", augment="standard", epochs=1, batch_size=64, device="cpu",
                         out={out!r})
    steps, end = 0, None
    for ev in train(config, threading.Event(), data=data):
        if isinstance(ev, RunEnd):
            end = ev
        elif getattr(ev, "event", "") == "batch":
            steps = ev.step
    s = status()
    print(json.dumps({{"after_import_mb": after_import, "peak_mb": s["VmHWM"], "end_mb": s["VmRSS"],
                      "steps": steps, "reason": end.reason if end else None,
                      "test_acc": end.metrics.get("test_acc") if end else None}}))
""")


def training_peak(n_train: int, n_test: int, tmp: str) -> dict:
    code = CHILD.format(root=str(ROOT), n_train=n_train, n_test=n_test, out=f"{tmp}/mem.safetensors")
    t = time.perf_counter()
    out = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    r["seconds"] = round(time.perf_counter() - t, 1)
    return r


def idle_app(tmp: str) -> dict:
    with App(tmp) as app:
        time.sleep(3)
        return rss_mb(app.proc.pid)


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
        train = training_peak(args.n_train, args.n_test, tmp)
        result |= {"training_after_import_mb": train["after_import_mb"], "training_peak_mb": train["peak_mb"],
                   "training_growth_mb": train["peak_mb"] - train["after_import_mb"],
                   "training_steps": train["steps"], "training_seconds": train["seconds"]}
        if not args.no_app:
            app = idle_app(tmp)
            result["idle_app_rss_mb"] = app["rss_mb"]
            result["training_peak_above_idle_app_mb"] = train["peak_mb"] - app["rss_mb"]
    rows = [(k, v, "MB" if k.endswith("_mb") else "") for k, v in result.items() if isinstance(v, (int, float))]
    rows = [(k, float(v), ("target < 1536 MB" if k == "training_peak_above_idle_app_mb" else n))
            for k, v, n in rows]
    result["seconds"] = round(time.perf_counter() - t0, 1)
    emit("memory", result, rows, args.json)
    return result


if __name__ == "__main__":
    main()
