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

Children come from a forkserver: one clean process that imports torch once, from which a child
forks in milliseconds. Forking the server itself is unsafe (its threads' locks, and OpenMP after
fork can hang). Arguments go to the child pickled by us (tensors as numpy arrays, so nothing needs
shared memory, which containers often cap at 64 MB); events come back over a pipe. Both ends are
this program's own objects: no file from a user is ever unpickled.

A child is kept warm for the next run (KEEP_WARM of them, for IDLE_SECONDS): a fresh process's
first epoch pays for PyTorch's first use of each kernel (oneDNN builds its convolutions, OpenMP
starts its threads), which on the 2-core machine made a small run's first epoch 1.9 s against
0.55 s for the same epoch in a process that had trained before (shapes, 1,000 images, the cnn:
a class's run took 2.55 s instead of 1.3). A run in a warm child gives the same numbers, bit for
bit, as in a fresh one (train() seeds everything it draws from at its start; checked on the
checkpoint's tensors and every epoch's figures). A child that failed, was killed or holds more than
KEEP_MB of memory after its run (malloc.py keeps freed memory) is not kept.
"""
from __future__ import annotations

import gc
import io
import multiprocessing
import os
import pickle
import queue
import signal
import threading
import time
from typing import Callable

from ..i18n import Text, text

PRELOAD = ["vision_lab.training", "vision_lab.lessons"]
_END = "__vision_lab_end__"
# Runs yield the cores to the app's own requests: a visitor classifying while another trains gets
# an answer at once, and the run loses only what those requests use (nothing when none come).
NICENESS = 10
KEEP_WARM = 2        # idle children kept for the next runs (a server trains one or two at a time)
IDLE_SECONDS = 600   # an idle child is ended after this long (its memory goes back to the system)
KEEP_MB = 1536       # a child holding more than this after its run is ended, not kept
# Threads each run computes with; None: PyTorch's default (every core). A server that trains two
# runs at once on two cores gives each one thread (app.py, --train-threads): a run's two threads
# wait for each other at every op, so any CPU the server or the other run takes costs a two-thread
# run about double. 30 students' small runs (benchmarks/classroom.py, shapes, 1,000 images, 2
# epochs, the cnn) on the 2-core machine: last result after 148 s one at a time with two threads,
# 95 s two at a time with one thread each. A run's numbers depend on its thread count (summation
# order), so the setting is fixed for the server's life: the same settings give the same run.
_threads: int | None = None
RUN_NAME, IDLE_NAME = "vision-lab-run", "vision-lab-idle"   # a training process's name (ps, top)
_context_lock = threading.Lock()
_context = None


def set_threads(threads: int | None) -> None:
    """The threads each run of this server computes with (None: PyTorch's default), set once at
    launch, before the first run starts."""
    global _threads
    if threads is not None and threads < 1:
        raise ValueError(text("app.settings.train_threads", value=threads))
    _threads = threads


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


def _serve(tasks, conn, stop, threads: int | None = None) -> None:
    """A run's process: runs each task it receives, one after another, until it is told no more
    (the pipe closes) or should not be kept."""
    from .malloc import keep_freed_memory

    # The server's Ctrl-C goes to the whole process group; the run ends through `stop` instead.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    keep_freed_memory()  # this process exists to train (see malloc.py)
    # Before torch starts its worker threads: on Linux niceness is per thread, and new threads
    # inherit their creator's.
    os.nice(NICENESS)
    if threads:
        import torch

        torch.set_num_threads(threads)
    while True:
        _name(IDLE_NAME)
        try:
            payload = tasks.recv_bytes()
        except (EOFError, OSError):
            return
        _name(RUN_NAME)
        if not _run_task(payload, conn, stop):
            return


def _name(name: str) -> None:
    """What ps and top call this process: training, or kept warm and waiting."""
    try:
        with open("/proc/self/comm", "w") as comm:
            comm.write(name)
    except OSError:
        pass  # not Linux: it keeps Python's name


def _run_task(payload: bytes, conn, stop) -> bool:
    """Run one generator, sending its events; True when this process may run another."""
    fn, kwargs = pickle.loads(payload)
    failed = False
    try:
        for event in fn(stop=stop, **kwargs):
            conn.send(event)
            del event
    except (BrokenPipeError, EOFError):
        return False  # the server is gone: nobody is listening
    except BaseException as error:  # noqa: BLE001 - reported to the server, which shows it
        failed = True
        try:
            conn.send(_portable_error(error))
        except (BrokenPipeError, EOFError):
            return False
    # The run's model, data and optimizer go now, not when the next run replaces them.
    del fn, kwargs
    gc.collect()
    keep = not failed and _resident_mb() <= KEEP_MB
    try:
        conn.send((_END, keep))
    except (BrokenPipeError, EOFError):
        return False
    return keep


def _resident_mb() -> float:
    """This process's resident memory now, in MB (0 where /proc is missing)."""
    try:
        return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


class _Child:
    """A run's process and its two pipes: tasks go in, events come out."""

    def __init__(self):
        ctx = context()
        self.stop = ctx.Event()
        receive_tasks, self.tasks = ctx.Pipe(duplex=False)
        self.events, send_events = ctx.Pipe(duplex=False)
        self.process = ctx.Process(target=_serve, args=(receive_tasks, send_events, self.stop, _threads),
                                   daemon=True, name="vision-lab-run")
        self.process.start()
        # The child holds the only other ends: EOF means it is gone.
        receive_tasks.close()
        send_events.close()
        self.idle_since = 0.0

    def close(self) -> int | None:
        """End the child (it exits once its task pipe closes), let go of it; its exit code."""
        for conn in (self.tasks, self.events):
            conn.close()
        self.process.join(5)
        if self.process.exitcode is None:
            self.process.kill()
            self.process.join()
        exitcode = self.process.exitcode
        self.process.close()
        return exitcode


_warm_lock = threading.Lock()
_warm: list[_Child] = []


def _take_child() -> _Child:
    """A warm child if one is waiting (and alive), else a new one."""
    with _warm_lock:
        while _warm:
            child = _warm.pop()
            if child.process.is_alive():
                return child
            child.close()
    return _Child()


def _keep_child(child: _Child) -> None:
    """Keep a child that finished its run for the next one (up to KEEP_WARM), else end it."""
    child.idle_since = time.monotonic()
    with _warm_lock:
        stale = [c for c in _warm if child.idle_since - c.idle_since > IDLE_SECONDS]
        for c in stale:
            _warm.remove(c)
        keep = len(_warm) < KEEP_WARM
        if keep:
            _warm.append(child)
    for c in stale + ([] if keep else [child]):
        c.close()
    if keep:
        timer = threading.Timer(IDLE_SECONDS, _end_if_idle, args=(child, child.idle_since))
        timer.daemon = True
        timer.start()


def _end_if_idle(child: _Child, since: float) -> None:
    with _warm_lock:
        if child not in _warm or child.idle_since != since:
            return   # taken meanwhile
        _warm.remove(child)
    child.close()


def end_warm_children() -> int:
    """End every idle child now (tests use it to start from a fresh process); returns how many."""
    with _warm_lock:
        children, _warm[:] = list(_warm), []
    for child in children:
        child.close()
    return len(children)


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
    """`fn(stop=..., **kwargs)` (a generator function) running in a child process (a warm one
    when one is waiting: see the module's docstring).

    `events` is a queue.Queue that receives every event the generator yields, then the exception
    it raised (if any, or a RunDied saying how the process died), then None. Setting `stop`
    (a threading.Event) is passed on to the child within `poll` seconds. `on_exit` callbacks run
    once the run has ended in the child (its generator closed, or the process gone) and every
    event has been read: that is when its resources are free.
    """

    def __init__(self, fn: Callable, stop: threading.Event | None = None, poll: float = 0.1,
                 **kwargs):
        self.stop = stop or threading.Event()
        self.events: queue.Queue = queue.Queue()
        self._on_exit: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._exited = False
        self._poll = poll
        payload = _dumps((fn, kwargs))
        self._child = _take_child()
        self._child.stop.clear()   # a warm child's last run may have been stopped
        try:
            self._child.tasks.send_bytes(payload)
        except (BrokenPipeError, OSError):   # died while it waited: a new one
            self._child.close()
            self._child = _Child()
            self._child.tasks.send_bytes(payload)
        self.process = self._child.process
        self._pid = self.process.pid
        self._reader = threading.Thread(target=self._read, daemon=True, name="vision-lab-run-reader")
        self._reader.start()

    @property
    def pid(self) -> int | None:
        return self._pid

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
        """Kill the run's process (not once the run has ended: a kept child may run another)."""
        with self._lock:
            if self._exited:
                return
        try:
            self.process.kill()
        except ValueError:
            pass   # closed meanwhile: the run has ended

    def _read(self) -> None:
        child, conn = self._child, self._child.events
        ended = keep = False
        try:
            while True:
                if self.stop.is_set() and not child.stop.is_set():
                    child.stop.set()
                if not conn.poll(self._poll):
                    if not self.process.is_alive() and not conn.poll(0):
                        break
                    continue
                try:
                    item = conn.recv()
                except (EOFError, OSError):
                    break
                if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str) \
                        and item[0] == _END:
                    ended, keep = True, item[1]
                    break
                self.events.put(item)
        finally:
            exitcode = None if keep else child.close()
            if not ended:
                self.events.put(RunDied(exit_message(exitcode)))
            # Free the run's resources before saying it ended, so whoever reads the end can start
            # the next run at once.
            with self._lock:
                self._exited = True
                callbacks, self._on_exit = self._on_exit, []
            if keep:
                _keep_child(child)
            for callback in callbacks:
                callback()
            self.events.put(None)


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
