"""The server's trainings: the line of work waiting for a slot, who watches each, and the replays.

A *job* (serving.jobs) is the work one press of Train or Compare asks for: one run, or a lesson's
runs (every run label × seed). Jobs are known by their runs' keys (serving.run_key), so:

- a job whose runs are all in the run cache needs no slot: the handler replays it at once;
- a visitor who asks for the same runs as a job that is waiting or training *joins* it: they see
  its place in line, then its curves from the start, and its result, and it is trained once for
  all of them (30 students pressing the same lesson start one training, not 30);
- a job that trains runs each in a child process (serving.worker); every run that reaches its end
  goes into the cache, and a run another job is training right now is waited for, not trained
  twice.

Fair for a class:
- one job per visitor waits in line: pressing again while one waits replaces it, and the new one
  takes its place;
- up to `max_waiting` jobs wait (joining one takes no place); beyond that a sentence says so;
- a waiting visitor sees their place and an estimate of the wait: the work ahead (training
  images × epochs of each run) at the speed recent runs of that model trained at, plus what the
  running job has left;
- a job nobody watches any more leaves the line; a running one stops within a batch, unless the
  server lets closed pages' runs finish (then it runs on and its owners find it under their runs).

A slot is given back when the job's last run has ended in its training process, so nothing stays
taken, and the next job starts while this one keeps its run in the cache and copies each watcher's
checkpoint: a class's small run spent 0.2-0.3 s on those (an 18 MB checkpoint rewritten twice and
synced to disk), 30 runs one after another 6-9 s of a class's wait in which nothing trained.
"""
from __future__ import annotations

import contextlib
import dataclasses
import queue
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Callable

from ..i18n import text
from .jobs import Job, RunSpec, Speeds, Ticket, job_key
from .run_cache import CACHE, RunCache


class QueueFull(RuntimeError):
    """More trainings are waiting than this server lets wait."""


# For programmers (the app never makes these mistakes), not for visitors.
BAD_LIMITS = "max_running must be at least 1 and max_waiting at least 0"
NO_DATA = "this job was given no data to train on"


class RunQueue:
    def __init__(self, max_running: int = 1, max_waiting: int = 8, cache: RunCache | None = None,
                 work_dir=None, drive: Callable | None = None):
        if max_running < 1 or max_waiting < 0:
            raise ValueError(BAD_LIMITS)
        self.max_running, self.max_waiting = max_running, max_waiting
        self.cache = cache if cache is not None else CACHE
        self._work_dir = Path(work_dir) if work_dir else None
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)   # the line changed: who runs, who waits
        self._running: list[Job] = []
        self._waiting: list[Job] = []
        self._by_key: dict[str, Job] = {}
        self._training: dict[str, threading.Event] = {}   # run key -> set when that run has ended
        self.speeds = Speeds()
        self._drive_job = drive or self.drive   # what running a job does (tests pass their own)

    def configure(self, max_running: int, max_waiting: int, cache: RunCache | None = None) -> None:
        with self._changed:
            self.max_running, self.max_waiting = max_running, max_waiting
            if cache is not None:
                self.cache = cache
            self._admit()

    @property
    def running(self) -> int:
        with self._changed:
            return len(self._running)

    @property
    def waiting(self) -> int:
        with self._changed:
            return len(self._waiting)

    @property
    def work_dir(self) -> Path:
        return self._work_dir or self.cache.folder / ".work"

    # -- asking for work --

    def replays(self, runs: list[RunSpec], need_checkpoint: bool = False):
        """Every run's replay, if all are in the cache; else None."""
        out = []
        for spec in runs:
            replay = self.cache.get(spec.key, need_checkpoint=need_checkpoint)
            if replay is None:
                return None
            out.append(replay)
        return out

    def request(self, kind: str, runs: list[RunSpec], session: str, visitor: str | None = None,
                load_data: Callable | None = None, deliver_to=None, need_checkpoint: bool = False,
                finish_when_closed: bool = False) -> Ticket:
        """A ticket on the job that trains `runs`: an identical job already waiting or running
        (joined), else a new one in line. This visitor's other waiting ticket is replaced, the new
        job taking its place. Raises QueueFull (with the sentence to show) when the line is full."""
        visitor = visitor or session
        key = job_key(kind, runs)
        with self._changed:
            existing = self._by_key.get(key)
            if existing is not None and existing.stop.is_set():
                existing = None   # stopping: a new job trains it again
            place = None
            for old in [t for job in self._waiting for t in job.watchers() if t.visitor == visitor]:
                old.left = "replaced"
                old.stop.set()
                if old.job is not existing and not old.job.watchers():
                    index = self._waiting.index(old.job)
                    self._drop_waiting(old.job)
                    place = index if place is None else min(place, index)
            if existing is not None:
                ticket = Ticket(session, visitor, existing, _path(deliver_to),
                                finish_when_closed=finish_when_closed)
                existing.tickets.append(ticket)
                self._changed.notify_all()
                return ticket
            if len(self._running) >= self.max_running and len(self._waiting) >= self.max_waiting:
                raise QueueFull(text("serving.busy", running=len(self._running),
                                     waiting=len(self._waiting)))
            job = Job(kind, runs, load_data or _no_data, need_checkpoint, lock=self._lock)
            job.estimate = sum(self.speeds.estimate(spec.config) for spec in runs)
            ticket = Ticket(session, visitor, job, _path(deliver_to),
                            finish_when_closed=finish_when_closed)
            job.tickets.append(ticket)
            self._by_key[key] = job
            self._waiting.insert(len(self._waiting) if place is None else place, job)
            self._admit()
            return ticket

    # -- the line --

    def position(self, ticket: Ticket) -> int:
        """1 for the next in line, 2 after that...; 0 once its job runs (or is gone)."""
        with self._changed:
            job = ticket.job
            return self._waiting.index(job) + 1 if job in self._waiting else 0

    def eta(self, ticket: Ticket) -> float:
        """Seconds until the ticket's job should start: what the running jobs have left and the
        jobs ahead of it take, shared among the slots."""
        with self._changed:
            if ticket.job not in self._waiting:
                return 0.0
            now = time.monotonic()
            left = [max(1.0, j.estimate - (now - (j.started or now))) for j in self._running]
            ahead = [j.estimate for j in self._waiting[:self._waiting.index(ticket.job)]]
            # Slots free up in order: a simple list-scheduling estimate.
            slots = sorted(left + [0.0] * (self.max_running - len(left)))[:self.max_running]
            for seconds in ahead:
                slots[0] += seconds
                slots.sort()
            return slots[0]

    def wait(self, ticket: Ticket, timeout: float) -> bool:
        """Block up to `timeout` seconds for the ticket's job to start (or the ticket to leave);
        True once it has started."""
        with self._changed:
            self._changed.wait_for(lambda: ticket.admitted or ticket.left is not None, timeout)
            return ticket.admitted and ticket.left is None

    def wait_in_line(self, ticket: Ticket, poll: float = 2.5, every: float = 5.0):
        """Yield the waiting sentence while the ticket's job waits: when it changes (looked at
        every `poll` seconds: the estimate is rounded to 5 s), and at least every `every` seconds
        (a yield is also when gradio notices a closed page). Afterwards `ticket.admitted` and
        `ticket.left` say what happened. A class of 40 waiting wakes the server 16 times a second,
        not 40: each wake-up takes the GIL from whoever is classifying."""
        last, said = None, 0.0
        while not self.wait(ticket, timeout=poll):
            if ticket.left is not None:
                return
            message = waiting_message(self, ticket)
            now = time.monotonic()
            if message != last or now - said >= every:
                last, said = message, now
                yield message

    # -- leaving --

    def leave(self, ticket: Ticket, reason: str = "stopped") -> None:
        """The visitor no longer wants this job. The last one to leave takes a waiting job out of
        the line, or stops a running one (and then still receives its end: the kept epoch)."""
        with self._changed:
            if ticket.left is not None or ticket.job.state in ("done", "left"):
                if ticket.left is None:
                    ticket.left = reason
                return
            job = ticket.job
            others = [t for t in job.watchers() if t is not ticket]
            if job.state == "waiting":
                ticket.left = reason
                if not others:
                    self._drop_waiting(job)
            elif others:
                ticket.left = reason          # it goes on for the others
            else:
                job.stop.set()                # the last one: stop it, and show them its end
            ticket.stop.set()
            self._changed.notify_all()
            job.cond.notify_all()

    def closed(self, ticket: Ticket) -> None:
        """The ticket's page closed (gradio closed its handler)."""
        if ticket.finish_when_closed and ticket.job.state == "running":
            ticket.closed = True              # runs on; its checkpoint is still delivered
            return
        self.leave(ticket, "closed")

    def stop(self, session: str) -> int:
        """Stop every ticket of this session, waiting or running; returns how many there were."""
        with self._changed:
            tickets = [t for job in self._running + self._waiting for t in job.watchers()
                       if t.session == session]
        for ticket in tickets:
            self.leave(ticket, "stopped")
        return len(tickets)

    @contextlib.contextmanager
    def following(self, ticket: Ticket):
        """The body of a handler that follows a ticket. When gradio closes the handler (its page
        closed) the ticket leaves, or its run goes on when the server lets runs finish; any other
        error makes it leave too, so nothing trains for nobody."""
        try:
            yield ticket
        except GeneratorExit:
            self.closed(ticket)
            raise
        except BaseException:
            self.leave(ticket, "closed")
            raise
        finally:
            with self._changed:
                if ticket.job.state in ("done", "left") and ticket.left is None:
                    ticket.left = "done"

    def view(self, ticket: Ticket) -> "JobView":
        return JobView(self, ticket)

    # -- running jobs --

    def _drop_waiting(self, job: Job) -> None:
        if job in self._waiting:
            self._waiting.remove(job)
        if self._by_key.get(job.key) is job:
            del self._by_key[job.key]
        job.state = "left"
        job.stop.set()
        self._changed.notify_all()
        job.cond.notify_all()

    def _admit(self) -> None:
        while self._waiting and len(self._running) < self.max_running:
            job = self._waiting.pop(0)
            job.state, job.started = "running", time.monotonic()
            self._running.append(job)
            threading.Thread(target=self._run, args=(job,), daemon=True,
                             name=f"vision-lab-job-{job.id}").start()
        self._changed.notify_all()

    def _add(self, job: Job, item, wake: bool = True) -> None:
        with self._lock:
            job.items.append(item)
            if wake:
                job.cond.notify_all()

    def _release(self, job: Job) -> None:
        """The job trains nothing more: its slot goes to the next in line (it may still be
        keeping its last run and delivering checkpoints)."""
        with self._changed:
            if job in self._running:
                self._running.remove(job)
                self._admit()

    def _run(self, job: Job) -> None:
        try:
            self._drive_job(job)
        except BaseException as error:  # noqa: BLE001 - shown to every watcher
            self._add(job, error)
        finally:
            with self._changed:
                job.state = "done"
                if job in self._running:
                    self._running.remove(job)
                if self._by_key.get(job.key) is job:
                    del self._by_key[job.key]
                job.cond.notify_all()
                self._admit()

    def drive(self, job: Job) -> None:
        """Run a job: each run replayed from the cache, waited for (another job trains it now), or
        trained in a child process and kept in the cache."""
        work = self.work_dir / f"job-{job.id}-{uuid.uuid4().hex[:8]}"
        data = None
        try:
            for index, spec in enumerate(job.runs):
                if job.stop.is_set():
                    break
                replay = self._replay_or_wait(job, spec)
                if replay is not None:
                    self._deliver(job, index, replay=replay)
                    for event in replay.events():
                        self._add(job, spec.tag(event), wake=False)
                    job.replayed += 1
                    job.replays.append(replay)
                    self._wake(job)
                    continue
                if data is None:
                    data = job.load_data()
                if not self._train(job, index, spec, data, work):
                    break
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _wake(self, job: Job) -> None:
        with self._lock:
            job.cond.notify_all()

    def _replay_or_wait(self, job: Job, spec: RunSpec):
        while True:
            replay = self.cache.get(spec.key, need_checkpoint=job.need_checkpoint)
            if replay is not None:
                return replay
            with self._changed:
                ended = self._training.get(spec.key)
                if ended is None:
                    self._training[spec.key] = threading.Event()
                    return None         # ours to train
            while not ended.wait(0.5):  # another job trains it right now
                if job.stop.is_set():
                    return None

    def _train(self, job: Job, index: int, spec: RunSpec, data, work: Path) -> bool:
        """Train one run; True when the job should go on to its next run."""
        from ..train_config import RunEnd
        from .worker import RunDied, train_in_process

        config = dataclasses.replace(spec.config, out=str(work / f"run-{index}.safetensors"))
        started = time.perf_counter()
        events, end, died = [], None, None
        try:
            run = train_in_process(config, data, stop=job.stop)
            last_wake = 0.0
            while True:
                item = run.events.get()
                if item is None:
                    break
                if isinstance(item, RunDied):
                    died = item
                    continue
                if isinstance(item, BaseException):
                    raise item
                events.append(item)
                if isinstance(item, RunEnd):
                    end = item
                    continue             # shown once the checkpoints are delivered
                now = time.monotonic()
                # Batches wake the watchers once a second (their status line changes every 2 s);
                # anything else at once.
                wake = type(item).__name__ != "BatchEnd" or now - last_wake > BATCH_WAKE
                if wake:
                    last_wake = now
                self._add(job, spec.tag(item), wake=wake)
            wall = time.perf_counter() - started
            if index == len(job.runs) - 1 or died is not None or end is None \
                    or end.reason in ("stopped", "failed"):
                self._release(job)   # its last run: the next job may start training now
            job.trained += 1
            replay = None
            if end is not None:
                self.speeds.measured(config, end.history, wall)
                replay = self.cache.put(spec.key, events, end.checkpoint, data, round(wall, 1))
            self._deliver(job, index, replay=replay, staged=Path(config.out))
            if end is not None:
                self._add(job, spec.tag(end))
            if died is not None:
                self._add(job, died)
                return False
            return end is not None and end.reason not in ("stopped", "failed")
        finally:
            with self._changed:
                ended = self._training.pop(spec.key, None)
            if ended is not None:
                ended.set()

    def _deliver(self, job: Job, index: int, replay=None, staged: Path | None = None) -> None:
        """Each watcher of a Train job gets their own copy of the run's checkpoint (from the cache,
        or the kept epoch of a stopped run) before they are shown its end."""
        if job.kind not in DELIVERED:
            return
        with self._changed:
            # Those still following it (a page closed while the run may finish counts; so does
            # the last one to press Stop, who is shown the kept epoch).
            tickets = [t for t in job.tickets if t.deliver_to is not None and t.left is None]
        for ticket in tickets:
            try:
                if replay is not None and replay.checkpoint is not None:
                    ticket.delivered[index] = self.cache.deliver(replay, ticket.deliver_to,
                                                                 job.runs[index].config)
                elif staged is not None and staged.is_file():
                    from ..checkpoints import atomic_write_bytes
                    from .run_cache import rewrite_checkpoint

                    body = rewrite_checkpoint(staged, {"out": str(ticket.deliver_to),
                                                       "data_root": job.runs[index].config.data_root}, {})
                    atomic_write_bytes(ticket.deliver_to, body)
                    ticket.delivered[index] = ticket.deliver_to
            except (OSError, ValueError, KeyError):
                continue


# Jobs whose watchers each get their own copy of the checkpoint: a Train run, and a run for the
# class board (kept in the hidden class folder, ui/board.py).
DELIVERED = ("train", "board")
BATCH_WAKE = 1.0     # seconds between wake-ups of a job's watchers for batch events alone
VIEW_WAIT = 0.5      # the least a watcher waits for news (live.follow asks for 0.1 s)


class JobView:
    """What one watcher's handler reads (a stand-in for the queue.Queue that live.follow drains):
    the job's items from the start, the end of a run naming this watcher's own checkpoint, then
    None once the job is over or the watcher has left it.

    A watcher waits at least VIEW_WAIT for news: live.follow polls every 0.1 s, and 30 students
    watching one lesson would wake the server 300 times a second for nothing."""

    def __init__(self, runs: RunQueue, ticket: Ticket):
        self.runs, self.ticket, self.next, self.ended = runs, ticket, 0, False

    def get(self, timeout: float | None = None):
        job = self.ticket.job
        cond = job.cond
        if self.ended:
            raise queue.Empty
        if timeout:
            timeout = max(timeout, VIEW_WAIT)
        with cond:
            cond.wait_for(lambda: self.next < len(job.items) or self._over(), timeout)
            if self.next < len(job.items):
                item = job.items[self.next]
                self.next += 1
                return self._translate(item)
            if self._over():
                self.ended = True
                return None
        raise queue.Empty

    def get_nowait(self):
        return self.get(timeout=0)

    def _over(self) -> bool:
        left = self.ticket.left
        return self.ticket.job.state in ("done", "left") or (left is not None and left != "closed")

    def _translate(self, item):
        from ..train_config import RunEnd

        if self.ticket.job.kind in DELIVERED and isinstance(item, RunEnd):
            mine = self.ticket.delivered.get(0)
            return dataclasses.replace(item, checkpoint=str(mine) if mine else None)
        if isinstance(item, tuple) and isinstance(item[2], RunEnd):
            return item[0], item[1], dataclasses.replace(item[2], checkpoint=None)
        return item


def _path(value) -> Path | None:
    return Path(value) if value else None


def _no_data():
    raise RuntimeError(NO_DATA)


RUNS = RunQueue()


def format_wait(seconds: float):
    """A wait to the nearest 5 s (an estimate that ticks every second reads as false precision)."""
    seconds = max(5, int(round(seconds / 5) * 5))
    if seconds < 60:
        return text("serving.seconds", seconds=seconds)
    return text("serving.minutes", minutes=seconds // 60, seconds=seconds % 60)


def waiting_message(queue: RunQueue, ticket: Ticket):
    place = queue.position(ticket)
    ahead = text("serving.next") if place == 1 else text("serving.ahead", count=place - 1)
    others = len(ticket.job.watchers()) - 1
    joined = text("serving.shared_line", others=others) if others > 0 else ""
    return text("serving.waiting", place=place, ahead=ahead, running=queue.running,
                slots=queue.max_running, eta=format_wait(queue.eta(ticket)), joined=joined)

