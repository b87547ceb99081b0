"""A finished run as one shareable `.zip` bundle, and opening one that somebody sent you.

A bundle holds exactly five files:

    config.json        the TrainConfig (as the CLI and the app build it; no paths of this machine)
    metrics.json       the test-set results: test_loss, test_acc, per_class_acc, confusion
    history.json       one record per epoch (train/val loss and accuracy, lr, seconds)
    model.safetensors  the checkpoint (checkpoints.py: safetensors with JSON metadata)
    README.txt         what the files are and the command line that trains the run again

It is written from the checkpoint alone: a run's checkpoint already carries its config, history
and metrics in its metadata (run_setup.checkpoint_metadata).

A bundle comes from someone else, so opening one treats it as hostile: every member is checked
before any is read (only the five names, no folders or paths, no duplicates, size caps on what the
headers claim *and* on what is actually read, a cap on the compression ratio against zip bombs),
the JSON is checked for the types the app relies on, and the checkpoint is loaded through
checkpoints.py (safetensors only; a pickle is refused) before it is kept anywhere, once its
metadata is known not to describe a model larger than the weights it holds.
"""
from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .i18n import t, text

CONFIG, METRICS, HISTORY, CHECKPOINT, README = ("config.json", "metrics.json", "history.json",
                                                "model.safetensors", "README.txt")
MEMBERS = (CONFIG, METRICS, HISTORY, CHECKPOINT, README)
SUFFIX = ".zip"
# What one member may unpack to. The JSON files of a run are kilobytes (a 100-class confusion
# matrix is ~40 KB); a ResNet18 checkpoint is 45 MB.
MAX_TEXT_BYTES = 4 * 2**20
MAX_CHECKPOINT_BYTES = int(os.environ.get("VISION_LAB_MAX_BUNDLE_MB", "512")) * 2**20
# Weights barely compress (~1.1x) and JSON ~5-10x; a member that claims to grow more than this
# (and to more than a megabyte) is a zip bomb, refused before it is inflated.
MAX_RATIO = 100
SMALL = 2**20
# Paths of this machine: where the reader keeps data and runs is their own business.
# Paths on the machine that trained. A continued run (resume) trains the same from scratch to the
# same epochs, so its bundle's config leaves the checkpoint it continued out too.
LOCAL_FIELDS = ("data_root", "out", "resume")


class BundleError(ValueError):
    """A file that is not a usable run bundle; the message says which file and why."""


@dataclass
class RunBundle:
    config: object            # a TrainConfig
    metrics: dict
    history: list[dict]
    classes: list[str]
    checkpoint: Path          # where the bundle's checkpoint was kept (a valid checkpoint)
    command: str              # the command line that trains it again


# ---- writing ------------------------------------------------------------------------------------

def write_bundle(checkpoint_path, out_path) -> Path:
    """Write the run whose checkpoint is `checkpoint_path` as a bundle at `out_path`."""
    from .checkpoints import atomic_write_bytes, model_only_bytes, read_metadata

    checkpoint_path = Path(checkpoint_path)
    meta = read_metadata(checkpoint_path)
    config = _shareable_config(meta, checkpoint_path.name)
    files = {
        CONFIG: _json_bytes(config.to_dict()),
        METRICS: _json_bytes(meta.get("metrics") or {}),
        HISTORY: _json_bytes(meta.get("history") or []),
        CHECKPOINT: model_only_bytes(checkpoint_path),
        README: t("bundles.readme", name=checkpoint_path.stem, model=config.model,
                  dataset=config.dataset, command=_command(config)).encode("utf-8"),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in MEMBERS:
            archive.writestr(name, files[name])
    out_path = Path(out_path)
    atomic_write_bytes(out_path, buffer.getvalue())
    return out_path


def _shareable_config(meta: dict, name: str):
    from .train_config import TrainConfig

    raw = meta.get("config")
    if not isinstance(raw, dict):
        raise BundleError(text("bundles.no_config", name=name))
    config = TrainConfig.from_dict({k: v for k, v in raw.items() if k not in LOCAL_FIELDS})
    return config


def _json_bytes(value) -> bytes:
    return json.dumps(value, indent=1, ensure_ascii=False).encode("utf-8")


def _command(config) -> str:
    from .command_line import command_for

    return command_for(config)


# ---- opening ------------------------------------------------------------------------------------

def open_bundle(path, checkpoint_out) -> RunBundle:
    """Check and read the bundle at `path`; keep its checkpoint at `checkpoint_out`.

    Raises BundleError (a ValueError) with one sentence naming the file and what is wrong."""
    path = Path(path)
    files = read_members(path)
    config = _read_config(files[CONFIG], path.name)
    metrics = _read_metrics(files[METRICS], path.name)
    history = _read_history(files[HISTORY], path.name)
    checkpoint = _keep_checkpoint(files[CHECKPOINT], Path(checkpoint_out), config, path.name)
    classes = checkpoint.classes
    for key in ("per_class_acc", "confusion"):
        if metrics.get(key) is not None and len(metrics[key]) != len(classes):
            raise _wrong(path.name, METRICS, text("bundles.reason.class_count", entry=key,
                                                  classes=len(classes)))
    return RunBundle(config=config, metrics=metrics, history=history, classes=classes,
                     checkpoint=checkpoint.path, command=_command(config))


def read_members(path: Path) -> dict[str, bytes]:
    """The five members' bytes, after checking every member's header."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError):
        raise BundleError(text("bundles.not_a_zip", name=path.name)) from None
    with archive:
        infos = archive.infolist()
        for info in infos:
            _check_member(info, path.name)
        names = [info.filename for info in infos]
        missing = [name for name in MEMBERS if name not in names]
        if missing or len(names) != len(MEMBERS):
            raise BundleError(text("bundles.wrong_members", name=path.name,
                                   expected=", ".join(MEMBERS), found=", ".join(names) or "-"))
        try:
            return {info.filename: _read_capped(archive, info, path.name) for info in infos}
        except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError):
            raise BundleError(text("bundles.corrupt", name=path.name)) from None


def _check_member(info: zipfile.ZipInfo, bundle: str) -> None:
    from .datasets.folders import _safe_member_parts

    try:
        _safe_member_parts(info.filename)  # absolute or '..': the datasets' own sentence
    except ValueError as error:
        raise BundleError(*error.args) from None
    if info.filename not in MEMBERS:  # a folder, a path, an extra file
        raise BundleError(text("bundles.unexpected_member", name=bundle, member=repr(info.filename),
                               expected=", ".join(MEMBERS)))
    limit = _limit(info.filename)
    if info.file_size > limit:
        raise BundleError(text("bundles.too_large", name=bundle, member=info.filename,
                               size=info.file_size / 2**20, limit=limit / 2**20))
    if info.file_size > SMALL and info.file_size > MAX_RATIO * max(info.compress_size, 1):
        raise BundleError(text("bundles.zip_bomb", name=bundle, member=info.filename,
                               ratio=MAX_RATIO))


def _limit(member: str) -> int:
    return MAX_CHECKPOINT_BYTES if member == CHECKPOINT else MAX_TEXT_BYTES


def _read_capped(archive: zipfile.ZipFile, info: zipfile.ZipInfo, bundle: str) -> bytes:
    """A member's bytes, reading at most its cap (a header may lie about the size)."""
    limit = _limit(info.filename)
    with archive.open(info) as member:
        data = member.read(limit + 1)
    if len(data) > limit:
        raise BundleError(text("bundles.too_large", name=bundle, member=info.filename,
                               size=len(data) / 2**20, limit=limit / 2**20))
    return data


# ---- checking what the members say --------------------------------------------------------------

def _json(data: bytes, member: str, bundle: str):
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BundleError(text("bundles.bad_json", name=bundle, member=member)) from None


def _wrong(bundle: str, member: str, reason) -> BundleError:
    return BundleError(text("bundles.bad_member", name=bundle, member=member, reason=reason))


# A TrainConfig field's annotation ("int | None") -> the JSON types it takes.
_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "dict": (dict,),
          "list": (list,), "None": (type(None),)}


def _field_types(annotation: str) -> tuple:
    return tuple(kind for word in annotation.split("|")
                 for kind in _TYPES[word.strip().split("[")[0]])


def _read_config(data: bytes, bundle: str):
    from .train_config import TrainConfig

    raw = _json(data, CONFIG, bundle)
    if not isinstance(raw, dict):
        raise _wrong(bundle, CONFIG, text("bundles.reason.not_object"))
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    for name, value in raw.items():
        if name not in fields:
            raise _wrong(bundle, CONFIG, text("bundles.reason.unknown_option", option=name))
        kinds = _field_types(str(fields[name].type))
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise _wrong(bundle, CONFIG, text("bundles.reason.wrong_type", option=name,
                                              value=repr(value)[:60]))
    raw = {**raw, **{name: None for name in LOCAL_FIELDS}}
    try:
        config = TrainConfig.from_dict(raw)
        config.validate()
    except (ValueError, TypeError, KeyError) as error:
        reason = error.args[0] if error.args else type(error).__name__
        raise _wrong(bundle, CONFIG, reason) from None
    return config


def _number(value, or_none: bool = False) -> bool:
    if value is None:
        return or_none
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _read_metrics(data: bytes, bundle: str) -> dict:
    metrics = _json(data, METRICS, bundle)
    if not isinstance(metrics, dict):
        raise _wrong(bundle, METRICS, text("bundles.reason.not_object"))
    for key in ("test_loss", "test_acc", "kept_epoch"):
        if not _number(metrics.get(key), or_none=True):
            raise _wrong(bundle, METRICS, text("bundles.reason.not_number", entry=key))
    per_class = metrics.get("per_class_acc")
    if per_class is not None and not (isinstance(per_class, list)
                                      and all(_number(v) for v in per_class)):
        raise _wrong(bundle, METRICS, text("bundles.reason.not_numbers", entry="per_class_acc"))
    confusion = metrics.get("confusion")
    if confusion is not None:
        rows = confusion if isinstance(confusion, list) else None
        square = rows is not None and all(
            isinstance(row, list) and len(row) == len(rows)
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in row)
            for row in rows)
        if not square or (per_class is not None and len(rows) != len(per_class)):
            raise _wrong(bundle, METRICS, text("bundles.reason.bad_confusion"))
    return metrics


EPOCH_NUMBERS = ("train_loss", "train_acc", "lr")
EPOCH_OPTIONAL = ("val_loss", "val_acc", "seconds")


def _read_history(data: bytes, bundle: str) -> list[dict]:
    history = _json(data, HISTORY, bundle)
    if not isinstance(history, list):
        raise _wrong(bundle, HISTORY, text("bundles.reason.not_list"))
    for i, record in enumerate(history, 1):
        ok = (isinstance(record, dict) and isinstance(record.get("epoch"), int)
              and all(_number(record.get(k)) for k in EPOCH_NUMBERS)
              and all(_number(record.get(k), or_none=True) for k in EPOCH_OPTIONAL))
        if not ok:
            raise _wrong(bundle, HISTORY, text("bundles.reason.bad_epoch", index=i))
    return history


def _keep_checkpoint(data: bytes, out: Path, config, bundle: str):
    """Load the checkpoint from a private temp folder (checkpoints.py refuses anything that is not
    safetensors), check it is the config's model, then write it to `out`. In the temp folder it is
    named model.safetensors, as in the bundle, so what checkpoints.py says names that."""
    import tempfile

    from .checkpoints import CheckpointError, atomic_write_bytes, load_checkpoint, read_metadata

    with tempfile.TemporaryDirectory(prefix="vision-lab-bundle-") as folder:
        temp = Path(folder) / CHECKPOINT
        temp.write_bytes(data)
        try:
            _check_model_size(read_metadata(temp), len(data), bundle)
            checkpoint = load_checkpoint(temp)
        except CheckpointError as error:
            raise _wrong(bundle, CHECKPOINT, error.args[0]) from None
    if checkpoint.metadata["model"] != config.model:
        raise _wrong(bundle, CHECKPOINT, text("bundles.reason.other_model",
                                              model=checkpoint.metadata["model"],
                                              config_model=config.model))
    atomic_write_bytes(out, data)
    checkpoint.path = out
    return checkpoint


def _check_model_size(meta: dict, file_bytes: int, bundle: str) -> None:
    """Refuse metadata describing a model larger than the weights the file holds, before building
    it: loading builds the model first, and a few hostile numbers (hidden_sizes [200000, 200000])
    would ask for tens of gigabytes. The model is sized on the "meta" device, which holds no
    data."""
    import torch

    from .checkpoints import CheckpointError
    from .models import create_model

    try:
        with torch.device("meta"):
            model = create_model(meta["model"], num_classes=len(meta["classes"]),
                                 in_channels=int(meta["channels"]),
                                 image_size=int(meta["image_size"]),
                                 **meta.get("model_options", {}))
    except (ValueError, TypeError, RuntimeError) as error:
        raise CheckpointError(text("checkpoints.cannot_rebuild", name=CHECKPOINT,
                                   reason=error.args[0] if error.args else type(error).__name__)
                              ) from None
    needed = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    if needed > file_bytes:
        raise CheckpointError(text("bundles.reason.model_too_large", needed=needed / 2**20,
                                   held=file_bytes / 2**20))
