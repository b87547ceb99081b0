"""Shared helpers for the benchmark scripts: timing, medians, tables, JSON, machine info.

Every script measures its variants side by side in one process run, interleaved round by round,
and reports medians, so a busy machine slows all variants alike and the ratios stay meaningful.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PYTHON = sys.executable


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks the script runs (seconds)")
    return p


def median(values) -> float:
    values = [v for v in values if v is not None]
    return float(statistics.median(values)) if values else float("nan")


def machine() -> dict:
    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch
    return {"cpus": os.cpu_count(), "cpu_model": model, "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "load_avg_1m": round(os.getloadavg()[0], 2)}


def emit(name: str, result: dict, rows: list[tuple], as_json: bool) -> None:
    """Print `result` as one JSON object, or `rows` (label, value, note) as an aligned table."""
    if as_json:
        print(json.dumps({"benchmark": name, **result}))
        return
    print(f"== {name} ==  ({result['machine']['cpus']} CPUs, {result['machine']['cpu_model']}, "
          f"torch {result['machine']['torch']}, load {result['machine']['load_avg_1m']})")
    width = max(len(str(r[0])) for r in rows) if rows else 10
    for label, value, *note in rows:
        text = f"{value:,.3f}" if isinstance(value, float) and abs(value) < 100 else (
            f"{value:,.0f}" if isinstance(value, float) else str(value))
        print(f"  {label:<{width}}  {text:>12}  {note[0] if note else ''}")


def minor_page_faults() -> int | None:
    """Minor page faults of this process so far (None where `resource` is missing). Many per
    training step mean the allocator keeps giving memory back to the OS and faulting it in again;
    on some machines that costs a step up to a third of its time and varies from round to round
    with the process's allocation history, so it is worth printing next to a throughput."""
    try:
        import resource
    except ImportError:
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url: str, timeout: float, proc: subprocess.Popen | None = None,
                  interval: float = 0.02) -> float:
    """Poll `url` until it answers 200; return the time it first did (time.perf_counter())."""
    import urllib.request
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode} before serving {url}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    r.read()
                    return time.perf_counter()
        except OSError:
            pass
        time.sleep(interval)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def gradio_client(url: str, one_tls_context: bool = False):
    """A gradio_client.Client for `url`.

    gradio_client opens a new httpx client for every HTTP request (upload, queue, stream, each
    download) and httpx builds a TLS context for each, loading the CA certificates even for a
    plain http:// URL: about 130-190 ms of the caller's CPU per /classify call on a 2-core
    machine. `one_tls_context=True` passes one prebuilt context for all of them (`ssl_verify`
    accepts an ssl.SSLContext), which is what docs/api.md suggests to Python callers.
    """
    import ssl

    from gradio_client import Client
    _downloads_in_own_folder()
    return Client(url, verbose=False,
                  ssl_verify=ssl.create_default_context() if one_tls_context else True)


def _downloads_in_own_folder() -> None:
    """gradio_client stages every file it downloads in a new folder under tempfile.gettempdir()
    and leaves it there empty: about 4,400 of them for one run_all.py. This process's temp files
    go into a folder of its own instead, removed when the process exits."""
    import atexit
    import shutil
    import tempfile

    if not getattr(_downloads_in_own_folder, "folder", None):
        folder = tempfile.mkdtemp(prefix="vision-lab-benchmark-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        tempfile.tempdir = _downloads_in_own_folder.folder = folder


def rss_mb(pid: int) -> dict:
    """Current (VmRSS) and peak (VmHWM) resident memory of a process, in MB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            key, value = line.split(":")
            out[key] = int(value.split()[0]) / 1024
    return {"rss_mb": out.get("VmRSS"), "peak_rss_mb": out.get("VmHWM")}


class App:
    """`python app.py` in a subprocess on a free port, with runs saved under a temp folder."""

    def __init__(self, runs_dir: str, timeout: float = 120.0):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        env = {**os.environ, "VISION_LAB_CHECKPOINTS": runs_dir, "GRADIO_ANALYTICS_ENABLED": "False",
               "PYTHONUNBUFFERED": "1"}
        self.log = open(Path(runs_dir) / "app.log", "w")
        self.started = time.perf_counter()
        self.proc = subprocess.Popen([PYTHON, str(ROOT / "app.py"), "--host", "127.0.0.1",
                                      "--port", str(self.port)], cwd=ROOT, env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.first_page = wait_for_http(self.url, timeout, self.proc) - self.started

    def client(self, one_tls_context: bool = False):
        return gradio_client(self.url, one_tls_context)

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def percentile(values, q: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)
