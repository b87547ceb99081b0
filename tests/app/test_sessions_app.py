"""Several visitors at once, through a launched app (issue #4): private runs, sharing on purpose,
one training at a time with a visible line and a clear refusal, storage quotas, a training process
killed mid-run, and a closed browser tab (its run stops, or finishes when the server says so)."""
import os
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

import pytest

from conftest import LaunchedApp, api_client
from vision_lab.checkpoints import load_checkpoint, read_metadata

pytestmark = pytest.mark.slow
pytest.importorskip("gradio_client")
from gradio_client import handle_file  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
STAR = str(ROOT / "examples" / "shape_star.png")
# A tiny MLP on a few shapes: a run takes a second or two and its checkpoint ~100 KB. A run asked
# for again is replayed from the run cache at once (test_classroom_app.py); a test that needs a
# run to train, or to wait in line, gives it a seed of its own.
TINY = dict(dataset="shapes", subset_train=128, subset_test=64, model="mlp", hidden_sizes="8",
            epochs=1)


def fresh(**changes):
    """TINY with a seed no other run of this module used: it trains, never replays."""
    fresh.seed += 1
    return dict(TINY, seed=fresh.seed, **changes)


fresh.seed = 100


@pytest.fixture(scope="module")
def busy_app(tmp_path_factory):
    """One training at a time, one more may wait; a public server with a 0.05 MB quota."""
    app = LaunchedApp(tmp_path_factory.mktemp("busy"), "--max-trainings", "1", "--max-waiting", "1",
                      "--public", "--visitor-quota-mb", "0.05")
    yield app
    app.close()


def new_client(app):
    return api_client(app.url)


def error_of(call) -> str:
    with pytest.raises(Exception) as info:
        call()
    assert "Traceback" not in str(info.value)
    return str(info.value)


def wait_for_output(job, text, timeout=120.0) -> str:
    """The first status line of `job` containing `text`."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for out in job.outputs():
            status = out[0] if isinstance(out, (list, tuple)) else out
            if text in str(status):
                return str(status)
        if job.done():
            break
        time.sleep(0.2)
    raise AssertionError(f"no status with {text!r}; last: {[str(o[0])[:100] for o in job.outputs()[-3:]]}")


def wait_until(condition, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_runs_are_private_until_shared(busy_app):
    alice, bob = new_client(busy_app), new_client(busy_app)
    summary = alice.predict(**TINY, api_name="/train")[-1]
    assert summary["reason"] == "completed"
    path = Path(summary["checkpoint"])
    assert ".private" in path.parts, path
    name = path.stem
    assert alice.predict(handle_file(STAR), [name], api_name="/classify")[0][0]["checkpoint"] == name
    # Bob can neither pick it by name nor open it by its full path.
    assert f"No checkpoint named '{name}'" in error_of(
        lambda: bob.predict(handle_file(STAR), [name], api_name="/classify"))
    assert f"No checkpoint named '{name}.safetensors'" in error_of(
        lambda: bob.predict(str(path), handle_file(STAR), api_name="/feature_maps"))
    assert "is not one of your runs" in error_of(lambda: bob.predict(name, "", api_name="/share_run"))
    # Shared on purpose, everyone can use it; Alice deleting her own copy leaves the shared one.
    note, _ = alice.predict(name, "alice-mlp", api_name="/share_run")
    assert "Shared as **alice-mlp**" in note
    assert bob.predict(handle_file(STAR), ["alice-mlp"], api_name="/classify")[0][0]["checkpoint"] == "alice-mlp"
    note, _ = alice.predict(name, api_name="/delete_run")
    assert f"Deleted **{name}**" in note and not path.exists()
    assert f"No checkpoint named '{name}'" in error_of(
        lambda: alice.predict(handle_file(STAR), [name], api_name="/classify"))
    assert bob.predict(handle_file(STAR), ["alice-mlp"], api_name="/classify")[0][0]["top"]


def http_status(url: str, cookie: str = "") -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers={"Cookie": cookie})) as r:
            return r.status
    except urllib.error.HTTPError as error:
        return error.code


def test_a_private_run_is_never_served_by_its_path(busy_app):
    alice = new_client(busy_app)
    out = alice.predict(**TINY, api_name="/train")
    private, download = Path(out[-1]["checkpoint"]), Path(out[9])
    assert download.read_bytes() == private.read_bytes()    # Alice downloads her run
    # Bob, a browser with his own owner cookie, knows the path (say, from Alice's screen): refused,
    # by either of gradio's file routes, and however the path is spelled.
    bob = "vision_lab_owner=" + "b" * 32
    runs = private.parents[2]
    sideways = f"{runs}/shared/../{private.relative_to(runs)}"
    for route in ("gradio_api/file=", "gradio_api/file/"):
        for path in (str(private), sideways, quote(str(private), safe="")):
            assert http_status(busy_app.url + route + path, cookie=bob) == 404, (route, path)
    # The same route still serves the runs folder's public files: here a run shared on purpose.
    alice.predict(private.stem, "alice-open", api_name="/share_run")
    shared = busy_app.home / "checkpoints" / "shared" / "alice-open.safetensors"
    assert http_status(busy_app.url + "gradio_api/file=" + str(shared), cookie=bob) == 200
    alice.predict(private.stem, api_name="/delete_run")     # back under the module's small quota


def test_a_second_training_waits_with_its_place_and_a_third_is_refused(busy_app):
    first, second, third = new_client(busy_app), new_client(busy_app), new_client(busy_app)
    long_run = first.submit(**fresh(epochs=20_000), api_name="/train")  # until stopped
    wait_for_output(long_run, "Training")
    waiting = second.submit(**fresh(), api_name="/train")
    assert "number 1** (you are next; 1 training(s) running" in wait_for_output(waiting, "Waiting in line")
    refused = fresh()
    assert "The server is busy: 1 training(s) running and 1 waiting" in error_of(
        lambda: third.predict(**refused, api_name="/train"))
    first.predict(api_name="/stop_training")
    assert long_run.result()[-1]["reason"] == "stopped"
    summary = waiting.result()[-1]
    assert summary["reason"] == "completed"
    # Nothing stays taken: the refused visitor gets in now.
    assert third.predict(**refused, api_name="/train")[-1]["reason"] == "completed"


def test_stop_takes_a_waiting_run_out_of_the_line(busy_app):
    first, second = new_client(busy_app), new_client(busy_app)
    long_run = first.submit(**fresh(epochs=20_000), api_name="/train")  # until stopped
    wait_for_output(long_run, "Training")
    waiting = second.submit(**fresh(), api_name="/train")
    wait_for_output(waiting, "Waiting in line")
    second.predict(api_name="/stop_training")
    assert "Stopped** before it started" in str(waiting.result()[0])
    first.predict(api_name="/stop_training")
    assert long_run.result()[-1]["reason"] == "stopped"


def test_a_visitor_over_the_quota_is_told_and_can_make_room(busy_app):
    client = new_client(busy_app)
    summary = client.predict(**TINY, api_name="/train")[-1]
    text = error_of(lambda: client.predict(**TINY, api_name="/train"))
    assert "this server keeps at most 0.05 MB per visitor. Delete some under 'Your runs'" in text
    client.predict(Path(summary["checkpoint"]).stem, api_name="/delete_run")
    assert client.predict(**TINY, api_name="/train")[-1]["reason"] == "completed"


def test_a_public_server_reads_no_folders_outside_its_data_folder(busy_app):
    client = new_client(busy_app)
    for folder in ("folder:/etc", "folder:/tmp"):
        text = error_of(lambda: client.predict(**dict(TINY, dataset=folder), api_name="/train"))
        assert "must be inside the data folder" in text


def test_a_training_process_killed_mid_run_is_reported_and_the_app_keeps_serving(busy_app):
    client = new_client(busy_app)
    job = client.submit(**fresh(epochs=500), api_name="/train")
    wait_for_output(job, "last validation accuracy")  # at least one epoch is on disk
    pids = busy_app.run_processes()
    assert len(pids) == 1, pids
    os.kill(pids[0], signal.SIGKILL)            # what the kernel does when memory runs out
    status, summary = job.result()[0], job.result()[-1]
    assert "The training process was killed (SIGKILL)" in status
    assert summary["reason"] == "failed" and summary["checkpoint"], summary
    assert load_checkpoint(summary["checkpoint"]).metadata["history"]  # the kept epochs load
    wait_until(lambda: not busy_app.run_processes(), 10, "the killed run to be gone")
    client.predict(Path(summary["checkpoint"]).stem, api_name="/delete_run")  # back under quota
    assert client.predict(**TINY, api_name="/train")[-1]["reason"] == "completed"


# ---- a closed browser tab ------------------------------------------------------------------------

def start_training_in_browser(browser, url, epochs: int, train_images: int):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(url)
    page.get_by_role("tab", name="Train", exact=True).click()
    page.get_by_label("Training images (0 = all)").fill(str(train_images))
    page.get_by_label("Epochs").fill(str(epochs))
    page.locator("#train-start").click()
    page.wait_for_function(
        "document.querySelector('#train-status').innerText.includes('Epoch')", timeout=120_000)
    return context, page


def test_closing_the_page_stops_its_training_and_frees_its_slot(browser, busy_app):
    context, page = start_training_in_browser(browser, busy_app.url, epochs=200, train_images=500)
    assert len(busy_app.run_processes()) == 1
    page.close()
    context.close()
    wait_until(lambda: not busy_app.run_processes(), 15, "the closed page's training to stop")
    # The slot is free again: a new visitor starts at once instead of waiting in line.
    job = new_client(busy_app).submit(**TINY, api_name="/train")
    assert job.result()[-1]["reason"] == "completed"
    assert not any("Waiting in line" in str(out[0]) for out in job.outputs())


def test_a_server_set_to_finish_lets_a_closed_pages_run_finish(browser, tmp_path):
    app = LaunchedApp(tmp_path, "--on-disconnect", "finish")
    try:
        # Long enough (~10 s) to be closed while it trains.
        context, page = start_training_in_browser(browser, app.url, epochs=6, train_images=2000)
        page.close()
        context.close()
        private = tmp_path / "checkpoints" / ".private"

        def finished():
            runs = list(private.rglob("*.safetensors"))
            return bool(runs) and len(read_metadata(runs[0])["history"]) == 6 and not app.run_processes()

        wait_until(finished, 180, "the run to finish all 6 epochs on its own")
        meta = read_metadata(next(private.rglob("*.safetensors")))
        assert meta["metrics"].get("confusion"), "a finished run is evaluated and saved in full"
    finally:
        app.close()
