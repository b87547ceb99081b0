"""A finished run as a record: its events as JSON and back, and the `Replay` a visitor is shown.

A record holds a run's events (status lines, epochs, the end with its test-set metrics, and the
batches the loss curve needs, at most MAX_BATCHES), what its data was, and when and how long it
trained. JSON only: nothing is ever unpickled. The run cache (run_cache.py) stores records, and
scripts/make_replays.py ships some with the app.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path

FORMAT = 1

# Runs whose result is the config's own: replayable. A stopped or failed run is not.
REPLAYABLE = ("completed", "early_stopped", "diverged")
# Batches kept of a run (the loss curve draws at most 1,000 points; the last of each epoch is
# always kept). A default lesson run has under 100.
MAX_BATCHES = 2000


def _event_dict(ev) -> dict:
    return _said_later(dataclasses.asdict(ev))


def _said_later(value):
    """JSON-ready, a catalogue Text kept as its key and parameters (and its English), so that a
    replay speaks each visitor's language as the run itself did."""
    from ..i18n import Text

    if isinstance(value, Text):
        return {"@text": value.key, "params": _said_later(value.params), "en": str(value)}
    if isinstance(value, dict):
        return {k: _said_later(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_said_later(v) for v in value]
    return value


def _said_again(value):
    from ..i18n import text

    if isinstance(value, dict):
        if "@text" in value:
            try:
                return text(value["@text"], **_said_again(value.get("params") or {}))
            except (KeyError, ValueError, IndexError, TypeError):
                return value.get("en", "")   # a key this catalogue no longer has
        return {k: _said_again(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_said_again(v) for v in value]
    return value


def record_events(events: list) -> list[dict]:
    """A run's events as JSON-ready dicts, its batches thinned to MAX_BATCHES (the last batch of
    every epoch kept), its end without a checkpoint path (a replay gets its own)."""
    from ..train_config import BatchEnd, RunEnd

    batches = [i for i, ev in enumerate(events) if isinstance(ev, BatchEnd)]
    keep = set(batches)
    if len(batches) > MAX_BATCHES:
        stride = len(batches) / MAX_BATCHES
        keep = {batches[int(j * stride)] for j in range(MAX_BATCHES)}
        keep |= {i for n, i in enumerate(batches)
                 if n + 1 == len(batches) or events[batches[n + 1]].epoch != events[i].epoch}
    out = []
    for i, ev in enumerate(events):
        if isinstance(ev, BatchEnd) and i not in keep:
            continue
        d = _event_dict(ev)
        if isinstance(ev, RunEnd):
            d["checkpoint"] = None
        out.append(d)
    return out


def replay_events(records: list[dict], checkpoint: str | None = None) -> list:
    """The events back as the training loop's objects; the end names `checkpoint`."""
    from ..train_config import BatchEnd, EpochEnd, RunEnd, Status

    kinds = {"status": Status, "batch": BatchEnd, "epoch": EpochEnd, "done": RunEnd}
    events = []
    for d in records:
        cls = kinds[d["event"]]
        names = {f.name for f in dataclasses.fields(cls)}
        ev = cls(**{k: _said_again(v) for k, v in d.items() if k in names})
        if isinstance(ev, RunEnd):
            ev.checkpoint = checkpoint
        events.append(ev)
    return events


def data_info(data) -> dict:
    """What a replay needs of its data without loading it (the Compare tab's parameter counts)."""
    return {"name": data.name, "classes": list(data.classes), "channels": int(data.channels),
            "image_size": int(data.image_size)}


def make_record(key: str, events: list, data=None, seconds: float | None = None,
                extra: dict | None = None) -> dict | None:
    """The JSON record of a finished run (None when it is not replayable: stopped, failed)."""
    from ..train_config import RunEnd

    end = events[-1] if events else None
    if not isinstance(end, RunEnd) or end.reason not in REPLAYABLE:
        return None
    return {"format": FORMAT, "key": key, "created": _now(), "seconds": seconds,
            "data": data_info(data) if data is not None and not isinstance(data, dict) else data,
            "events": record_events(events), "checkpoint": None, "extra": extra or {}}


@dataclass
class Replay:
    """A finished run from the cache."""
    key: str
    records: list[dict]
    checkpoint: Path | None      # the cached checkpoint (None when the entry has none)
    created: str
    seconds: float | None        # how long the run took when it trained
    data: dict                   # data_info of its data
    shipped: bool = False        # from a read-only folder that came with the app
    extra: dict = field(default_factory=dict)

    def events(self, checkpoint: str | None = None) -> list:
        return replay_events(self.records, checkpoint)

    @property
    def end(self) -> dict:
        return self.records[-1]

    def note(self, runs=None):
        """One sentence for the visitor (a catalogue Text): where this result comes from. `runs`
        (e.g. text("serving.all_runs", total=6)) speaks of a lesson's runs instead of one."""
        from ..i18n import text

        when = self.created[:16].replace("T", " ")
        if runs:
            key = "serving.replayed_runs_shipped" if self.shipped else "serving.replayed_runs"
            return text(key, runs=runs, when=when)
        took = text("serving.took", seconds=round(self.seconds)) if self.seconds else ""
        key = "serving.replayed_shipped" if self.shipped else "serving.replayed"
        return text(key, when=when, took=took)


class DamagedEntry(ValueError):
    """An entry that cannot be replayed; its message goes to the server's log, not to a visitor."""


# For the server's log and for programmers, not for visitors (who never see these).
NOT_THIS_KEY, UNFINISHED = "not a record of this key", "no finished run in it"


def _check_record(record, key: str) -> None:
    if not isinstance(record, dict) or record.get("format") != FORMAT or record.get("key") != key:
        raise DamagedEntry(NOT_THIS_KEY)
    events = record.get("events")
    if not isinstance(events, list) or not events or not isinstance(events[-1], dict) \
            or events[-1].get("event") != "done" or events[-1].get("reason") not in REPLAYABLE:
        raise DamagedEntry(UNFINISHED)
    replay_events(events)  # every event rebuilds


def _now() -> str:
    return _dt.datetime.now().isoformat(timespec="seconds")

