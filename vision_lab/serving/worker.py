"""Run a training generator in a child process and stream its events back.

The app trains here rather than on one of its own threads, for two reasons measured on a 2-core
machine (benchmarks/app_overhead.py):

- speed: PyTorch's OpenMP workers hand work back and forth at every op. On a server thread, beside
  the other threads that have run torch ops (each keeps its own OpenMP team), libgomp stops
  spinning between ops and every op pays a wake-up: the same training ran about 15% slower than
  on a process's main thread. In a child the loop runs on that process's main thread, as the CLI's
  does.
- isolation: a child killed by the kernel for memory, or crashing in a native kernel, ends its run
  with a message; the server keeps serving everybody else.
- priority: the child runs at a lower priority (NICENESS), so requests to the server are answered
  first while it trains.

Children come from a forkserver: one clean process that imports torch once, from which each run
forks in milliseconds. Forking the server itself is unsafe (its threads' locks, and OpenMP after
fork can hang). Arguments go to the child pickled by us (tensors as numpy arrays, so nothing needs
shared memory, which containers often cap at 64 MB); events come back over a pipe. Both ends are
this program's own objects: no file from a user is ever unpickled.
"""
from __future__ import annotations

import io
import multiprocessing
import os
import pickle
import queue
import signal
import threading
from typing import Callable

from ..i18n import Text, text

PRELOAD = ["vision_lab.training", "vision_lab.lessons"]
_END = "__vision_lab_end__"
# Runs yield the cores to the app's own requests: a visitor classifying while another trains gets
# an answer at once, and the run loses only what those requests use (nothing when none come).
NICENESS = 10
_context_lock = threading.Lock()
_context = None


def context():
    """The forkserver context, created once (starting the server imports torch: seconds)."""
    global _context
    with _context_lock:
        if _context is None:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(PRELOAD)
            _context = ctx
    return _context


def warm_up() -> None:
    """Start the forkserver now, so the first run does not wait for torch to import."""
    from multiprocessing import forkserver

    context()
    forkserver.ensure_running()


class _Pickler(pickle.Pickler):
    """Tensors travel as numpy arrays: plain bytes in the pipe, no shared-memory segments."""

    def reducer_override(self, obj):
        import torch

        if isinstance(obj, torch.Tensor):
            return torch.from_numpy, (obj.detach().cpu().numpy(),)
        return NotImplemented


def _dumps(obj) -> bytes:
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buffer.getvalue()


def _portable_error(error: BaseException) -> BaseException:
    """The error itself if it survives pickling, else a RuntimeError with its sentence (still a
    catalogue Text when it was one, so the visitor reads it in their language)."""
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:  # noqa: BLE001 - any unpicklable error becomes its message
        if error.args and isinstance(error.args[0], Text):
            return RuntimeError(error.args[0])
        return RuntimeError(str(error) or type(error).__name__)


def _child(payload: bytes, conn, stop) -> None:
    from .malloc import keep_freed_memory

    # The server's Ctrl-C goes to the whole process group; the run ends through `stop` instead.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    keep_freed_memory()  # this process exists to train (see malloc.py)
    # Before torch starts its worker threads: on Linux niceness is per thread, and new threads
    # inherit their creator's.
    os.nice(NICENESS)
    fn, kwargs = pickle.loads(payload)
    try:
        for event in fn(stop=stop, **kwargs):
            conn.send(event)
    except (BrokenPipeError, EOFError):
        return  # the server is gone: nobody is listening
    except BaseException as error:  # noqa: BLE001 - reported to the server, which shows it
        try:
            conn.send(_portable_error(error))
        except (BrokenPipeError, EOFError):
            return
    try:
        conn.send(_END)
    except (BrokenPipeError, EOFError):
        pass


class RunDied(RuntimeError):
    """The child process ended without finishing its generator (killed, or crashed)."""


def exit_message(exitcode: int | None) -> str:
    """What the visitor reads when a run's process died (a catalogue Text: English, or theirs)."""
    if exitcode is not None and exitcode < 0:
        number = -exitcode
        name = signal.Signals(number).name if number in signal.Signals._value2member_map_ else str(number)
        if number == signal.SIGKILL:
            return text("worker.killed", signal=name)
        return text("worker.signal", signal=name)
    return text("worker.exited", code=exitcode)


class ProcessRun:
    """`fn(stop=..., **kwargs)` (a generator function) running in a child process.

    `events` is a queue.Queue that receives every event the generator yields, then the exception
    it raised (if any, or a RunDied saying how the process died), then None. Setting `stop`
    (a threading.Event) is passed on to the child within `poll` seconds. `on_exit` callbacks run
    once the child has exited and every event has been read: that is when its resources are free.
    """

    def __init__(self, fn: Callable, stop: threading.Event | None = None, poll: float = 0.1,
                 **kwargs):
        ctx = context()
        self.stop = stop or threading.Event()
        self.events: queue.Queue = queue.Queue()
        self._child_stop = ctx.Event()
        self._on_exit: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._exited = False
        self._poll = poll
        receive, send = ctx.Pipe(duplex=False)
        self.process = ctx.Process(target=_child, args=(_dumps((fn, kwargs)), send, self._child_stop),
                                   daemon=True, name="vision-lab-run")
        self.process.start()
        send.close()  # the child holds the only writing end: EOF means it is gone
        self._reader = threading.Thread(target=self._read, args=(receive,), daemon=True,
                                        name="vision-lab-run-reader")
        self._reader.start()

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def done(self) -> bool:
        return self._exited

    def on_exit(self, callback: Callable[[], None]) -> None:
        """Call `callback` once the child is gone (at once if it already is)."""
        with self._lock:
            if not self._exited:
                self._on_exit.append(callback)
                return
        callback()

    def join(self, timeout: float | None = None) -> bool:
        self._reader.join(timeout)
        return not self._reader.is_alive()

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()

    def _read(self, conn) -> None:
        ended = False
        try:
            while True:
                if self.stop.is_set() and not self._child_stop.is_set():
                    self._child_stop.set()
                if not conn.poll(self._poll):
                    if not self.process.is_alive() and not conn.poll(0):
                        break
                    continue
                try:
                    item = conn.recv()
                except (EOFError, OSError):
                    break
                if isinstance(item, str) and item == _END:
                    ended = True
                    break
                self.events.put(item)
        finally:
            conn.close()
            self.process.join()
            if not ended:
                self.events.put(RunDied(exit_message(self.process.exitcode)))
            # Free the run's resources before saying it ended, so whoever reads the end can start
            # the next run at once.
            with self._lock:
                self._exited = True
                callbacks, self._on_exit = self._on_exit, []
            for callback in callbacks:
                callback()
            self.events.put(None)
            self.process.close()


def train_in_process(config, data, stop: threading.Event | None = None) -> ProcessRun:
    """`training.train(config, data=data)` in a child process."""
    from ..training import train

    return ProcessRun(train, stop=stop, config=config, data=data)


def compare_in_process(plan, data, out_dir, stop: threading.Event | None = None) -> ProcessRun:
    """`lessons.run_comparison(plan, data, out_dir=...)` in a child process."""
    from ..lessons import run_comparison

    return ProcessRun(run_comparison, stop=stop, plan=plan, data=data, out_dir=out_dir)


def _lr_sweep(config, data, start_lr, end_lr, steps, stop):
    """`lr_finder.find_lr` as a generator of one event, its result (what ProcessRun runs)."""
    from ..lr_finder import find_lr

    yield find_lr(config, start_lr=start_lr, end_lr=end_lr, steps=steps, stop=stop, data=data)


def lr_find_in_process(config, data, start_lr: float, end_lr: float, steps: int,
                       stop: threading.Event | None = None) -> ProcessRun:
    """The learning-rate range test (`lr_finder.find_lr`) in a child process: its one event is the
    LRFinderResult (the sweep trains, so it runs where trainings run, at their priority)."""
    return ProcessRun(_lr_sweep, stop=stop, config=config, data=data, start_lr=start_lr,
                      end_lr=end_lr, steps=steps)
