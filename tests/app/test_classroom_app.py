"""A class on one server, through a launched app: a run asked for again is replayed, a run asked
for while it trains is joined (trained once), a waiting visitor sees their place and an estimate,
one place in line per visitor, and a waiting run whose client is gone leaves the line. Also a
smoke run of benchmarks/classroom.py."""
import json
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import OFFLINE_ENV, ROOT, LaunchedApp, api_client
from vision_lab.checkpoints import load_checkpoint

pytestmark = pytest.mark.slow
pytest.importorskip("gradio_client")

# A tiny MLP on a few shapes: a run takes a second or two. Each test picks its own seeds, so no
# test replays another's run by accident.
TINY = dict(dataset="shapes", subset_train=128, subset_test=64, model="mlp", hidden_sizes="8",
            epochs=1)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    app = LaunchedApp(tmp_path_factory.mktemp("class"), "--max-trainings", "1", "--max-waiting", "3")
    yield app
    app.close()


def new_client(app):
    return api_client(app.url, ssl_verify=ssl.create_default_context())


def statuses(job) -> list[str]:
    return [str(out[0] if isinstance(out, (list, tuple)) else out) for out in job.outputs()]


def wait_for_output(job, text, timeout=120.0) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for status in statuses(job):
            if text in status:
                return status
        if job.done():
            break
        time.sleep(0.1)
    raise AssertionError(f"no status with {text!r}; last: {[s[:100] for s in statuses(job)[-3:]]}")


def long_run(client, seed):
    """A run that goes on until it is stopped."""
    job = client.submit(**dict(TINY, epochs=20_000, seed=seed), api_name="/train")
    wait_for_output(job, "Training")
    return job


def test_a_run_asked_for_again_is_replayed_with_its_own_checkpoint(app):
    alice, bob = new_client(app), new_client(app)
    first = alice.predict(**dict(TINY, seed=11), api_name="/train")[-1]
    out = bob.predict(**dict(TINY, seed=11), api_name="/train")
    again = out[-1]
    assert "Replayed from an identical earlier run" in out[0] and "Replayed" in again["message"]
    assert again["test_acc"] == first["test_acc"] and again["history"] == first["history"]
    # Bob's copy is a new file in Bob's own folder, and it loads.
    mine, theirs = Path(again["checkpoint"]), Path(first["checkpoint"])
    assert mine != theirs and mine.parent != theirs.parent and ".private" in mine.parts
    assert load_checkpoint(mine).metadata["config"]["out"] == str(mine)
    assert Path(out[9]).read_bytes() == mine.read_bytes()       # the download is Bob's copy


def test_a_run_asked_for_while_it_trains_is_joined_not_trained_twice(app):
    alice, bob = new_client(app), new_client(app)
    # Long enough (~10 s) that the second visitor asks while the first run trains.
    config = dict(TINY, epochs=400, subset_train=600, seed=12)
    first = alice.submit(**config, api_name="/train")
    wait_for_output(first, "Training")
    second = bob.submit(**config, api_name="/train")
    joined = wait_for_output(second, "Joined an identical run")
    assert "1 other visitor(s)" in joined
    assert len(app.run_processes()) <= 1                     # one training for both
    a, b = first.result()[-1], second.result()[-1]
    assert a["test_acc"] == b["test_acc"] and a["checkpoint"] != b["checkpoint"]
    assert load_checkpoint(b["checkpoint"]).model is not None


def test_waiting_visitors_see_their_place_and_an_estimate(app):
    first, second, third = new_client(app), new_client(app), new_client(app)
    running = long_run(first, seed=13)
    waiting = [second.submit(**dict(TINY, seed=14), api_name="/train")]
    one = wait_for_output(waiting[0], "Waiting in line: number 1")
    waiting.append(third.submit(**dict(TINY, seed=15), api_name="/train"))
    two = wait_for_output(waiting[1], "Waiting in line: number 2")
    assert "Your turn in about" in one and "Your turn in about" in two
    first.predict(api_name="/stop_training")
    assert running.result()[-1]["reason"] == "stopped"
    for job in waiting:
        assert job.result()[-1]["reason"] == "completed"


def test_one_run_per_visitor_waits_a_second_press_replaces_the_first(app):
    first, me = new_client(app), new_client(app)
    running = long_run(first, seed=16)
    old = me.submit(**dict(TINY, seed=17), api_name="/train")
    wait_for_output(old, "Waiting in line: number 1")
    new = me.submit(**dict(TINY, seed=18), api_name="/train")
    assert "Replaced** by your newer run" in str(old.result()[0])
    wait_for_output(new, "Waiting in line: number 1")     # in the place the first one had
    first.predict(api_name="/stop_training")
    running.result()
    assert new.result()[-1]["reason"] == "completed"


def test_a_waiting_run_whose_client_is_gone_leaves_the_line(app):
    first, gone, later = new_client(app), new_client(app), new_client(app)
    running = long_run(first, seed=19)
    job = gone.submit(**dict(TINY, seed=20), api_name="/train")
    wait_for_output(job, "Waiting in line: number 1")
    job.cancel()                                  # the client goes away: gradio closes the handler
    time.sleep(6)                                 # a waiting handler speaks at least every 5 s
    assert not running.done()
    waiting = later.submit(**dict(TINY, seed=21), api_name="/train")
    assert "number 1**" in wait_for_output(waiting, "Waiting in line")
    first.predict(api_name="/stop_training")
    running.result()
    assert waiting.result()[-1]["reason"] == "completed"


def test_a_lesson_asked_for_again_is_replayed_at_once(app):
    client = new_client(app)
    first = client.predict(lesson_name="MLP vs CNN", dataset_name="shapes", size_name="quick",
                           api_name="/compare")
    again = new_client(app).predict(lesson_name="MLP vs CNN", dataset_name="shapes",
                                    size_name="quick", api_name="/compare")
    assert "Done" in again[0] and "Replayed from identical earlier runs (all 2 runs" in again[0]
    assert again[2]["data"] == first[2]["data"]                  # the same table


def test_the_classroom_benchmark_runs(tmp_path):
    out = subprocess.run(
        [sys.executable, "benchmarks/classroom.py", "--students", "2", "--classifiers", "1",
         "--procs", "1", "--quick", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
        env={**__import__("os").environ, **OFFLINE_ENV, "TORCH_HOME": str(tmp_path / "torch")})
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["benchmark"] == "classroom" and result["students"] == 2
    assert result["lesson_done"] + result["lesson_refused"] + result["lesson_errors"] == 2
    assert result["own_done"] == 2 and result["call_errors"] == 0
    assert result["classify_busy_calls"] > 0


def test_a_public_server_trains_two_at_once_with_a_thread_each_and_a_laptop_one_with_all(monkeypatch):
    """app.py's defaults: a class's server (public, 2+ cores) two runs at once, one thread each
    (serving/worker.py set_threads); a laptop one run with PyTorch's own thread count."""
    sys.path.insert(0, str(ROOT))
    import app as app_py

    monkeypatch.setattr(app_py.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    for name in ("VISION_LAB_MAX_TRAININGS", "VISION_LAB_TRAIN_THREADS", "VISION_LAB_PUBLIC", "SPACE_ID"):
        monkeypatch.delenv(name, raising=False)
    public = app_py.parse_args(["--public"])
    assert (public.max_trainings, public.train_threads) == (2, 1)
    laptop = app_py.parse_args([])
    assert (laptop.max_trainings, laptop.train_threads) == (1, None)
    chosen = app_py.parse_args(["--public", "--max-trainings", "1"])
    assert (chosen.max_trainings, chosen.train_threads) == (1, None)
    assert app_py.parse_args(["--train-threads", "1"]).train_threads == 1
