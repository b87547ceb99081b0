"""One training run over two processes: torchrun and DistributedDataParallel, gloo on the CPU.

torchrun is started as `python -m torch.distributed.run --standalone` (its rendezvous on
localhost), exactly as a user would start `torchrun --nproc_per_node=2 -m vision_lab train`.
"""
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

from vision_lab import batches, distributed, evaluation
from vision_lab.checkpoints import load_checkpoint
from vision_lab.datasets import load_dataset
from vision_lab.network_view import predict

ROOT = Path(__file__).resolve().parents[2]
# Two processes of one thread each fill the two cores of a small machine (torchrun's default).
TRAIN = ["--dataset", "shapes", "--model", "speedrun", "--subset-train", "1500", "--subset-test", "300",
         "--batch-size", "50", "--seed", "1", "--json"]


def torchrun(*args) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            "-m", "vision_lab", "train", *map(str, args)]


def json_events(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_each_process_takes_its_share_of_every_batch():
    order = torch.randperm(23)
    bounds = batches.batch_bounds(23, 8, smallest_last=4)
    assert bounds == [(0, 8), (8, 16), (16, 23)]
    shares = [distributed.shard_batches(order, bounds, distributed.Group(r, 2, r, torch.device("cpu")))
              for r in (0, 1)]
    for (first, end), (a0, a1), (b0, b1) in zip(bounds, shares[0][1], shares[1][1]):
        together = torch.cat([shares[0][0][a0:a1], shares[1][0][b0:b1]])
        assert sorted(together.tolist()) == sorted(order[first:end].tolist())  # the whole batch, once
        assert abs((a1 - a0) - (b1 - b0)) <= 1
    # A last batch smaller than two images a process joins the one before.
    assert batches.batch_bounds(17, 8, smallest_last=4) == [(0, 8), (8, 17)]


def test_two_processes_train_one_model_with_one_event_stream_and_one_checkpoint(tmp_path):
    out = tmp_path / "ddp.safetensors"
    r = subprocess.run(torchrun(*TRAIN, "--epochs", "4", "--out", out), cwd=ROOT, capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    events = json_events(r.stdout)
    kinds = [e["event"] for e in events]
    # One stream: rank 0 alone prints, each step and each epoch once.
    assert kinds.count("done") == 1 and kinds[-1] == "done"
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == [1, 2, 3, 4]
    steps = [e["step"] for e in events if e["event"] == "batch"]
    assert steps == list(range(1, len(steps) + 1))
    assert any("DistributedDataParallel over 2 processes (gloo)" in e.get("message", "") for e in events)
    # The same batches as one process: every training image once an epoch, in as many steps.
    data = load_dataset("shapes", subset_train=1500, subset_test=300, val_fraction=0.1)
    n = len(data.train_images)
    assert [e["images"] for e in events if e["event"] == "epoch"] == [n] * 4
    assert len(steps) == 4 * len(batches.batch_bounds(n, 50))
    done = events[-1]
    assert done["reason"] == "completed" and Path(done["checkpoint"]) == out
    assert sorted(tmp_path.iterdir()) == [out], "one checkpoint, written by rank 0"
    assert done["metrics"]["test_acc"] > 0.3, "well above the 0.1 of chance"
    # The checkpoint loads in a single process and predicts; evaluated here, it gives the figure
    # the two processes measured together (each on half the test images).
    ckpt = load_checkpoint(out)
    again = evaluation.evaluate(ckpt.model, data.test_images, data.test_labels, ckpt.preprocessing, 10,
                              tta=ckpt.metadata["config"]["tta"])
    assert again.acc == pytest.approx(done["metrics"]["test_acc"])
    assert again.confusion == done["metrics"]["confusion"]
    top = predict(ckpt.model, ckpt.preprocessing(data.test_images[:1]), ckpt.classes, top_k=3)[0]
    assert len(top) == 3 and top[0][0] in ckpt.classes


def _rank_zero_pid(launcher: int) -> int | None:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if parent == launcher and b"RANK=0" in environ:
            return int(entry.name)
    return None


def _ctrl_c_on_rank_zero(folder: Path) -> tuple[int, str, list[dict]]:
    """Start a long run, press Ctrl-C on rank 0 once its second epoch has begun; (torchrun's exit
    status, its stderr, the events printed from then on)."""
    folder.mkdir()
    launcher = subprocess.Popen(torchrun(*TRAIN, "--epochs", "50", "--out", folder / "stopped.safetensors"),
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    events, deadline = [], time.monotonic() + 600
    try:
        for line in launcher.stdout:  # until the second epoch has started
            if line.startswith("{"):
                events.append(json.loads(line))
                if events[-1]["event"] == "batch" and events[-1]["epoch"] == 2:
                    break
            assert time.monotonic() < deadline
        rank_zero = _rank_zero_pid(launcher.pid)
        assert rank_zero is not None
        os.kill(rank_zero, signal.SIGINT)
        rest = json_events(launcher.stdout.read())
        code = launcher.wait(timeout=120)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    return code, launcher.stderr.read(), rest


def test_ctrl_c_on_rank_0_stops_every_process_after_the_batch(tmp_path):
    code, stderr, rest = _ctrl_c_on_rank_zero(tmp_path / "first")
    if code != 0:
        # Seen about once in four full-suite runs on a loaded 2-core machine, never alone: torchrun
        # reports a process that aborted as it exited. Said, and tried once more; twice is a failure.
        warnings.warn(f"torchrun exited {code} after Ctrl-C; trying again. Its stderr ends: "
                      f"{stderr[-1500:]}")
        code, stderr, rest = _ctrl_c_on_rank_zero(tmp_path / "again")
    # Every process has ended (none waits for a lost partner), and cleanly: torchrun would report
    # any other exit as a failure.
    assert code == 0, stderr[-3000:]
    assert "Traceback" not in stderr
    # Stopped in the epoch it was in, kept at the last whole epoch. How many batch lines come
    # after the signal is not the point: on a busy machine rank 0 prints a few more before this
    # test has read up to the line it broke on (a pipe's buffer), so none is counted.
    assert [e["event"] for e in rest][-1] == "done"
    assert all(e["event"] == "batch" and e["epoch"] == 2 for e in rest[:-1])
    done = rest[-1]
    assert done["reason"] == "stopped" and done["message"].startswith("Stopped; kept epoch 1")
    out = Path(done["checkpoint"])
    assert out.name == "stopped.safetensors" and sorted(out.parent.iterdir()) == [out]
    assert [h["epoch"] for h in load_checkpoint(out).metadata["history"]] == [1]
