"""Targets 3 and 4: what the app costs on top of the library.

3. Live updates: the same training config run through the app's /train (gradio_client, curves
   redrawn about once a second) and through the CLI; compares the summed epoch seconds.
4. Start-up: `python app.py` until its first page answers, vs a bare
   `python -c "import torch, torchvision, gradio"`.
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time

from _common import PYTHON, ROOT, emit, free_port, machine, median, parser, wait_for_http


def launch_app(home: str):
    port = free_port()
    env = {**os.environ, "VISION_LAB_CHECKPOINTS": home, "GRADIO_ANALYTICS_ENABLED": "False"}
    t0 = time.perf_counter()
    proc = subprocess.Popen([PYTHON, "app.py", "--host", "127.0.0.1", "--port", str(port)], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    served = wait_for_http(f"http://127.0.0.1:{port}/", 180, proc)
    return proc, f"http://127.0.0.1:{port}/", served - t0


def bare_import_seconds() -> float:
    t0 = time.perf_counter()
    subprocess.run([PYTHON, "-c", "import torch, torchvision, gradio"], check=True)
    return time.perf_counter() - t0


def cli_epoch_seconds(config: dict, out: str) -> float:
    flags = ["--dataset", config["dataset"], "--model", config["model"],
             "--epochs", str(config["epochs"]), "--batch-size", str(config["batch_size"]),
             "--lr", str(config["lr"]), "--optimizer", config["optimizer"],
             "--subset-train", str(config["subset_train"]), "--subset-test", str(config["subset_test"]),
             "--seed", str(config["seed"]), "--model-options", json.dumps(config["model_options"]),
             "--augment", config["augment"] if isinstance(config["augment"], str)
             else json.dumps(config["augment"]), "--out", out, "--json"]
    r = subprocess.run([PYTHON, "-m", "vision_lab", "train", *flags], cwd=ROOT, capture_output=True,
                       text=True, check=True)
    epochs = [json.loads(line) for line in r.stdout.splitlines() if '"event": "epoch"' in line]
    return sum(e["seconds"] for e in epochs)


def main(argv=None):
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    rounds = 1 if args.quick else 3
    subset, epochs = (300, 1) if args.quick else (4000, 2)
    home = tempfile.mkdtemp(prefix="vl-overhead-")

    bare, startup = [], []
    app_seconds, cli_seconds = [], []
    for _ in range(rounds):  # interleaved, so a busy machine slows both sides alike
        bare.append(bare_import_seconds())
        proc, url, first_page = launch_app(home)
        startup.append(first_page)
        try:
            from gradio_client import Client

            client = Client(url, verbose=False)
            out = client.predict(dataset="shapes", subset_train=subset, subset_test=200, model="cnn",
                                 epochs=epochs, augment="standard", api_name="/train")
            summary = out[-1]
            if summary.get("reason") != "completed":
                raise RuntimeError(f"the app's training did not complete: {out[0]}")
            app_seconds.append(sum(h["seconds"] for h in summary["history"]))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        cli_seconds.append(cli_epoch_seconds(summary["config"], os.path.join(home, "cli.safetensors")))

    figures = {
        "bare_import_s": median(bare), "app_first_page_s": median(startup),
        "startup_ratio": median(startup) / median(bare),
        "app_train_epoch_s": median(app_seconds), "cli_train_epoch_s": median(cli_seconds),
    }
    figures["app_vs_cli_throughput"] = figures["cli_train_epoch_s"] / figures["app_train_epoch_s"]
    figures["live_update_cost"] = 1 - figures["app_vs_cli_throughput"]
    result = {"machine": machine(), "rounds": rounds, "train_images": subset, "epochs": epochs,
              **figures, "targets": {"startup_ratio": "<= 1.3", "live_update_cost": "<= 0.05"}}
    emit("app_overhead", result, [
        ("bare import torch, torchvision, gradio", figures["bare_import_s"], "s"),
        ("python app.py to first page", figures["app_first_page_s"], "s"),
        ("start-up ratio", figures["startup_ratio"], "(target ≤ 1.3)"),
        ("training through the app (epoch seconds)", figures["app_train_epoch_s"], "s"),
        ("same config through the CLI", figures["cli_train_epoch_s"], "s"),
        ("app throughput / CLI throughput", figures["app_vs_cli_throughput"], ""),
        ("cost of live updates", figures["live_update_cost"], "(target ≤ 0.05)"),
    ], args.json)


if __name__ == "__main__":
    main()
