"""What the app keeps for its visitors (vision_lab.ui.storage): private runs, sharing on purpose,
quotas, retention, and clean-up of what killed writes leave behind."""
import os
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

pytest.importorskip("gradio")
from vision_lab.checkpoints import CheckpointError, list_checkpoints, save_checkpoint  # noqa: E402
from vision_lab.models import create_model  # noqa: E402
from vision_lab.ui import Settings  # noqa: E402
from vision_lab.ui import storage  # noqa: E402
from vision_lab.ui.common import check_server_folder, checkpoint_choices  # noqa: E402

META = {"model": "mlp", "model_options": {"hidden_sizes": [4]}, "classes": ["a", "b"], "channels": 1,
        "image_size": 8, "mean": [0.5], "std": [0.5], "dataset": "shapes"}


def make_checkpoint(path):
    model = create_model("mlp", num_classes=2, in_channels=1, image_size=8, hidden_sizes=[4])
    return save_checkpoint(path, model, META)


@pytest.fixture
def settings(tmp_path):
    return Settings(runs_dir=str(tmp_path / "runs"), checkpoint_dirs=[str(tmp_path / "runs")])


def request(cookie=None, session="s1"):
    return SimpleNamespace(cookies={storage.OWNER_COOKIE: cookie} if cookie else {},
                           session_hash=session)


def test_a_visitor_is_their_browser_token_else_their_session():
    token = "0123456789abcdef0123456789abcdef"
    assert storage.owner_of(request(token)) == f"browser:{token}"
    assert storage.owner_of(request("x; rm -rf /")) == "session:s1"  # not a token we made
    assert storage.owner_of(request(None, "s2")) == "session:s2"
    assert storage.owner_of(None) is None


def test_private_runs_are_seen_only_by_their_owner(settings):
    alice, bob = "browser:" + "a" * 32, "browser:" + "b" * 32
    make_checkpoint(storage.owner_dir(settings, alice) / "alice_run.safetensors")
    make_checkpoint(storage.owner_dir(settings, bob) / "bob_run.safetensors")
    make_checkpoint(storage.shared_dir(settings) / "everyone.safetensors")
    names = lambda owner: sorted(label.split(" ")[0] for label, _ in checkpoint_choices(settings, owner))
    assert names(alice) == ["alice_run", "everyone"]
    assert names(bob) == ["bob_run", "everyone"]
    assert names(None) == ["everyone"]
    # Hidden folders are never listed, so the runs folder itself shows only the shared run.
    assert [c.name for c in list_checkpoints(settings.runs_dir)] == ["everyone"]


def test_sharing_copies_one_of_your_runs_and_never_overwrites(settings):
    alice, bob = "browser:" + "a" * 32, "browser:" + "b" * 32
    mine = make_checkpoint(storage.owner_dir(settings, alice) / "run1.safetensors")
    first = storage.share(settings, alice, str(mine), "my model!")
    second = storage.share(settings, alice, "run1", "my model!")  # by name, as an API caller would
    assert first.name == "my-model.safetensors" and second.name == "my-model-2.safetensors"
    assert first.read_bytes() == mine.read_bytes() and mine.is_file()
    with pytest.raises(CheckpointError, match="is not one of your runs"):
        storage.share(settings, bob, str(mine))            # Bob cannot share Alice's run
    with pytest.raises(CheckpointError, match="is not one of your runs"):
        storage.share(settings, alice, str(first))         # nor re-share a shared file as his own
    with pytest.raises(CheckpointError, match="is not one of your runs"):
        storage.share(settings, alice, "../../shared/my-model")
    with pytest.raises(ValueError, match="Choose one of your runs first"):
        storage.share(settings, alice, "")


def test_delete_removes_only_your_own_run(settings):
    alice, bob = "browser:" + "a" * 32, "browser:" + "b" * 32
    mine = make_checkpoint(storage.owner_dir(settings, alice) / "run1.safetensors")
    with pytest.raises(CheckpointError):
        storage.delete(settings, bob, str(mine))
    assert mine.is_file()
    assert storage.delete(settings, alice, str(mine)) == "run1" and not mine.exists()


def test_quotas_refuse_a_new_run_with_a_sentence(tmp_path):
    owner = "browser:" + "a" * 32
    s = Settings(runs_dir=str(tmp_path / "runs"), visitor_quota_mb=0.001, runs_quota_mb=0)
    storage.check_quota(s, owner)  # nothing saved yet
    make_checkpoint(storage.owner_dir(s, owner) / "r.safetensors")
    with pytest.raises(ValueError, match=r"Your saved runs take 0\.0 MB, and this server keeps at "
                                         r"most 0\.001 MB per visitor\. Delete some under 'Your runs'"):
        storage.check_quota(s, owner)
    storage.check_quota(s, "browser:" + "b" * 32)  # another visitor is not affected
    full = Settings(runs_dir=str(tmp_path / "runs"), visitor_quota_mb=0, runs_quota_mb=0.001)
    with pytest.raises(ValueError, match="This server's storage for runs is full"):
        storage.check_quota(full, "browser:" + "b" * 32)


def test_public_servers_limit_storage_by_default_and_laptops_do_not(tmp_path):
    laptop = Settings(runs_dir=str(tmp_path))
    space = Settings(runs_dir=str(tmp_path), public=True)
    assert (laptop.visitor_quota_mb, laptop.runs_quota_mb, laptop.retention_hours) == (0, 0, 0)
    assert space.visitor_quota_mb > 0 and space.runs_quota_mb > 0 and space.retention_hours > 0
    with pytest.raises(ValueError, match="on_disconnect must be one of stop, finish"):
        Settings(runs_dir=str(tmp_path), on_disconnect="pause")


def test_sweep_removes_temp_files_of_killed_writes_and_old_private_runs(tmp_path):
    s = Settings(runs_dir=str(tmp_path / "runs"), retention_hours=1)
    owner = "browser:" + "a" * 32
    old = make_checkpoint(storage.owner_dir(s, owner) / "old.safetensors")
    new = make_checkpoint(storage.owner_dir(s, owner) / "new.safetensors")
    shared = make_checkpoint(storage.shared_dir(s) / "kept.safetensors")
    two_hours_ago = time.time() - 7200
    for p in (old, shared):
        os.utime(p, (two_hours_ago, two_hours_ago))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    orphan = storage.shared_dir(s) / f".x.safetensors.{dead}.tmp"      # its writer is gone
    live = storage.shared_dir(s) / f".y.safetensors.{os.getpid()}.tmp"  # a write in progress
    stale = storage.shared_dir(s) / f".z.safetensors.{os.getpid()}.tmp"  # alive pid, but hours old
    for p in (orphan, live, stale):
        p.write_bytes(b"partial")
    os.utime(stale, (two_hours_ago, two_hours_ago))
    removed = storage.sweep(s)
    assert removed == {"temp_files": 2, "private_runs": 1}
    assert not old.exists() and new.exists() and shared.exists()
    assert live.exists() and not orphan.exists() and not stale.exists()


def test_sweep_keeps_private_runs_when_there_is_no_retention(tmp_path):
    s = Settings(runs_dir=str(tmp_path / "runs"))
    old = make_checkpoint(storage.owner_dir(s, "browser:" + "a" * 32) / "old.safetensors")
    os.utime(old, (0, 0))
    assert storage.sweep(s)["private_runs"] == 0 and old.exists()


def test_public_servers_only_read_folders_inside_the_data_root(tmp_path):
    data = tmp_path / "data"
    (data / "mine").mkdir(parents=True)
    public = Settings(runs_dir=str(tmp_path), data_root=str(data), public=True)
    check_server_folder(public, f"folder:{data / 'mine'}")
    check_server_folder(public, "shapes")
    for outside in ("folder:/etc", f"folder:{data}/../", "folder:/tmp/gradio"):
        with pytest.raises(ValueError, match="must be inside the data folder"):
            check_server_folder(public, outside)
    check_server_folder(Settings(runs_dir=str(tmp_path), data_root=str(data)), "folder:/etc")


def test_the_app_starts_no_thread_of_its_own_before_torchvision_is_imported(tmp_path):
    """Two threads importing torch/torchvision at once can meet torchvision half-imported and
    kill the app at start (CI saw it: the janitor's first sweep raced the Augment tab's imports).
    So every thread Vision Lab starts while building the app must find torchvision imported."""
    probe = (
        "import sys, threading\n"
        "seen = []\n"
        "start = threading.Thread.start\n"
        "def recording(self):\n"
        "    module = getattr(getattr(self, '_target', None), '__module__', '') or ''\n"
        "    seen.append((module, 'torchvision.transforms' in sys.modules))\n"
        "    return start(self)\n"
        "threading.Thread.start = recording\n"
        "from vision_lab.ui import Settings, build_app\n"
        f"build_app(Settings(runs_dir={str(tmp_path / 'runs')!r}))\n"
        "ours = [s for s in seen if s[0].startswith('vision_lab')]\n"
        "print(ours)\n"
        "assert ours and all(ready for _, ready in ours), ours\n"
        "import os; os._exit(0)  # not waiting for the warm-up threads, which torch may abort\n")
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("path, served", [
    ("/gradio_api/file=/srv/runs/.private/ab12/run.safetensors", False),
    ("/gradio_api/file=.private/ab12/run.safetensors", False),          # relative to the app's folder
    ("/gradio_api/file/srv/runs/.PRIVATE/ab12/run.safetensors", False),  # a file system ignoring case
    ("/gradio_api/file=C:\\runs\\.private\\ab12\\run.safetensors", False),
    ("/gradio_api/file=/srv/runs/%252Eprivate/ab12/run.safetensors", False),  # encoded twice
    ("/gradio_api/file=/srv/runs/shared/run.safetensors", True),
    ("/gradio_api/file=/srv/runs/not.private/run.safetensors", True),
])
def test_no_url_through_a_private_folder_is_served(path, served):
    from starlette.responses import PlainTextResponse
    from starlette.testclient import TestClient

    client = TestClient(storage.HidePrivateRuns(PlainTextResponse("the file")))
    response = client.get(path)
    assert (response.status_code, response.text) == ((200, "the file") if served else (404, "Not found"))
