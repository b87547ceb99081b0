"""The run cache: a run is trained once, and whoever asks for the same run again gets its replay.

A run is known by its key (run_key.py), a hash of its config, its data and the code that trains it.

An entry of the server's cache is a folder `<key>/` holding `run.json` (the run's events: status
lines, epochs, the end with its test-set metrics, and the batches the loss curve needs: a record,
run_record.py) and, when the run saved one, `checkpoint.safetensors`. JSON and safetensors only:
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

import hashlib
import json
import logging
import os
import shutil
import threading
import time
import uuid
from pathlib import Path

from .run_key import ONCE, PACKAGE, _sha256_file
from .run_record import DamagedEntry, Replay, _check_record, _now, make_record

log = logging.getLogger(__name__)

RECORD, CHECKPOINT = "run.json", "checkpoint.safetensors"

# For the server's log and for programmers, not for visitors (who never see these).
WRONG_SIZE, WRONG_HASH = "checkpoint has {} bytes, not {}", "checkpoint does not match its hash"
NO_CHECKPOINT = "this replay has no checkpoint"


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
        ($VISION_LAB_CHECKPOINTS, as train_config.default_run_path reads it)."""
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

