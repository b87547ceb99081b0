"""Showing a run while it trains in another process: drain its events, send the status line every
STATUS_EVERY seconds, redraw the figures within a budget. The Train and Compare tabs share this,
and `follow_job`: a job replayed from the run cache, or waiting in line, then followed.

What showing a run live costs the run (benchmarks/app_overhead.py): on a 2-core machine every CPU
second the server spends is taken from one of the training's two threads, and those two wait for
each other at every op, so the run loses about twice what the server uses. Hence the status line
goes out every STATUS_EVERY seconds, and the figures are redrawn only while drawing them (and
gradio's handling of the result) stays within RENDER_BUDGET of the wall time, but at least every
RENDER_MAX seconds. A loss curve takes ~0.13 s to draw and an epoch's three ~0.4 s. Measured side
by side: with a status line every second and a 3% budget the app used 6.5% of the machine while a
run trained, and the run went at 0.74 of the CLI's speed; with these, 2.0% and 1.01.
"""
from __future__ import annotations

import queue
import threading
import time
from typing import Iterator, Protocol

import gradio as gr

from ..i18n import Text, text
from .common import load_data, session_of, user_error
from .language import ui_text
from .storage import owner_of

STATUS_EVERY, RENDER_BUDGET, RENDER_MAX = 2.0, 0.01, 15.0


def static_text(value):
    """A text the library hands the page as it is drawn (a lesson's question, a model's
    description): a catalogue Text without parameters becomes a static text the page translates
    itself (and follows the EN | 简 | 繁 switch); anything else is shown as it is."""
    if isinstance(value, Text) and not value.params and not value.key.startswith("@"):
        return ui_text(value.key)
    return value


def redraw_wait(draw_cost: float) -> float:
    """Seconds from one redraw to the next, after one that took `draw_cost` seconds."""
    return min(RENDER_MAX, max(STATUS_EVERY, draw_cost / RENDER_BUDGET))


def drain(q: queue.Queue, timeout: float) -> list:
    """Events waiting in q, blocking up to `timeout` for the first one."""
    items = []
    try:
        items.append(q.get(timeout=timeout))
        while True:
            items.append(q.get_nowait())
    except queue.Empty:
        pass
    return items


class Watcher(Protocol):
    """What a tab keeps of a run it shows."""

    def add(self, event) -> None: ...          # a training event (or a tagged one, for Compare)
    def died(self, message: str) -> None: ...  # the training process ended without finishing
    def finished(self) -> bool: ...            # nothing more to wait for
    def needs_redraw(self) -> bool: ...        # something new to draw since the last frame
    def frame(self, status: str, figures: bool) -> tuple: ...  # the tab's outputs
    def status(self) -> str: ...
    def close(self) -> None: ...               # let go of what it holds (e.g. drawn files)


def follow(events: queue.Queue, watcher: Watcher, stop: threading.Event,
           stopping: str) -> Iterator[tuple]:
    """Yield a tab's outputs while a run (a serving.worker.ProcessRun's `events`) goes on, until
    the watcher has what it waits for or the process is gone. `stopping` replaces the status line
    once Stop was pressed."""
    from ..serving.worker import RunDied

    last_status, next_draw = 0.0, 0.0
    while not watcher.finished():
        for item in drain(events, timeout=0.1):
            if item is None:             # the process has exited and every event was read
                return
            if isinstance(item, RunDied):
                # Its message is a catalogue Text (worker.exit_message): kept, so the tab says it
                # in the visitor's language.
                watcher.died(item.args[0] if item.args else str(item))
            elif isinstance(item, BaseException):
                if isinstance(item, (ValueError, RuntimeError, OSError)):
                    raise user_error(item)
                raise item
            else:
                watcher.add(item)
        now = time.perf_counter()
        if watcher.finished() or now - last_status < STATUS_EVERY:
            continue
        redraw = watcher.needs_redraw() and now >= next_draw
        yield watcher.frame(stopping if stop.is_set() else watcher.status(), figures=redraw)
        last_status = time.perf_counter()
        if redraw:
            # Drawing and gradio's handling of the yield (until the next call) use the CPU the
            # training needs: both count against the budget.
            next_draw = last_status + redraw_wait(last_status - now)


def left_message(ticket, following_key: str) -> Text:
    """Why a visitor's place in the line ended without a result of their own: replaced by their
    newer run, stopped while the run goes on for others who asked for the same (`following_key`:
    the tab's sentence for that), or stopped before it started."""
    if ticket.left == "replaced":
        return text("train.replaced")
    if ticket.admitted:
        return text(following_key, others=len(ticket.job.watchers()))
    return text("train.stopped_before_start")


def loading_message(dataset: str, data_root) -> Text:
    """Say when a first use downloads the dataset, so a long wait is not a silent one."""
    from ..datasets import dataset_info

    try:
        needs_download = dataset_info(dataset, data_root=data_root).get("needs_download")
    except (ValueError, OSError):
        needs_download = False  # the loader itself reports what is wrong with the name or path
    if needs_download:
        return text("train.downloading", dataset=dataset)
    return text("train.loading", dataset=dataset)


def run_data(config, fit_subsets: bool = False):
    """A run's data, built once however many visitors ask for it at the same moment; with
    `fit_subsets`, all of a split where a comparison asks for more images than it has (see
    lessons.fit_plan)."""
    from ..serving.once import LOADING
    from ..train_config import data_key

    key = (data_key(config), "fit") if fit_subsets else data_key(config)
    return LOADING.get(key, lambda: load_data(config, fit_subsets=fit_subsets))


def follow_job(kind: str, specs: list, request, settings, *, watcher, replay_events, line, final,
               loading, **options) -> Iterator[tuple]:
    """A Train run's or a comparison's outputs (`kind`: "train" or "compare"), from first to last.

    When the run cache has every run, its replays are shown at once (`replay_events(replays)`: the
    events to show, or None when they cannot be used: then it trains). Otherwise the job waits in
    RUNS's line, or joins the same job waiting or training now, and a new `watcher()` (a Watcher)
    shows it as it trains. `line(message)` is the tab's outputs with that status and the rest
    cleared (while waiting; `loading` while the data loads); `final(watcher, replays, replayed,
    stopped)` its outputs once the job ended, `replayed` of its runs replayed rather than
    trained. The sentences are the tab's own: `<kind>.joined`, `<kind>.stopping` and
    `<kind>.stopped_following`. `options` go to RUNS.request."""
    from ..serving.run_queue import RUNS

    replays = RUNS.replays(specs, need_checkpoint=options.get("need_checkpoint", False))
    events = replay_events(replays) if replays else None
    if events is not None:
        live = watcher()
        try:
            for event in events:
                live.add(event)
            yield final(live, replays, len(replays), False)
        finally:
            live.close()
        return
    ticket = RUNS.request(kind, specs, session_of(request), visitor=owner_of(request),
                          finish_when_closed=settings.on_disconnect == "finish", **options)
    left_key = f"{kind}.stopped_following"
    with RUNS.following(ticket):
        for message in RUNS.wait_in_line(ticket):
            yield line(message)
        if not ticket.admitted or ticket.left:
            yield line(left_message(ticket, left_key))
            return
        others = len(ticket.job.watchers()) - 1
        yield line(text(f"{kind}.joined", others=others) if others > 0 else loading)
        live = watcher()
        try:
            yield from follow(RUNS.view(ticket), live, ticket.stop, text(f"{kind}.stopping"))
            if ticket.left and not live.finished():
                kept = (gr.skip(),) * (len(line("")) - 1)  # the curves it reached stay
                yield (left_message(ticket, left_key), *kept)
                return
            yield final(live, ticket.job.replays, ticket.job.replayed, ticket.stop.is_set())
        finally:
            live.close()
