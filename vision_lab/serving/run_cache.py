"""The run cache: a run is trained once, and whoever asks for the same run again gets its replay.

On a CPU a run is determined by its config, its data and the code that trains it, so a run's *key*
is a hash of exactly those:

- the config: `TrainConfig.to_dict()` without where files go (`out`, `data_root`, `device`), with
  options spelled out (a model's or scheduler's defaults written in or left out are the same run);
- the data: a built-in dataset by its name and the fields `training.load_data` reads (its loader
  is part of the code version, and downloaded files are checked against their published sums); a
  `folder:` dataset by a hash of its images and labels as loaded (a folder can change under the
  same name, and every upload gets a new random name);
- the code version: the syntax trees of the modules a result depends on (CODE_MODULES; comments and
  docstrings do not count, so editing them keeps the cache), torch's version and the kind of device
  the runs train on.

An entry of the server's cache is a folder `<key>/` holding `run.json` (the run's events: status
lines, epochs, the end with its test-set metrics, and the batches the loss curve needs, at most
MAX_BATCHES) and, when the run saved one, `checkpoint.safetensors`. JSON and safetensors only:
nothing is ever unpickled. An entry is written in a temp folder and renamed into place, so a reader
finds a whole entry or none; one that does not parse, or whose checkpoint does not match the hash
recorded for it, is deleted, and the run trains again. Only the server writes here.

Bounded: entries older than `max_age_days` go, then the least recently used ones until the cache
is under `max_mb`. Read-only folders (`shipped`: `checkpoints/replays/`, made by
scripts/make_replays.py) hold `<key>.json` records without checkpoints; they are looked in after
the server's own cache, and never written or evicted.

A replay for a visitor gets its own checkpoint file (`deliver`): a copy with the visitor's path in
its metadata, written into that visitor's runs folder. The cached entry itself names no one: its
config says neither where it was saved nor where its data lay.
"""
from __future__ import annotations

import ast
import dataclasses
import datetime as _dt
import functools
import hashlib
import json
import logging
import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

FORMAT = 1
PACKAGE = Path(__file__).resolve().parents[1]
# The modules whose code decides a run's numbers (and the checkpoint's format).
CODE_MODULES = ("training.py", "models.py", "transforms.py", "preprocessing.py", "checkpoints.py",
                "resume.py", "datasets")
# Where files go, not what is trained.
PLACE_FIELDS = ("out", "data_root", "device")
# Runs whose result is the config's own: replayable. A stopped or failed run is not.
REPLAYABLE = ("completed", "early_stopped", "diverged")
# Batches kept of a run (the loss curve draws at most 1,000 points; the last of each epoch is
# always kept). A default lesson run has under 100.
MAX_BATCHES = 2000
RECORD, CHECKPOINT = "run.json", "checkpoint.safetensors"


# ---- the key ------------------------------------------------------------------------------------

_SOURCE_LOCK = threading.Lock()


def source_version() -> str:
    """A hash of the syntax trees (docstrings left out) of CODE_MODULES, computed once.

    Under a lock: CPython 3.11's ast.parse is not safe in two threads at once (SystemError "AST
    constructor recursion depth mismatch"), and a class pressing at once would call it so."""
    with _SOURCE_LOCK:
        return _source_version()


@functools.lru_cache(maxsize=1)
def _source_version() -> str:
    digest = hashlib.sha256()
    files = []
    for name in CODE_MODULES:
        path = PACKAGE / name
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                    and body and isinstance(body[0], ast.Expr)
                    and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
                node.body = body[1:] or [ast.Pass()]
        digest.update(path.relative_to(PACKAGE).as_posix().encode() + b"\0")
        digest.update(ast.dump(tree).encode() + b"\0")
    return digest.hexdigest()[:16]


def code_version(device: str = "auto") -> str:
    """The source version, torch's version (without its build tag: a CPU build and a CUDA build of
    one version compute the same on a CPU) and the kind of device `device` trains on."""
    import torch

    from ..training import pick_device

    return f"{source_version()}/torch-{torch.__version__.split('+')[0]}/{pick_device(device).type}"


def _canonical(value):
    """JSON-ready, with 3.0 and 3 spelled alike (a form sends floats, a script ints)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return str(value)


def config_identity(config) -> dict:
    """What a config trains, spelled one way."""
    from ..models import model_options

    d = config.to_dict()
    for name in PLACE_FIELDS:
        d.pop(name, None)
    for name in ("dataset", "subset_train", "subset_test", "val_fraction", "data_seed"):
        d.pop(name, None)   # the data's identity holds these
    try:
        d["model_options"] = {**model_options(config.model), **(config.model_options or {})}
    except (KeyError, ValueError):
        pass                 # an unknown model fails when it trains
    d["scheduler_options"] = config.scheduler_params() if config.scheduler != "none" else {}
    if not config.permute_pixels:
        d.pop("permutation_seed", None)
    if not config.pretrained:
        d.pop("freeze_epochs", None)
        d.pop("unfreeze_lr", None)
    # A continued run is its checkpoint's run (resume.py): known by that file's bytes, not by its
    # path, which each epoch of a run overwrites. A plain run's identity is spelled as before.
    d.pop("resume", None)
    if getattr(config, "resume", None):
        try:
            d["resume_sha256"] = _sha256_file(config.resume)
        except OSError:
            d["resume_sha256"] = "unreadable"  # the run fails with the reason; this key is never filled
    return _canonical(d)


_FINGERPRINTS: dict[int, tuple] = {}
_FINGERPRINTS_LOCK = threading.Lock()


def data_fingerprint(data) -> str:
    """A hash of a dataset's classes, images and labels in every split (remembered per object)."""
    import weakref

    with _FINGERPRINTS_LOCK:
        known = _FINGERPRINTS.get(id(data))
        if known is not None and known[0]() is data:
            return known[1]
    digest = hashlib.sha256(json.dumps(list(data.classes)).encode())
    for split in ("train", "val", "test"):
        for tensor in (getattr(data, f"{split}_images"), getattr(data, f"{split}_labels")):
            if tensor is None:
                digest.update(b"none")
                continue
            digest.update(f"{split}{tuple(tensor.shape)}{tensor.dtype}".encode())
            digest.update(tensor.contiguous().numpy().tobytes())
    value = digest.hexdigest()
    with _FINGERPRINTS_LOCK:
        _FINGERPRINTS[id(data)] = (weakref.ref(data, lambda _, i=id(data): _FINGERPRINTS.pop(i, None)),
                                   value)
    return value


def needs_data(config) -> bool:
    """Whether a run's key needs its data loaded first (a folder's contents, not its name)."""
    from ..datasets import FOLDER_PREFIX

    return config.dataset.startswith(FOLDER_PREFIX)


def data_identity(config, data=None) -> dict:
    if needs_data(config):
        if data is None:
            raise ValueError(NEEDS_DATA)
        return {"folder": data_fingerprint(data), "image_size": config.image_size}
    return _canonical({"dataset": config.dataset, "subset_train": config.subset_train,
                       "subset_test": config.subset_test, "val_fraction": config.val_fraction,
                       "data_seed": config.data_seed})


def deterministic(config) -> bool:
    """Whether a run is decided by its config, data and code. A run with a time budget is not: how
    many steps fit in it depends on how fast the machine is at that moment."""
    return not getattr(config, "budget_seconds", None)


ONCE = "once-"


def run_key(config, data=None) -> str:
    """The cache key of one run: its config, its data and the code version, hashed. A run that is
    not deterministic gets a key of its own (ONCE...): never replayed, never joined."""
    if not deterministic(config):
        return ONCE + uuid.uuid4().hex
    identity = {"config": config_identity(config), "data": data_identity(config, data),
                "code": code_version(config.device)}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]


def comparison_runs(plan) -> list[tuple[str, int, object]]:
    """(label, seed, config) of every run of a lessons.Plan, in the order and with the seeds
    `lessons.run_comparison` trains them (seeds go round the runs)."""
    return [(label, seed, dataclasses.replace(config, seed=seed))
            for seed in range(plan.seeds) for label, config in plan.runs]


# ---- records: a run's events as JSON, and back ----------------------------------------------------

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
    from ..training import BatchEnd, RunEnd

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
    from ..training import BatchEnd, EpochEnd, RunEnd, Status

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
    from ..training import RunEnd

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
NEEDS_DATA = "a folder dataset is known by its contents: load it first"
NOT_THIS_KEY, UNFINISHED = "not a record of this key", "no finished run in it"
WRONG_SIZE, WRONG_HASH = "checkpoint has {} bytes, not {}", "checkpoint does not match its hash"
NO_CHECKPOINT = "this replay has no checkpoint"


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_record(record, key: str) -> None:
    if not isinstance(record, dict) or record.get("format") != FORMAT or record.get("key") != key:
        raise DamagedEntry(NOT_THIS_KEY)
    events = record.get("events")
    if not isinstance(events, list) or not events or not isinstance(events[-1], dict) \
            or events[-1].get("event") != "done" or events[-1].get("reason") not in REPLAYABLE:
        raise DamagedEntry(UNFINISHED)
    replay_events(events)  # every event rebuilds


# ---- the cache ----------------------------------------------------------------------------------

class RunCache:
    """Finished runs by key: the server's folder (read and written) and read-only shipped ones."""

    def __init__(self, folder=None, shipped=(), max_mb: float = 1000.0, max_age_days: float = 30.0):
        self._folder = Path(folder) if folder is not None else None
        self.shipped = [Path(p) for p in shipped]
        self.max_mb, self.max_age_days = max_mb, max_age_days
        self._lock = threading.Lock()
        self._checked: dict[str, tuple] = {}   # key -> (mtime_ns, size) of a checkpoint found whole
        self._ignored: set[Path] = set()       # damaged shipped records, said once
        # Shipped records read and checked, by path: (mtime_ns, size, replay). A class pressing
        # one lesson asks for the same six at once; parsing and checking them again for every
        # student was a third of the server's time for each replayed lesson.
        self._shipped_read: dict[Path, tuple] = {}

    @property
    def folder(self) -> Path:
        """The server's cache: as configured, else `.run-cache` in the runs folder
        ($VISION_LAB_CHECKPOINTS, as training.default_run_path reads it)."""
        if self._folder is not None:
            return self._folder
        return Path(os.environ.get("VISION_LAB_CHECKPOINTS") or "checkpoints") / ".run-cache"

    def configure(self, folder=None, shipped=None, max_mb=None, max_age_days=None) -> None:
        with self._lock:
            if folder is not None:
                self._folder = Path(folder)
                self._checked.clear()
            if shipped is not None:
                self.shipped = [Path(p) for p in shipped]
            if max_mb is not None:
                self.max_mb = max_mb
            if max_age_days is not None:
                self.max_age_days = max_age_days

    # -- reading --

    def get(self, key: str, need_checkpoint: bool = False) -> Replay | None:
        """The finished run with this key, or None. A damaged entry of the server's cache is
        deleted (the run then trains again); `need_checkpoint` skips entries without one."""
        if key.startswith(ONCE):
            return None
        replay = self._get_own(key)
        if replay is not None and (replay.checkpoint or not need_checkpoint):
            return replay
        if need_checkpoint:
            return None
        for folder in self.shipped:
            replay = self._get_shipped(folder, key)
            if replay is not None:
                return replay
        return None

    def _get_own(self, key: str) -> Replay | None:
        entry = self.folder / key
        path = entry / RECORD
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            _check_record(record, key)
            checkpoint = None
            if record.get("checkpoint"):
                checkpoint = entry / CHECKPOINT
                self._check_checkpoint(key, checkpoint, record["checkpoint"])
        except FileNotFoundError:
            return None      # evicted meanwhile
        except (OSError, ValueError, TypeError, KeyError) as error:
            log.warning("run cache: entry %s is damaged (%s); it will be trained again", key, error)
            self._remove(entry)
            return None
        try:
            os.utime(path)   # used now: the last to be evicted
        except OSError:
            pass
        return Replay(key, record["events"], checkpoint, record.get("created", ""),
                      record.get("seconds"), record.get("data") or {}, extra=record.get("extra") or {})

    def _check_checkpoint(self, key: str, path: Path, expected: dict) -> None:
        stat = path.stat()
        if stat.st_size != expected.get("bytes"):
            raise DamagedEntry(WRONG_SIZE.format(stat.st_size, expected.get("bytes")))
        seen = (stat.st_mtime_ns, stat.st_size)
        if self._checked.get(key) == seen:
            return
        if _sha256_file(path) != expected.get("sha256"):
            raise DamagedEntry(WRONG_HASH)
        from ..checkpoints import read_metadata

        read_metadata(path)
        self._checked[key] = seen

    def _get_shipped(self, folder: Path, key: str) -> Replay | None:
        path = folder / f"{key}.json"
        try:
            stat = path.stat()
        except OSError:
            return None
        if path in self._ignored:
            return None
        seen = self._shipped_read.get(path)
        if seen is not None and seen[:2] == (stat.st_mtime_ns, stat.st_size):
            return seen[2]
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            _check_record(record, key)
        except (OSError, ValueError, TypeError, KeyError) as error:
            log.warning("run cache: shipped record %s is damaged (%s); ignored", path, error)
            self._ignored.add(path)
            return None
        replay = Replay(key, record["events"], None, record.get("created", ""),
                        record.get("seconds"), record.get("data") or {}, shipped=True,
                        extra=record.get("extra") or {})
        self._shipped_read[path] = (stat.st_mtime_ns, stat.st_size, replay)
        return replay

    # -- writing --

    def put(self, key: str, events: list, checkpoint=None, data=None, seconds: float | None = None,
            extra: dict | None = None) -> Replay | None:
        """Keep a finished run: its events and a copy of its checkpoint (its metadata no longer
        saying where it was saved). Returns its replay, or None when the run is not replayable
        (stopped, failed) or could not be written."""
        record = make_record(key, events, data, seconds, extra)
        if record is None or key.startswith(ONCE):
            return None
        self.folder.mkdir(parents=True, exist_ok=True)
        temp = self.folder / f".tmp-{key}-{uuid.uuid4().hex[:8]}"
        try:
            temp.mkdir()
            if checkpoint and Path(checkpoint).is_file():
                body = rewrite_checkpoint(Path(checkpoint), {"out": None, "data_root": None},
                                          {"created": record["created"]})
                (temp / CHECKPOINT).write_bytes(body)
                record["checkpoint"] = {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}
            (temp / RECORD).write_text(json.dumps(record), encoding="utf-8")
            _fsync_folder_files(temp)
            try:
                os.rename(temp, self.folder / key)
            except OSError:
                if not (self.folder / key / RECORD).is_file():
                    raise
                # Someone else kept the same run meanwhile: theirs is as good as ours.
        except (OSError, ValueError) as error:
            log.warning("run cache: could not keep %s (%s)", key, error)
            return None
        finally:
            if temp.exists():
                shutil.rmtree(temp, ignore_errors=True)
        self.evict(keep=key)
        return self._get_own(key)

    def remove(self, key: str) -> None:
        self._remove(self.folder / key)

    def _remove(self, entry: Path) -> None:
        # Renamed away first, so a reader never sees half an entry.
        gone = entry.with_name(f".gone-{entry.name}-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(entry, gone)
        except OSError:
            return
        shutil.rmtree(gone, ignore_errors=True)
        self._checked.pop(entry.name, None)

    def entries(self) -> list[dict]:
        """The server's entries: key, bytes, created and last used (seconds since the epoch)."""
        out = []
        if not self.folder.is_dir():
            return out
        for entry in self.folder.iterdir():
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            try:
                files = [p.stat() for p in entry.iterdir() if p.is_file()]
                used = (entry / RECORD).stat().st_mtime
                created = entry.stat().st_mtime
            except OSError:
                continue
            out.append({"key": entry.name, "bytes": sum(s.st_size for s in files),
                        "created": created, "used": used})
        return out

    def evict(self, keep: str | None = None, now: float | None = None) -> list[str]:
        """Remove entries older than max_age_days, then the least recently used until the cache
        is under max_mb (never `keep`, just written). Left-over temp folders go too."""
        now = time.time() if now is None else now
        removed = []
        if self.folder.is_dir():
            for leftover in self.folder.glob(".*"):
                try:
                    if now - leftover.stat().st_mtime > 3600:
                        shutil.rmtree(leftover, ignore_errors=True)
                except OSError:
                    pass
        with self._lock:
            entries = self.entries()
            if self.max_age_days:
                for e in [e for e in entries if now - e["created"] > self.max_age_days * 86400]:
                    self._remove(self.folder / e["key"])
                    removed.append(e["key"])
                    entries.remove(e)
            if self.max_mb:
                total = sum(e["bytes"] for e in entries)
                for e in sorted(entries, key=lambda e: e["used"]):
                    if total <= self.max_mb * 2**20:
                        break
                    if e["key"] == keep:
                        continue
                    self._remove(self.folder / e["key"])
                    removed.append(e["key"])
                    total -= e["bytes"]
        return removed

    # -- a visitor's copy --

    def deliver(self, replay: Replay, dest, config=None) -> Path:
        """Write the replay's checkpoint to `dest` (a visitor's runs folder), as a run of its own:
        its config names `dest` (and the visitor's data root), its creation time is now."""
        from ..checkpoints import atomic_write_bytes

        if replay.checkpoint is None:
            raise FileNotFoundError(NO_CHECKPOINT)
        updates = {"out": str(dest)}
        if config is not None:
            updates["data_root"] = config.data_root
        body = rewrite_checkpoint(replay.checkpoint, updates, {"created": _now(), "replay_of": replay.key})
        atomic_write_bytes(Path(dest), body)
        return Path(dest)


def rewrite_checkpoint(source: Path, config_updates: dict, metadata_updates: dict) -> bytes:
    """A checkpoint's bytes with its metadata changed; the tensors are copied as they are."""
    from safetensors import safe_open
    from safetensors.torch import save

    from ..checkpoints import METADATA_KEY

    with safe_open(str(source), framework="pt") as f:
        header = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta = json.loads(header[METADATA_KEY])
    if isinstance(meta.get("config"), dict):
        meta["config"].update(config_updates)
    meta.update(metadata_updates)
    return save(tensors, metadata={METADATA_KEY: json.dumps(meta)})


def _now() -> str:
    return _dt.datetime.now().isoformat(timespec="seconds")


def _fsync_folder_files(folder: Path) -> None:
    for path in folder.iterdir():
        try:
            with open(path, "rb") as f:
                os.fsync(f.fileno())
        except OSError:
            pass


# The replays that ship with the app (scripts/make_replays.py).
SHIPPED = PACKAGE.parent / "checkpoints" / "replays"
# The server's cache; app.py sets its limits.
CACHE = RunCache(shipped=[SHIPPED])
