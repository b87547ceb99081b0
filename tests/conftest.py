import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# Real MNIST for development and CI; a user's fresh clone has no ../shared, so tests using it skip.
SHARED_DATA = ROOT.parent / "shared" / "data"


# Tests give the same answer with or without internet: they run offline. Processes they start get
# a proxy that refuses every connection (urllib, which torchvision's dataset downloads and torch.hub
# use, reads it), so a download fails at once, as it does on a machine without internet.
_DEAD_PROXY = "http://127.0.0.1:9"
OFFLINE_ENV = {"http_proxy": _DEAD_PROXY, "https_proxy": _DEAD_PROXY, "HTTP_PROXY": _DEAD_PROXY,
               "HTTPS_PROXY": _DEAD_PROXY, "no_proxy": "127.0.0.1,localhost",
               "NO_PROXY": "127.0.0.1,localhost"}
_LOCAL_HOSTS = (None, "", "localhost", "127.0.0.1", "::1", "0.0.0.0")
SYSTEM_TEMP = Path(tempfile.gettempdir())   # before _temp_files_stay_in_the_session moves it


@pytest.fixture(scope="session", autouse=True)
def _temp_files_stay_in_the_session(tmp_path_factory):
    """Temp files go into this session's folder under pytest's own temp dir (which pytest prunes),
    never into the system's. gradio_client stages every file it downloads in a new folder
    tempfile.gettempdir()/<40 hex digits> and leaves it there empty: about 2,500 a full run
    (115 for test_app_api.py alone). The processes tests start inherit TMPDIR and GRADIO_TEMP_DIR,
    so the app's uploads, figures and gradio cache land here too."""
    folder = tmp_path_factory.mktemp("tmp")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tempfile, "tempdir", str(folder))
        patch.setenv("TMPDIR", str(folder))
        patch.setenv("GRADIO_TEMP_DIR", str(folder / "gradio"))
        yield folder


def api_client(url: str, **options):
    """A gradio_client.Client for `url` whose downloads go into the session's temp folder: its
    default is GRADIO_TEMP_DIR as it was when gradio_client was imported, /tmp/gradio."""
    from gradio_client import Client

    return Client(url, verbose=False, download_files=Path(tempfile.gettempdir()) / "downloads",
                  **options)


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path, monkeypatch):
    """Runs and downloads go to a temp dir, never into the repo's checkpoints/ or data/, nor into
    the user's torch cache (where pretrained weights already downloaded would be found)."""
    monkeypatch.setenv("VISION_LAB_CHECKPOINTS", str(tmp_path / "checkpoints"))
    monkeypatch.setenv("VISION_LAB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """No test reaches past this machine. The processes a test starts inherit OFFLINE_ENV; in this
    process only local names resolve, since urllib may have read the proxy settings before a test
    set them. A test that needs a download to succeed fakes it."""
    for name, value in OFFLINE_ENV.items():
        monkeypatch.setenv(name, value)
    resolve = socket.getaddrinfo

    def local_only(host, *args, **kwargs):
        if host not in _LOCAL_HOSTS:
            raise socket.gaierror(socket.EAI_NONAME, f"tests run offline: {host} is not looked up")
        return resolve(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", local_only)


@pytest.hookimpl(tryfirst=True)  # before `-m "not slow"` deselects
def pytest_collection_modifyitems(items):
    """A test that launches the app or a browser is slow (see pyproject.toml), whether or not its
    file says so."""
    for item in items:
        if {"app_url", "browser"} & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def shared_mnist():
    if not (SHARED_DATA / "MNIST" / "raw").is_dir():
        pytest.skip("../shared/data (real MNIST) is not available")
    return SHARED_DATA


@pytest.fixture
def shared_cifar10():
    """A small real CIFAR-10 (2,400 training and 600 test images), for development and CI only."""
    root = SHARED_DATA / "cifar10-dev"
    if not (root / "cifar-10-batches-bin").is_dir():
        pytest.skip("../shared/data/cifar10-dev (a small real CIFAR-10) is not available")
    return root


# ---- a launched app, shared by the gradio_client and browser tests -----------------------------

def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (children, their children ...), from /proc."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found, todo = [], [pid]
    while todo:
        above = todo.pop()
        below = [child for child, parent in parents.items() if parent == above]
        found += below
        todo += below
    return found


def _is_training(pid: int) -> bool:
    """A process of the forkserver's that trains now: not the helper that draws figures, nor a
    training process kept warm and waiting for the next run (serving/worker.py names both)."""
    from vision_lab.serving.drawing import HELPER_NAME
    from vision_lab.serving.worker import IDLE_NAME

    try:
        return (Path("/proc") / str(pid) / "comm").read_text().strip() not in (HELPER_NAME, IDLE_NAME)
    except OSError:
        return False


class LaunchedApp:
    """`python app.py ARGS` on a free port, its runs and data in `home`, its output in home/app.log."""

    def __init__(self, home, *args: str):
        import subprocess
        import time
        import urllib.request

        self.home = Path(home)
        port = _free_port()
        env = {**os.environ, **OFFLINE_ENV, "VISION_LAB_CHECKPOINTS": str(self.home / "checkpoints"),
               "VISION_LAB_DATA": str(self.home / "data"), "TORCH_HOME": str(self.home / "torch"),
               "GRADIO_ANALYTICS_ENABLED": "False"}
        self.log = open(self.home / "app.log", "w")
        self.proc = subprocess.Popen([sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(port),
                                      *args], cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{port}/"
        deadline = time.time() + 120
        # Never through a proxy: urllib's global opener keeps the proxies of the first request it
        # made, which may have been a test's dead one (_offline), and a session fixture starts
        # before the no_proxy of the test that asks for it is set.
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        while True:
            try:
                direct.open(self.url, timeout=2)
                break
            except OSError as error:
                if self.proc.poll() is not None or time.time() > deadline:
                    self.proc.kill()
                    raise RuntimeError(f"app.py did not answer ({error!r}):\n"
                                       + (self.home / "app.log").read_text()[-3000:])
                time.sleep(0.5)

    def run_processes(self) -> list[int]:
        """Pids of the processes training now (children of the app's forkserver that train:
        not the helper that draws figures, nor a process kept warm for the next run)."""
        def children(pid):
            out = []
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit():
                    try:
                        if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                            out.append(int(entry.name))
                    except (OSError, ValueError, IndexError):
                        continue
            return out

        runs = []
        for child in children(self.proc.pid):
            try:
                if b"forkserver" in (Path("/proc") / str(child) / "cmdline").read_bytes():
                    runs += [pid for pid in children(child) if _is_training(pid)]
            except OSError:
                continue
        return runs

    def close(self, signal_number=None):
        """Stop the app (SIGTERM, or `signal_number`: SIGKILL for a crash), then every process it
        had started: its multiprocessing forkserver and resource tracker outlive it otherwise,
        about 350 MB each, and a test session launches dozens of apps."""
        import signal
        import subprocess

        family = _descendants(self.proc.pid)
        self.proc.send_signal(signal_number or signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for pid in family:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.log.close()


# The shared server's lecturer key (the Class tab's lecturer actions): tests type it, as a lecturer does.
LECTURER_KEY = "lecturer-key-for-tests"


@pytest.fixture(scope="session")
def app_url(tmp_path_factory):
    """One real `python app.py` server for the whole session (starting one costs seconds)."""
    app = LaunchedApp(tmp_path_factory.mktemp("app"), "--lecturer-key", LECTURER_KEY)
    yield app.url
    app.close()


# The browser tests drive the `chromium` on PATH (Debian's: apt-get install -y chromium); .ci/run
# installs it when `command -v chromium` finds none, the same rule.
CHROMIUM = shutil.which("chromium")


@pytest.fixture(scope="module")
def client(app_url):
    """A gradio_client for the launched app, one per test file."""
    return api_client(app_url)


@pytest.fixture(scope="module")
def train_tab(tmp_path_factory):
    """The Train tab's (form, view), drawn in a Blocks that is never launched."""
    import gradio as gr

    from vision_lab.ui import Settings, train

    with gr.Blocks():
        form, view = train.layout(Settings(runs_dir=str(tmp_path_factory.mktemp("runs"))),
                                  gr.State([]))
    return form, view


@pytest.fixture(scope="session")
def browser():
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not CHROMIUM:
        pytest.skip("chromium is not on PATH (Debian: apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        yield b
        b.close()


@pytest.fixture
def browser_page(browser, app_url):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(app_url)
    yield page
    context.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory) -> Path:
    """Where the browser tests save their screenshots: a temp folder, so that running the tests
    changes no tracked file. `VISION_LAB_SCREENSHOTS=docs/screenshots` refreshes the docs'."""
    chosen = os.environ.get("VISION_LAB_SCREENSHOTS")
    folder = ROOT / chosen if chosen else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# ---- checkpoints for the inspection tests --------------------------------------------------------

def shipped(name: str) -> str:
    """A checkpoint that ships in checkpoints/ by name (skips the test where it is not trained)."""
    if not (ROOT / "checkpoints" / f"{name}.safetensors").is_file():
        pytest.skip(f"checkpoints/{name}.safetensors has not been trained yet")
    return name


def checkpoint_meta(model, channels, size, **extra) -> dict:
    return {"model": model, "model_options": {}, "classes": [str(i) for i in range(10)],
            "channels": channels, "image_size": size, "mean": [0.5] * channels,
            "std": [0.25] * channels, "dataset": "mnist" if channels == 1 else "shapes", **extra}


@pytest.fixture
def tiny_checkpoints(tmp_path):
    """App settings whose only checkpoints are untrained ones made here: tiny_mlp (1×28×28),
    tiny_cnn (3×32×32) and perm_cnn (a pixel-permuted 1×28×28 cnn)."""
    from types import SimpleNamespace

    import torch

    from vision_lab.checkpoints import save_checkpoint
    from vision_lab.models import create_model

    torch.manual_seed(0)
    folder = tmp_path / "ckpts"
    save_checkpoint(folder / "tiny_mlp.safetensors", create_model("mlp", 10, 1, 28, hidden_sizes=[32, 16]),
                    {**checkpoint_meta("mlp", 1, 28), "model_options": {"hidden_sizes": [32, 16]}})
    save_checkpoint(folder / "tiny_cnn.safetensors", create_model("cnn", 10, 3, 32),
                    checkpoint_meta("cnn", 3, 32))
    save_checkpoint(folder / "perm_cnn.safetensors", create_model("cnn", 10, 1, 28),
                    checkpoint_meta("cnn", 1, 28, permutation_seed=3))
    return SimpleNamespace(checkpoint_dirs=[str(folder)], runs_dir=str(folder), data_root=str(tmp_path),
                           examples_dir=str(ROOT / "examples"))


# ---- in the browser ----------------------------------------------------------------------------

def open_tab(page, name):
    page.get_by_role("tab", name=name, exact=True).click()


def train_in_browser(page, images: int, epochs: int, seconds: float = 400) -> None:
    """Train a shapes run of `images` training images for `epochs` epochs from the Train tab,
    and wait until it has finished."""
    import time

    open_tab(page, "Train")
    page.locator("#train-subset-train input").fill(str(images))
    page.get_by_label("Epochs").fill(str(epochs))
    page.locator("#train-start").click()
    status, finished = page.locator("#train-status"), f"Finished {epochs} epoch"
    deadline = time.time() + seconds
    while finished not in status.inner_text() and time.time() < deadline:
        time.sleep(1)
    assert finished in status.inner_text(), status.inner_text()
