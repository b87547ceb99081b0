"""Save, load and list checkpoints: safetensors weights with JSON metadata, written atomically.

A checkpoint is one `.safetensors` file whose header carries everything needed to rebuild the model
and its preprocessing. Loading never unpickles: safetensors holds raw tensors only, and we refuse
anything else (a PyTorch `.pt` pickle can run arbitrary code when loaded).
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as _safetensors_bytes

from . import __version__
from .i18n import Text, text
from .lru import LRU
from .models import create_model
from .preprocessing import Preprocessing

METADATA_KEY = "vision_lab"
FORMAT_VERSION = 1
SUFFIX = ".safetensors"
REQUIRED_KEYS = ("model", "classes", "channels", "image_size", "mean", "std")
# Tensors under this prefix are a run's training state (resume.py), not the model's weights.
TRAINING_STATE = "training_state."


class CheckpointError(ValueError):
    """A file that is not a usable Vision Lab checkpoint; the message says which file and why."""


def default_checkpoint_dir() -> Path:
    return Path(os.environ.get("VISION_LAB_CHECKPOINTS", "checkpoints"))


@dataclass
class Checkpoint:
    model: torch.nn.Module
    metadata: dict
    path: Path

    @property
    def classes(self) -> list[str]:
        return list(self.metadata["classes"])

    @property
    def preprocessing(self) -> Preprocessing:
        return preprocessing_from_metadata(self.metadata)


def preprocessing_from_metadata(meta: dict) -> Preprocessing:
    return Preprocessing(channels=int(meta["channels"]), image_size=int(meta["image_size"]),
                         mean=tuple(meta["mean"]), std=tuple(meta["std"]),
                         permutation_seed=meta.get("permutation_seed"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a hidden temp file in the same folder, fsync, then rename over the target.

    A crash at any moment leaves either the old file or the new one, never half of one; the temp
    name starts with '.' and ends with '.tmp' so listing skips it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def _temp_owner_alive(name: str) -> bool:
    """Whether the process that wrote temp file `.NAME.PID.tmp` still runs."""
    try:
        pid = int(name.rsplit(".", 2)[-2])
    except (ValueError, IndexError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temp_files(directory, older_than: float = 3600.0) -> list[Path]:
    """Delete temp files that atomic writes left behind when their process was killed.

    A temp file is stale when the process named in it is gone, or when it is older than
    `older_than` seconds (a write takes seconds, and a pid can be reused). Returns what was removed.
    """
    removed = []
    root = Path(directory)
    if not root.is_dir():
        return removed
    now = time.time()
    for p in root.rglob(".*.tmp"):
        try:
            if not _temp_owner_alive(p.name) or now - p.stat().st_mtime > older_than:
                p.unlink()
                removed.append(p)
        except FileNotFoundError:
            continue  # finished (renamed) or removed meanwhile
    return removed


def save_checkpoint(path, model: torch.nn.Module, metadata: dict, extra: dict | None = None) -> Path:
    """Write the model's weights and `metadata`; `extra` tensors (a run's training state, named
    under TRAINING_STATE) go into the same file."""
    missing = [k for k in REQUIRED_KEYS if k not in metadata]
    if missing:
        raise ValueError(text("checkpoints.save_lacks", keys=", ".join(missing)))
    meta = dict(metadata)
    meta.update(format_version=FORMAT_VERSION, vision_lab_version=__version__,
                created=meta.get("created") or _dt.datetime.now().isoformat(timespec="seconds"))
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    tensors.update(extra or {})
    data = _safetensors_bytes(tensors, metadata={METADATA_KEY: json.dumps(meta)})
    path = Path(path)
    atomic_write_bytes(path, data)
    return path


def model_only_bytes(path) -> bytes:
    """The checkpoint's bytes without a run's training state (resume.py): what a bundle carries.
    Adam's state alone is twice the weights, and nobody continues a run from a shared copy."""
    path = Path(path)
    meta = read_metadata(path)
    if "training_state" not in meta:
        return path.read_bytes()
    with safe_open(str(path), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys() if not k.startswith(TRAINING_STATE)}
    meta.pop("training_state")
    return _safetensors_bytes(tensors, metadata={METADATA_KEY: json.dumps(meta)})


def _describe_non_safetensors(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:1] == b"\x80" or head[:2] == b"PK":
        return text("checkpoints.pickle", name=path.name)
    return text("checkpoints.not_safetensors", name=path.name)


# Headers read, by file: (device, inode, size, mtime_ns) -> the header's metadata. A checkpoint is
# written under a temporary name and renamed into place, so a changed file is a new key. Pickers
# and every classify call list the checkpoints; opening each file again was most of that.
_HEADERS = LRU(1024)


def _header(path: Path) -> dict:
    stat = path.stat()
    key = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
    return _HEADERS.get_or_make(key, lambda: _read_header(path))


def _read_header(path: Path) -> dict:
    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def read_metadata(path) -> dict:
    """The metadata of a checkpoint, reading only its header."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(text("checkpoints.missing", path=str(path)))
    if path.stat().st_size == 0:
        raise CheckpointError(text("checkpoints.empty", name=path.name))
    try:
        header = _header(path)
    except (SafetensorError, OSError, ValueError, RuntimeError):
        raise CheckpointError(_describe_non_safetensors(path)) from None
    raw = header.get(METADATA_KEY)
    if raw is None:
        sidecar = path.with_suffix(".json")
        if not sidecar.is_file():
            raise CheckpointError(text("checkpoints.no_metadata", name=path.name))
        raw = sidecar.read_text(encoding="utf-8")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError:
        raise CheckpointError(text("checkpoints.bad_json", name=path.name)) from None
    missing = [k for k in REQUIRED_KEYS if k not in meta] if isinstance(meta, dict) else REQUIRED_KEYS
    if missing:
        raise CheckpointError(text("checkpoints.metadata_lacks", name=path.name,
                                   keys=", ".join(missing)))
    return meta


def _said_by(error: BaseException) -> str:
    """An error's sentence, kept as a catalogue Text when it is one (so it is translated too)."""
    if error.args and isinstance(error.args[0], Text):
        return error.args[0]
    return str(error)


def load_checkpoint(path, device="cpu") -> Checkpoint:
    path = Path(path)
    meta = read_metadata(path)
    try:
        model = create_model(meta["model"], num_classes=len(meta["classes"]),
                             in_channels=int(meta["channels"]), image_size=int(meta["image_size"]),
                             **meta.get("model_options", {}))
    except (ValueError, TypeError) as e:
        raise CheckpointError(text("checkpoints.cannot_rebuild", name=path.name,
                                   reason=_said_by(e))) from None
    with safe_open(str(path), framework="pt") as f:
        state = {k: f.get_tensor(k) for k in f.keys() if not k.startswith(TRAINING_STATE)}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(text("checkpoints.weights_mismatch", name=path.name,
                                   model=meta["model"], missing=len(missing),
                                   unexpected=len(unexpected), example=(missing + unexpected)[0]))
    for k, v in expected.items():
        if state[k].shape != v.shape:
            raise CheckpointError(text("checkpoints.shape_mismatch", name=path.name, tensor=k,
                                       shape=str(tuple(state[k].shape)),
                                       needed=str(tuple(v.shape))))
    model.load_state_dict(state)
    model.to(device).eval()
    return Checkpoint(model=model, metadata=meta, path=path)


@dataclass
class CheckpointInfo:
    path: Path
    name: str
    model: str
    dataset: str
    classes: int
    test_acc: float | None
    created: str
    size_mb: float


def _visible_files(d: Path):
    """Checkpoint files under `d`, not descending into hidden folders (a visitor's private runs,
    the run cache: walking them for every picker and every classify call cost more than the rest)."""
    for root, folders, files in os.walk(d):
        folders[:] = sorted(f for f in folders if not f.startswith("."))
        for name in sorted(files):
            if name.endswith(SUFFIX) and not name.startswith("."):
                yield Path(root) / name


def list_checkpoints(*directories) -> list[CheckpointInfo]:
    """Valid checkpoints under the given folders (recursively), newest first.

    Hidden files (temp files of writes in progress), anything inside a hidden folder under a
    listed folder (the app keeps each visitor's private runs in one) and files that fail to parse
    are skipped, so a half-written, private or foreign file never shows up in a picker.
    """
    dirs = [Path(d) for d in directories] or [default_checkpoint_dir()]
    found: dict[Path, CheckpointInfo] = {}
    for d in dirs:
        if not d.is_dir():
            continue
        for p in _visible_files(d):
            if p.resolve() in found:
                continue
            try:
                meta = read_metadata(p)
            except CheckpointError:
                continue
            metrics = meta.get("metrics") or {}
            found[p.resolve()] = CheckpointInfo(
                path=p, name=p.stem, model=meta["model"], dataset=str(meta.get("dataset", "?")),
                classes=len(meta["classes"]), test_acc=metrics.get("test_acc"),
                created=str(meta.get("created", "")), size_mb=p.stat().st_size / 2**20)
    return sorted(found.values(), key=lambda c: c.created, reverse=True)
