"""The server's trainings: who is running, who waits (in order), and each run's Stop.

Training and Compare share these slots. A run that cannot start at once waits here, in the
handler, so it can show its place in the line and Stop can take it out; a line longer than the
server allows is refused with a message instead. A slot is given back when the run's process has
exited (not when the page that started it goes away), so a run finishing on its own after its tab
closed still counts, and nothing stays taken after it ends.
"""
from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field


class QueueFull(RuntimeError):
    """More trainings are waiting than this server lets wait."""


@dataclass(eq=False)
class Ticket:
    session: str
    stop: threading.Event = field(default_factory=threading.Event)
    admitted: bool = False
    released: bool = False
    handed_over: bool = False   # a run's process holds the slot now, and gives it back at its end


class RunQueue:
    def __init__(self, max_running: int = 1, max_waiting: int = 8):
        if max_running < 1:
            raise ValueError("max_running must be at least 1.")
        if max_waiting < 0:
            raise ValueError("max_waiting cannot be negative.")
        self.max_running, self.max_waiting = max_running, max_waiting
        self._changed = threading.Condition()
        self._running: list[Ticket] = []
        self._waiting: list[Ticket] = []

    def configure(self, max_running: int, max_waiting: int) -> None:
        with self._changed:
            self.max_running, self.max_waiting = max_running, max_waiting
            self._admit()

    @property
    def running(self) -> int:
        with self._changed:
            return len(self._running)

    @property
    def waiting(self) -> int:
        with self._changed:
            return len(self._waiting)

    def enter(self, session: str) -> Ticket:
        """A ticket for a new run: admitted at once if a slot is free, else in line.

        Raises QueueFull (with the sentence to show) when the line is full."""
        with self._changed:
            if len(self._running) >= self.max_running and len(self._waiting) >= self.max_waiting:
                raise QueueFull(
                    f"The server is busy: {len(self._running)} training(s) running and "
                    f"{len(self._waiting)} waiting, the most it queues. Please try again in a few "
                    f"minutes.")
            ticket = Ticket(session)
            self._waiting.append(ticket)
            self._admit()
            return ticket

    def position(self, ticket: Ticket) -> int:
        """1 for the next in line, 2 after that...; 0 once admitted (or gone)."""
        with self._changed:
            return self._waiting.index(ticket) + 1 if ticket in self._waiting else 0

    def wait(self, ticket: Ticket, timeout: float) -> bool:
        """Block up to `timeout` seconds for the ticket's turn (or its Stop); True if admitted."""
        with self._changed:
            self._changed.wait_for(lambda: ticket.admitted or ticket.stop.is_set(), timeout)
            return ticket.admitted

    def release(self, ticket: Ticket) -> None:
        """The run is over (or never started): free its place. Safe to call twice."""
        with self._changed:
            if ticket.released:
                return
            ticket.released = True
            for line in (self._running, self._waiting):
                if ticket in line:
                    line.remove(ticket)
            self._admit()

    @contextlib.contextmanager
    def line(self, session: str, finish_when_closed: bool = False):
        """A ticket for the body of a run handler (a generator), given back when the body ends
        unless `hand_over` passed it to a run's process.

        When the page closes, gradio closes the handler: the run stops, unless the server lets
        runs finish on their own. Any other error stops it too, so nothing trains for nobody."""
        ticket = self.enter(session)
        try:
            yield ticket
        except GeneratorExit:
            if not finish_when_closed:
                ticket.stop.set()
            raise
        except BaseException:
            ticket.stop.set()
            raise
        finally:
            if not ticket.handed_over:
                self.release(ticket)

    def wait_in_line(self, ticket: Ticket, poll: float = 1.0):
        """Yield the waiting sentence every `poll` seconds until the ticket is admitted or
        stopped; afterwards `ticket.admitted` says which."""
        while not self.wait(ticket, timeout=poll):
            if ticket.stop.is_set():
                return
            yield waiting_message(self, ticket)

    def hand_over(self, ticket: Ticket, run) -> None:
        """From now on the slot is `run`'s (a worker.ProcessRun): freed when its process exits."""
        ticket.handed_over = True
        run.on_exit(lambda: self.release(ticket))

    def stop(self, session: str) -> int:
        """Stop every run of this session, running or waiting; returns how many there were."""
        with self._changed:
            tickets = [t for t in self._running + self._waiting if t.session == session]
            for ticket in tickets:
                ticket.stop.set()
            self._changed.notify_all()
        return len(tickets)

    def _admit(self) -> None:
        while self._waiting and len(self._running) < self.max_running:
            ticket = self._waiting.pop(0)
            ticket.admitted = True
            self._running.append(ticket)
        self._changed.notify_all()


RUNS = RunQueue()


def waiting_message(queue: RunQueue, ticket: Ticket) -> str:
    place = queue.position(ticket)
    ahead = "you are next" if place == 1 else f"{place - 1} ahead of you"
    return (f"**Waiting in line: number {place}** ({ahead}; {queue.running} training(s) running, "
            f"this server runs {queue.max_running} at a time). It starts by itself; Stop takes it "
            f"out of the line.")
