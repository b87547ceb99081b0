"""The app's figures drawn in a helper process, so that matplotlib never holds the server's GIL.

Matplotlib is pure CPU under the GIL: a finished run's six figures (loss, accuracy, epoch loss,
learning rate, confusion matrix, per-class accuracy) took the server 1.5-3 s on the 2-core test
machine, and every other visitor's request waited behind them. With a class training, runs end
every few seconds, and a student classifying a digit waited over a second (issue "The classroom").
Here the figures are drawn by one helper process; the handler's thread waits for the files without
holding the GIL, so the server answers others meanwhile. The helper runs below the server's
priority and above the trainings' (HELPER_NICENESS), so requests come first and a figure is not
starved by a class's runs.

The helper is forked from the trainings' forkserver (serving.worker), is started on first use
(`warm_up()` does it at launch), lives as long as the server, and is restarted if it dies. What
goes to it is this program's own: a plots function, its arguments and a path to write.
"""
from __future__ import annotations

import importlib
import logging
import os
import signal
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)

HELPER_NICENESS = 5   # the server 0, the helper 5, trainings 10 (serving.worker.NICENESS)
HELPER_NAME = "vision-lab-draw"   # what ps and top call it (on Linux), beside the trainings

_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None

# One figure to draw: where to write it, the plots function that builds it, and its arguments.
Job = tuple[str, Callable, tuple, dict]


def _start_helper() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server's Ctrl-C ends it through the pool
    os.nice(HELPER_NICENESS)
    try:
        Path("/proc/self/comm").write_text(HELPER_NAME)
    except OSError:
        pass  # not Linux: it keeps Python's name
    importlib.import_module("vision_lab.plot_style")  # matplotlib's import, once, before a figure waits


def _helper() -> ProcessPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            from .worker import context

            _pool = ProcessPoolExecutor(max_workers=1, mp_context=context(), initializer=_start_helper)
        return _pool


def _restart(broken: ProcessPoolExecutor) -> None:
    global _pool
    with _lock:
        if _pool is broken:
            _pool = None
    broken.shutdown(wait=False, cancel_futures=True)


def warm_up() -> None:
    """Start the helper now, so the first figure does not wait for matplotlib to import."""
    _helper().submit(os.getpid)


def helper_pid() -> int | None:
    """The helper's process id once it has started (for tests and benchmarks)."""
    pool = _pool
    processes = getattr(pool, "_processes", None) or {}
    return next(iter(processes), None)


def _draw_all(jobs: list[Job], lang: str, text_scale: float) -> list[str]:
    """In the helper: each job's figure as a PNG file, labelled in `lang`, text `text_scale` times
    the usual size (lecture mode)."""
    from .. import i18n
    from ..plot_style import larger_text, save_png

    with i18n.using(lang), larger_text(text_scale):
        for path, build, args, kwargs in jobs:
            save_png(build(*args, **kwargs), path)
    return [path for path, *_ in jobs]


def draw_pngs(jobs: list[Job]) -> list[str]:
    """Draw each job's figure to its path in the helper, in the caller's language and text size;
    return the paths once every file is written. An error from a plots function is raised here as
    it was raised there. If the helper died it is started again; if it cannot be, the figures are
    drawn in this process (slower for everyone else, but the visitor still gets them)."""
    from .. import i18n
    from ..plot_style import _text_scale

    if not jobs:
        return []
    for path, *_ in jobs:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    context = (i18n.current(), _text_scale.get())
    for attempt in range(2):
        pool = _helper()
        try:
            return pool.submit(_draw_all, jobs, *context).result()
        except BrokenProcessPool:
            log.warning("The drawing helper died; %s.", "starting another" if attempt == 0 else
                        "drawing in the server process")
            _restart(pool)
    return _draw_all(jobs, *context)
