import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]


def cli(*args, check=True):
    r = subprocess.run([sys.executable, "-m", "vision_lab", *map(str, args)], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def json_lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "shapes_cnn.safetensors"
    r = cli("train", "--dataset", "shapes", "--model", "cnn", "--epochs", "3", "--batch-size", "64",
            "--lr", "0.001", "--subset-train", "2000", "--subset-test", "300", "--seed", "1",
            "--out", out, "--json")
    return out, json_lines(r.stdout)


def test_train_json_events(trained):
    out, events = trained
    kinds = [e["event"] for e in events]
    assert set(kinds) <= {"batch", "epoch", "status", "done"}
    assert kinds[-1] == "done" and kinds.count("epoch") == 3
    batch = next(e for e in events if e["event"] == "batch")
    assert {"step", "epoch", "loss", "lr", "images_per_sec"} <= set(batch)
    epoch = next(e for e in events if e["event"] == "epoch")
    assert {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"} <= set(epoch)
    assert not any("test" in key for key in epoch), "the test set is looked at once, at the end"
    assert all(0 <= e[k] <= 1 for e in events if e["event"] == "epoch" for k in ("train_acc", "val_acc"))
    done = events[-1]
    assert done["reason"] == "completed" and Path(done["checkpoint"]) == out and out.exists()
    assert done["metrics"]["test_acc"] > 0.3, "well above the 0.1 of chance after 3 epochs"
    assert set(done["metrics"]) >= {"test_loss", "test_acc", "per_class_acc", "confusion"}
    assert done["best_epoch"] in (1, 2, 3)


def test_evaluate_json(trained):
    out, events = trained
    r = cli("evaluate", out, "--dataset", "shapes", "--subset-test", "300", "--json")
    (result,) = json_lines(r.stdout)
    assert set(result) == {"test_loss", "test_acc", "per_class_acc", "confusion"}
    # The same 300 test images as the run's (shapes subsets are generated, not sampled), so the
    # same figure as the run measured once at its end.
    assert result["test_acc"] == pytest.approx(events[-1]["metrics"]["test_acc"])
    assert len(result["confusion"]) == 10


def test_predict_json_and_text(trained, tmp_path):
    out, _ = trained
    img = tmp_path / "x.png"
    Image.fromarray(np.full((40, 50, 3), 200, np.uint8)).save(img)
    gray = tmp_path / "g.jpg"
    Image.fromarray(np.full((20, 20), 50, np.uint8), "L").save(gray)
    r = cli("predict", out, img, gray, "--top-k", "3", "--json")
    results = json_lines(r.stdout)
    assert [res["image"] for res in results] == [str(img), str(gray)]
    for res in results:
        assert len(res["top"]) == 3
        assert sum(t["prob"] for t in res["top"]) <= 1.0 + 1e-6
        assert res["top"][0]["prob"] >= res["top"][1]["prob"]
    text = cli("predict", out, img).stdout
    assert text.startswith(str(img) + ": ") and "%" in text


def test_list_shows_models_and_checkpoints(trained):
    out, _ = trained
    r = cli("list", "--json")
    (listing,) = json_lines(r.stdout)
    assert "cnn" in listing["models"] and "shapes" in listing["datasets"]
    assert "standard" in listing["presets"]


@pytest.mark.parametrize("args, message", [
    (["train", "--model", "transformer", "--epochs", "1"], "Unknown model 'transformer'"),
    (["train", "--epochs", "0"], "epochs must be"),
    (["train", "--dataset", "cifar10", "--epochs", "1"], "shapes"),
    (["train", "--dataset", "folder:/nonexistent/dir", "--epochs", "1"], "/nonexistent/dir"),
    (["evaluate", "/nonexistent.safetensors", "--dataset", "shapes"], "does not exist"),
    (["predict", "README.md", "README.md"], "not a valid safetensors"),
])
def test_errors_are_one_sentence_without_traceback(args, message, tmp_path):
    r = cli(*args, check=False)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    # Progress lines may come first; the error itself is the last line, one sentence.
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and message in last


def test_predict_reports_a_bad_image_and_carries_on(trained, tmp_path):
    out, _ = trained
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"this is not a png")
    good = tmp_path / "good.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(good)
    r = cli("predict", out, bad, good, "--json", check=False)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "bad.png" in r.stderr and "not an image" in r.stderr
    assert [res["image"] for res in json_lines(r.stdout)] == [str(good)]


def test_ctrl_c_stops_after_the_batch_keeps_the_last_epoch_and_exits_130(tmp_path):
    import signal
    import time

    out = tmp_path / "interrupted.safetensors"
    process = subprocess.Popen(
        # The cnn: its steps are slow enough that the child does not write batches faster than
        # this reads them (an mlp step is under a millisecond: the pipe ran ahead of the signal).
        [sys.executable, "-m", "vision_lab", "train", "--dataset", "shapes", "--model", "cnn",
         "--subset-train", "2000", "--subset-test", "100", "--epochs", "50", "--batch-size", "16",
         "--out", str(out), "--json"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    events = []
    deadline = time.monotonic() + 240
    for line in process.stdout:          # read until the second epoch has started
        events.append(json.loads(line))
        if events[-1]["event"] == "batch" and events[-1]["epoch"] == 2:
            process.send_signal(signal.SIGINT)
            break
        assert time.monotonic() < deadline
    rest = [json.loads(line) for line in process.stdout]
    assert process.wait(timeout=60) == 130
    assert "Traceback" not in process.stderr.read()
    # Within a batch: at most the batch in flight, then the end.
    assert [e["event"] for e in rest][-1] == "done" and len(rest) <= 2
    done = rest[-1]
    assert done["reason"] == "stopped" and done["message"].startswith("Stopped; kept epoch 1")
    assert Path(done["checkpoint"]) == out and out.exists()


def test_command_for_a_config_trains_that_config_again():
    from vision_lab.cli import build_parser
    from vision_lab.command_line import command_for, config_from_args
    from vision_lab.train_config import TrainConfig

    config = TrainConfig(dataset="shapes", model="mlp", model_options={"hidden_sizes": [8, 8]},
                         epochs=4, lr=0.003, scheduler="step", scheduler_options={"step_size": 2},
                         augment=[{"op": "RandomHorizontalFlip", "p": 0.5}], restore_best=False,
                         permute_pixels=True, subset_train=500, val_fraction=0.2, seed=3,
                         out="ignored.safetensors")
    command = command_for(config)
    assert command.startswith("python -m vision_lab train --subset-train 500 --val-fraction 0.2 ")
    assert "--no-restore-best" in command and "--out" not in command
    import shlex
    args = build_parser().parse_args(shlex.split(command)[3:])
    assert config_from_args(args) == TrainConfig(**{**config.to_dict(), "out": None})
    assert command_for(TrainConfig()) == "python -m vision_lab train --seed 0"


def test_command_for_a_speedrun_lists_only_what_differs_from_its_recipe():
    import shlex

    from vision_lab.cli import build_parser
    from vision_lab.command_line import command_for, config_from_args
    from vision_lab.train_config import TrainConfig

    def round_trip(config):
        command = command_for(config)
        args = build_parser().parse_args(shlex.split(command)[3:])
        assert config_from_args(args) == TrainConfig(**{**config.to_dict(), "out": None})
        return command

    assert round_trip(TrainConfig(model="speedrun")) == "python -m vision_lab train --model speedrun --seed 0"
    config = TrainConfig(dataset="mnist", model="speedrun", budget_seconds=30, label_smoothing=0.1,
                         precision="bf16", seed=2)
    assert round_trip(config) == ("python -m vision_lab train --dataset mnist --model speedrun "
                                  "--budget-seconds 30 --label-smoothing 0.1 --seed 2 --precision bf16")
    assert round_trip(TrainConfig(model="speedrun", permute_pixels=True)) == \
        "python -m vision_lab train --model speedrun --permute-pixels --seed 0"
    bare = TrainConfig(model="speedrun", use_recipe=False, tta="flip", compile="off", scheduler="onecycle")
    assert round_trip(bare) == ("python -m vision_lab train --model speedrun --no-recipe --scheduler "
                                "onecycle --tta flip --seed 0 --compile off")


def test_a_speedrun_within_a_time_budget_and_its_evaluation(tmp_path):
    out = tmp_path / "speedrun.safetensors"
    r = cli("train", "--dataset", "shapes", "--model", "speedrun", "--budget-seconds", "4",
            "--subset-train", "600", "--subset-test", "200", "--out", out, "--json")
    events = json_lines(r.stdout)
    assert any(e["event"] == "status" and e["message"].startswith("Planned ") for e in events)
    epochs = [e for e in events if e["event"] == "epoch"]
    assert epochs and all(e["images"] > 0 for e in epochs)
    done = events[-1]
    assert done["reason"] == "completed" and done["message"].startswith("Used the 4 s time budget")
    # evaluate tests the checkpoint the way the run tested it (speedrun's flip TTA): same figure.
    (result,) = json_lines(cli("evaluate", out, "--dataset", "shapes", "--subset-test", "200",
                               "--json").stdout)
    assert result["test_acc"] == pytest.approx(done["metrics"]["test_acc"])
