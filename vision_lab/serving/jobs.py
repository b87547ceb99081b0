"""What the server's line holds: a job (the runs one press of Train or Compare asks for), each
run's spec and key, a visitor's ticket on a job, and how long a run should take (Speeds).

The line itself (who waits, who runs, who watches) is run_queue.py.
"""
from __future__ import annotations

import hashlib
import itertools
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


# ---- what a job trains --------------------------------------------------------------------------

@dataclass(eq=False)
class RunSpec:
    config: object               # a train_config.TrainConfig (data_root set); `out` is chosen here
    key: str                     # serving.run_key.run_key
    label: str | None = None     # Compare: the run's label and seed; Train: None
    seed: int | None = None

    def tag(self, event):
        return event if self.label is None else (self.label, self.seed, event)


DATASET_SIZES = {"mnist": 60_000, "fashion_mnist": 60_000, "cifar10": 50_000, "shapes": 10_000}


def images_per_epoch(config) -> int:
    """Training and validation images a run goes through per epoch (what its time grows with)."""
    return config.subset_train or DATASET_SIZES.get(config.dataset, 5_000)


class Speeds:
    """How fast recent runs went, per model: images per second of their epochs (training and
    validation), and the seconds a run takes besides (process start, data, test set, saving).
    Starts from figures measured on a 2-core machine; each finished run moves them halfway."""

    DEFAULTS = {"mlp": 4000.0, "cnn": 700.0, "lenet": 1500.0, "vgg": 150.0, "resnet18": 30.0}

    def __init__(self):
        self._lock = threading.Lock()
        self.images_per_sec = dict(self.DEFAULTS)
        self.overhead = 3.0

    def estimate(self, config) -> float:
        with self._lock:
            speed = self.images_per_sec.get(config.model, 300.0)
            return self.overhead + images_per_epoch(config) * config.epochs / speed

    def measured(self, config, history: list[dict], wall: float) -> None:
        epoch_seconds = sum(h.get("seconds") or 0 for h in history)
        if not history or epoch_seconds <= 0:
            return
        speed = images_per_epoch(config) * len(history) / epoch_seconds
        with self._lock:
            old = self.images_per_sec.get(config.model, speed)
            self.images_per_sec[config.model] = (old + speed) / 2
            self.overhead = (self.overhead + max(0.5, wall - epoch_seconds)) / 2


# ---- jobs and who watches them ------------------------------------------------------------------

@dataclass(eq=False)
class Ticket:
    """One visitor's interest in a job: what their handler follows."""
    session: str
    visitor: str
    job: "Job"
    # Train: where this visitor's copy of the run's checkpoint goes (None: no copy, as for Compare).
    deliver_to: Path | None = None
    stop: threading.Event = field(default_factory=threading.Event)  # Stop pressed: says "Stopping"
    left: str | None = None      # why it no longer follows: "stopped", "replaced", "closed"
    finish_when_closed: bool = False   # the server lets a closed page's run go on
    closed: bool = False         # its page closed, and its run goes on
    delivered: dict = field(default_factory=dict)   # run index -> this visitor's checkpoint

    @property
    def admitted(self) -> bool:
        return self.job.state in ("running", "done")


_ids = itertools.count(1)


class Job:
    def __init__(self, kind: str, runs: list[RunSpec], load_data: Callable, need_checkpoint: bool,
                 lock=None):
        self.id = next(_ids)
        # Its watchers wait here: woken by its own news only (the line's changes wake
        # RunQueue._changed), under the queue's one lock.
        self.cond = threading.Condition(lock or threading.RLock())
        self.kind, self.runs = kind, runs
        self.key = job_key(kind, runs)
        self.load_data, self.need_checkpoint = load_data, need_checkpoint
        self.tickets: list[Ticket] = []
        self.state = "waiting"           # waiting | running | done | left
        self.items: list = []            # what watchers see: events (Train) or (label, seed, event)
        self.stop = threading.Event()    # nobody wants it any more: the training stops
        self.estimate = 0.0              # seconds it should take (from Speeds)
        self.started: float | None = None
        self.replayed = 0                # runs replayed from the cache
        self.trained = 0                 # runs trained here
        self.replays: list = []          # the run_record.Replay of each replayed run

    def watchers(self) -> list[Ticket]:
        return [t for t in self.tickets if t.left is None]


def job_key(kind: str, runs: list[RunSpec]) -> str:
    return hashlib.sha256(json_line([kind] + [r.key for r in runs]).encode()).hexdigest()[:32]


def json_line(value) -> str:
    import json

    return json.dumps(value, separators=(",", ":"))

