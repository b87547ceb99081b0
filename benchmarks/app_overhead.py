"""The app's own costs: live updates during training (target 3) and start-up time (target 4).

Start-up, in each of --startup-rounds rounds: a bare `python -c "import torch, torchvision,
gradio"`, timed, then `python app.py`, seconds until its first page answers HTTP 200.

Training, with one app started for it and left to finish its own start-up work first (the machine
quiet): a CLI training of the config below (`python -m vision_lab train`), then --rounds times:
the same config through `/train` (gradio_client) against the app, which shows its live curves and
status line as it does for a visitor, and the CLI training again, with the app frozen (SIGSTOP:
it uses no CPU, as if it were not running). Compared is the training time both record in their
checkpoint's history: the sum of the epochs' `seconds` (training batches plus each epoch's
evaluation; not process start, dataset loading or checkpoint writing). Each app run is compared
with the mean of the CLI runs just before and after it, so a machine whose speed drifts (a shared
VM's varies by a third within minutes) moves both sides alike. overhead = 1 - app throughput /
CLI throughput, the median of the rounds' ratios. Also reported: the CPU time the app's own
process used while its run trained, as a share of the machine (the training itself runs in a
child process) — a steadier view of the same cost than the throughput ratio on a noisy machine.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from _common import PYTHON, ROOT, App, cpu_seconds, emit, machine, median, parser

CONFIG = {"dataset": "shapes", "model": "cnn", "epochs": 2, "subset_train": 4000,
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


def app_run(app: App, config: dict) -> tuple[float, float]:
    """(images/s from the run's history, the app process's share of the machine while training)."""
    submitted = (time.perf_counter(), cpu_seconds(app.proc.pid))
    job = app.client().submit(**config, api_name="/train")
    start = end = None
    while not job.done():
        outputs = job.outputs()
        status = str(outputs[-1][0]) if outputs else ""
        now = (time.perf_counter(), cpu_seconds(app.proc.pid))
        if start is None and "**Training**" in status:
            start = now
        if start is not None and "**Training**" in status:
            end = now
        time.sleep(0.05)
    if start is None or end[0] - start[0] < 0.5:
        # A run too short to see training for a while (--quick): the whole request instead.
        start, end = submitted, (time.perf_counter(), cpu_seconds(app.proc.pid))
    summary = job.result()[-1]
    if summary.get("reason") != "completed":
        raise RuntimeError(f"the app's /train did not complete: {summary}")
    seconds, epochs = history_seconds(Path(summary["checkpoint"]))
    share = (end[1] - start[1]) / (end[0] - start[0]) / (os.cpu_count() or 1)
    return config["subset_train"] * epochs / seconds, share


@contextlib.contextmanager
def frozen(app: App):
    """The app stopped (no CPU at all) for the duration: a CLI run "with no app running"."""
    os.kill(app.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(app.proc.pid, signal.SIGCONT)


def bare_import_seconds() -> float:
    t = time.perf_counter()
    subprocess.run([PYTHON, "-c", "import torch, torchvision, gradio"], check=True)
    return time.perf_counter() - t


def wait_until_quiet(busy_below: float = 0.15, longest: float = 30.0) -> None:
    """Wait until the whole machine is less than `busy_below` busy over half a second (the app's
    start-up work, e.g. its forkserver importing torch, is done), or `longest` seconds."""
    def busy_and_total():
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]
        return sum(fields) - idle, sum(fields)

    deadline = time.perf_counter() + longest
    while time.perf_counter() < deadline:
        b0, t0 = busy_and_total()
        time.sleep(0.5)
        b1, t1 = busy_and_total()
        if t1 > t0 and (b1 - b0) / (t1 - t0) < busy_below:
            return


def main(argv=None):
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--startup-rounds", type=int, default=3)
    p.add_argument("--subset-train", type=int, default=CONFIG["subset_train"])
    p.add_argument("--epochs", type=int, default=CONFIG["epochs"])
    args = p.parse_args(argv)
    config = dict(CONFIG, subset_train=args.subset_train, epochs=args.epochs)
    if args.quick:
        args.rounds = args.startup_rounds = 1
        config.update(subset_train=256, subset_test=64, epochs=1)
    t0 = time.perf_counter()
    bares, starts, cli, app_rates, shares = [], [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for i in range(args.startup_rounds):
            bares.append(bare_import_seconds())
            (tmp / f"start{i}").mkdir()
            with App(str(tmp / f"start{i}")) as app:
                starts.append(app.first_page)
        (tmp / "app").mkdir()
        with App(str(tmp / "app")) as app:
            wait_until_quiet()
            with frozen(app):
                cli.append(cli_run(config, tmp / "cli0.safetensors"))
            for i in range(args.rounds):
                rate, share = app_run(app, config)
                app_rates.append(rate)
                shares.append(share)
                with frozen(app):
                    cli.append(cli_run(config, tmp / f"cli{i + 1}.safetensors"))
    ratios = [a / ((before + after) / 2) for a, before, after in zip(app_rates, cli, cli[1:])]
    result = {
        "machine": machine(), "config": config,
        "bare_imports_seconds": median(bares), "app_first_page_seconds": median(starts),
        "app_startup_vs_bare_imports": median([s / b for s, b in zip(starts, bares)]),
        "cli_images_per_sec": median(cli), "app_images_per_sec": median(app_rates),
        "app_vs_cli": median(ratios), "live_update_overhead": 1 - median(ratios),
        "app_process_cpu_share_while_training": median(shares),
        "rounds": {"cli": [round(v, 1) for v in cli], "app": [round(v, 1) for v in app_rates],
                   "app_vs_cli": [round(v, 3) for v in ratios],
                   "app_cpu_share": [round(v, 4) for v in shares],
                   "startup": [round(v, 2) for v in starts], "bare": [round(v, 2) for v in bares]},
    }
    rows = [("bare imports (torch, torchvision, gradio)", result["bare_imports_seconds"], "s"),
            ("python app.py to first page", result["app_first_page_seconds"], "s"),
            ("app start-up / bare imports", result["app_startup_vs_bare_imports"], "target <= 1.3"),
            ("CLI training (no app running)", result["cli_images_per_sec"], "images/s"),
            ("app-driven training (/train)", result["app_images_per_sec"], "images/s"),
            ("app / CLI", result["app_vs_cli"], "target >= 0.95"),
            ("live-update overhead", result["live_update_overhead"], "target <= 0.05"),
            ("app process CPU while training", result["app_process_cpu_share_while_training"],
             "share of all cores")]
    result["seconds"] = round(time.perf_counter() - t0, 1)
    emit("app_overhead", result, rows, args.json)
    return result


if __name__ == "__main__":
    main()
