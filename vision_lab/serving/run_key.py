"""A run's key: what decides its numbers, hashed, so that the same run is known wherever it is asked for.

On a CPU a run is determined by its config, its data and the code that trains it, so a run's *key*
is a hash of exactly those:

- the config: `TrainConfig.to_dict()` without where files go (`out`, `data_root`, `device`), with
  options spelled out (a model's or scheduler's defaults written in or left out are the same run);
- the data: a built-in dataset by its name and the fields `train_config.load_data` reads (its loader
  is part of the code version, and downloaded files are checked against their published sums); a
  `folder:` dataset by a hash of its images and labels as loaded (a folder can change under the
  same name, and every upload gets a new random name);
- the code version: the syntax trees of the modules a result depends on (CODE_MODULES; comments and
  docstrings do not count, so editing them keeps the cache), torch's version and the kind of device
  the runs train on.

The run cache (run_cache.py) keeps finished runs by this key.
"""
from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import json
import threading
import uuid
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]
# The modules whose code decides a run's numbers (and the checkpoint's format).
CODE_MODULES = ("training.py", "train_config.py", "run_setup.py", "batches.py", "evaluation.py",
                "models.py", "transforms.py", "batch_augment.py", "preprocessing.py",
                "checkpoints.py", "resume.py", "datasets")
# Where files go, not what is trained.
PLACE_FIELDS = ("out", "data_root", "device")


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

    from ..run_setup import pick_device

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
    """(label, seed, config) of every run of a lesson_results.Plan, in the order and with the seeds
    `lessons.run_comparison` trains them (seeds go round the runs)."""
    return [(label, seed, dataclasses.replace(config, seed=seed))
            for seed in range(plan.seeds) for label, config in plan.runs]


# For programmers (the app never makes this mistake), not for visitors.
NEEDS_DATA = "a folder dataset is known by its contents: load it first"


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

