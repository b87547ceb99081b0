"""The app's own costs: live updates during training (target 3) and start-up time (target 4).

- live updates: the same training config run by the CLI (`python -m vision_lab train ... --json`)
  and by the app (`/train` through gradio_client against `python app.py`), interleaved. Compared
  is the training time both runs record in their checkpoint's history: the sum of the epochs'
  `seconds` (training batches plus the epoch's evaluation; not process start, dataset loading or
  checkpoint writing, which differ between the two for reasons unrelated to live updates).
  overhead = 1 - app throughput / CLI throughput.
- start-up: seconds from launching `python app.py` until its first page answers HTTP 200,
  against a bare `python -c "import torch, torchvision, gradio"`, interleaved.
"""
from __future__ import annotations

import json
import subprocess
import tempfile
import time
from pathlib import Path

from _common import PYTHON, ROOT, App, emit, machine, median, parser

CONFIG = {"dataset": "shapes", "model": "cnn", "epochs": 2, "subset_train": 6000,
          "subset_test": 1000, "augment": "standard", "batch_size": 64, "seed": 0}


def history_seconds(path: Path) -> tuple[float, int]:
    from vision_lab.checkpoints import read_metadata
    meta = read_metadata(path)
    return sum(e["seconds"] for e in meta["history"]), len(meta["history"])


def cli_run(config: dict, out: Path) -> float:
    args = [PYTHON, "-m", "vision_lab", "train", "--json", "--out", str(out)]
    for k, v in config.items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    subprocess.run(args, cwd=ROOT, check=True, capture_output=True, text=True)
    seconds, epochs = history_seconds(out)
    return config["subset_train"] * epochs / seconds


def app_run(client, config: dict, runs_dir: Path) -> float:
    before = set(runs_dir.rglob("*.safetensors"))
    client.predict(**config, api_name="/train")
    new = sorted(set(runs_dir.rglob("*.safetensors")) - before, key=lambda p: p.stat().st_mtime)
    if not new:
        raise RuntimeError("the app's /train call saved no checkpoint")
    seconds, epochs = history_seconds(new[-1])
    return config["subset_train"] * epochs / seconds


def bare_import_seconds() -> float:
    t = time.perf_counter()
    subprocess.run([PYTHON, "-c", "import torch, torchvision, gradio"], check=True)
    return time.perf_counter() - t


def main(argv=None):
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=2, help="CLI/app training pairs")
    p.add_argument("--startup-rounds", type=int, default=3)
    p.add_argument("--subset-train", type=int, default=CONFIG["subset_train"])
    p.add_argument("--epochs", type=int, default=CONFIG["epochs"])
    args = p.parse_args(argv)
    config = dict(CONFIG, subset_train=args.subset_train, epochs=args.epochs)
    if args.quick:
        args.rounds, args.startup_rounds = 1, 1
        config.update(subset_train=256, subset_test=64, epochs=1)
    t0 = time.perf_counter()
    result = {"machine": machine(), "config": config}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # Start-up first, before anything has warmed the page cache more for one than the other.
        starts, bares = [], []
        for i in range(args.startup_rounds):
            bares.append(bare_import_seconds())
            (tmp / f"start{i}").mkdir()
            with App(str(tmp / f"start{i}")) as app:
                starts.append(app.first_page)
        result |= {"bare_imports_seconds": median(bares), "app_first_page_seconds": median(starts),
                   "app_startup_vs_bare_imports": median([s / b for s, b in zip(starts, bares)])}

        runs_dir = tmp / "app_runs"
        runs_dir.mkdir()
        cli, app_rates = [], []
        with App(str(runs_dir)) as app:
            client = app.client()
            for i in range(args.rounds):
                cli.append(cli_run(config, tmp / f"cli{i}.safetensors"))
                app_rates.append(app_run(client, config, runs_dir))
        ratios = [a / c for a, c in zip(app_rates, cli)]
        result |= {"cli_images_per_sec": median(cli), "app_images_per_sec": median(app_rates),
                   "app_vs_cli": median(ratios), "live_update_overhead": 1 - median(ratios),
                   "rounds": {"cli": [round(v, 1) for v in cli], "app": [round(v, 1) for v in app_rates],
                              "startup": [round(v, 2) for v in starts], "bare": [round(v, 2) for v in bares]}}
    rows = [("bare imports (torch, torchvision, gradio)", result["bare_imports_seconds"], "s"),
            ("python app.py to first page", result["app_first_page_seconds"], "s"),
            ("app start-up / bare imports", result["app_startup_vs_bare_imports"], "target <= 1.3"),
            ("CLI training", result["cli_images_per_sec"], "images/s (epoch seconds from history)"),
            ("app-driven training (/train)", result["app_images_per_sec"], "images/s"),
            ("app / CLI", result["app_vs_cli"], "target >= 0.95"),
            ("live-update overhead", result["live_update_overhead"], "target <= 0.05")]
    result["seconds"] = round(time.perf_counter() - t0, 1)
    emit("app_overhead", result, rows, args.json)
    return result


if __name__ == "__main__":
    main()
